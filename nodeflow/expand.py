"""From the document a user saved to the flat graph the engine checks and runs.

:func:`prepare` does three rewrites, each a pure function of the document and the
registry, before validation looks at anything:

1. **Subgraphs are flattened.** A node of type ``subgraph:NAME`` is replaced by the
   subgraph's nodes, renamed ``outer_id/inner_id``; what fed the instance's inputs now
   feeds the inner targets, and links from its outputs now come from the inner nodes.
   Nested subgraphs flatten the same way (``a/b/c``); a subgraph that contains itself
   is an error. Cache keys are per inner node, like any node's.
2. **Renamed sockets are normalised.** Inputs and outputs saved under a former name
   (a node's ``aliases``) are renamed to the current one.
3. **Modes are applied** with ComfyUI's meanings: a ``muted`` node is removed, and so is
   every node that needs it (a required input linked to it), transitively; an optional
   input linked to a removed node becomes unconnected. A ``bypassed`` node is removed
   and each link from one of its outputs is replaced by its first input of the same
   socket type (a link or a literal); with no such input the link is gone, as if the
   node were muted.

All loops are iterative. Problems are reported, not raised, with the usual codes
(``unknown_subgraph``, ``bad_subgraph``, ``subgraph_cycle``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .errors import ErrorInfo
from .events import NodeStatus
from .graph import GraphDoc, NodeDoc, NodeMode, is_link
from .registry import Registry

#: How deep subgraphs may nest (a guard against a subgraph that contains itself).
MAX_DEPTH = 32


@dataclass
class Prepared:
    """A flat, active-only document, what was removed and why, and the problems met."""

    doc: GraphDoc
    removed: dict[str, NodeStatus] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    errors: list[ErrorInfo] = field(default_factory=list)


def prepare(doc: GraphDoc, registry: Registry) -> Prepared:
    """Flatten subgraphs, normalise renamed sockets, apply modes (see the module docstring)."""
    errors: list[ErrorInfo] = []
    nodes = _flatten(doc, errors)
    _normalise_aliases(nodes, registry)
    types = {node_id: nd.type for node_id, nd in nodes.items()}
    removed = _apply_modes(nodes, registry)
    kept_inputs = {name: gi for name, gi in doc.inputs.items() if gi.node not in removed}
    flat = GraphDoc(nodes=nodes, inputs=kept_inputs, meta=doc.meta)
    return Prepared(doc=flat, removed=removed, types=types, errors=errors)


# -- 1. subgraphs -------------------------------------------------------------------------------
def _flatten(doc: GraphDoc, errors: list[ErrorInfo]) -> dict[str, NodeDoc]:
    nodes = {node_id: nd.model_copy(deep=True) for node_id, nd in doc.nodes.items()}
    if not any(nd.subgraph is not None for nd in nodes.values()):
        return nodes
    redirect: dict[tuple[str, str], dict[str, str]] = {}
    depth = {node_id: 0 for node_id in nodes}
    queue = deque(node_id for node_id, nd in nodes.items() if nd.subgraph is not None)
    while queue:
        outer = queue.popleft()
        instance = nodes.pop(outer)
        name = instance.subgraph or ""
        sub = doc.subgraphs.get(name)
        if sub is None:
            errors.append(ErrorInfo("unknown_subgraph", f"subgraph '{name}' is not defined in this document", outer))
            continue
        if depth[outer] >= MAX_DEPTH:
            errors.append(ErrorInfo("subgraph_cycle", f"subgraph '{name}' nests more than {MAX_DEPTH} levels (does it contain itself?)", outer))
            continue
        if instance.mode is not NodeMode.ACTIVE:
            errors.append(ErrorInfo("bad_subgraph", f"a subgraph node cannot be {instance.mode.value}; set the mode on the nodes inside it", outer))
            continue
        for inner_id, inner in sub.nodes.items():
            flat_id = f"{outer}/{inner_id}"
            copy = inner.model_copy(deep=True)
            copy.inputs = {k: _prefixed(v, outer) for k, v in copy.inputs.items()}
            nodes[flat_id] = copy
            depth[flat_id] = depth[outer] + 1
            if copy.subgraph is not None:
                queue.append(flat_id)
        errors.extend(_feed_targets(outer, instance, sub, nodes))
        for out_name, out in sub.outputs.items():
            redirect[(outer, out_name)] = {"node": f"{outer}/{out.node}", "output": out.output}
    _follow_redirects(nodes, redirect)
    return nodes


def _prefixed(value: Any, outer: str) -> Any:
    """A link inside a subgraph, renamed to the flat id of its source."""
    return {"node": f"{outer}/{value['node']}", "output": value["output"]} if is_link(value) else value


def _feed_targets(outer: str, instance: NodeDoc, sub: Any, nodes: dict[str, NodeDoc]) -> list[ErrorInfo]:
    """Set the inner inputs each of the instance's inputs feeds; report unknown names."""
    errors = []
    for name, value in instance.inputs.items():
        spec = sub.inputs.get(name)
        if spec is None:
            known = ", ".join(sorted(sub.inputs)) or "none"
            errors.append(ErrorInfo("unknown_input", f"subgraph '{instance.subgraph}' has no input '{name}' (inputs: {known})", outer, name))
            continue
        for target in spec.targets:
            inner = nodes.get(f"{outer}/{target.node}")
            if inner is None:
                errors.append(ErrorInfo("bad_subgraph", f"subgraph input '{name}' feeds node '{target.node}', which the subgraph does not have", outer, name))
                continue
            inner.inputs[target.input] = value
    return errors


def _follow_redirects(nodes: dict[str, NodeDoc], redirect: dict[tuple[str, str], dict[str, str]]) -> None:
    """Point links at subgraph outputs to the inner nodes that make them (through nested subgraphs too)."""
    for nd in nodes.values():
        for name, value in nd.inputs.items():
            hops = 0
            while is_link(value) and (value["node"], value["output"]) in redirect and hops <= MAX_DEPTH:
                value = redirect[(value["node"], value["output"])]
                hops += 1
            nd.inputs[name] = value


# -- 2. renamed sockets ---------------------------------------------------------------------------
def _normalise_aliases(nodes: dict[str, NodeDoc], registry: Registry) -> None:
    for nd in nodes.values():
        schema = registry.schema(nd.type)
        if schema is None:
            continue
        renamed: dict[str, Any] = {}
        for name, value in nd.inputs.items():
            spec = schema.input(name)
            renamed[spec.name if spec is not None else name] = _normalised_link(value, nodes, registry)
        nd.inputs = renamed


def _normalised_link(value: Any, nodes: dict[str, NodeDoc], registry: Registry) -> Any:
    if not is_link(value) or value["node"] not in nodes:
        return value
    schema = registry.schema(nodes[value["node"]].type)
    out = schema.output(value["output"]) if schema is not None else None
    return {"node": value["node"], "output": out.name} if out is not None else value


# -- 3. modes -----------------------------------------------------------------------------------------
def _apply_modes(nodes: dict[str, NodeDoc], registry: Registry) -> dict[str, NodeStatus]:
    """Remove muted and bypassed nodes (and what needs them); returns the removed ids and why."""
    bypassed = {n for n, nd in nodes.items() if nd.mode is NodeMode.BYPASSED}
    removed = {n: NodeStatus.MUTED for n, nd in nodes.items() if nd.mode is NodeMode.MUTED}
    removed.update(dict.fromkeys(bypassed, NodeStatus.BYPASSED))
    if not removed:
        return removed
    passthrough = {n: _passthrough(nodes[n], registry) for n in bypassed}
    for nd in nodes.values():
        for name, value in list(nd.inputs.items()):
            nd.inputs[name] = _through_bypasses(value, passthrough)
    for node_id in removed:
        del nodes[node_id]
    _remove_dependents(nodes, removed, registry)
    return removed


def _passthrough(nd: NodeDoc, registry: Registry) -> dict[str, Any]:
    """For each output of a bypassed node, the value of its first input of the same type (if any)."""
    schema = registry.schema(nd.type)
    if schema is None:
        return {}
    found: dict[str, Any] = {}
    for out in schema.outputs:
        for spec in schema.inputs:
            if spec.type == out.type and spec.name in nd.inputs:
                found[out.name] = nd.inputs[spec.name]
                break
    return found


def _through_bypasses(value: Any, passthrough: dict[str, dict[str, Any]]) -> Any:
    """Follow a link through bypassed nodes to what they pass on (it stays dangling where nothing does)."""
    hops = 0
    while is_link(value) and value["node"] in passthrough and hops <= len(passthrough):
        passed = passthrough[value["node"]].get(value["output"])
        if passed is None:
            break  # no input of that type: the consumer is treated as needing a muted node
        value = passed
        hops += 1
    return value


def _remove_dependents(nodes: dict[str, NodeDoc], removed: dict[str, NodeStatus], registry: Registry) -> None:
    """Remove, transitively, every node with a required input linked to a removed node."""
    consumers: dict[str, list[str]] = {}
    for node_id, nd in nodes.items():
        for value in nd.inputs.values():
            if is_link(value):
                consumers.setdefault(value["node"], []).append(node_id)
    work = deque(removed)
    while work:
        gone = work.popleft()
        for node_id in consumers.get(gone, ()):
            nd = nodes.get(node_id)
            if nd is None:
                continue
            if _needs(nd, gone, registry):
                removed[node_id] = NodeStatus.MUTED
                del nodes[node_id]
                work.append(node_id)
            else:
                nd.inputs = {k: v for k, v in nd.inputs.items() if not (is_link(v) and v["node"] == gone)}


def _needs(nd: NodeDoc, gone: str, registry: Registry) -> bool:
    """Whether ``nd`` has a required input linked to node ``gone``."""
    schema = registry.schema(nd.type)
    for name, value in nd.inputs.items():
        if is_link(value) and value["node"] == gone:
            spec = schema.input(name) if schema is not None else None
            if spec is None or spec.required:
                return True
    return False


__all__ = ["MAX_DEPTH", "Prepared", "prepare"]
