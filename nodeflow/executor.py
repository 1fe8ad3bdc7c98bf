"""Run a graph: prepare, then execute in dependency order with the cache in front.

The executor is an object composed from a registry, a cache, a model store and a path
resolver; the CLI, the server and the backends each build one and call
:meth:`Executor.run`. A run:

1. **prepares**: applies graph inputs, validates (all errors at once, the
   :class:`~nodeflow.budget.Budget` included; nothing runs if any) and plans (targets, order, signature keys; see :mod:`nodeflow.plan`);
2. **starts** a :class:`RunState`: walking the plan backwards, a node whose key is
   cached supplies its value and its ancestors are not needed for it;
3. **loops** over the plan: a node is served from what the state holds, or executed
   (events, cancellation between nodes and, through :mod:`nodeflow.interrupt`, between the
   blocks of a model call; the in-place mutation guard), then completed:
   its result is cached and :meth:`RunState.finish_task` releases the intermediates
   nobody still needs.

A failing node is named in the error; what was computed before it stays cached.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .budget import Budget
from .cache import Cache, CacheEntry
from .codec import tensors_in
from .context import CancelToken, Context, ModelStoreAPI
from .errors import Cancelled, ErrorInfo, GraphInvalid, NodeflowError
from .events import Event, EventType, NodeStatus, RunStatus
from .files import PathResolver
from .graph import GraphDoc, apply_inputs, parse_graph
from .interrupt import cancel_scope
from .plan import Plan, make_plan
from .registry import Registry
from .types import convert
from .validate import Checked, check

GraphLike = GraphDoc | dict[str, Any] | str | bytes
"""What a run's graph may be: a parsed document, its JSON data, or JSON text."""


@dataclass
class NodeReport:
    """How one node fared (a :class:`~nodeflow.events.NodeStatus`) and its seconds."""

    type: str
    status: NodeStatus = NodeStatus.PENDING
    seconds: float = 0.0


@dataclass
class RunResult:
    """Outcome of :meth:`Executor.run` (the shape of ``nodeflow run --json``)."""

    status: RunStatus
    seconds: float = 0.0
    nodes: dict[str, NodeReport] = field(default_factory=dict)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ErrorInfo] = field(default_factory=list)
    #: node id -> {output name: value}, for the run's target nodes
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    traceback: str | None = None

    def shown_values(self) -> dict[str, dict[str, Any]]:
        """The target values a person can read (numbers, text, booleans), by node and output."""
        shown: dict[str, dict[str, Any]] = {}
        for node_id, outputs in self.values.items():
            plain = {k: v for k, v in outputs.items() if v is None or isinstance(v, (bool, int, float, str))}
            if plain:
                shown[node_id] = plain
        return shown

    def to_dict(self) -> dict[str, Any]:
        """JSON form: status, seconds, nodes, outputs (paths), errors, values."""
        return {
            "status": self.status.value,
            "seconds": round(self.seconds, 4),
            "nodes": {k: {"type": r.type, "status": r.status.value, "seconds": round(r.seconds, 4)} for k, r in self.nodes.items()},
            "outputs": [o["path"] for o in self.outputs],
            "errors": [e.to_dict() for e in self.errors],
            "values": self.shown_values(),
        }


class MutatedInput(NodeflowError):
    """A node changed an input tensor in place; cached values would be corrupted."""


class RunState:
    """The scheduling state of one run, named the way dask's local scheduler names its pieces.

    * ``order``: the planned nodes in dependency order;
    * ``to_run``: the nodes that must execute (everything else is cached or not needed);
    * ``held``: the outputs available now (cache hits and finished nodes);
    * ``waiting``: for each held node, how many nodes still to run need it;
    * ``keep``: the targets, held to the end (their values are the run's result).
    """

    def __init__(self, plan: Plan, links: dict[str, dict[str, Any]]):
        self.order = plan.order
        self.keys = plan.keys
        self.links = links
        self.keep = set(plan.targets)
        self.held: dict[str, CacheEntry] = {}
        self.cached: set[str] = set()
        self.to_run: set[str] = set()
        self.waiting: dict[str, int] = {}

    @classmethod
    def start(cls, plan: Plan, links: dict[str, dict[str, Any]], cache: Cache) -> RunState:
        """Walk the plan backwards: cached targets and inputs are held, only what is missing and needed runs."""
        state = cls(plan, links)
        wanted = set(plan.targets)
        for node_id in reversed(plan.order):
            if node_id not in wanted:
                continue
            entry = cache.get(plan.keys[node_id])
            if entry is not None:
                state.held[node_id] = entry
                state.cached.add(node_id)
            else:
                state.to_run.add(node_id)
                wanted.update(src for src, _, _, _ in links[node_id].values())
        for node_id in state.to_run:
            for src, _, _, _ in links[node_id].values():
                state.waiting[src] = state.waiting.get(src, 0) + 1
        return state

    def inputs_of(self, node_id: str, literals: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of ``node_id``'s run: its literals plus its linked inputs' values."""
        kwargs = dict(literals)
        for name, (src, out, out_type, in_type) in self.links[node_id].items():
            kwargs[name] = convert(self.held[src].values[out], out_type, in_type)
        return kwargs

    def finish_task(self, node_id: str, entry: CacheEntry) -> None:
        """Hold ``node_id``'s result and release the inputs nobody else still needs."""
        self.held[node_id] = entry
        for src, _, _, _ in self.links[node_id].values():
            self.waiting[src] -= 1
            if self.waiting[src] == 0:
                self.release_data(src)

    def release_data(self, node_id: str) -> None:
        """Drop a held intermediate (targets are kept: they are the run's result)."""
        if node_id not in self.keep:
            self.held.pop(node_id, None)

    def target_values(self) -> dict[str, dict[str, Any]]:
        """The held values of the targets."""
        return {n: self.held[n].values for n in self.keep if n in self.held}


@dataclass
class _Run:
    """What one run's nodes share: where they write, whom they tell, how they stop."""

    checked: Checked
    output_dir: Path
    paths: PathResolver
    emit: Callable[[Event], None]
    cancel: CancelToken | None
    result: RunResult
    graph_json: Callable[[], dict[str, Any]]


class Executor:
    """Validates, plans and runs graphs against one registry, cache, model store and path resolver."""

    def __init__(self, registry: Registry, cache: Cache | None = None, models: ModelStoreAPI | None = None,
                 paths: PathResolver | None = None, budget: Budget | None = None):
        self.registry = registry
        #: limits checked with validation, before anything runs (``None``: none; see :mod:`nodeflow.budget`)
        self.budget = budget
        self.cache = cache if cache is not None else Cache()
        self.models = models
        self.paths = paths if paths is not None else PathResolver()

    def run(
        self,
        graph: GraphLike,
        *,
        inputs: dict[str, Any] | None = None,
        output_dir: str | Path = "outputs",
        on_event: Callable[[Event], None] | None = None,
        cancel: CancelToken | None = None,
        targets: list[str] | None = None,
        paths: PathResolver | None = None,
    ) -> RunResult:
        """Run ``graph`` (with graph ``inputs`` applied) and return a :class:`RunResult`.

        ``paths`` resolves the file names in the graph (default: the executor's). Never
        raises for user errors: an invalid graph or a failing node gives a result with
        status ``failed`` and structured ``errors``.
        """
        started = time.perf_counter()
        paths = paths if paths is not None else self.paths
        try:
            doc = graph if isinstance(graph, GraphDoc) else parse_graph(graph)
            if paths.base is None and doc.folder is not None:
                paths = paths.with_base(doc.folder)  # a graph loaded from a file: its folder comes first
            checked, plan = self.prepare(doc, inputs or {}, targets, Path(output_dir), paths)
        except NodeflowError as exc:
            trace = None if exc.errors and exc.errors[0].code != "node_failed" else traceback.format_exc()
            return RunResult(RunStatus.FAILED, time.perf_counter() - started, errors=exc.errors, traceback=trace)
        result = RunResult(RunStatus.RUNNING, nodes=_reports(checked, plan))
        run = _Run(checked, Path(output_dir), paths, on_event or (lambda event: None), cancel, result, _memo(checked.source))
        state = RunState.start(plan, checked.links, self.cache)
        run.emit(Event(EventType.RUN_STARTED, data={"nodes": len(plan.order)}))
        result.status = self._loop(state, run)
        for report in result.nodes.values():
            if report.status is NodeStatus.PENDING:
                report.status = NodeStatus.SKIPPED
        result.values = state.target_values()
        result.seconds = time.perf_counter() - started
        run.emit(Event(EventType.RUN_FINISHED, data={"status": result.status.value, "seconds": result.seconds,
                                                     "errors": [e.to_dict() for e in result.errors]}))
        return result

    def prepare(self, graph: GraphLike, inputs: dict[str, Any], targets: list[str] | None, output_dir: Path,
                paths: PathResolver) -> tuple[Checked, Plan]:
        """Parse, apply inputs, validate and plan; raises :class:`~nodeflow.errors.GraphInvalid` with every problem."""
        doc = graph if isinstance(graph, GraphDoc) else parse_graph(graph)
        checked = check(apply_inputs(doc, inputs), self.registry, paths, self.budget)
        if checked.errors:
            raise GraphInvalid(checked.errors)
        return checked, make_plan(checked, self.registry, targets=targets, output_dir=output_dir, models=self.models, paths=paths)

    def _loop(self, state: RunState, run: _Run) -> RunStatus:
        """Stage, execute and complete each planned node; the run's final status."""
        for node_id in state.order:
            report = run.result.nodes[node_id]
            if node_id not in state.to_run:
                self._serve(node_id, state, run)
                continue
            if run.cancel is not None and run.cancel.cancelled:
                run.result.errors.append(Cancelled(node_id).errors[0])
                return RunStatus.CANCELLED
            entry = self.cache.get(state.keys[node_id])  # an identical node earlier in this run made it
            if entry is not None:
                state.cached.add(node_id)
                state.finish_task(node_id, entry)
                self._serve(node_id, state, run)
                continue
            try:
                entry = self._execute(node_id, state, run)
            except Exception as exc:
                return self._fail(node_id, exc, run)
            self.cache.put(state.keys[node_id], entry.values, entry.files, label=report.type)
            state.finish_task(node_id, entry)
            run.result.outputs.extend(entry.files)
        return RunStatus.SUCCEEDED

    @staticmethod
    def _serve(node_id: str, state: RunState, run: _Run) -> None:
        """A node that does not execute: served from the cache, or not needed at all."""
        report = run.result.nodes[node_id]
        if node_id in state.cached:
            report.status = NodeStatus.CACHED
            run.result.outputs.extend(state.held[node_id].files)
            run.emit(Event(EventType.NODE_CACHED, node_id, {"type": report.type}))
        else:
            report.status = NodeStatus.NOT_NEEDED

    def _execute(self, node_id: str, state: RunState, run: _Run) -> CacheEntry:
        report = run.result.nodes[node_id]
        cls = self.registry.get(report.type)
        schema = self.registry.schema(report.type)
        assert cls is not None and schema is not None
        kwargs = state.inputs_of(node_id, run.checked.literals[node_id])
        versions = [(name, t, t._version) for name, v in kwargs.items() for t in tensors_in(v)]
        ctx = Context(node_id, report.type, model_store=self.models, paths=run.paths, output_dir=run.output_dir,
                      graph_source=run.graph_json, emit=run.emit, cancel=run.cancel)
        run.emit(Event(EventType.NODE_STARTED, node_id, {"type": report.type}))
        report.status = NodeStatus.RUNNING
        t0 = time.perf_counter()
        with cancel_scope(ctx.check_cancelled if run.cancel is not None else None):  # reaches inside model calls
            raw = cls().run(ctx, **kwargs)
        report.seconds = time.perf_counter() - t0
        for name, tensor, version in versions:
            if tensor._version != version:
                raise MutatedInput(ErrorInfo("mutated_input", f"'{report.type}' changed its input '{name}' in place; nodes"
                                             " must not mutate inputs (they are shared through the cache)", node_id, name))
        values = _normalise_outputs(raw, [o.name for o in schema.outputs], node_id, report.type)
        report.status = NodeStatus.RAN
        run.emit(Event(EventType.NODE_FINISHED, node_id, {"type": report.type, "seconds": report.seconds}))
        return CacheEntry(values, ctx.outputs)

    @staticmethod
    def _fail(node_id: str, exc: Exception, run: _Run) -> RunStatus:
        report = run.result.nodes[node_id]
        if isinstance(exc, Cancelled):
            report.status = NodeStatus.CANCELLED
            run.result.errors.extend(exc.errors)
            run.emit(Event(EventType.NODE_CANCELLED, node_id, {"type": report.type}))
            return RunStatus.CANCELLED
        report.status = NodeStatus.FAILED
        run.result.errors.extend(_errors_of(exc, node_id, report.type))
        run.result.traceback = traceback.format_exc()
        run.emit(Event(EventType.NODE_FAILED, node_id, {"type": report.type, "error": run.result.errors[-1].to_dict()}))
        return RunStatus.FAILED


def _reports(checked: Checked, plan: Plan) -> dict[str, NodeReport]:
    """A report per planned node, plus the nodes muted or bypassed away."""
    reports = {n: NodeReport(checked.doc.nodes[n].type) for n in plan.order}
    for node_id, status in checked.removed.items():
        reports[node_id] = NodeReport(checked.types.get(node_id, ""), status)
    return reports


def _memo(doc: GraphDoc) -> Callable[[], dict[str, Any]]:
    """The document as JSON, made once, only if some node asks (serialising a big graph costs milliseconds)."""
    dumped: list[dict[str, Any]] = []

    def graph_json() -> dict[str, Any]:
        if not dumped:
            dumped.append(doc.model_dump(mode="json"))
        return dumped[0]

    return graph_json


def _normalise_outputs(raw: Any, names: list[str], node_id: str, type_id: str) -> dict[str, Any]:
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


__all__ = ["Executor", "GraphLike", "MutatedInput", "NodeReport", "RunResult", "RunState"]
