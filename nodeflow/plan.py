"""Execution planning: which nodes a run needs, in what order, under which cache keys.

A node's cache key is its signature: node type and version, its literal inputs, a
fingerprint for impure nodes, and the *keys* of the nodes feeding it (a hash of
hashes, not the whole ancestry), so keying costs the same per node however long the
graph is. Identical sub-graphs get identical keys and share results.

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

from .errors import ErrorInfo, NodeFailed
from .node import Context, schema_of
from .registry import Registry
from .validate import Checked


@dataclass
class Plan:
    """Nodes to consider in order, their keys, and the targets the run must produce."""

    order: list[str]
    keys: dict[str, str]
    targets: list[str]


def make_plan(checked: Checked, registry: Registry, *, targets: list[str] | None = None, output_dir: Path = Path("outputs"), models: Any = None) -> Plan:
    """Plan a validated graph. ``targets`` defaults to its output nodes (or sinks)."""
    doc, deps = checked.doc, checked.deps
    if targets is None:
        targets = [n for n, nd in doc.nodes.items() if registry.schema(nd.type).output_node]  # type: ignore[union-attr]
        if not targets:
            targets = [n for n in doc.nodes if deps.out_degree(n) == 0]
    needed = set(targets)
    stack = list(targets)
    while stack:
        for parent in deps.predecessors(stack.pop()):
            if parent not in needed:
                needed.add(parent)
                stack.append(parent)
    order = [n for n in nx.topological_sort(deps) if n in needed]
    keys: dict[str, str] = {}
    for node_id in order:
        type_id = doc.nodes[node_id].type
        cls = registry.get(type_id)
        schema = schema_of(cls)  # type: ignore[arg-type]
        literals = checked.literals[node_id]
        fingerprint = None
        if not schema.pure:
            # Planning happens before any node runs, so linked inputs are not known yet:
            # they arrive as None and the fingerprint must cope (see docs/plugins.md).
            ctx = Context(node_id=node_id, node_type=type_id, models=models, output_dir=output_dir)
            unknown = dict.fromkeys(checked.links[node_id])
            try:
                fingerprint = str(cls().fingerprint(ctx, **literals, **unknown))  # type: ignore[misc]
            except Exception as exc:
                raise NodeFailed(ErrorInfo("node_failed", f"'{type_id}' could not fingerprint its inputs: {type(exc).__name__}: {exc}", node_id)) from exc
        parents = sorted((name, keys[src], out) for name, (src, out, _, _) in checked.links[node_id].items())
        payload = json.dumps([type_id, schema.version, sorted(literals.items()), parents, fingerprint], default=repr)
        keys[node_id] = hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()
    return Plan(order=order, keys=keys, targets=list(targets))
