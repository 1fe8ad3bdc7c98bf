"""ComfyUI's node classes as nodeflow knows them: inputs in ComfyUI's order, outputs, widgets.

One table, :data:`CLASSES`, serves three readers: the UI-workflow reader (a node's
``widgets_values`` follow the order of its widget inputs here, a seed widget followed by
its ``control_after_generate`` value), the translator (output slot -> type) and the
server's ``/object_info``. Input and output names, types, defaults and ranges are
ComfyUI's own (``nodes.py``), written down here, not imported.

Which classes translate today and which wait for a nodeflow node is in
:mod:`nodeflow.comfy.mapping`; this table only describes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Socket types that are values typed into a widget (everything else is a link).
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})

#: The values a seed widget's ``control_after_generate`` companion takes.
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})

#: The largest seed ComfyUI accepts (its seed widgets are 64-bit).
COMFY_MAX_SEED = 0xFFFFFFFFFFFFFFFF

#: Combo lists filled in when asked (models by kind, sampler and scheduler names).
COMBO_SOURCES = frozenset({"checkpoint", "lora", "vae", "controlnet", "embedding", "config", "image",
                           "sampler", "scheduler", "upscale_latent", "upscale_image", "crop", "channel", "noise_switch", "cond_area"})


@dataclass(frozen=True)
class Spec:
    """One input of a ComfyUI class: its name, type (``COMBO`` for a list), options and role."""

    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)
    optional: bool = False
    #: for a COMBO: which list it shows (:data:`COMBO_SOURCES`)
    combo: str = ""
    #: a seed widget: the UI saves a control_after_generate value right after it
    control: bool = False

    @property
    def widget(self) -> bool:
        """Whether the value is typed into the node (saved in ``widgets_values``)."""
        return self.type in WIDGET_TYPES


@dataclass(frozen=True)
class ComfyClass:
    """A ComfyUI node class: inputs in order, outputs by slot, how it shows in a menu."""

    name: str
    category: str
    inputs: tuple[Spec, ...] = ()
    outputs: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    display_name: str = ""
    output_node: bool = False

    @property
    def widgets(self) -> tuple[Spec, ...]:
        """The widget inputs, in ``widgets_values`` order."""
        return tuple(s for s in self.inputs if s.widget)

    def input(self, name: str) -> Spec | None:
        """The input called ``name``, if any."""
        return next((s for s in self.inputs if s.name == name), None)


def _int(name: str, default: int, low: int, high: int, **more: Any) -> Spec:
    return Spec(name, "INT", {"default": default, "min": low, "max": high, **more})


def _float(name: str, default: float, low: float, high: float, step: float, **more: Any) -> Spec:
    return Spec(name, "FLOAT", {"default": default, "min": low, "max": high, "step": step, **more})


def _combo(name: str, source: str, **options: Any) -> Spec:
    return Spec(name, "COMBO", options, combo=source)


def _seed(name: str) -> Spec:
    return Spec(name, "INT", {"default": 0, "min": 0, "max": COMFY_MAX_SEED, "control_after_generate": True}, control=True)


def _link(name: str, type_: str, optional: bool = False) -> Spec:
    return Spec(name, type_, optional=optional)


_SIZE = {"default": 512, "min": 16, "max": 16384, "step": 8}
_SAMPLING = (_int("steps", 20, 1, 10000), _float("cfg", 8.0, 0.0, 100.0, 0.1, round=0.01),
             _combo("sampler_name", "sampler"), _combo("scheduler", "scheduler"))

_LIST: tuple[ComfyClass, ...] = (
    ComfyClass("CheckpointLoaderSimple", "loaders", (_combo("ckpt_name", "checkpoint"),), ("MODEL", "CLIP", "VAE"),
               display_name="Load Checkpoint"),
    ComfyClass("CheckpointLoader", "advanced/loaders", (_combo("config_name", "config"), _combo("ckpt_name", "checkpoint")),
               ("MODEL", "CLIP", "VAE"), display_name="Load Checkpoint With Config (DEPRECATED)"),
    ComfyClass("VAELoader", "loaders", (_combo("vae_name", "vae"),), ("VAE",), display_name="Load VAE"),
    ComfyClass("LoraLoader", "loaders", (_link("model", "MODEL"), _link("clip", "CLIP"), _combo("lora_name", "lora"),
                                         _float("strength_model", 1.0, -100.0, 100.0, 0.01),
                                         _float("strength_clip", 1.0, -100.0, 100.0, 0.01)),
               ("MODEL", "CLIP"), display_name="Load LoRA"),
    ComfyClass("LoraLoaderModelOnly", "loaders", (_link("model", "MODEL"), _combo("lora_name", "lora"),
                                                  _float("strength_model", 1.0, -100.0, 100.0, 0.01)), ("MODEL",)),
    ComfyClass("CLIPSetLastLayer", "conditioning", (_link("clip", "CLIP"), _int("stop_at_clip_layer", -1, -24, -1)), ("CLIP",),
               display_name="CLIP Set Last Layer"),
    ComfyClass("CLIPTextEncode", "conditioning", (Spec("text", "STRING", {"multiline": True, "dynamicPrompts": True}),
                                                  _link("clip", "CLIP")), ("CONDITIONING",), display_name="CLIP Text Encode (Prompt)"),
    # comfy_extras/nodes_clip_sdxl.py
    ComfyClass("CLIPTextEncodeSDXL", "advanced/conditioning",
               (_link("clip", "CLIP"), _int("width", 1024, 0, 16384), _int("height", 1024, 0, 16384), _int("crop_w", 0, 0, 16384),
                _int("crop_h", 0, 0, 16384), _int("target_width", 1024, 0, 16384), _int("target_height", 1024, 0, 16384),
                Spec("text_g", "STRING", {"multiline": True, "dynamicPrompts": True}),
                Spec("text_l", "STRING", {"multiline": True, "dynamicPrompts": True})), ("CONDITIONING",)),
    ComfyClass("CLIPTextEncodeSDXLRefiner", "advanced/conditioning",
               (_float("ascore", 6.0, 0.0, 1000.0, 0.01), _int("width", 1024, 64, 16384), _int("height", 1024, 64, 16384),
                Spec("text", "STRING", {"multiline": True, "dynamicPrompts": True}), _link("clip", "CLIP")), ("CONDITIONING",)),
    ComfyClass("EmptyLatentImage", "latent", (_int("width", 512, 16, 16384, step=8), _int("height", 512, 16, 16384, step=8),
                                              _int("batch_size", 1, 1, 4096)), ("LATENT",), display_name="Empty Latent Image"),
    ComfyClass("KSampler", "sampling", (_link("model", "MODEL"), _seed("seed"), *_SAMPLING, _link("positive", "CONDITIONING"),
                                        _link("negative", "CONDITIONING"), _link("latent_image", "LATENT"),
                                        _float("denoise", 1.0, 0.0, 1.0, 0.01)), ("LATENT",)),
    ComfyClass("KSamplerAdvanced", "sampling", (_link("model", "MODEL"), _combo("add_noise", "noise_switch"), _seed("noise_seed"),
                                                *_SAMPLING, _link("positive", "CONDITIONING"), _link("negative", "CONDITIONING"),
                                                _link("latent_image", "LATENT"), _int("start_at_step", 0, 0, 10000),
                                                _int("end_at_step", 10000, 0, 10000), _combo("return_with_leftover_noise", "noise_switch")),
               ("LATENT",), display_name="KSampler (Advanced)"),
    ComfyClass("VAEDecode", "latent", (_link("samples", "LATENT"), _link("vae", "VAE")), ("IMAGE",), display_name="VAE Decode"),
    ComfyClass("VAEEncode", "latent", (_link("pixels", "IMAGE"), _link("vae", "VAE")), ("LATENT",), display_name="VAE Encode"),
    ComfyClass("VAEEncodeForInpaint", "latent/inpaint", (_link("pixels", "IMAGE"), _link("vae", "VAE"), _link("mask", "MASK"),
                                                         _int("grow_mask_by", 6, 0, 64)), ("LATENT",),
               display_name="VAE Encode (for Inpainting)"),
    ComfyClass("InpaintModelConditioning", "conditioning/inpaint",
               (_link("positive", "CONDITIONING"), _link("negative", "CONDITIONING"), _link("vae", "VAE"), _link("pixels", "IMAGE"),
                _link("mask", "MASK"), Spec("noise_mask", "BOOLEAN", {"default": True})),
               ("CONDITIONING", "CONDITIONING", "LATENT"), output_names=("positive", "negative", "latent")),
    ComfyClass("SetLatentNoiseMask", "latent/inpaint", (_link("samples", "LATENT"), _link("mask", "MASK")), ("LATENT",)),
    ComfyClass("LatentUpscale", "latent", (_link("samples", "LATENT"), _combo("upscale_method", "upscale_latent"),
                                           Spec("width", "INT", {**_SIZE, "min": 0}), Spec("height", "INT", {**_SIZE, "min": 0}),
                                           _combo("crop", "crop")), ("LATENT",), display_name="Upscale Latent"),
    ComfyClass("LatentUpscaleBy", "latent", (_link("samples", "LATENT"), _combo("upscale_method", "upscale_latent"),
                                             _float("scale_by", 1.5, 0.01, 8.0, 0.01)), ("LATENT",), display_name="Upscale Latent By"),
    ComfyClass("ImageScale", "image/upscaling", (_link("image", "IMAGE"), _combo("upscale_method", "upscale_image"),
                                                 Spec("width", "INT", {**_SIZE, "min": 0}), Spec("height", "INT", {**_SIZE, "min": 0}),
                                                 _combo("crop", "crop")), ("IMAGE",), display_name="Upscale Image"),
    ComfyClass("ImageScaleBy", "image/upscaling", (_link("image", "IMAGE"), _combo("upscale_method", "upscale_image"),
                                                   _float("scale_by", 1.0, 0.01, 8.0, 0.01)), ("IMAGE",), display_name="Upscale Image By"),
    ComfyClass("LoadImage", "image", (_combo("image", "image", image_upload=True),), ("IMAGE", "MASK"), display_name="Load Image"),
    ComfyClass("LoadImageMask", "mask", (_combo("image", "image", image_upload=True), _combo("channel", "channel")), ("MASK",),
               display_name="Load Image (as Mask)"),
    ComfyClass("SaveImage", "image", (_link("images", "IMAGE"), Spec("filename_prefix", "STRING", {"default": "ComfyUI"})), (),
               display_name="Save Image", output_node=True),
    ComfyClass("PreviewImage", "image", (_link("images", "IMAGE"),), (), display_name="Preview Image", output_node=True),
    ComfyClass("ConditioningCombine", "conditioning", (_link("conditioning_1", "CONDITIONING"), _link("conditioning_2", "CONDITIONING")),
               ("CONDITIONING",), display_name="Conditioning (Combine)"),
    ComfyClass("ConditioningConcat", "conditioning", (_link("conditioning_to", "CONDITIONING"), _link("conditioning_from", "CONDITIONING")),
               ("CONDITIONING",), display_name="Conditioning (Concat)"),
    ComfyClass("ConditioningAverage", "conditioning", (_link("conditioning_to", "CONDITIONING"), _link("conditioning_from", "CONDITIONING"),
                                                       _float("conditioning_to_strength", 1.0, 0.0, 1.0, 0.01)),
               ("CONDITIONING",), display_name="Conditioning (Average)"),
    ComfyClass("ConditioningSetArea", "conditioning", (_link("conditioning", "CONDITIONING"),
                                                       Spec("width", "INT", {**_SIZE, "default": 64, "min": 64}),
                                                       Spec("height", "INT", {**_SIZE, "default": 64, "min": 64}),
                                                       Spec("x", "INT", {**_SIZE, "default": 0, "min": 0}),
                                                       Spec("y", "INT", {**_SIZE, "default": 0, "min": 0}),
                                                       _float("strength", 1.0, 0.0, 10.0, 0.01)),
               ("CONDITIONING",), display_name="Conditioning (Set Area)"),
    ComfyClass("ConditioningSetMask", "conditioning", (_link("conditioning", "CONDITIONING"), _link("mask", "MASK"),
                                                       _float("strength", 1.0, 0.0, 10.0, 0.01), _combo("set_cond_area", "cond_area")),
               ("CONDITIONING",), display_name="Conditioning (Set Mask)"),
    ComfyClass("ControlNetLoader", "loaders", (_combo("control_net_name", "controlnet"),), ("CONTROL_NET",), display_name="Load ControlNet Model"),
    ComfyClass("ControlNetApply", "conditioning/controlnet", (_link("conditioning", "CONDITIONING"), _link("control_net", "CONTROL_NET"),
                                                              _link("image", "IMAGE"), _float("strength", 1.0, 0.0, 10.0, 0.01)),
               ("CONDITIONING",), display_name="Apply ControlNet (OLD)"),
    ComfyClass("ControlNetApplyAdvanced", "conditioning/controlnet",
               (_link("positive", "CONDITIONING"), _link("negative", "CONDITIONING"), _link("control_net", "CONTROL_NET"),
                _link("image", "IMAGE"), _float("strength", 1.0, 0.0, 10.0, 0.01), _float("start_percent", 0.0, 0.0, 1.0, 0.001),
                _float("end_percent", 1.0, 0.0, 1.0, 0.001), _link("vae", "VAE", optional=True)),
               ("CONDITIONING", "CONDITIONING"), ("positive", "negative"), display_name="Apply ControlNet"),
    # Backend primitives (ComfyUI's nodes_primitive.py): a typed-in value as an output.
    ComfyClass("PrimitiveInt", "utils/primitive", (Spec("value", "INT", {"min": -COMFY_MAX_SEED, "max": COMFY_MAX_SEED}, control=True),),
               ("INT",), display_name="Int"),
    ComfyClass("PrimitiveFloat", "utils/primitive", (Spec("value", "FLOAT", {"min": -1e300, "max": 1e300}),), ("FLOAT",),
               display_name="Float"),
    ComfyClass("PrimitiveString", "utils/primitive", (Spec("value", "STRING"),), ("STRING",), display_name="String"),
    ComfyClass("PrimitiveStringMultiline", "utils/primitive", (Spec("value", "STRING", {"multiline": True}),), ("STRING",),
               display_name="String (Multiline)"),
    ComfyClass("PrimitiveBoolean", "utils/primitive", (Spec("value", "BOOLEAN"),), ("BOOLEAN",), display_name="Boolean"),
)

CLASSES: dict[str, ComfyClass] = {c.name: c for c in _LIST}
"""Every ComfyUI class nodeflow knows, by name."""

#: Nodes of the ComfyUI editor only: they never reach ComfyUI's backend (nor an API prompt).
FRONTEND_ONLY = frozenset({"Reroute", "PrimitiveNode", "Note", "MarkdownNote"})

#: The backend primitives: their one widget is their output.
PRIMITIVES = frozenset({"PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline", "PrimitiveBoolean"})


def node_info(cls: ComfyClass, combos: dict[str, list[Any]]) -> dict[str, Any]:
    """``cls`` as ComfyUI's ``/object_info`` describes a class; ``combos`` fills its lists by source."""
    sections: dict[str, dict[str, Any]] = {"required": {}}
    for spec in cls.inputs:
        options = {k: v for k, v in spec.options.items() if k != "image_upload"} if spec.type != "COMBO" else dict(spec.options)
        first: Any = combos.get(spec.combo, []) if spec.type == "COMBO" else spec.type
        sections.setdefault("optional" if spec.optional else "required", {})[spec.name] = [first, options]
    return {
        "input": sections,
        "input_order": {section: list(entries) for section, entries in sections.items()},
        "output": list(cls.outputs),
        "output_is_list": [False] * len(cls.outputs),
        "output_name": list(cls.output_names or cls.outputs),
        "name": cls.name,
        "display_name": cls.display_name or cls.name,
        "description": "",
        "python_module": "nodes",
        "category": cls.category,
        "output_node": cls.output_node,
    }


__all__ = ["CLASSES", "COMBO_SOURCES", "COMFY_MAX_SEED", "CONTROL_VALUES", "FRONTEND_ONLY", "PRIMITIVES", "WIDGET_TYPES",
           "ComfyClass", "Spec", "node_info"]
