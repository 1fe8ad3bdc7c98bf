"""The node registry and node-pack discovery.

A node pack is a Python module or package. Its nodes are the classes listed in its
``NODES`` attribute, or else every ``@node`` class defined in it. Packs come from:

* the built-in packs, the import package ``nodeflow_nodes`` (the repository's ``nodes/``
  folder, mapped at install time; one sub-package per pack),
* the entry-point group ``nodeflow.nodes`` (an installed plugin distribution),
* plugin directories (``NODEFLOW_PLUGIN_PATH``, ``--plugins DIR``): each ``*.py`` file
  or package folder inside is a pack.

A pack that fails to import is recorded in :attr:`Registry.errors` with its name and
traceback and does not stop the others; two packs registering one id is an error that
names both. There is no global registry: build one and pass it along.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
import traceback
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import ErrorInfo
from .events import vocabulary
from .node import NodeSchema, is_node_class, schema_of
from .types import compatibility_table

ENTRY_POINT_GROUP = "nodeflow.nodes"
PLUGIN_PATH_ENV = "NODEFLOW_PLUGIN_PATH"


class Registry:
    """Node types by id, plus the errors met while loading packs."""

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}
        self._schemas: dict[str, NodeSchema] = {}
        self.errors: list[ErrorInfo] = []

    # -- lookup -------------------------------------------------------------
    def __contains__(self, type_id: str) -> bool:
        return type_id in self._classes

    def __len__(self) -> int:
        return len(self._classes)

    def get(self, type_id: str) -> type | None:
        """The node class registered as ``type_id``."""
        return self._classes.get(type_id)

    def schema(self, type_id: str) -> NodeSchema | None:
        """The schema of ``type_id`` (with its pack name filled in)."""
        return self._schemas.get(type_id)

    def ids(self) -> list[str]:
        """All registered ids, sorted."""
        return sorted(self._classes)

    # -- registration ---------------------------------------------------------
    def add(self, cls: type, pack: str) -> bool:
        """Register one node class for ``pack``; record an error and return False on a clash."""
        schema = schema_of(cls)
        existing = self._schemas.get(schema.id)
        if existing is not None:
            if self._classes[schema.id] is cls:
                return True
            self.errors.append(
                ErrorInfo(
                    "duplicate_node_id",
                    f"node id '{schema.id}' is registered by pack '{existing.pack}' and again by pack '{pack}';"
                    f" the one from '{existing.pack}' is kept",
                    node=schema.id,
                )
            )
            return False
        self._classes[schema.id] = cls
        self._schemas[schema.id] = schema.model_copy(update={"pack": pack})
        return True

    def add_module(self, module: ModuleType, pack: str) -> int:
        """Register the nodes of a pack module; returns how many were added."""
        return sum(self.add(cls, pack) for cls in _nodes_of(module))

    def load_pack(self, pack: str, load: Any) -> None:
        """Run ``load()`` (an import) and register what it returns; record a failure, never raise."""
        try:
            obj = load()
            if isinstance(obj, ModuleType):
                self.add_module(obj, pack)
            else:
                classes = obj if isinstance(obj, (list, tuple)) else [obj]
                for cls in classes:
                    self.add(cls, pack)
        except Exception:  # a broken plugin must not stop the others
            self.errors.append(
                ErrorInfo("pack_import_failed", f"node pack '{pack}' failed to load:\n{traceback.format_exc()}")
            )

    def load_builtin(self) -> None:
        """Load every pack under the built-in ``nodeflow_nodes`` package."""
        import nodeflow_nodes

        for info in sorted(pkgutil.iter_modules(nodeflow_nodes.__path__), key=lambda i: i.name):
            self.load_pack(info.name, lambda name=info.name: importlib.import_module(f"nodeflow_nodes.{name}"))

    def load_entry_points(self) -> None:
        """Load packs installed under the ``nodeflow.nodes`` entry-point group."""
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            self.load_pack(ep.name, ep.load)

    def load_directory(self, directory: str | Path) -> None:
        """Load each ``*.py`` file and package folder inside ``directory`` as a pack."""
        root = Path(directory)
        if not root.is_dir():
            self.errors.append(ErrorInfo("pack_import_failed", f"plugin directory {root} does not exist"))
            return
        for path in sorted(root.iterdir()):
            if path.name.startswith(("_", ".")):
                continue
            if path.suffix == ".py":
                self.load_pack(path.stem, lambda p=path: _import_file(p.stem, p))
            elif (path / "__init__.py").is_file():
                self.load_pack(path.name, lambda p=path: _import_file(p.name, p / "__init__.py"))

    # -- export ---------------------------------------------------------------
    def catalogue(self) -> dict[str, Any]:
        """Node schemas, the type compatibility table and the run vocabulary: what the editor builds from."""
        return {
            "nodes": {i: self._schemas[i].model_dump(mode="json") for i in self.ids()},
            "types": compatibility_table(),
            "vocabulary": vocabulary(),
            "errors": [e.to_dict() for e in self.errors],
        }


def _nodes_of(module: ModuleType) -> Iterable[type]:
    listed = getattr(module, "NODES", None)
    if listed is not None:
        return list(listed)
    prefix = module.__name__
    return [
        obj
        for obj in vars(module).values()
        if is_node_class(obj) and (obj.__module__ == prefix or obj.__module__.startswith(prefix + "."))
    ]


def _import_file(name: str, path: Path) -> ModuleType:
    """Import a plugin file or package by path under a private module name."""
    module_name = f"nodeflow_plugin_{name}"
    spec = importlib.util.spec_from_file_location(
        module_name, path, submodule_search_locations=[str(path.parent)] if path.name == "__init__.py" else None
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    # Forget an earlier import under this name (another registry in this process, or a
    # same-named pack in another plugin folder): its cached submodules would otherwise be
    # reused by this package's relative imports instead of the files next to it.
    for loaded in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
        del sys.modules[loaded]
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def build_registry(plugin_dirs: Iterable[str | Path] = (), *, use_entry_points: bool = True) -> Registry:
    """The usual registry: built-in packs, entry-point plugins, ``NODEFLOW_PLUGIN_PATH`` and ``plugin_dirs``."""
    registry = Registry()
    registry.load_builtin()
    if use_entry_points:
        registry.load_entry_points()
    env_dirs = [d for d in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if d]
    for directory in [*env_dirs, *plugin_dirs]:
        registry.load_directory(directory)
    return registry
