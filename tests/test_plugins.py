"""Plugins: node packs from entry points and plugin folders, and how failures are reported.

The ``nodeflow nodes --json`` tests run the real command in a subprocess. The
entry-point plugins need no pip: a module and a hand-written ``*.dist-info`` folder
(METADATA + entry_points.txt) on ``PYTHONPATH`` are exactly what an installed
distribution looks like to ``importlib.metadata``. That subprocess runs once and the
tests read its output; the other tests load packs in-process.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from nodeflow.executor import Executor, RunResult
from nodeflow.registry import ENTRY_POINT_GROUP, PLUGIN_PATH_ENV, Registry

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_PACK = REPO / "examples" / "plugins" / "nodeflow-example-pack"
EXAMPLE_IDS = {"example.prompt_template", "example.remap", "example.grayscale"}


def constant_node_source(node_id: str, text: str = "hello") -> str:
    """Source of a pack module with one node ``node_id`` that outputs ``text``."""
    return dedent(
        f'''
        from nodeflow.node import Output, node


        @node("{node_id}")
        class Constant:
            """Outputs a fixed text."""

            text = Output("STRING")

            def run(self, ctx):
                return {text!r}
        '''
    )


BROKEN_SOURCE = 'raise RuntimeError("broken on purpose")\n'


def nodes_json(*args: Any, cwd: Path, pythonpath: list[Path] = (), env: dict[str, str] | None = None):
    """Run ``nodeflow nodes --json`` in a fresh process; return (process, parsed catalogue)."""
    child_env = {k: v for k, v in os.environ.items() if k != PLUGIN_PATH_ENV}
    child_env["PYTHONPATH"] = os.pathsep.join(
        [*map(str, pythonpath), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    child_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "nodeflow.cli", "nodes", "--json", *map(str, args)],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=child_env,
    )
    assert proc.stdout, proc.stderr
    return proc, json.loads(proc.stdout)


def registry_with_core() -> Registry:
    """A registry holding the built-in ``core`` pack only (the SD pack is slow to import)."""
    registry = Registry()
    registry.load_pack("core", lambda: importlib.import_module("nodeflow_nodes.core"))
    return registry


def run_node(registry: Registry, type_id: str) -> RunResult:
    """Run a graph holding one node of ``type_id`` (no inputs) and keep its outputs."""
    return Executor(registry).run({"nodes": {"n": {"type": type_id}}}, targets=["n"])


@pytest.fixture(autouse=True)
def forget_plugin_modules():
    """Plugin-folder packs import as ``nodeflow_plugin_<name>``; keep tests from seeing each other's."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("nodeflow_plugin_"):
            del sys.modules[name]


# -- one `nodeflow nodes --json` run that meets every kind of plugin ------------------
@pytest.fixture(scope="module")
def nodes_run(tmp_path_factory):
    """``nodeflow nodes --json --plugins FLAG_DIR`` in a process that also has

    * two installed distributions (fake ``*.dist-info`` on ``PYTHONPATH``): entry point
      ``ep_demo`` (good) and ``ep_broken`` (raises on import);
    * ``FLAG_DIR`` holding ``flag_pack.py`` (good) and ``broken.py`` (raises on import);
    * two folders in ``NODEFLOW_PLUGIN_PATH``, each with one good pack.

    One process rather than one per scenario: each start imports torch (seconds).
    """
    site = tmp_path_factory.mktemp("site-packages")
    for module, ep_name, source in [
        ("ep_demo_pack", "ep_demo", constant_node_source("ep_demo.hello")),
        ("ep_broken_pack", "ep_broken", BROKEN_SOURCE),
    ]:
        (site / f"{module}.py").write_text(source)
        info = site / f"{module}-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1.0\n")
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{ep_name} = {module}\n")
    folders = {}
    for name in ("flag", "env_a", "env_b"):
        folder = folders[name] = tmp_path_factory.mktemp(name)
        (folder / f"{name}_pack.py").write_text(constant_node_source(f"{name}_demo.hello"))
    (folders["flag"] / "broken.py").write_text(BROKEN_SOURCE)
    env = {PLUGIN_PATH_ENV: os.pathsep.join([str(folders["env_a"]), str(folders["env_b"])])}
    return nodes_json("--plugins", folders["flag"], cwd=tmp_path_factory.mktemp("cwd"), pythonpath=[site], env=env)


def failures_of(catalogue: dict[str, Any], pack: str) -> list[dict[str, Any]]:
    """The ``pack_import_failed`` errors that name ``pack``."""
    return [e for e in catalogue["errors"] if e["code"] == "pack_import_failed" and f"'{pack}'" in e["message"]]


def test_entry_point_plugin_appears_in_nodes_json_under_its_entry_point_name(nodes_run):
    _, catalogue = nodes_run
    assert catalogue["nodes"]["ep_demo.hello"]["pack"] == "ep_demo"


def test_plugin_from_plugins_flag_folder_appears_in_nodes_json(nodes_run):
    _, catalogue = nodes_run
    assert catalogue["nodes"]["flag_demo.hello"]["pack"] == "flag_pack"


def test_plugins_from_every_folder_in_nodeflow_plugin_path_appear_in_nodes_json(nodes_run):
    _, catalogue = nodes_run
    assert catalogue["nodes"]["env_a_demo.hello"]["pack"] == "env_a_pack"
    assert catalogue["nodes"]["env_b_demo.hello"]["pack"] == "env_b_pack"


def test_broken_folder_plugin_is_reported_by_name_with_its_traceback(nodes_run):
    _, catalogue = nodes_run
    [failure] = failures_of(catalogue, "broken")
    assert "node pack 'broken' failed to load" in failure["message"]
    assert "Traceback (most recent call last)" in failure["message"]
    assert "RuntimeError: broken on purpose" in failure["message"]


def test_broken_entry_point_plugin_is_reported_by_its_entry_point_name_with_its_traceback(nodes_run):
    _, catalogue = nodes_run
    [failure] = failures_of(catalogue, "ep_broken")
    assert "Traceback (most recent call last)" in failure["message"]
    assert "RuntimeError: broken on purpose" in failure["message"]


def test_broken_plugins_are_the_only_errors_reported(nodes_run):
    _, catalogue = nodes_run
    assert len(catalogue["errors"]) == 2


def test_broken_plugin_is_warned_about_on_stderr(nodes_run):
    proc, _ = nodes_run
    assert "warning: node pack 'broken' failed to load" in proc.stderr
    assert "RuntimeError: broken on purpose" in proc.stderr


def test_broken_plugins_do_not_stop_the_builtin_packs(nodes_run):
    _, catalogue = nodes_run
    assert catalogue["nodes"]["core.add"]["pack"] == "core"


def test_broken_plugins_do_not_stop_the_nodes_command(nodes_run):
    proc, _ = nodes_run
    assert proc.returncode == 0


# -- duplicate ids ---------------------------------------------------------------------
def test_two_packs_registering_one_id_give_an_error_naming_both(tmp_path):
    (tmp_path / "alpha.py").write_text(constant_node_source("dup.hello", "from alpha"))
    (tmp_path / "beta.py").write_text(constant_node_source("dup.hello", "from beta"))
    registry = Registry()
    registry.load_directory(tmp_path)
    [error] = registry.errors
    assert (error.code, error.node) == ("duplicate_node_id", "dup.hello")
    assert "'alpha'" in error.message and "'beta'" in error.message


def test_the_first_pack_keeps_a_duplicated_id(tmp_path):
    (tmp_path / "alpha.py").write_text(constant_node_source("dup.hello", "from alpha"))
    (tmp_path / "beta.py").write_text(constant_node_source("dup.hello", "from beta"))
    registry = Registry()
    registry.load_directory(tmp_path)
    assert registry.schema("dup.hello").pack == "alpha"
    assert run_node(registry, "dup.hello").values["n"]["text"] == "from alpha"


def test_a_plugin_reusing_a_builtin_id_is_reported_against_the_builtin_pack(tmp_path):
    (tmp_path / "clash.py").write_text(constant_node_source("core.add"))
    registry = registry_with_core()
    registry.load_directory(tmp_path)
    [error] = registry.errors
    assert error.code == "duplicate_node_id"
    assert "'core'" in error.message and "'clash'" in error.message
    assert registry.schema("core.add").pack == "core"


# -- the example pack ------------------------------------------------------------------
@pytest.fixture
def example_pack_on_path(monkeypatch):
    """The example pack's sources importable, as if it were installed."""
    monkeypatch.syspath_prepend(str(EXAMPLE_PACK / "src"))


def test_example_pack_entry_point_declared_in_its_pyproject_loads_its_nodes(example_pack_on_path):
    pyproject = tomllib.loads((EXAMPLE_PACK / "pyproject.toml").read_text(encoding="utf-8"))
    [(name, value)] = pyproject["project"]["entry-points"][ENTRY_POINT_GROUP].items()
    entry_point = EntryPoint(name, value, ENTRY_POINT_GROUP)
    registry = Registry()
    registry.load_pack(entry_point.name, entry_point.load)
    assert registry.errors == []
    assert {i: registry.schema(i).pack for i in EXAMPLE_IDS} == {i: "example" for i in EXAMPLE_IDS}


def test_example_pack_module_registers_its_three_nodes_with_add_module(example_pack_on_path):
    registry = Registry()
    added = registry.add_module(importlib.import_module("nodeflow_example_pack"), "example")
    assert added == 3
    assert set(registry.ids()) == EXAMPLE_IDS


def test_example_pack_nodes_run_in_a_graph_with_builtin_nodes(example_pack_on_path):
    registry = registry_with_core()
    registry.load_pack("example", lambda: importlib.import_module("nodeflow_example_pack"))
    graph = {
        "nodes": {
            "prompt": {"type": "example.prompt_template", "inputs": {"subject": "a fox", "style": "watercolor"}},
            "cfg": {"type": "example.remap", "inputs": {"value": 0.5, "out_min": 4.0, "out_max": 12.0}},
            "show_prompt": {"type": "core.show", "inputs": {"value": {"node": "prompt", "output": "text"}}},
            "show_cfg": {"type": "core.show", "inputs": {"value": {"node": "cfg", "output": "result"}}},
        }
    }
    result = Executor(registry).run(graph)
    assert result.status == "succeeded", result.errors
    assert result.values["show_prompt"]["text"] == repr("a watercolor photo of a fox")
    assert result.values["show_cfg"]["text"] == repr(8.0)


def test_example_pack_also_loads_as_a_plugin_folder_package():
    registry = Registry()
    registry.load_directory(EXAMPLE_PACK / "src")
    assert registry.errors == []
    assert EXAMPLE_IDS <= set(registry.ids())


# -- the shapes of a plugin-folder pack --------------------------------------------------
def test_single_file_plugin_loads_and_runs(tmp_path):
    (tmp_path / "single.py").write_text(constant_node_source("single.hello", "from a file"))
    registry = Registry()
    registry.load_directory(tmp_path)
    assert registry.schema("single.hello").pack == "single"
    assert run_node(registry, "single.hello").values["n"]["text"] == "from a file"


def test_package_folder_plugin_with_relative_imports_loads_and_runs(tmp_path):
    package = tmp_path / "folder_pack"
    package.mkdir()
    (package / "__init__.py").write_text("from .hello import Constant\n\nNODES = [Constant]\n")
    (package / "hello.py").write_text(constant_node_source("folder.hello", "from a package"))
    registry = Registry()
    registry.load_directory(tmp_path)
    assert registry.schema("folder.hello").pack == "folder_pack"
    assert run_node(registry, "folder.hello").values["n"]["text"] == "from a package"


def test_same_named_package_folders_in_two_plugin_dirs_each_use_their_own_submodules(tmp_path):
    for variant in ("one", "two"):
        package = tmp_path / variant / "shared_name"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("from .impl import Constant\n")
        (package / "impl.py").write_text(constant_node_source(f"{variant}.hello"))
    first, second = Registry(), Registry()
    first.load_directory(tmp_path / "one")
    second.load_directory(tmp_path / "two")
    assert (first.ids(), second.ids()) == (["one.hello"], ["two.hello"])


def test_underscore_and_dot_entries_in_a_plugin_folder_are_not_packs(tmp_path):
    (tmp_path / "_helpers.py").write_text(BROKEN_SOURCE)
    (tmp_path / ".hidden.py").write_text(BROKEN_SOURCE)
    (tmp_path / "real.py").write_text(constant_node_source("real.hello"))
    registry = Registry()
    registry.load_directory(tmp_path)
    assert (registry.ids(), registry.errors) == (["real.hello"], [])


def test_a_missing_plugin_folder_is_reported_not_raised(tmp_path):
    registry = Registry()
    registry.load_directory(tmp_path / "nowhere")
    [error] = registry.errors
    assert error.code == "pack_import_failed"
    assert "nowhere" in error.message
