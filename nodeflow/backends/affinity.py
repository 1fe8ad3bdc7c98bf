"""Model affinity: which models a job will load, named by the model store's own key.

A worker keeps the models it loaded (its :class:`~nodeflow.models.ModelStore`), so a
job runs soonest on a worker that already holds its model. Before a job is queued,
:func:`wanted_models` reads the graph's loader nodes (their literal inputs, with the
job's inputs applied) and stamps each model path once; :func:`keys_on` turns those into
the store's keys (:func:`~nodeflow.models.store.model_key`) as one worker would resolve
``auto`` (its own default device and precision), and :func:`affinity` counts how many of
them a worker holds.

Affinity is a preference, never a condition: a job whose models no idle worker holds
goes to any idle worker. Only the loader nodes in :data:`LOADERS` are read, at the top
level of the graph (a loader inside a subgraph, or whose path comes through a link, is
not seen), and a path that cannot be resolved or stamped simply adds no preference.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GraphInvalid
from ..files import PathResolver, Stamp, stamp
from ..graph import GraphDoc, NodeMode, parse_graph, resolve_input
from ..models.store import ModelKey, model_key, precision_for
from ..resources import DEFAULT_MODEL_DIR

#: Loader node types, and the names of their (model path, dtype, device, prediction type) inputs.
LOADERS: dict[str, tuple[str, str, str, str]] = {"sd.load_model": ("model", "dtype", "device", "prediction")}


@dataclass(frozen=True)
class ModelWant:
    """One model a job will load: its path's stamp, and the dtype, device and prediction type its node asks for (``None``: auto)."""

    stamp: Stamp
    dtype: str | None = None
    device: str | None = None
    prediction: str | None = None


def wanted_models(graph: Any, inputs: Mapping[str, Any], paths: PathResolver | None) -> tuple[ModelWant, ...]:
    """The models the loader nodes of ``graph`` (a document, or its JSON data) will load, with ``inputs`` applied."""
    resolver = paths if paths is not None else PathResolver.create([Path.cwd()])
    wants = []
    for node_type, literals in _loaders(graph, inputs):
        model_name, *options = LOADERS[node_type]
        found = _stamp(literals.get(model_name, "default"), resolver)
        if found is not None:
            wants.append(ModelWant(found, *(_auto(literals.get(name)) for name in options)))
    return tuple(wants)


def keys_on(wants: Iterable[ModelWant], default_device: str, store_dtype: str | None) -> set[ModelKey]:
    """The store keys ``wants`` will be loaded under by a worker whose ``auto`` device and store dtype are these."""
    keys = set()
    for want in wants:
        device = want.device or default_device
        keys.add(model_key(want.stamp, want.dtype or precision_for(device, store_dtype), device, want.prediction))
    return keys


def affinity(wants: Collection[ModelWant], held: Collection[ModelKey], default_device: str | None,
             store_dtype: str | None) -> int:
    """How many of the models a job wants the worker holds already (0 when it has not said what it holds)."""
    if not wants or not held or default_device is None:
        return 0
    return len(keys_on(wants, default_device, store_dtype) & set(held))


def _loaders(graph: Any, inputs: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each top-level loader node's type and literal inputs, with the job's graph ``inputs`` applied."""
    try:
        doc = graph if isinstance(graph, GraphDoc) else parse_graph(graph)
    except GraphInvalid:
        return []  # the executor reports it; affinity has nothing to say
    loaders = {k: dict(n.inputs) for k, n in doc.nodes.items() if n.type in LOADERS and n.mode == NodeMode.ACTIVE}
    for name, value in inputs.items():
        try:
            node_id, input_name = resolve_input(doc, name)
        except GraphInvalid:
            continue
        if node_id in loaders:
            loaders[node_id][input_name] = value
    return [(doc.nodes[k].type, literals) for k, literals in loaders.items()]


def _stamp(model: Any, resolver: PathResolver) -> Stamp | None:
    if not isinstance(model, str):
        return None  # a link: the path is known only when the run gets there
    try:
        path = DEFAULT_MODEL_DIR if model == "default" else resolver.resolve(model, "checkpoint")
        return stamp(path)
    except (OSError, ValueError):
        return None


def _auto(value: Any) -> str | None:
    return None if value in (None, "auto") or not isinstance(value, str) else value


__all__ = ["LOADERS", "ModelWant", "affinity", "keys_on", "wanted_models"]
