"""Reading ComfyUI's three shapes into one plain form, :class:`ComfyGraph`.

* **API prompt** (``{"3": {"class_type": "KSampler", "inputs": {...}}}``, also wrapped as
  ``{"prompt": {...}}``): inputs are literals or links ``[node_id, output_slot]``.
* **UI workflow** (the editor's saved file, ``version`` 0.4 or 1): ``nodes`` with
  ``inputs`` (sockets, some holding a ``link``), ``outputs`` and ``widgets_values`` in
  the order of the class's widgets (:mod:`nodeflow.comfy.classes`); ``links`` as
  ``[id, from_node, from_slot, to_node, to_slot, type]`` (0.4) or objects (1). The
  editor-only nodes are resolved here: a ``Reroute`` node is followed to its source
  (and kept as a position), a ``PrimitiveNode`` becomes the literal it holds, a
  ``Note``/``MarkdownNote`` becomes a note beside the graph.
* **PNG**: ComfyUI writes the UI workflow in the text chunk ``workflow`` and the API
  prompt in ``prompt``; the workflow is read when it is there (it has the layout).

Nothing here raises for bad content: problems are collected as structured errors
(``invalid_comfy_file``, ``bad_comfy_link``, ``bad_comfy_widgets``) and reading goes on.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorInfo
from ..graph import NodeMode
from .classes import CLASSES, CONTROL_VALUES, FRONTEND_ONLY

#: litegraph node modes -> nodeflow's (1 "on event" and 3 "on trigger" run like 0 in ComfyUI).
MODES = {0: NodeMode.ACTIVE, 1: NodeMode.ACTIVE, 2: NodeMode.MUTED, 3: NodeMode.ACTIVE, 4: NodeMode.BYPASSED}

#: How far links are followed through chained Reroute nodes before giving up (a loop).
_MAX_HOPS = 1000


@dataclass(frozen=True)
class Ref:
    """A link to output ``slot`` of ComfyUI node ``node``."""

    node: str
    slot: int


@dataclass
class CNode:
    """One ComfyUI node, read: class, inputs (literals or :class:`Ref`), mode and layout."""

    id: str
    class_type: str
    inputs: dict[str, Any] = field(default_factory=dict)
    mode: NodeMode = NodeMode.ACTIVE
    title: str | None = None
    ui: dict[str, Any] = field(default_factory=dict)
    #: seed widget name -> its control_after_generate value ("randomize"...)
    control: dict[str, str] = field(default_factory=dict)
    #: socket types as the UI file records them (for classes nodeflow does not know)
    in_types: dict[str, str] = field(default_factory=dict)
    out_types: list[str] = field(default_factory=list)
    #: the subgraph's name when this node is a ComfyUI subgraph instance
    subgraph: str | None = None


@dataclass
class ComfyGraph:
    """A ComfyUI graph in one shape whatever file it came from (see the module docstring)."""

    source: str
    nodes: dict[str, CNode] = field(default_factory=dict)
    groups: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    #: Reroute nodes and native reroutes: {"kind": "node"|"native", "id", "pos", "parent", "pairs": [(source, user)]}
    reroutes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ErrorInfo] = field(default_factory=list)
    version: Any = None


def detect(data: Any) -> str | None:
    """``"ui"``, ``"api"`` or ``None`` (not a ComfyUI document) for decoded JSON ``data``."""
    if not isinstance(data, dict) or data.get("format") == "nodeflow/graph":
        return None
    if isinstance(data.get("nodes"), list):
        return "ui"
    prompt = data.get("prompt") if isinstance(data.get("prompt"), dict) else data
    if prompt and all(isinstance(v, dict) and "class_type" in v for v in prompt.values()):
        return "api"
    return None


def read_png(data: bytes) -> tuple[Any, list[ErrorInfo]]:
    """The decoded ``workflow`` (else ``prompt``) text chunk of a ComfyUI PNG, or errors."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as picture:
            chunks = dict(getattr(picture, "text", {}) or {})
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return None, [ErrorInfo("invalid_comfy_file", f"not a readable image: {exc}")]
    problems = []
    for key in ("workflow", "prompt"):
        if key not in chunks:
            continue
        try:
            decoded = json.loads(chunks[key])
        except ValueError as exc:
            problems.append(ErrorInfo("invalid_comfy_file", f"the PNG's '{key}' chunk is not JSON: {exc}"))
            continue
        if detect(decoded) is not None:
            return decoded, []
        problems.append(ErrorInfo("invalid_comfy_file", f"the PNG's '{key}' chunk is not a ComfyUI workflow or prompt"))
    return None, problems or [ErrorInfo("invalid_comfy_file", "the PNG carries no ComfyUI 'workflow' or 'prompt' text chunk")]


# -- API prompt -------------------------------------------------------------------------------
def read_api(data: dict[str, Any]) -> ComfyGraph:
    """Read an API prompt (bare, or the ``{"prompt": ...}`` body of ``POST /prompt``)."""
    prompt = data["prompt"] if isinstance(data.get("prompt"), dict) else data
    graph = ComfyGraph("api")
    for cid, entry in prompt.items():
        cid = str(cid)
        if not isinstance(entry, dict) or not isinstance(entry.get("class_type"), str):
            graph.errors.append(ErrorInfo("invalid_comfy_file", "each prompt entry needs a 'class_type' string", cid))
            continue
        inputs = entry.get("inputs", {})
        if not isinstance(inputs, dict):
            graph.errors.append(ErrorInfo("invalid_comfy_file", "'inputs' must be an object", cid))
            inputs = {}
        node = CNode(cid, entry["class_type"], title=_title(entry.get("_meta")))
        for name, value in inputs.items():
            node.inputs[str(name)] = _api_value(graph, cid, str(name), value)
        graph.nodes[cid] = node
    return graph


def _title(meta: Any) -> str | None:
    return meta.get("title") if isinstance(meta, dict) and isinstance(meta.get("title"), str) else None


def _api_value(graph: ComfyGraph, cid: str, name: str, value: Any) -> Any:
    if not isinstance(value, list):
        return value
    if len(value) == 2 and isinstance(value[0], (str, int)) and type(value[1]) is int:
        return Ref(str(value[0]), value[1])
    graph.errors.append(ErrorInfo("bad_comfy_link", f"input '{name}' is a list but not a link [node_id, output_slot]: {value!r}",
                                  cid, name))
    return None


# -- UI workflow --------------------------------------------------------------------------------
def read_ui(data: dict[str, Any]) -> ComfyGraph:
    """Read a UI workflow (versions 0.4 and 1)."""
    graph = ComfyGraph("ui", version=data.get("version"))
    raw_nodes = {str(n.get("id")): n for n in data["nodes"] if isinstance(n, dict)}
    if len(raw_nodes) != len(data["nodes"]):
        graph.errors.append(ErrorInfo("invalid_comfy_file", "every entry of 'nodes' must be an object with an 'id'"))
    links = _links(data, graph)
    subgraphs = _subgraph_names(data)
    groups = data.get("groups")
    graph.groups = [g for g in groups if isinstance(g, dict)] if isinstance(groups, list) else []
    for cid, raw in raw_nodes.items():
        kind = raw.get("type")
        if not isinstance(kind, str):
            graph.errors.append(ErrorInfo("invalid_comfy_file", "a node needs a 'type' string", cid))
        elif kind in ("Note", "MarkdownNote"):
            graph.notes.append(_note(raw))
        elif kind not in FRONTEND_ONLY:
            graph.nodes[cid] = _ui_node(graph, cid, raw, links, raw_nodes, subgraphs.get(kind))
    graph.reroutes.extend(_reroute_nodes(raw_nodes, links))
    graph.reroutes.extend(_native_reroutes(data, links))
    return graph


def _links(data: dict[str, Any], graph: ComfyGraph) -> dict[int, tuple[str, int, str, int]]:
    """link id -> (origin node, origin slot, target node, target slot), from either version's layout."""
    found: dict[int, tuple[str, int, str, int]] = {}
    for entry in data.get("links") or []:
        if isinstance(entry, list) and len(entry) >= 5:
            link_id, origin, slot, target, target_slot = entry[:5]
        elif isinstance(entry, dict):
            link_id, origin, slot = entry.get("id"), entry.get("origin_id"), entry.get("origin_slot")
            target, target_slot = entry.get("target_id"), entry.get("target_slot")
        else:
            graph.errors.append(ErrorInfo("bad_comfy_link", f"a link must be [id, from_node, from_slot, to_node, to_slot, type], not {entry!r}"))
            continue
        if not all(type(v) is int for v in (link_id, slot, target_slot)) or origin is None or target is None:
            graph.errors.append(ErrorInfo("bad_comfy_link", f"link {link_id!r} has a missing or non-integer id, node or slot"))
            continue
        found[link_id] = (str(origin), slot, str(target), target_slot)
    return found


def _subgraph_names(data: dict[str, Any]) -> dict[str, str]:
    """Subgraph id -> name, for the node types that stand for a ComfyUI subgraph."""
    definitions = data.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    names = {}
    for sub in subgraphs or []:
        if isinstance(sub, dict) and isinstance(sub.get("id"), str):
            names[sub["id"]] = str(sub.get("name") or sub["id"])
    return names


def _note(raw: dict[str, Any]) -> dict[str, Any]:
    values = raw.get("widgets_values")
    text = values[0] if isinstance(values, list) and values and isinstance(values[0], str) else ""
    return {"text": text, "markdown": raw.get("type") == "MarkdownNote", "title": raw.get("title"), **_layout(raw)}


def _layout(raw: dict[str, Any]) -> dict[str, Any]:
    """Position, size, colours and flags of a UI node, as nodeflow's ``ui`` spells them."""
    ui: dict[str, Any] = {}
    for key in ("pos", "size"):
        pair = _pair(raw.get(key))
        if pair is not None:
            ui[key] = pair
    for key in ("color", "bgcolor"):
        if isinstance(raw.get(key), str):
            ui[key] = raw[key]
    flags = raw.get("flags")
    if isinstance(flags, dict) and flags.get("collapsed"):
        ui["collapsed"] = True
    return ui


def _pair(value: Any) -> list[float] | None:
    """``[x, y]`` from a list or litegraph's old ``{"0": x, "1": y}`` objects."""
    if isinstance(value, dict):
        value = [value.get("0"), value.get("1")]
    if isinstance(value, list) and len(value) >= 2 and all(isinstance(v, (int, float)) for v in value[:2]):
        return [round(float(value[0]), 2), round(float(value[1]), 2)]
    return None


def _ui_node(graph: ComfyGraph, cid: str, raw: dict[str, Any], links: dict[int, tuple[str, int, str, int]],
             raw_nodes: dict[str, dict[str, Any]], subgraph: str | None) -> CNode:
    mode = raw.get("mode", 0)
    node = CNode(cid, str(raw["type"]), mode=MODES.get(mode if type(mode) is int else 0, NodeMode.ACTIVE),
                 title=raw.get("title") if isinstance(raw.get("title"), str) else None, ui=_layout(raw), subgraph=subgraph)
    outputs = raw.get("outputs")
    node.out_types = [str(o.get("type")) for o in outputs if isinstance(o, dict)] if isinstance(outputs, list) else []
    _read_widgets(graph, node, raw)
    for socket in raw.get("inputs") or []:
        if not isinstance(socket, dict):
            continue
        widget = socket.get("widget")
        name = str(widget.get("name") if isinstance(widget, dict) and widget.get("name") else socket.get("name"))
        node.in_types[name] = str(socket.get("type"))
        link_id = socket.get("link")
        if link_id is None:
            continue
        value = _linked_value(graph, cid, name, link_id, links, raw_nodes)
        if value is not None:
            node.inputs[name] = value
    return node


def _read_widgets(graph: ComfyGraph, node: CNode, raw: dict[str, Any]) -> None:
    """Name the ``widgets_values`` of a known class by its widget order (a seed's control value skipped)."""
    spec = CLASSES.get(node.class_type)
    values = raw.get("widgets_values", [])
    if spec is None:
        return  # an unknown class: its widgets cannot be named (it is reported as unsupported)
    if isinstance(values, dict):  # some editors save widgets by name
        node.inputs.update({w.name: values[w.name] for w in spec.widgets if w.name in values})
        return
    if not isinstance(values, list):
        graph.errors.append(ErrorInfo("bad_comfy_widgets", f"'widgets_values' must be a list, not {type(values).__name__}", node.id))
        return
    position = 0
    for widget in spec.widgets:
        if position >= len(values):
            break  # reported by the translator if the input is needed and not linked either
        node.inputs[widget.name] = values[position]
        position += 1
        if widget.control and position < len(values) and values[position] in CONTROL_VALUES:
            node.control[widget.name] = values[position]
            position += 1


def _linked_value(graph: ComfyGraph, cid: str, name: str, link_id: Any, links: dict[int, tuple[str, int, str, int]],
                  raw_nodes: dict[str, dict[str, Any]]) -> Any:
    """The Ref (or a PrimitiveNode's literal) an input's link stands for, through Reroute nodes."""
    found = _source_link(graph, cid, name, link_id, links, raw_nodes)
    if found is None:
        return None
    origin_id, slot = found
    origin = raw_nodes[origin_id]
    if origin.get("type") != "PrimitiveNode":
        return Ref(origin_id, slot)
    values = origin.get("widgets_values")
    if not isinstance(values, list) or not values:
        graph.errors.append(ErrorInfo("bad_comfy_widgets", f"primitive node {origin_id} feeding input '{name}' holds no value", cid, name))
        return None
    return values[0]


def _source_link(graph: ComfyGraph, cid: str, name: str, link_id: Any, links: dict[int, tuple[str, int, str, int]],
                 raw_nodes: dict[str, dict[str, Any]]) -> tuple[str, int] | None:
    """(origin node, slot) of a link, followed through Reroute nodes; None (reported) for a broken link."""
    for _ in range(_MAX_HOPS):
        link = links.get(link_id) if type(link_id) is int else None
        if link is None:
            graph.errors.append(ErrorInfo("bad_comfy_link", f"input '{name}' names link {link_id!r}, which the workflow does not have",
                                          cid, name))
            return None
        origin = raw_nodes.get(link[0])
        if origin is None:
            graph.errors.append(ErrorInfo("bad_comfy_link", f"input '{name}' is linked to node {link[0]}, which the workflow does not have",
                                          cid, name))
            return None
        if origin.get("type") != "Reroute":
            return link[0], link[1]
        upstream = [s.get("link") for s in origin.get("inputs") or [] if isinstance(s, dict)]
        link_id = upstream[0] if upstream else None
    graph.errors.append(ErrorInfo("bad_comfy_link", f"input '{name}' comes through reroutes that loop", cid, name))
    return None


def _reroute_nodes(raw_nodes: dict[str, dict[str, Any]], links: dict[int, tuple[str, int, str, int]]) -> list[dict[str, Any]]:
    """Reroute nodes as positions on links: {id, pos, parent, pairs: [(source node, user node)]}.

    Chains of Reroute nodes are followed both ways, so ``pairs`` name real nodes;
    ``parent`` is the Reroute node feeding this one (nearer the source).
    """
    outgoing: dict[str, list[str]] = {}
    feeder: dict[str, str] = {}
    for origin, _, target, _ in links.values():
        outgoing.setdefault(origin, []).append(target)
        if (raw_nodes.get(target) or {}).get("type") == "Reroute":
            feeder[target] = origin
    found = []
    for cid, raw in raw_nodes.items():
        if raw.get("type") != "Reroute" or _pair(raw.get("pos")) is None:
            continue
        source = _walk(cid, lambda n: [feeder[n]] if n in feeder else [], raw_nodes)
        users = _walk(cid, lambda n: outgoing.get(n, []), raw_nodes)
        parent = feeder.get(cid) if (raw_nodes.get(feeder.get(cid, "")) or {}).get("type") == "Reroute" else None
        found.append({"kind": "node", "id": cid, "pos": _pair(raw.get("pos")), "parent": parent,
                      "pairs": [(src, user) for src in source for user in users]})
    return found


def _walk(start: str, step: Callable[[str], list[str]], raw_nodes: dict[str, dict[str, Any]]) -> list[str]:
    """The first non-Reroute nodes reached from Reroute node ``start`` by ``step`` (iteratively, loops cut)."""
    found, seen, todo = [], {start}, list(step(start))
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        if (raw_nodes.get(node) or {}).get("type") == "Reroute":
            todo.extend(step(node))
        else:
            found.append(node)
    return found


def _native_reroutes(data: dict[str, Any], links: dict[int, tuple[str, int, str, int]]) -> list[dict[str, Any]]:
    """The frontend's native reroutes (``reroutes`` in version 1, ``extra.reroutes`` in 0.4)."""
    extra = data.get("extra")
    listed = data.get("reroutes") or (extra.get("reroutes") if isinstance(extra, dict) else None) or []
    found = []
    for entry in listed:
        if not isinstance(entry, dict) or _pair(entry.get("pos")) is None:
            continue
        pairs = [(links[i][0], links[i][2]) for i in entry.get("linkIds") or [] if type(i) is int and i in links]
        found.append({"kind": "native", "id": entry.get("id"), "pos": _pair(entry.get("pos")), "parent": entry.get("parentId"),
                      "pairs": pairs})
    return found


__all__ = ["MODES", "CNode", "ComfyGraph", "Ref", "detect", "read_api", "read_png", "read_ui"]
