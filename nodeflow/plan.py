"""Execution planning: which nodes a run needs, in what order, under which cache keys.

A node's cache key is its signature: node type and version, its literal inputs, the
stamps of the files its ``file=`` inputs name, a fingerprint for impure nodes, and the
*keys* of the nodes feeding it (a hash of hashes, not the whole ancestry), so keying
costs the same per node however long the graph is. Identical sub-graphs get identical
keys and share results.

The order is networkx's topological sort restricted to the ancestors of the target
nodes (output nodes, or the graph's sinks when it declares none). Iterative throughout.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from .context import Context, ModelStoreAPI
from .errors import ErrorInfo, NodeFailed
from .files import PathResolver
from .node import NodeSchema
from .registry import Registry
from .validate import Checked


@dataclass
class Plan:
    """Nodes to consider in order, their keys, and the targets the run must produce."""

    order: list[str]
    keys: dict[str, str]
    targets: list[str]


def default_targets(checked: Checked, registry: Registry) -> list[str]:
    """The graph's output nodes, or its sinks when it declares none."""
    doc, deps = checked.doc, checked.deps
    targets = [n for n, nd in doc.nodes.items() if registry.schema(nd.type).output_node]  # type: ignore[union-attr]
    return targets or [n for n in doc.nodes if deps.out_degree(n) == 0]


def make_plan(checked: Checked, registry: Registry, *, targets: list[str] | None = None, output_dir: Path = Path("outputs"),
              models: ModelStoreAPI | None = None, paths: PathResolver | None = None) -> Plan:
    """Plan a validated graph. ``targets`` defaults to its output nodes (or sinks)."""
    deps = checked.deps
    if targets is None:
        targets = default_targets(checked, registry)
    needed = set(targets)
    stack = list(targets)
    while stack:
        for parent in deps.predecessors(stack.pop()):
            if parent not in needed:
                needed.add(parent)
                stack.append(parent)
    order = [n for n in nx.topological_sort(deps) if n in needed]
    resolver = paths if paths is not None else PathResolver()
    keys: dict[str, str] = {}
    for node_id in order:
        keys[node_id] = _key(node_id, checked, registry, keys, Context(
            node_id, checked.doc.nodes[node_id].type, model_store=models, paths=resolver, output_dir=output_dir))
    return Plan(order=order, keys=keys, targets=list(targets))


def _key(node_id: str, checked: Checked, registry: Registry, keys: dict[str, str], ctx: Context) -> str:
    schema = registry.schema(ctx.node_type)
    assert schema is not None
    literals = checked.literals[node_id]
    stamps = [(spec.name, ctx.paths.fingerprint(literals.get(spec.name), spec.file)) for spec in schema.inputs
              if spec.file is not None and isinstance(literals.get(spec.name), str)]
    fingerprint = None if schema.pure else _fingerprint(node_id, schema, registry, checked, ctx)
    parents = sorted((name, keys[src], out) for name, (src, out, _, _) in checked.links[node_id].items())
    payload = json.dumps([schema.id, schema.version, sorted(literals.items()), parents, stamps, fingerprint], default=repr)
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def _fingerprint(node_id: str, schema: NodeSchema, registry: Registry, checked: Checked, ctx: Context) -> str:
    # Planning happens before any node runs, so linked inputs are not known yet:
    # they arrive as None and the fingerprint must cope (see docs/plugins.md).
    cls = registry.get(schema.id)
    unknown: dict[str, Any] = dict.fromkeys(checked.links[node_id])
    try:
        return str(cls().fingerprint(ctx, **checked.literals[node_id], **unknown))  # type: ignore[misc]
    except Exception as exc:
        raise NodeFailed(ErrorInfo("node_failed", f"'{schema.id}' could not fingerprint its inputs: {type(exc).__name__}: {exc}", node_id)) from exc


__all__ = ["Plan", "default_targets", "make_plan"]
