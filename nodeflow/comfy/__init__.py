"""ComfyUI compatibility at the edges: read ComfyUI files as nodeflow graph documents.

:func:`import_comfy` takes a UI workflow, an API prompt or a ComfyUI PNG (bytes, text,
or decoded JSON) and returns a :class:`ComfyImport`: a nodeflow graph document plus the
map from nodeflow node ids back to ComfyUI's, or every problem found, all at once.
Nothing in the engine knows ComfyUI exists: the document is an ordinary one, with
``meta.comfy`` recording where it came from (``source``, ``ids``, ``inputs``,
``classes``) and ``meta.editor`` the layout (groups, reroutes, notes).

The pieces: :mod:`.classes` (ComfyUI's classes as data), :mod:`.formats` (the three
shapes), :mod:`.prompts` (prompt syntax), :mod:`.build` and :mod:`.mapping` (the
translation), :mod:`.paths` (``extra_model_paths.yaml``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ErrorInfo, GraphInvalid
from ..files import PathResolver
from ..graph import GraphDoc, is_link, parse_graph
from ..registry import Registry
from .build import Builder
from .formats import ComfyGraph, detect, read_api, read_png, read_ui
from .mapping import translate_nodes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class ComfyImport:
    """A translated ComfyUI document: ``doc`` (None when ``errors``), and ids back to ComfyUI."""

    source: str
    doc: GraphDoc | None = None
    errors: list[ErrorInfo] = field(default_factory=list)
    #: nodeflow node id -> ComfyUI node id
    ids: dict[str, str] = field(default_factory=dict)
    #: ComfyUI node id -> class_type
    classes: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the document was made with no problem."""
        return self.doc is not None and not self.errors


def sniff(data: bytes | str | dict[str, Any]) -> str | None:
    """``"png"``, ``"ui"``, ``"api"`` or None: which ComfyUI shape ``data`` is, without translating it."""
    if isinstance(data, bytes) and data.startswith(PNG_SIGNATURE):
        return "png"
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            return None
    return detect(data)


def import_comfy(data: bytes | str | dict[str, Any], registry: Registry | None = None, paths: PathResolver | None = None,
                 name: str = "", shape: str | None = None) -> ComfyImport:
    """Translate a ComfyUI workflow, prompt or PNG into a nodeflow graph document (see the module docstring).

    ``registry`` decides which classes translate (their nodeflow nodes must be installed;
    default: the built-in packs); ``paths`` resolves checkpoint names only to probe their
    family (SDXL or not: header/configs, no weights; unresolved: SD 1.x wiring). Never raises for bad
    input: problems come back in ``errors`` (codes ``invalid_comfy_file``,
    ``bad_comfy_link``, ``bad_comfy_widgets``, ``missing_comfy_input``,
    ``unsupported_comfy_node``, ``unsupported_comfy_value``, ``invalid_value``). ``shape``
    (``"api"``/``"ui"``) reads ``data`` as that shape instead of guessing it.
    """
    decoded, errors = _decode(data)
    if shape is None or not isinstance(decoded, dict):
        shape = detect(decoded) if not errors else None
    if shape is None:
        return ComfyImport("", errors=errors or [ErrorInfo("invalid_comfy_file", "this is not a ComfyUI workflow, prompt or PNG")])
    graph = read_ui(decoded) if shape == "ui" else read_api(decoded)
    if registry is None:
        from ..registry import build_registry

        registry = build_registry()
    builder = Builder(graph, registry, paths)
    builder.errors.extend(graph.errors)
    translate_nodes(builder)
    classes = {cid: n.class_type for cid, n in graph.nodes.items()}
    result = ComfyImport(shape, errors=builder.errors, ids=dict(builder.ids), classes=classes)
    if not builder.errors and not builder.nodes:
        result.errors = [ErrorInfo("invalid_comfy_file", "the workflow has no node nodeflow could run")]
    if not result.errors:
        result.doc = _document(builder, graph, shape, name)
    return result


def _decode(data: bytes | str | dict[str, Any]) -> tuple[Any, list[ErrorInfo]]:
    if isinstance(data, bytes) and data.startswith(PNG_SIGNATURE):
        return read_png(data)
    if isinstance(data, (bytes, str)):
        try:
            return json.loads(data), []
        except (ValueError, RecursionError) as exc:
            return None, [ErrorInfo("invalid_comfy_file", f"not JSON: {exc}")]
    return data, []


def _document(b: Builder, graph: ComfyGraph, shape: str, name: str) -> GraphDoc:
    what = "UI workflow" + (f" (version {graph.version})" if graph.version is not None else "") if shape == "ui" else "API prompt"
    comfy: dict[str, Any] = {"source": shape, "ids": b.ids, "inputs": b.wired,
                             "classes": {cid: n.class_type for cid, n in graph.nodes.items()}}
    if b.muted:
        comfy["left_out"] = sorted(set(b.muted))
    meta: dict[str, Any] = {"name": name or "comfyui", "description": f"Imported from a ComfyUI {what}.", "comfy": comfy}
    editor = {"groups": [_group(g) for g in graph.groups], "reroutes": _reroutes(b, graph), "notes": graph.notes}
    editor = {k: v for k, v in editor.items() if v}
    if editor:
        meta["editor"] = editor
    try:
        return parse_graph({"nodes": b.nodes, "meta": meta})
    except GraphInvalid as exc:  # a translator bug, not the user's: still an answer, never a crash
        raise AssertionError(f"the ComfyUI translation made an invalid document: {exc}") from exc


def _group(group: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if k in ("title", "bounding", "color", "font_size", "flags")}


def _reroutes(b: Builder, graph: ComfyGraph) -> list[dict[str, Any]]:
    """Reroutes in nodeflow's form: {id, pos, parent?, links: [{node, input}]}, renumbered from 1."""
    numbers = {(r["kind"], str(r["id"])): i for i, r in enumerate(graph.reroutes, start=1)}
    saved = []
    for number, reroute in enumerate(graph.reroutes, start=1):
        links = [{"node": nf, "input": name} for src, user in reroute["pairs"] for nf, node in b.nodes.items() if b.ids[nf] == user
                 for name, value in node["inputs"].items() if is_link(value) and b.ids.get(value["node"]) == src]
        if not links:
            continue
        entry: dict[str, Any] = {"id": number, "pos": reroute["pos"], "links": links}
        parent = numbers.get((reroute["kind"], str(reroute.get("parent"))))
        if reroute.get("parent") is not None and parent is not None:
            entry["parent"] = parent
        saved.append(entry)
    return saved


def comfy_errors(errors: list[ErrorInfo], meta: dict[str, Any]) -> list[ErrorInfo]:
    """Errors about a translated document, told in ComfyUI's terms: ComfyUI node ids and input names.

    ``meta`` is the document's ``meta`` (its ``comfy`` part). Errors on nodes the document
    did not get from ComfyUI are returned as they are.
    """
    comfy = meta.get("comfy") if isinstance(meta, dict) else None
    if not isinstance(comfy, dict):
        return errors
    ids, wired, classes = comfy.get("ids", {}), comfy.get("inputs", {}), comfy.get("classes", {})
    told = []
    for err in errors:
        cid = ids.get(err.node) if err.node is not None else None
        if cid is None:
            told.append(err)
            continue
        name = wired.get(err.node, {}).get(err.input, err.input) if err.input else None
        where = f" (nodeflow node {err.node})" if err.node != cid else ""
        told.append(ErrorInfo(err.code, f"{classes.get(cid, 'node')} {cid}{where}: {err.message}", cid, name))
    return told


#: Longest note text quoted in :func:`import_notes`.
NOTE_CHARS = 300


def import_notes(meta: dict[str, Any]) -> list[str]:
    """What an import did besides translating nodes, in sentences for a person (the editor shows them).

    ``meta`` is the imported document's ``meta``: where it came from, the ComfyUI nodes
    left out because a muted node they need was folded away, and the text of the
    workflow's Note/MarkdownNote nodes (kept in ``meta.editor.notes``, not drawn as nodes).
    """
    notes = [str(meta["description"])] if meta.get("description") else []
    comfy = meta.get("comfy") if isinstance(meta.get("comfy"), dict) else {}
    left_out = comfy.get("left_out") or []
    if left_out:
        notes.append(f"Left out, as ComfyUI skips them (they need a muted node): ComfyUI node(s) {', '.join(map(str, left_out))}.")
    editor = meta.get("editor") if isinstance(meta.get("editor"), dict) else {}
    notes.extend(_note_line(note) for note in editor.get("notes") or [] if isinstance(note, dict))
    return notes


def _note_line(note: dict[str, Any]) -> str:
    """One Note/MarkdownNote node as a line: its title, then its text (shortened)."""
    text = str(note.get("text") or "").strip()
    if len(text) > NOTE_CHARS:
        text = text[:NOTE_CHARS] + "…"
    title = note.get("title") or ("Markdown note" if note.get("markdown") else "Note")
    return f"{title}: {text}" if text else f"{title} (empty)"


def load_comfy(path: str | Path, registry: Registry | None = None, paths: PathResolver | None = None) -> ComfyImport:
    """:func:`import_comfy` on a file (JSON or PNG); a file that cannot be read is an ``invalid_comfy_file`` error."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return ComfyImport("", errors=[ErrorInfo("invalid_comfy_file", f"cannot read {path}: {exc}")])
    return import_comfy(data, registry, paths, name=Path(path).stem)


__all__ = ["ComfyImport", "comfy_errors", "import_comfy", "import_notes", "load_comfy", "sniff"]
