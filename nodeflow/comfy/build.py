"""The translation state: nodeflow nodes made so far, and what each ComfyUI output became.

A ComfyUI socket carries more than one nodeflow socket: its ``MODEL`` is a UNet plus the
scheduler config (and, for nodes that need them, the checkpoint's text encoder and VAE),
its ``CLIP`` a tokenizer, a text encoder and the clip-skip CLIPSetLastLayer set. So each
ComfyUI output becomes a *bundle*: a dict of nodeflow links (``{"node", "output"}``) and
values by role. The roles per ComfyUI type:

=============  =================================================================
MODEL          ``unet``, ``scheduler_config``, ``text_encoder``, ``vae``
CLIP           ``tokenizer``, ``text_encoder``, ``clip_skip`` (an int); for SDXL ``clip``, ``family``
CONDITIONING   ``conditioning`` (SDXL: ``family``; ``sized``: a plain encode the KSampler sizes)
VAE            ``vae``
LATENT         ``latents``, or ``empty`` (an EmptyLatentImage not yet made)
IMAGE / MASK   ``image`` / ``mask``
CONTROL_NET    ``controlnet``
INT, FLOAT...  ``value`` (a backend primitive's literal)
=============  =================================================================

Nodeflow node ids are the ComfyUI id for the node that makes the ComfyUI node's output
(``"3"`` is the denoise loop of KSampler 3) and ``ID.role`` for the helpers
(``"3.scheduler"``, ``"3.noise"``); :attr:`Builder.ids` maps every one back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorInfo
from ..files import PathResolver
from ..graph import NodeMode
from ..registry import Registry
from .classes import CLASSES
from .formats import CNode, ComfyGraph, Ref


@dataclass(frozen=True)
class Missing:
    """What an output gives when nodeflow cannot make it; ``reason`` (if any) is reported where it is used."""

    reason: str | None = None
    #: the output comes from a muted node: its users are muted too (ComfyUI skips them)
    muted: bool = False


FAILED = Missing()
MUTED = Missing(muted=True)

#: How far below the ComfyUI node (in canvas units) its helper nodes are drawn.
_HELPER_GAP = 70


def link(node: str, output: str) -> dict[str, str]:
    """A nodeflow link to ``output`` of ``node``."""
    return {"node": node, "output": output}


@dataclass
class Builder:
    """Collects nodeflow nodes, the id map back to ComfyUI, and every problem met."""

    graph: ComfyGraph
    registry: Registry
    paths: PathResolver | None = None
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: nodeflow id -> ComfyUI id
    ids: dict[str, str] = field(default_factory=dict)
    #: nodeflow id -> {nodeflow input: ComfyUI input}, for naming the ComfyUI input in errors
    wired: dict[str, dict[str, str]] = field(default_factory=dict)
    #: (ComfyUI id, output slot) -> bundle or Missing
    sockets: dict[tuple[str, int], Any] = field(default_factory=dict)
    errors: list[ErrorInfo] = field(default_factory=list)
    #: ComfyUI ids left out because a muted node they need was folded away
    muted: list[str] = field(default_factory=list)
    #: (EmptyLatentImage id, unet link) -> the Empty Latents node made for it
    empties: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (SDXL encode id, what its copy differs in) -> the copy made for another KSampler (see mapping._sized)
    copies: dict[tuple[str, str], str] = field(default_factory=dict)
    current: CNode | None = None
    mode: NodeMode = NodeMode.ACTIVE

    # -- making nodes ------------------------------------------------------------------------
    def add(self, role: str, type_: str, inputs: dict[str, Any], *, wired: dict[str, str] | None = None,
            title: str | None = None, ui: dict[str, Any] | None = None) -> str:
        """Add a nodeflow node for the current ComfyUI node (``role`` "" for its main node); its id."""
        node = self.current
        assert node is not None
        nf_id = node.id if not role else f"{node.id}.{role}"
        layout = self._layout(node, role, ui)
        main_title = node.title or CLASSES[node.class_type].display_name or node.class_type
        layout["title"] = title or (f"{main_title}: {role}" if role else main_title)
        entry: dict[str, Any] = {"type": type_, "inputs": {k: v for k, v in inputs.items() if v is not None}, "ui": layout}
        if self.mode is not NodeMode.ACTIVE:
            entry["mode"] = self.mode.value
        self.nodes[nf_id] = entry
        self.ids[nf_id] = node.id
        if wired:
            self.wired[nf_id] = dict(wired)
        return nf_id

    def _layout(self, node: CNode, role: str, ui: dict[str, Any] | None) -> dict[str, Any]:
        """The ComfyUI node's layout; a helper node is drawn below it, without its size."""
        if ui is not None:
            return dict(ui)
        layout = dict(node.ui)
        if role:
            layout.pop("size", None)
            if "pos" in layout:
                helpers = sum(1 for k in self.ids if k.startswith(node.id + "."))
                layout["pos"] = [layout["pos"][0], layout["pos"][1] + _height(node) + _HELPER_GAP * (helpers + 1)]
        return layout

    def error(self, code: str, message: str, name: str | None = None) -> None:
        """Record a problem on the current ComfyUI node (and input ``name``)."""
        self.errors.append(ErrorInfo(code, message, self.current.id if self.current else None, name))

    # -- reading the current node's inputs ------------------------------------------------------
    def bundle(self, node: CNode, name: str) -> Any:
        """The bundle linked into input ``name``, a :class:`Missing`, or None (reported) when absent or bad."""
        value = node.inputs.get(name)
        spec = CLASSES[node.class_type].input(name) if node.class_type in CLASSES else None
        if value is None:
            if spec is not None and spec.optional:
                return None
            self.error("missing_comfy_input", f"input '{name}' is not connected", name)
            return None
        if not isinstance(value, Ref):
            self.error("bad_comfy_link", f"input '{name}' must be linked to a node's output, not given {value!r}", name)
            return None
        found = self.source(node, name, value)
        if found is not None and spec is not None and not isinstance(found[1], Missing) and found[0] not in (spec.type, "*"):
            self.error("bad_comfy_link", f"input '{name}' expects {spec.type}, but node {value.node} output {value.slot} gives {found[0]}", name)
            return None
        return None if found is None else found[1]

    def source(self, node: CNode, name: str, ref: Ref) -> tuple[str, Any] | None:
        """(type, bundle) of the output ``ref`` names; None (reported) when the node or slot does not exist."""
        origin = self.graph.nodes.get(ref.node)
        if origin is None:
            self.error("bad_comfy_link", f"input '{name}' is linked to node {ref.node}, which the workflow does not have", name)
            return None
        types = output_types(origin)
        if not 0 <= ref.slot < len(types) and origin.class_type in CLASSES:
            self.error("bad_comfy_link", f"input '{name}' is linked to output {ref.slot} of node {ref.node} ({origin.class_type}),"
                                         f" which has {len(types)} output(s)", name)
            return None
        return (types[ref.slot] if ref.slot < len(types) else "*"), self.sockets.get((ref.node, ref.slot), FAILED)

    def value(self, node: CNode, name: str) -> Any:
        """The typed-in value of input ``name`` (a backend primitive's too); None (reported) when absent or linked."""
        raw = node.inputs.get(name)
        if isinstance(raw, Ref):
            found = self.source(node, name, raw)
            if found is None or isinstance(found[1], Missing):
                return None
            if "value" not in found[1]:
                self.error("unsupported_comfy_value", f"input '{name}' is linked to node {raw.node}; nodeflow's importer takes"
                                                      " a typed-in value (or a primitive node) here", name)
                return None
            return found[1]["value"]
        if raw is None:
            if self.graph.source == "ui":
                self.error("bad_comfy_widgets", f"the node's widgets_values hold no value for '{name}'", name)
            else:
                self.error("missing_comfy_input", f"input '{name}' has no value", name)
        return raw

    def values(self, node: CNode, *names: str) -> list[Any] | None:
        """:meth:`value` of each name; None when any is missing (all of them reported)."""
        found = [self.value(node, name) for name in names]
        return None if any(v is None for v in found) else found


def output_types(node: CNode) -> list[str]:
    """The ComfyUI types of a node's outputs, by slot (from the class table, else the UI file)."""
    known = CLASSES.get(node.class_type)
    return list(known.outputs) if known is not None else list(node.out_types)


def _height(node: CNode) -> float:
    size = node.ui.get("size")
    return float(size[1]) if isinstance(size, list) else 100.0


__all__ = ["FAILED", "MUTED", "Builder", "Missing", "link", "output_types"]
