"""Static validation of a graph document, before anything runs.

Every problem is reported at once as an :class:`~nodeflow.errors.ErrorInfo` with a
stable code, the node id and input name where there is one, and a sentence:

``invalid_json``, ``unsupported_version`` (from :mod:`nodeflow.graph`),
``unknown_node_type``, ``missing_input``, ``unknown_input``, ``bad_link``,
``type_mismatch``, ``value_out_of_range``, ``invalid_value``, ``cycle``,
``unknown_graph_input``.

Besides the errors, :func:`check` returns what it learned on the way (literal values
normalised by pydantic, links, the dependency graph) so the planner does not redo it.
All traversals are iterative: a 10,000-node chain validates without recursion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from .errors import ErrorInfo, GraphInvalid
from .graph import GraphDoc, is_link, parse_graph
from .registry import Registry
from .types import can_connect


@dataclass
class Checked:
    """The result of :func:`check`: errors plus the facts the planner reuses."""

    doc: GraphDoc
    errors: list[ErrorInfo] = field(default_factory=list)
    #: node id -> {input name: literal value (normalised) or default}
    literals: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: node id -> {input name: (source node id, output name, output type, input type)}
    links: dict[str, dict[str, tuple[str, str, str, str]]] = field(default_factory=dict)
    deps: nx.DiGraph = field(default_factory=nx.DiGraph)

    @property
    def ok(self) -> bool:
        """True when no error was found."""
        return not self.errors


def validate(data: GraphDoc | dict[str, Any] | str | bytes, registry: Registry) -> list[ErrorInfo]:
    """Every problem in a graph (document object, decoded JSON or JSON text); ``[]`` when valid."""
    try:
        doc = data if isinstance(data, GraphDoc) else parse_graph(data)
    except GraphInvalid as exc:
        return exc.errors
    return check(doc, registry).errors


def check(doc: GraphDoc, registry: Registry) -> Checked:
    """Validate ``doc`` against ``registry``; see :class:`Checked`."""
    out = Checked(doc=doc)
    errors = out.errors
    deps = out.deps
    deps.add_nodes_from(doc.nodes)
    for node_id, nd in doc.nodes.items():
        schema = registry.schema(nd.type)
        if schema is None:
            errors.append(ErrorInfo("unknown_node_type", f"node type '{nd.type}' is not installed", node=node_id))
            continue
        for name in nd.inputs:
            if schema.input(name) is None:
                known = ", ".join(i.name for i in schema.inputs) or "none"
                errors.append(
                    ErrorInfo("unknown_input", f"'{nd.type}' has no input '{name}' (inputs: {known})", node_id, name)
                )
        literals: dict[str, Any] = {}
        links: dict[str, tuple[str, str, str, str]] = {}
        for spec in schema.inputs:
            value = nd.inputs.get(spec.name, None)
            if value is None:
                if spec.has_default:
                    literals[spec.name] = spec.default
                elif spec.optional:
                    literals[spec.name] = None
                else:
                    errors.append(
                        ErrorInfo("missing_input", f"input '{spec.name}' ({spec.type}) needs a value or a link", node_id, spec.name)
                    )
                continue
            if is_link(value):
                src_id, out_name = value["node"], value["output"]
                src = doc.nodes.get(src_id)
                if src is None:
                    errors.append(ErrorInfo("bad_link", f"input '{spec.name}' links to node '{src_id}', which does not exist", node_id, spec.name))
                    continue
                deps.add_edge(src_id, node_id)
                src_schema = registry.schema(src.type)
                if src_schema is None:
                    continue  # reported on the source node already
                out_spec = src_schema.output(out_name)
                if out_spec is None:
                    known = ", ".join(o.name for o in src_schema.outputs) or "none"
                    errors.append(
                        ErrorInfo("bad_link", f"input '{spec.name}' links to output '{out_name}' of node '{src_id}' ({src.type}), which has no such output (outputs: {known})", node_id, spec.name)
                    )
                    continue
                if not can_connect(out_spec.type, spec.type):
                    errors.append(
                        ErrorInfo("type_mismatch", f"input '{spec.name}' expects {spec.type} but node '{src_id}' output '{out_name}' gives {out_spec.type}", node_id, spec.name)
                    )
                    continue
                links[spec.name] = (src_id, out_name, out_spec.type, spec.type)
                continue
            if not spec.accepts_literal:
                errors.append(
                    ErrorInfo("invalid_value", f"input '{spec.name}' takes a link from a {spec.type} output, not a typed-in value", node_id, spec.name)
                )
                continue
            normal, err = spec.check_literal(value)
            if err is not None:
                errors.append(ErrorInfo(err.code, err.message, node_id, spec.name))
            else:
                literals[spec.name] = normal
        out.literals[node_id] = literals
        out.links[node_id] = links
    for name, target in doc.inputs.items():
        exposed = doc.nodes.get(target.node)
        if exposed is None:
            errors.append(ErrorInfo("unknown_graph_input", f"graph input '{name}' refers to node '{target.node}', which does not exist"))
            continue
        schema = registry.schema(exposed.type)
        if schema is not None and schema.input(target.input) is None:
            errors.append(ErrorInfo("unknown_graph_input", f"graph input '{name}' refers to input '{target.input}', which '{exposed.type}' does not have", target.node, target.input))
    if not nx.is_directed_acyclic_graph(deps):
        for component in nx.strongly_connected_components(deps):
            if len(component) == 1:
                (only,) = component
                if not deps.has_edge(only, only):
                    continue
            members = sorted(component)
            ring = " -> ".join(members)
            for node_id in members:
                errors.append(ErrorInfo("cycle", f"node '{node_id}' is part of a cycle ({ring})", node_id))
    return out
