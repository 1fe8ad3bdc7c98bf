"""Run a graph: validate, plan, then execute in dependency order with the cache in front.

The executor is an object composed from a registry, a cache and a model store; the
CLI and the server each build one and call :meth:`Executor.run`. A run:

1. applies graph inputs and validates (all errors at once; nothing runs if any);
2. plans (targets, order, signature keys; see :mod:`nodeflow.plan`);
3. walks the plan backwards to find the nodes that really must execute: a node whose
   key is cached supplies its value, and its ancestors are not needed for it;
4. runs those nodes in order, emitting events, checking cancellation between nodes,
   checking that no node mutated an input tensor in place (tensor version counters),
   caching every result, and releasing intermediates once their consumers are done.

A failing node is named in the error; what was computed before it stays cached.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import Cache, CacheEntry
from .errors import Cancelled, ErrorInfo, GraphInvalid, NodeFailed, NodeflowError
from .graph import GraphDoc, apply_inputs, parse_graph
from .node import CancelToken, Context, Event
from .plan import make_plan
from .registry import Registry
from .types import convert, tensors_in
from .validate import check


@dataclass
class NodeReport:
    """How one node fared: ``ran``, ``cached``, ``failed`` or ``skipped``, and its seconds."""

    type: str
    status: str = "skipped"
    seconds: float = 0.0


@dataclass
class RunResult:
    """Outcome of :meth:`Executor.run` (the shape of ``nodeflow run --json``)."""

    status: str
    seconds: float = 0.0
    nodes: dict[str, NodeReport] = field(default_factory=dict)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ErrorInfo] = field(default_factory=list)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form: status, seconds, nodes, outputs (paths), errors."""
        return {
            "status": self.status,
            "seconds": round(self.seconds, 4),
            "nodes": {k: {"type": r.type, "status": r.status, "seconds": round(r.seconds, 4)} for k, r in self.nodes.items()},
            "outputs": [o["path"] for o in self.outputs],
            "errors": [e.to_dict() for e in self.errors],
        }


class MutatedInput(NodeflowError):
    """A node changed an input tensor in place; cached values would be corrupted."""


class Executor:
    """Validates, plans and runs graphs against one registry, cache and model store."""

    def __init__(self, registry: Registry, cache: Cache | None = None, models: Any = None):
        self.registry = registry
        self.cache = cache if cache is not None else Cache()
        self.models = models

    def run(
        self,
        graph: GraphDoc | dict[str, Any] | str | bytes,
        *,
        inputs: dict[str, Any] | None = None,
        output_dir: str | Path = "outputs",
        on_event: Callable[[Event], None] | None = None,
        cancel: CancelToken | None = None,
        targets: list[str] | None = None,
    ) -> RunResult:
        """Run ``graph`` (with graph ``inputs`` applied) and return a :class:`RunResult`.

        Never raises for user errors: an invalid graph or a failing node gives a
        result with ``status`` ``failed`` and structured ``errors``.
        """
        started = time.perf_counter()
        emit = on_event or (lambda event: None)
        output_dir = Path(output_dir)
        try:
            doc = graph if isinstance(graph, GraphDoc) else parse_graph(graph)
            doc = apply_inputs(doc, inputs or {})
        except GraphInvalid as exc:
            return RunResult("failed", time.perf_counter() - started, errors=exc.errors)
        checked = check(doc, self.registry)
        if checked.errors:
            return RunResult("failed", time.perf_counter() - started, errors=checked.errors)
        try:
            plan = make_plan(checked, self.registry, targets=targets, output_dir=output_dir, models=self.models)
        except NodeFailed as exc:
            return RunResult("failed", time.perf_counter() - started, errors=exc.errors, traceback=traceback.format_exc())
        nodes = doc.nodes
        result = RunResult("running", nodes={n: NodeReport(nodes[n].type) for n in plan.order})
        emit(Event("run_started", data={"nodes": len(plan.order)}))

        # Backward pass: fetch cached entries; only what is missing and needed runs.
        entries: dict[str, CacheEntry] = {}
        to_run: set[str] = set()
        wanted = set(plan.targets)
        for node_id in reversed(plan.order):
            if node_id not in wanted:
                continue
            entry = self.cache.get(plan.keys[node_id])
            if entry is not None:
                entries[node_id] = entry
            else:
                to_run.add(node_id)
                wanted.update(src for src, _, _, _ in checked.links[node_id].values())

        consumers: dict[str, int] = {}
        for node_id in to_run:
            for src, _, _, _ in checked.links[node_id].values():
                consumers[src] = consumers.get(src, 0) + 1
        dumped: list[dict[str, Any]] = []

        def graph_json() -> dict[str, Any]:
            # Serialising a big graph costs milliseconds; only nodes that embed it pay, once.
            if not dumped:
                dumped.append(doc.model_dump(mode="json"))
            return dumped[0]

        keep = set(plan.targets)
        status = "succeeded"
        for node_id in plan.order:
            report = result.nodes[node_id]
            if node_id not in to_run:
                # Served from the cache, or not needed because everything downstream was.
                report.status = "cached"
                if node_id in entries:
                    result.outputs.extend(entries[node_id].files)
                emit(Event("node_cached", node_id, {"type": report.type}))
                continue
            if cancel is not None and cancel.cancelled:
                status = "cancelled"
                result.errors.append(Cancelled(node_id).errors[0])
                break
            try:
                entry = self._run_node(node_id, checked, entries, output_dir, graph_json, emit, cancel, report)
            except Cancelled as exc:
                report.status, status = "failed", "cancelled"
                result.errors.extend(exc.errors)
                emit(Event("node_failed", node_id, {"type": report.type, "cancelled": True}))
                break
            except Exception as exc:
                report.status, status = "failed", "failed"
                result.errors.extend(_errors_of(exc, node_id, report.type))
                result.traceback = traceback.format_exc()
                emit(Event("node_failed", node_id, {"type": report.type, "error": result.errors[-1].to_dict()}))
                break
            self.cache.put(plan.keys[node_id], entry.values, entry.files, label=report.type)
            entries[node_id] = entry
            result.outputs.extend(entry.files)
            for src, _, _, _ in checked.links[node_id].values():
                consumers[src] -= 1
                if consumers[src] == 0 and src not in keep:
                    entries.pop(src, None)  # free intermediates as soon as nobody needs them
        result.values = {n: entries[n].values for n in plan.targets if n in entries}
        result.status = status
        result.seconds = time.perf_counter() - started
        emit(Event("run_finished", data={"status": status, "seconds": result.seconds, "errors": [e.to_dict() for e in result.errors]}))
        return result

    def _run_node(
        self,
        node_id: str,
        checked: Any,
        entries: dict[str, CacheEntry],
        output_dir: Path,
        graph_json: Callable[[], dict[str, Any]],
        emit: Callable[[Event], None],
        cancel: CancelToken | None,
        report: NodeReport,
    ) -> CacheEntry:
        type_id = report.type
        cls = self.registry.get(type_id)
        schema = self.registry.schema(type_id)
        assert cls is not None and schema is not None
        kwargs = dict(checked.literals[node_id])
        for name, (src, out, out_type, in_type) in checked.links[node_id].items():
            kwargs[name] = convert(entries[src].values[out], out_type, in_type)
        versions = [(name, t, t._version) for name, v in kwargs.items() for t in tensors_in(v)]
        ctx = Context(node_id, type_id, self.models, output_dir, graph_json, emit, cancel)
        emit(Event("node_started", node_id, {"type": type_id}))
        t0 = time.perf_counter()
        raw = cls().run(ctx, **kwargs)
        report.seconds = time.perf_counter() - t0
        for name, tensor, version in versions:
            if tensor._version != version:
                raise MutatedInput(
                    ErrorInfo("mutated_input", f"'{type_id}' changed its input '{name}' in place; nodes must not mutate inputs (they are shared through the cache)", node_id, name)
                )
        values = _normalise_outputs(raw, schema.outputs, node_id, type_id)
        report.status = "ran"
        emit(Event("node_finished", node_id, {"type": type_id, "seconds": report.seconds}))
        return CacheEntry(values, ctx.files)


def _normalise_outputs(raw: Any, outputs: list[Any], node_id: str, type_id: str) -> dict[str, Any]:
    names = [o.name for o in outputs]
    if len(names) == 1 and not (isinstance(raw, dict) and set(raw) == {names[0]}):
        return {names[0]: raw}
    if not names and raw is None:
        return {}
    if not isinstance(raw, dict):
        raise NodeflowError(ErrorInfo("bad_output", f"'{type_id}' must return a dict of its outputs {names}, not {type(raw).__name__}", node_id))
    missing = [n for n in names if n not in raw]
    if missing:
        raise NodeflowError(ErrorInfo("bad_output", f"'{type_id}' did not return output(s) {missing}", node_id))
    return {n: raw[n] for n in names}


def _errors_of(exc: Exception, node_id: str, type_id: str) -> list[ErrorInfo]:
    if isinstance(exc, NodeflowError):
        return [e if e.node else ErrorInfo(e.code, e.message, node_id, e.input) for e in exc.errors]
    return [ErrorInfo("node_failed", f"'{type_id}' failed: {type(exc).__name__}: {exc}", node_id)]
