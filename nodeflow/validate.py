"""Static validation of a graph document, before anything runs.

Every problem is reported at once as an :class:`~nodeflow.errors.ErrorInfo` with a
stable code, the node id and input name where there is one, and a sentence. The
document is first prepared (:func:`nodeflow.expand.prepare`: subgraphs flattened,
renamed sockets normalised, muted and bypassed nodes applied), then checked one kind
of problem at a time:

* the document: ``empty_graph``, and what preparing found (``unknown_subgraph``,
  ``bad_subgraph``, ``subgraph_cycle``);
* each node: ``unknown_node_type``, ``unknown_input``;
* each input: ``missing_input``, ``bad_link``, ``type_mismatch``, ``invalid_value``,
  ``value_out_of_range`` (literals checked with pydantic);
* files named by ``file=`` inputs, when a :class:`~nodeflow.files.PathResolver` is
  given: ``missing_file``;
* the node's own ``validate_inputs`` hook: ``invalid_value`` (or the hook's own codes);
* graph inputs: ``unknown_graph_input``; the dependency graph: ``cycle``;
* with a :class:`~nodeflow.budget.Budget`, once everything else is valid: ``over_budget``
  (pixels x batch, estimated peak memory; see :mod:`nodeflow.budget`).

(``invalid_json`` and ``unsupported_version`` come from :mod:`nodeflow.graph`.)

Besides the errors, :func:`check` returns what it learned on the way (the flat
document, literal values normalised by pydantic, links, the dependency graph) so the
planner does not redo it. All traversals are iterative.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from .budget import Budget, budget_errors
from .errors import ErrorInfo, GraphInvalid
from .events import NodeStatus
from .expand import prepare
from .files import PathResolver
from .graph import GraphDoc, NodeDoc, is_link, parse_graph
from .node import InputSpec, NodeSchema, ValidationContext
from .registry import Registry
from .types import can_connect

Link = tuple[str, str, str, str]
"""(source node id, output name, output type, input type)."""


@dataclass
class Checked:
    """The result of :func:`check`: errors plus the facts the planner reuses.

    ``source`` is the document as given (what a saved image embeds); ``doc`` the flat
    one that runs; ``removed`` the nodes muted or bypassed away, and why.
    """

    source: GraphDoc
    doc: GraphDoc
    errors: list[ErrorInfo] = field(default_factory=list)
    removed: dict[str, NodeStatus] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    #: node id -> {input name: literal value (normalised) or default}
    literals: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: node id -> {input name: (source node id, output name, output type, input type)}
    links: dict[str, dict[str, Link]] = field(default_factory=dict)
    deps: nx.DiGraph = field(default_factory=nx.DiGraph)

    @property
    def ok(self) -> bool:
        """True when no error was found."""
        return not self.errors


def validate(data: GraphDoc | dict[str, Any] | str | bytes, registry: Registry, paths: PathResolver | None = None,
             budget: Budget | None = None) -> list[ErrorInfo]:
    """Every problem in a graph (document object, decoded JSON or JSON text); ``[]`` when valid."""
    try:
        doc = data if isinstance(data, GraphDoc) else parse_graph(data)
    except GraphInvalid as exc:
        return exc.errors
    return check(doc, registry, paths, budget).errors


def check(doc: GraphDoc, registry: Registry, paths: PathResolver | None = None, budget: Budget | None = None) -> Checked:
    """Validate ``doc`` against ``registry`` (its files against ``paths``, its size against ``budget``); see :class:`Checked`."""
    prepared = prepare(doc, registry)
    out = Checked(source=doc, doc=prepared.doc, errors=list(prepared.errors), removed=prepared.removed, types=prepared.types)
    if not doc.nodes:
        out.errors.append(ErrorInfo("empty_graph", "the graph has no nodes: there is nothing to run"))
    flat = prepared.doc
    out.deps.add_nodes_from(flat.nodes)
    clean: list[tuple[str, NodeSchema]] = []
    for node_id, nd in flat.nodes.items():
        schema = registry.schema(nd.type)
        if schema is None:
            out.errors.append(ErrorInfo("unknown_node_type", f"node type '{nd.type}' is not installed", node=node_id))
            continue
        before = len(out.errors)
        out.errors.extend(_unknown_inputs(node_id, nd, schema))
        _check_inputs(node_id, nd, schema, flat, registry, out)
        if paths is not None:
            out.errors.extend(_missing_files(node_id, schema, out.literals[node_id], paths))
        if len(out.errors) == before:
            clean.append((node_id, schema))
    for node_id, schema in clean:  # hooks run last, on clean literals, with every node's literals known
        out.errors.extend(_hook_errors(node_id, schema, registry, out, paths))
    out.errors.extend(_graph_input_errors(doc, registry))
    out.errors.extend(_cycle_errors(out.deps))
    if budget is not None and not out.errors:  # sizes flow along links: only a whole, acyclic graph has them
        classes = {n: registry.get(nd.type) for n, nd in flat.nodes.items()}
        out.errors.extend(budget_errors(list(nx.topological_sort(out.deps)), classes, out.literals, out.links, budget, paths))
    return out


# -- each node ----------------------------------------------------------------------------------
def _unknown_inputs(node_id: str, nd: NodeDoc, schema: NodeSchema) -> Iterator[ErrorInfo]:
    for name in nd.inputs:
        if schema.input(name) is None:
            known = ", ".join(i.name for i in schema.inputs) or "none"
            yield ErrorInfo("unknown_input", f"'{nd.type}' has no input '{name}' (inputs: {known})", node_id, name)


def _check_inputs(node_id: str, nd: NodeDoc, schema: NodeSchema, doc: GraphDoc, registry: Registry, out: Checked) -> None:
    """Each declared input: a default, a link or a literal; record what is valid, report the rest."""
    literals: dict[str, Any] = {}
    links: dict[str, Link] = {}
    for spec in schema.inputs:
        value = nd.inputs.get(spec.name, None)
        if value is None:
            if spec.required:
                out.errors.append(ErrorInfo("missing_input", f"input '{spec.name}' ({spec.type}) needs a value or a link", node_id, spec.name))
            else:
                literals[spec.name] = spec.default if spec.has_default else None
        elif is_link(value):
            if value["node"] in doc.nodes:
                out.deps.add_edge(value["node"], node_id)
            link, error = _link(node_id, spec, value, doc, registry)
            if link is not None:
                links[spec.name] = link
            if error is not None:
                out.errors.append(error)
        else:
            normal, error = _literal(node_id, spec, value)
            if error is None:
                literals[spec.name] = normal
            else:
                out.errors.append(error)
    out.literals[node_id] = literals
    out.links[node_id] = links


def _link(node_id: str, spec: InputSpec, value: dict[str, str], doc: GraphDoc, registry: Registry) -> tuple[Link | None, ErrorInfo | None]:
    src_id, out_name = value["node"], value["output"]
    src = doc.nodes.get(src_id)
    if src is None:
        return None, ErrorInfo("bad_link", f"input '{spec.name}' links to node '{src_id}', which does not exist", node_id, spec.name)
    src_schema = registry.schema(src.type)
    if src_schema is None:
        return None, None  # reported on the source node already
    out_spec = src_schema.output(out_name)
    if out_spec is None:
        known = ", ".join(o.name for o in src_schema.outputs) or "none"
        return None, ErrorInfo("bad_link", f"input '{spec.name}' links to output '{out_name}' of node '{src_id}' ({src.type}),"
                               f" which has no such output (outputs: {known})", node_id, spec.name)
    if not can_connect(out_spec.type, spec.type):
        return None, ErrorInfo("type_mismatch", f"input '{spec.name}' expects {spec.type} but node '{src_id}' output"
                               f" '{out_name}' gives {out_spec.type}", node_id, spec.name)
    return (src_id, out_spec.name, out_spec.type, spec.type), None


def _literal(node_id: str, spec: InputSpec, value: Any) -> tuple[Any, ErrorInfo | None]:
    if not spec.accepts_literal:
        return None, ErrorInfo("invalid_value", f"input '{spec.name}' takes a link from a {spec.type} output, not a typed-in value", node_id, spec.name)
    normal, err = spec.check_literal(value)
    if err is not None:
        return None, ErrorInfo(err.code, err.message, node_id, spec.name)
    return normal, None


def _missing_files(node_id: str, schema: NodeSchema, literals: dict[str, Any], paths: PathResolver) -> Iterator[ErrorInfo]:
    for spec in schema.inputs:
        name = literals.get(spec.name)
        if spec.file is None or not isinstance(name, str) or not name:
            continue
        try:
            paths.resolve(name, spec.file)
        except (OSError, ValueError) as exc:
            yield ErrorInfo("missing_file", str(exc).strip("'\""), node_id, spec.name)


def _hook_errors(node_id: str, schema: NodeSchema, registry: Registry, out: Checked, paths: PathResolver | None) -> list[ErrorInfo]:
    """Run the node's ``validate_inputs`` hook, if it has one, and translate what it says."""
    cls = registry.get(schema.id)
    hook = getattr(cls, "validate_inputs", None)
    if hook is None:
        return []
    links = out.links[node_id]
    context = _context(node_id, out, paths)
    values = {**out.literals[node_id], **dict.fromkeys(links)}
    try:
        said = hook(cls(), context, **values)  # type: ignore[misc]
    except Exception as exc:  # a broken hook is the node's problem, reported on the node
        return [ErrorInfo("invalid_value", f"'{schema.id}' could not check its inputs: {type(exc).__name__}: {exc}", node_id)]
    items = [] if said is None else [said] if isinstance(said, (str, ErrorInfo)) else list(said)
    return [_hook_error(node_id, item) for item in items]


def _context(node_id: str, out: Checked, paths: PathResolver | None) -> ValidationContext:
    """What a hook of ``node_id`` may ask about its node and, through ``source``, the nodes above it."""
    links = out.links.get(node_id, {})

    def upstream(name: str) -> dict[str, Any] | None:
        link = links.get(name)
        return dict(out.literals.get(link[0], {})) if link is not None else None

    def source(name: str) -> ValidationContext | None:
        link = links.get(name)
        return _context(link[0], out, paths) if link is not None else None

    return ValidationContext(node_id, upstream, paths, node_type=out.types.get(node_id, ""),
                             literals=dict(out.literals.get(node_id, {})), links={k: v[3] for k, v in links.items()},
                             sources=source)


def _hook_error(node_id: str, item: str | ErrorInfo) -> ErrorInfo:
    if isinstance(item, ErrorInfo):
        return ErrorInfo(item.code, item.message, item.node or node_id, item.input)
    return ErrorInfo("invalid_value", str(item), node_id)


# -- the whole graph -------------------------------------------------------------------------------
def _graph_input_errors(doc: GraphDoc, registry: Registry) -> Iterator[ErrorInfo]:
    """Each exposed graph input must name a node and one of its inputs (a subgraph node's too)."""
    for name, target in doc.inputs.items():
        exposed = doc.nodes.get(target.node)
        if exposed is None:
            yield ErrorInfo("unknown_graph_input", f"graph input '{name}' refers to node '{target.node}', which does not exist")
            continue
        if exposed.subgraph is not None:
            sub = doc.subgraphs.get(exposed.subgraph)
            known = sub is None or target.input in sub.inputs
        else:
            schema = registry.schema(exposed.type)
            known = schema is None or schema.input(target.input) is not None
        if not known:
            yield ErrorInfo("unknown_graph_input", f"graph input '{name}' refers to input '{target.input}', which"
                            f" '{exposed.type}' does not have", target.node, target.input)


def _cycle_errors(deps: nx.DiGraph) -> Iterator[ErrorInfo]:
    if nx.is_directed_acyclic_graph(deps):
        return
    for component in nx.strongly_connected_components(deps):
        if len(component) == 1:
            (only,) = component
            if not deps.has_edge(only, only):
                continue
        members = sorted(component)
        ring = " -> ".join(members)
        for node_id in members:
            yield ErrorInfo("cycle", f"node '{node_id}' is part of a cycle ({ring})", node_id)


__all__ = ["Checked", "check", "validate"]
