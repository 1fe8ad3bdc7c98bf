"""ComfyUI class -> nodeflow nodes: the translation table.

==========================  =================================================  =====================
ComfyUI class               nodeflow                                           how
==========================  =================================================  =====================
CheckpointLoaderSimple,     ``sd.load_model`` (``config_name`` ignored; an     :data:`MAPPERS`
CheckpointLoader            SDXL file, probed at import, gives ``clip``)
VAELoader                   ``sd.load_vae``                                    :data:`MAPPERS`
LoraLoader(ModelOnly)       ``sd.lora`` (model only: text strength 0)          :data:`MAPPERS`
CLIPSetLastLayer            folded: ``clip_skip`` of the text encodes after it :data:`MAPPERS`
CLIPTextEncode              ``sd.tokenize`` + ``sd.text_encode`` (the prompt   :data:`MAPPERS`
                            as it is: :func:`~.prompts.comfy_prompt`); SDXL:
                            ``sd.sdxl_text_encode`` sized by the KSampler
CLIPTextEncodeSDXL(Refiner) ``sd.sdxl_text_encode`` (its positive output)      :data:`MAPPERS`
EmptyLatentImage            folded into the sampler's ``sd.noise_latents``, or :data:`MAPPERS`
                            ``sd.empty_latents``
KSampler(Advanced)          ``sd.scheduler`` + ``sd.noise_latents`` or         :data:`MAPPERS`
                            ``sd.add_noise`` + ``sd.denoise``
VAEDecode / VAEEncode       ``sd.vae_decode`` / ``sd.vae_encode`` (argmax)     :data:`DIRECT`
VAEEncodeForInpaint         ``sd.vae_encode_inpaint`` (argmax, ``grow``)       :data:`MAPPERS`
SetLatentNoiseMask          ``sd.set_latent_noise_mask`` (soft mask kept)      :data:`DIRECT`
InpaintModelConditioning    ``sd.vae_encode`` + ``sd.set_latent_noise_mask``   :data:`MAPPERS`
                            + ``sd.inpaint_model_conditioning`` (argmax)
LatentUpscale(By)           ``sd.latent_upscale``                              both
ImageScale(By)              ``sd.image_upscale``                               both
LoadImage / LoadImageMask   ``sd.load_image`` (and its mask) / ``sd.load_mask`` :data:`MAPPERS`
SaveImage / PreviewImage    ``sd.save_image`` / ``sd.preview_image``           :data:`DIRECT`
Conditioning* (Combine,     ``sd.conditioning_*``                              both
Concat, Average, SetArea,
SetMask)
ControlNetLoader            ``sd.load_controlnet``                             :data:`MAPPERS`
ControlNetApply(Advanced)   ``sd.apply_controlnet`` (the old one also on the   :data:`MAPPERS`
                            KSampler's negative, as ComfyUI's sampler does)
Primitive* (backend)        folded: the literal                                :data:`MAPPERS`
PrimitiveNode, Reroute,     resolved by :mod:`nodeflow.comfy.formats`
Note, MarkdownNote
==========================  =================================================  =====================

A class translates only where the nodeflow nodes it makes are installed (:data:`NEEDS`,
:data:`DIRECT`); otherwise, like any class not here (custom nodes), it is reported as
``unsupported_comfy_node``. SDXL settings nodeflow's SDXL Text Encode reads otherwise
than ComfyUI are refused by name (docs/comfyui.md, "SDXL").

Modes keep ComfyUI's meaning. A muted node's nodeflow nodes are muted (what needs them
is skipped). A bypassed node's nodes are bypassed; where nodeflow's own bypass rule
(each output takes the first input of its type) gives what ComfyUI's does, links go
through them, so un-bypassing in the editor works; for the classes in
:data:`BYPASS_AROUND` the users are linked to ComfyUI's pass-through input directly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorInfo
from ..graph import NodeMode
from ..models.families import ModelFamily, probe_family
from .build import FAILED, MUTED, Builder, Missing, link, output_types
from .classes import CLASSES, PRIMITIVES
from .formats import CNode, Ref
from .prompts import comfy_prompt

Mapper = Callable[[Builder, CNode], list[Any] | None]



@dataclass(frozen=True)
class Direct:
    """A one-to-one translation: ComfyUI inputs to nodeflow inputs, outputs by slot.

    ``links``: ComfyUI input -> (bundle role, nodeflow input); ``widgets``: ComfyUI
    widget -> nodeflow input; ``outputs``: per ComfyUI output slot, (bundle role,
    nodeflow output); ``fixed``: nodeflow inputs set to constants; ``source``: where the
    nodeflow node comes from (said when it is not installed).
    """

    type: str
    links: dict[str, tuple[str, str]] = field(default_factory=dict)
    widgets: dict[str, str] = field(default_factory=dict)
    outputs: tuple[tuple[str, str], ...] = ()
    fixed: dict[str, Any] = field(default_factory=dict)
    source: str = "nodeflow's SD pack"


DIRECT: dict[str, Direct] = {
    "VAEDecode": Direct("sd.vae_decode", {"samples": ("latents", "latents"), "vae": ("vae", "vae")}, outputs=(("image", "image"),)),
    "VAEEncode": Direct("sd.vae_encode", {"pixels": ("image", "image"), "vae": ("vae", "vae")}, outputs=(("latents", "latents"),),
                        fixed={"mode": "argmax", "seed": 0}),
    "SaveImage": Direct("sd.save_image", {"images": ("image", "images")}, {"filename_prefix": "prefix"}),
    "PreviewImage": Direct("sd.preview_image", {"images": ("image", "images")}),
    # inpainting: ComfyUI keeps a soft noise mask as it is
    "SetLatentNoiseMask": Direct("sd.set_latent_noise_mask", {"samples": ("latents", "latents"), "mask": ("mask", "mask")},
                                 outputs=(("latents", "masked"),), fixed={"binarize": False}),
    # conditioning
    "ConditioningCombine": Direct("sd.conditioning_combine", {"conditioning_1": ("conditioning", "first"),
                                                              "conditioning_2": ("conditioning", "second")},
                                  outputs=(("conditioning", "combined"),)),
    "ConditioningConcat": Direct("sd.conditioning_concat", {"conditioning_to": ("conditioning", "conditioning_to"),
                                                            "conditioning_from": ("conditioning", "conditioning_from")},
                                 outputs=(("conditioning", "conditioning"),)),
    "ConditioningAverage": Direct("sd.conditioning_average", {"conditioning_to": ("conditioning", "conditioning_to"),
                                                              "conditioning_from": ("conditioning", "conditioning_from")},
                                  {"conditioning_to_strength": "to_strength"}, (("conditioning", "conditioning"),)),
    "ConditioningSetArea": Direct("sd.conditioning_set_area", {"conditioning": ("conditioning", "conditioning")},
                                  {"width": "width", "height": "height", "x": "x", "y": "y", "strength": "strength"},
                                  (("conditioning", "restricted"),)),
    # upscaling (methods and sizes checked by the nodeflow nodes' own validation)
    "LatentUpscaleBy": Direct("sd.latent_upscale", {"samples": ("latents", "latents")}, {"upscale_method": "mode", "scale_by": "scale_by"},
                              (("latents", "upscaled"),), fixed={"width": 0, "height": 0}),
    "ImageScaleBy": Direct("sd.image_upscale", {"image": ("image", "image")}, {"upscale_method": "mode", "scale_by": "scale_by"},
                           (("image", "upscaled"),), fixed={"width": 0, "height": 0}),
}
"""ComfyUI classes that are one nodeflow node, input for input."""

#: Classes that make no nodeflow node of their own: their modes are applied here.
FOLDED = frozenset({"CLIPSetLastLayer", "EmptyLatentImage", *PRIMITIVES})
#: Classes whose bypass is applied here, the ComfyUI way (nodeflow's rule would differ for them).
BYPASS_AROUND = frozenset({"KSampler", "KSamplerAdvanced", *FOLDED})


# -- loaders ---------------------------------------------------------------------------------------
def _model_name(b: Builder, node: CNode, name: str) -> str | None:
    raw = b.value(node, name)
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip():
        b.error("bad_comfy_widgets", f"'{name}' must be a file name, not {raw!r}", name)
        return None
    return raw.strip().replace("\\", "/")  # ComfyUI on Windows saves sub/folder names with backslashes


def _checkpoint(b: Builder, node: CNode) -> list[Any] | None:
    name = _model_name(b, node, "ckpt_name")
    if name is None:
        return None
    nf = b.add("", "sd.load_model", {"model": name}, wired={"model": "ckpt_name"})
    model = {"unet": link(nf, "unet"), "scheduler_config": link(nf, "scheduler_config"), "text_encoder": link(nf, "text_encoder"),
             "vae": link(nf, "vae")}
    family = _family(b, name)
    if family is not None and family.is_sdxl:  # SDXL's CLIP is both text encoders: SDXL Text Encode reads Load Model's clip
        clip: dict[str, Any] = {"clip": link(nf, "clip"), "family": family.value, "clip_skip": 2}
    else:
        clip = {"tokenizer": link(nf, "tokenizer"), "text_encoder": link(nf, "text_encoder"), "clip_skip": 1}
    return [model, clip, {"vae": link(nf, "vae"), "unet": link(nf, "unet")}]  # the UNet tells inpainting models apart


def _family(b: Builder, name: str) -> ModelFamily | None:
    """The checkpoint's family from its header or configs (no weights read); None when it does not resolve or cannot be told."""
    if b.paths is None:
        return None
    try:
        path = b.paths.resolve(name, "checkpoint")
    except (OSError, ValueError):  # not found or outside the allowed folders: validation names it later
        return None
    return probe_family(path)


def _lora(b: Builder, node: CNode) -> list[Any] | None:
    model, clip = b.bundle(node, "model"), b.bundle(node, "clip")
    name = _model_name(b, node, "lora_name")
    strengths = b.values(node, "strength_model", "strength_clip")
    if not _usable(model, clip) or name is None or strengths is None:
        return None
    if "clip" in clip:  # SDXL: the LoRA's text layers go to both encoders of the clip
        nf = b.add("", "sd.lora", {"unet": model["unet"], "clip": clip["clip"], "lora": name, "strength_unet": strengths[0],
                                   "strength_text": strengths[1]},
                   wired={"lora": "lora_name", "strength_unet": "strength_model", "strength_text": "strength_clip"})
        return [{**model, "unet": link(nf, "lora_unet")}, {**clip, "clip": link(nf, "lora_clip")}]
    nf = b.add("", "sd.lora", {"unet": model["unet"], "text_encoder": clip["text_encoder"], "lora": name,
                               "strength_unet": strengths[0], "strength_text": strengths[1]},
               wired={"lora": "lora_name", "strength_unet": "strength_model", "strength_text": "strength_clip"})
    return [{**model, "unet": link(nf, "lora_unet")}, {**clip, "text_encoder": link(nf, "lora_text_encoder")}]


def _lora_model_only(b: Builder, node: CNode) -> list[Any] | None:
    model = b.bundle(node, "model")
    name = _model_name(b, node, "lora_name")
    strength = b.value(node, "strength_model")
    if not _usable(model) or name is None or strength is None:
        return None
    # sd.lora takes a text encoder too; at strength 0 it passes it through untouched
    nf = b.add("", "sd.lora", {"unet": model["unet"], "text_encoder": model["text_encoder"], "lora": name,
                               "strength_unet": strength, "strength_text": 0.0},
               wired={"lora": "lora_name", "strength_unet": "strength_model"})
    return [{**model, "unet": link(nf, "lora_unet")}]


def _vae_loader(b: Builder, node: CNode) -> list[Any] | None:
    name = _model_name(b, node, "vae_name")
    if name is None:
        return None
    nf = b.add("", "sd.load_vae", {"path": name}, wired={"path": "vae_name"})
    return [{"vae": link(nf, "vae")}]


def _controlnet_loader(b: Builder, node: CNode) -> list[Any] | None:
    name = _model_name(b, node, "control_net_name")
    if name is None:
        return None
    nf = b.add("", "sd.load_controlnet", {"path": name}, wired={"path": "control_net_name"})
    return [{"controlnet": link(nf, "controlnet")}]


# -- conditioning -------------------------------------------------------------------------------------
def _clip_last_layer(b: Builder, node: CNode) -> list[Any] | None:
    clip = b.bundle(node, "clip")
    stop = b.value(node, "stop_at_clip_layer")
    if not _usable(clip) or stop is None:
        return None
    if type(stop) is not int or not -24 <= stop <= -1:
        b.error("invalid_value", f"stop_at_clip_layer must be an integer from -24 to -1, not {stop!r}", "stop_at_clip_layer")
        return None
    return [{**clip, "clip_skip": -stop}]


def _text_encode(b: Builder, node: CNode) -> list[Any] | None:
    clip = b.bundle(node, "clip")
    text = b.value(node, "text")
    if not _usable(clip) or text is None:
        return None
    if not isinstance(text, str):
        b.error("invalid_value", f"text must be a string, not {text!r}", "text")
        return None
    if "clip" in clip:  # SDXL: the same text for both encoders; the size conditioning comes from the sampled latents
        inputs = {"prompt": comfy_prompt(text), "prompt_2": ""}
        if clip["family"] == ModelFamily.SDXL_REFINER.value:
            inputs["aesthetic_score"] = 6.0  # ComfyUI's for a positive; the KSampler sets a negative's (2.5)
        return _sdxl_encode(b, clip, inputs, {"prompt": "text"}, sized=True)
    tokens = b.add("tokens", "sd.tokenize", {"tokenizer": clip["tokenizer"], "text": comfy_prompt(text)}, wired={"text": "text"})
    nf = b.add("", "sd.text_encode", {"text_encoder": clip["text_encoder"], "tokens": link(tokens, "tokens"),
                                       "clip_skip": clip["clip_skip"]})
    return [{"conditioning": link(nf, "conditioning")}]


def _sdxl_encode(b: Builder, clip: dict[str, Any], inputs: dict[str, Any], wired: dict[str, str],
                 sized: bool = False) -> list[Any] | None:
    """One ``sd.sdxl_text_encode`` whose positive output is the ComfyUI node's conditioning (its negative side unused: zeros)."""
    if b.registry.schema("sd.sdxl_text_encode") is None:
        b.error("unsupported_comfy_node", "an SDXL model's prompts need nodeflow node 'sd.sdxl_text_encode', which is not installed")
        return None
    # CLIPSetLastLayer -k is clip_skip k on both encoders (ComfyUI's SDXL default -2 is the penultimate layer)
    nf = b.add("", "sd.sdxl_text_encode", {"clip": clip["clip"], "negative_prompt": "", "negative_prompt_2": "", "zero_negative": "yes",
                                            "clip_skip": clip["clip_skip"], **inputs}, wired=wired)
    return [{"conditioning": link(nf, "positive"), "family": clip["family"], **({"sized": nf} if sized else {})}]


def _sdxl_clip(b: Builder, node: CNode, family: ModelFamily) -> dict[str, Any] | None:
    clip = b.bundle(node, "clip")
    if not _usable(clip):
        return None
    if clip.get("family") != family.value:
        what = ModelFamily(clip["family"]).label if "family" in clip else "SD 1.x/2.x (or a checkpoint nodeflow could not probe)"
        b.error("unsupported_comfy_value", f"{node.class_type} needs an {family.label} model's CLIP; this is an {what} model's", "clip")
        return None
    return clip


def _sizes(b: Builder, node: CNode, names: tuple[str, ...]) -> list[Any] | None:
    """Size widgets, each above 0 (nodeflow's SDXL Text Encode reads 0 as "the image size", ComfyUI as 0)."""
    found = b.values(node, *names)
    for name, value in zip(names, found or [], strict=True):
        if "crop" not in name and (type(value) is not int or value <= 0):
            b.error("unsupported_comfy_value", f"{name} must be a whole number above 0 here, not {value!r}", name)
            return None
    return found


def _text_encode_sdxl(b: Builder, node: CNode) -> list[Any] | None:
    """CLIPTextEncodeSDXL: text_l to CLIP-L, text_g to OpenCLIP-bigG, every size given."""
    clip = _sdxl_clip(b, node, ModelFamily.SDXL)
    sizes = _sizes(b, node, ("width", "height", "crop_w", "crop_h", "target_width", "target_height"))
    texts = b.values(node, "text_l", "text_g")
    if clip is None or sizes is None or texts is None:
        return None
    if not texts[1] and texts[0]:
        b.error("unsupported_comfy_value", "an empty text_g with a text_l: nodeflow's SDXL Text Encode reads an empty prompt_2 as"
                                           " 'the same as prompt', ComfyUI encodes it empty; give text_g", "text_g")
        return None
    width, height, crop_w, crop_h, target_width, target_height = sizes
    inputs = {"prompt": comfy_prompt(texts[0]), "prompt_2": comfy_prompt(texts[1]), "width": width, "height": height,
              "original_width": width, "original_height": height, "crop_left": crop_w, "crop_top": crop_h,
              "target_width": target_width, "target_height": target_height}
    wired = {"prompt": "text_l", "prompt_2": "text_g", "original_width": "width", "original_height": "height", "crop_left": "crop_w",
             "crop_top": "crop_h", "target_width": "target_width", "target_height": "target_height"}
    return _sdxl_encode(b, clip, inputs, wired)


def _text_encode_refiner(b: Builder, node: CNode) -> list[Any] | None:
    """CLIPTextEncodeSDXLRefiner: the text to bigG, the original size and the aesthetic score given."""
    clip = _sdxl_clip(b, node, ModelFamily.SDXL_REFINER)
    sizes = _sizes(b, node, ("width", "height"))
    settings = b.values(node, "ascore", "text")
    if clip is None or sizes is None or settings is None:
        return None
    inputs = {"prompt": comfy_prompt(settings[1]), "prompt_2": "", "width": sizes[0], "height": sizes[1], "original_width": sizes[0],
              "original_height": sizes[1], "aesthetic_score": settings[0]}
    wired = {"prompt": "text", "original_width": "width", "original_height": "height", "aesthetic_score": "ascore"}
    return _sdxl_encode(b, clip, inputs, wired)


def _sized(b: Builder, found: dict[str, Any], latents: dict[str, str], negative: bool) -> dict[str, Any]:
    """A plain CLIPTextEncode's SDXL conditioning sized by the latents a KSampler samples, as ComfyUI's sampler sizes it.

    The first sampler to use the encode links its latents in; a sampler with other latents
    (or, for the refiner, the other side: ComfyUI's aesthetic score is 6 positive, 2.5
    negative) gets a copy of the encode of its own.
    """
    enc = found.get("sized")
    if enc is None:
        return found
    entry = b.nodes[enc]
    wanted: dict[str, Any] = {"latents": latents}
    if found["family"] == ModelFamily.SDXL_REFINER.value:
        wanted["aesthetic_score"] = 2.5 if negative else 6.0
    if "latents" not in entry["inputs"]:
        entry["inputs"].update(wanted)
        return found
    if all(entry["inputs"].get(k) == v for k, v in wanted.items()):
        return found
    key = (enc, repr(sorted(wanted.items())))
    if key not in b.copies:
        copy_id = f"{enc}.for{sum(1 for k in b.copies if k[0] == enc) + 1}"
        b.nodes[copy_id] = {**entry, "inputs": {**entry["inputs"], **wanted}, "ui": dict(entry["ui"])}
        b.ids[copy_id] = b.ids[enc]
        if enc in b.wired:
            b.wired[copy_id] = dict(b.wired[enc])
        b.copies[key] = copy_id
    return {**found, "conditioning": link(b.copies[key], "positive"), "sized": None}


def _unsized(b: Builder) -> None:
    """Report plain SDXL encodes whose conditioning reaches no KSampler directly (their size would be unknown)."""
    used = {v["node"] for n in b.nodes.values() for v in n["inputs"].values() if isinstance(v, dict) and "node" in v}
    for nf, entry in b.nodes.items():
        inputs = entry["inputs"]
        if entry["type"] == "sd.sdxl_text_encode" and "width" not in inputs and "latents" not in inputs and nf in used:
            b.errors.append(ErrorInfo("unsupported_comfy_value", "this CLIPTextEncode encodes for SDXL, whose size conditioning"
                                      " ComfyUI takes from the latent being sampled; nodeflow's importer can take it only when the"
                                      " conditioning goes straight into a KSampler (use CLIPTextEncodeSDXL to give the sizes)",
                                      b.ids[nf], "clip"))


def _set_mask(b: Builder, node: CNode) -> list[Any] | None:
    conditioning, mask = b.bundle(node, "conditioning"), b.bundle(node, "mask")
    settings = b.values(node, "strength", "set_cond_area")
    if not _usable(conditioning, mask) or settings is None:
        return None
    areas = {"default": "default", "mask bounds": "bounds"}
    if settings[1] not in areas:
        b.error("invalid_value", f"set_cond_area must be 'default' or 'mask bounds', not {settings[1]!r}", "set_cond_area")
        return None
    nf = b.add("", "sd.conditioning_set_mask", {"conditioning": conditioning["conditioning"], "mask": mask["mask"],
                                                 "strength": settings[0], "area": areas[settings[1]]},
               wired={"strength": "strength", "area": "set_cond_area"})
    return [{"conditioning": link(nf, "restricted")}]


# -- ControlNet ----------------------------------------------------------------------------------------
def _apply_controlnet_advanced(b: Builder, node: CNode) -> list[Any] | None:
    positive, negative, controlnet, image = (b.bundle(node, n) for n in ("positive", "negative", "control_net", "image"))
    settings = b.values(node, "strength", "start_percent", "end_percent")
    if not _usable(positive, negative, controlnet, image) or settings is None:
        return None
    if settings[0] == 0:  # ComfyUI hands the conditioning on untouched
        return [positive, negative]
    nf = b.add("", "sd.apply_controlnet", {"positive": positive["conditioning"], "negative": negative["conditioning"],
                                            "controlnet": controlnet["controlnet"], "image": image["image"], "strength": settings[0],
                                            "start": settings[1], "end": settings[2]},
               wired={"strength": "strength", "start": "start_percent", "end": "end_percent"})
    return [{"conditioning": link(nf, "positive_out"), "controlled": True},
            {"conditioning": link(nf, "negative_out"), "controlled": True}]


def _apply_controlnet(b: Builder, node: CNode) -> list[Any] | None:
    """ControlNetApply (the old one): one conditioning; ComfyUI's sampler gives its ControlNet to the negative too."""
    conditioning, controlnet, image = (b.bundle(node, n) for n in ("conditioning", "control_net", "image"))
    strength = b.value(node, "strength")
    if not _usable(conditioning, controlnet, image) or strength is None:
        return None
    if strength == 0:
        return [conditioning]
    inputs = {"controlnet": controlnet["controlnet"], "image": image["image"], "strength": strength, "start": 0.0, "end": 1.0}
    nf = b.add("", "sd.apply_controlnet", {**inputs, "positive": conditioning["conditioning"], "negative": conditioning["conditioning"]},
               wired={"strength": "strength"})
    for_uncond = (*conditioning.get("for_uncond", ()), (node.id, inputs))
    return [{"conditioning": link(nf, "positive_out"), "controlled": True, "for_uncond": for_uncond}]


def _uncond_controls(b: Builder, positive: dict[str, Any], negative: dict[str, Any]) -> dict[str, Any]:
    """The negative conditioning with the positive's old-style ControlNets, as ComfyUI's sampler applies them.

    ComfyUI copies them to a negative that has no ControlNet of its own
    (``control_apply_to_uncond``); one ``sd.apply_controlnet`` per ControlNet, drawn
    under the KSampler.
    """
    if negative.get("controlled") or not positive.get("for_uncond"):
        return negative
    current = negative["conditioning"]
    for number, (cid, inputs) in enumerate(positive["for_uncond"], start=1):
        nf = b.add(f"uncond_control{number}", "sd.apply_controlnet", {**inputs, "positive": current, "negative": current},
                   title=f"ControlNet {cid} on the negative")
        current = link(nf, "negative_out")
    return {**negative, "conditioning": current}


# -- latents and sampling -----------------------------------------------------------------------------
def _empty_latent(b: Builder, node: CNode) -> list[Any] | None:
    size = b.values(node, "width", "height", "batch_size")
    if size is None:
        return None
    return [{"empty": {"id": node.id, "width": size[0], "height": size[1], "batch": size[2], "title": node.title,
                       "ui": dict(node.ui)}}]


def _ksampler(b: Builder, node: CNode) -> list[Any] | None:
    model, positive, negative, latent = (b.bundle(node, n) for n in ("model", "positive", "negative", "latent_image"))
    settings = _sampler_settings(b, node)
    if not _usable(model, positive, negative, latent) or settings is None or not _inpaint_latents(b, node, positive, latent):
        return None
    seed, steps, cfg, sampler, schedule, add_noise, start, denoise = settings
    sched = b.add("scheduler", "sd.scheduler", {"config": model["scheduler_config"], "unet": model["unet"], "name": sampler,
                                                 "schedule": schedule, "steps": steps, "denoise": denoise, "start_step": start,
                                                 "eta": 0.0},
                  wired={"name": "sampler_name", "schedule": "scheduler", "steps": "steps", "denoise": "denoise",
                         "start_step": "start_at_step"})
    whole = isinstance(denoise, (int, float)) and denoise >= 1.0 and not start
    start_latents = _start_latents(b, node, model, latent, link(sched, "scheduler"), seed, add_noise == "enable", whole)
    if start_latents is None:
        return None
    positive, negative = _sized(b, positive, start_latents, False), _sized(b, negative, start_latents, True)
    negative = _uncond_controls(b, positive, negative)
    nf = b.add("", "sd.denoise", {"unet": model["unet"], "latents": start_latents, "scheduler": link(sched, "scheduler"),
                                   "positive": positive["conditioning"], "negative": negative["conditioning"],
                                   "guidance_scale": cfg, "guidance_rescale": 0.0}, wired={"guidance_scale": "cfg"})
    return [{"latents": link(nf, "denoised")}]


def _sampler_settings(b: Builder, node: CNode) -> list[Any] | None:
    """seed, steps, cfg, sampler, schedule, add_noise, start step, denoise of a KSampler (Advanced); None if any is bad."""
    advanced = node.class_type == "KSamplerAdvanced"
    settings = b.values(node, "noise_seed" if advanced else "seed", "steps", "cfg", "sampler_name", "scheduler")
    extra = b.values(node, "add_noise", "start_at_step", "end_at_step") if advanced else ["enable", 0, 10000]
    denoise = 1.0 if advanced else b.value(node, "denoise")
    if settings is None or extra is None or denoise is None:
        return None
    steps, end = settings[1], extra[2]
    if isinstance(end, int) and isinstance(steps, int) and end < steps:
        b.error("unsupported_comfy_value", f"end_at_step {end} stops before the last of {steps} steps; nodeflow's denoise runs"
                                           " a schedule to its end", "end_at_step")
        return None
    return [*settings, extra[0], extra[1], denoise]


def _start_latents(b: Builder, node: CNode, model: dict[str, Any], latent: dict[str, Any], scheduler: dict[str, str],
                   seed: Any, add_noise: bool, whole_schedule: bool) -> dict[str, str] | None:
    """Where the sampler starts: the pipeline's noise (empty latent, whole schedule), else noise added at the first step left."""
    seed_name = "noise_seed" if node.class_type == "KSamplerAdvanced" else "seed"
    randomize = node.control.get(seed_name) == "randomize"
    if latent.get("empty") is not None and add_noise and whole_schedule:
        return _pipeline_noise(b, model, latent["empty"], scheduler, seed, seed_name, randomize)
    latents = _latents_of(b, model, latent) if latent.get("empty") is not None else latent.get("latents")
    if latents is None or not add_noise:
        return latents
    nf = b.add("noise", "sd.add_noise", {"latents": latents, "scheduler": scheduler, "seed": seed}, wired={"seed": seed_name})
    if randomize:
        b.nodes[nf]["ui"]["randomize"] = ["seed"]
    return link(nf, "noised")


def _pipeline_noise(b: Builder, model: dict[str, Any], empty: dict[str, Any], scheduler: dict[str, str], seed: Any,
                    seed_name: str, randomize: bool) -> dict[str, str]:
    """The EmptyLatentImage folded into diffusers' pipeline noise (``sd.noise_latents``), drawn where it was."""
    inputs = {"unet": model["unet"], "vae": model["vae"], "scheduler": scheduler, "seed": seed,
              "width": empty["width"], "height": empty["height"], "batch": empty["batch"]}
    layout = {**empty["ui"], **({"randomize": ["seed"]} if randomize else {})}
    title = f"{empty['title'] or 'Empty Latent Image'} + noise"
    nf = b.add("noise", "sd.noise_latents", inputs, wired={"seed": seed_name}, title=title, ui=layout if "pos" in layout else None)
    if randomize:
        b.nodes[nf]["ui"]["randomize"] = ["seed"]
    return link(nf, "latents")


def _latents_of(b: Builder, model: dict[str, Any], latent: dict[str, Any]) -> dict[str, str]:
    """An EmptyLatentImage made real as ``sd.empty_latents`` (once per model that uses it)."""
    empty = latent["empty"]
    key = (empty["id"], str(model["unet"]))
    if key not in b.empties:
        owner, mode = b.current, b.mode
        b.current = b.graph.nodes[empty["id"]]
        b.mode = NodeMode.ACTIVE
        role = "" if not any(k[0] == empty["id"] for k in b.empties) else f"for{len(b.empties)}"
        b.empties[key] = b.add(role, "sd.empty_latents", {"unet": model["unet"], "vae": model["vae"], "width": empty["width"],
                                                          "height": empty["height"], "batch": empty["batch"]},
                               wired={"batch": "batch_size"})
        b.current, b.mode = owner, mode
    return link(b.empties[key], "latents")


# -- images -----------------------------------------------------------------------------------------------
def _image_name(b: Builder, node: CNode) -> str | None:
    name = _model_name(b, node, "image")
    for annotation in (" [input]", " [output]", " [temp]"):  # ComfyUI's folder annotations
        name = name.removesuffix(annotation) if name is not None else None
    return name


def _load_image(b: Builder, node: CNode) -> list[Any] | None:
    name = _image_name(b, node)
    if name is None:
        return None
    nf = b.add("", "sd.load_image", {"path": name}, wired={"path": "image"})
    return [{"image": link(nf, "image")}, {"mask": link(nf, "mask")}]  # the mask: 1 where transparent, as ComfyUI's


def _load_image_mask(b: Builder, node: CNode) -> list[Any] | None:
    name, channel = _image_name(b, node), b.value(node, "channel")
    if name is None or channel is None:
        return None
    nf = b.add("", "sd.load_mask", {"path": name, "channel": channel}, wired={"path": "image", "channel": "channel"})
    return [{"mask": link(nf, "mask")}]


def _to_size(b: Builder, node: CNode) -> list[Any] | None:
    """ImageScale and LatentUpscale: to a size in pixels (both 0: unchanged); ``crop`` must be disabled."""
    latent = node.class_type == "LatentUpscale"
    found = b.bundle(node, "samples" if latent else "image")
    settings = b.values(node, "upscale_method", "width", "height", "crop")
    if not _usable(found) or settings is None:
        return None
    method, width, height, crop = settings
    if crop != "disabled":
        b.error("unsupported_comfy_value", f"crop '{crop}' is not supported by nodeflow's upscale nodes; use 'disabled'", "crop")
        return None
    if (width == 0) != (height == 0):
        b.error("unsupported_comfy_value", "a width or height of 0 (keep the aspect ratio) is not supported; give both sides",
                "width" if width == 0 else "height")
        return None
    role, target = ("latents", "sd.latent_upscale") if latent else ("image", "sd.image_upscale")
    if role not in found:
        b.error("unsupported_comfy_value", _why_not(found, "samples", node.class_type), "samples")
        return None
    nf = b.add("", target, {role: found[role], "mode": method, "scale_by": 1.0, "width": width, "height": height},
               wired={"mode": "upscale_method", "width": "width", "height": "height"})
    return [{role: link(nf, "upscaled")}]


def _encode_for_inpaint(b: Builder, node: CNode) -> list[Any] | None:
    pixels, vae, mask = (b.bundle(node, n) for n in ("pixels", "vae", "mask"))
    grow = b.value(node, "grow_mask_by")
    if not _usable(pixels, vae, mask) or grow is None:
        return None
    unet = _inpaint_unet(b, vae)
    if unet is None:
        return None
    nf = b.add("", "sd.vae_encode_inpaint", {"unet": unet, "vae": vae["vae"], "image": pixels["image"], "mask": mask["mask"],
                                              "seed": 0, "binarize": True, "grow": grow, "mode": "argmax"},
               wired={"grow": "grow_mask_by"})
    return [{"latents": link(nf, "latents")}]


def _inpaint_model_conditioning(b: Builder, node: CNode) -> list[Any] | None:
    """The picture's latents (noise mask attached unless ``noise_mask`` is off) carrying an inpainting UNet's extra
    channels; ComfyUI attaches those to the conditioning instead, so the conditioning passes through marked, and a
    KSampler given it with other latents is refused (:func:`_inpaint_latents`)."""
    positive, negative, pixels, vae, mask = (b.bundle(node, n) for n in ("positive", "negative", "pixels", "vae", "mask"))
    noise_mask = b.value(node, "noise_mask") if "noise_mask" in node.inputs else True  # older files have no such widget
    if not _usable(positive, negative, pixels, vae, mask) or noise_mask is None:
        return None
    unet = _inpaint_unet(b, vae)
    if unet is None:
        return None
    encoded = b.add("encode", "sd.vae_encode", {"vae": vae["vae"], "image": pixels["image"], "mode": "argmax", "seed": 0})
    latents = link(encoded, "latents")
    if noise_mask:
        masked = b.add("noise_mask", "sd.set_latent_noise_mask", {"latents": latents, "mask": mask["mask"], "binarize": False})
        latents = link(masked, "masked")
    nf = b.add("", "sd.inpaint_model_conditioning", {"unet": unet, "vae": vae["vae"], "image": pixels["image"],
                                                      "mask": mask["mask"], "latents": latents, "binarize": True,
                                                      "mode": "argmax"})
    out = link(nf, "conditioned")
    return [{**positive, "inpaint": out}, {**negative, "inpaint": out}, {"latents": out}]


def _inpaint_latents(b: Builder, node: CNode, positive: dict[str, Any], latent: dict[str, Any]) -> bool:
    """False (reported) when the conditioning comes from InpaintModelConditioning and the latents do not."""
    wanted = positive.get("inpaint")
    if wanted is None or latent.get("latents") == wanted:
        return True
    b.error("unsupported_comfy_value", "the positive conditioning comes from InpaintModelConditioning but the latent_image does"
                                       " not: nodeflow attaches the inpainting channels to that node's latent output, so wire"
                                       " it into this sampler", "latent_image")
    return False


def _inpaint_unet(b: Builder, vae: dict[str, Any]) -> Any:
    """The UNet that tells an inpainting model from an ordinary one: the VAE's checkpoint's, else the first loaded (reported if none)."""
    unet = vae.get("unet") or _any_unet(b)
    if unet is None:
        b.error("unsupported_comfy_value", "nodeflow needs a checkpoint's UNet to tell an inpainting model from an ordinary one;"
                                           " the workflow loads none", "vae")
    return unet


def _any_unet(b: Builder) -> Any:
    """The UNet of the first checkpoint loaded in the workflow (a VAELoader's VAE has none of its own)."""
    for _, bundle in sorted(b.sockets.items(), key=lambda item: (_id_key(item[0][0]), item[0][1])):
        if isinstance(bundle, dict) and "unet" in bundle:
            return bundle["unet"]
    return None


def _primitive(b: Builder, node: CNode) -> list[Any] | None:
    value = b.value(node, "value")
    return None if value is None else [{"value": value}]


def _direct(spec: Direct) -> Mapper:
    def translate_direct(b: Builder, node: CNode) -> list[Any] | None:
        problem = _not_installed(b.registry, spec)
        if problem:
            b.error("unsupported_comfy_node", f"{node.class_type} needs nodeflow node '{spec.type}' ({spec.source}): {problem}")
            return None
        inputs: dict[str, Any] = dict(spec.fixed)
        wired = {}
        for comfy, (role, target) in spec.links.items():
            found = b.bundle(node, comfy)
            if not _usable(found):
                return None
            if role not in found:
                b.error("unsupported_comfy_value", _why_not(found, comfy, node.class_type), comfy)
                return None
            inputs[target] = found[role]
        for comfy, target in spec.widgets.items():
            inputs[target] = b.value(node, comfy)
            wired[target] = comfy
        if any(v is None for v in inputs.values()):
            return None
        nf = b.add("", spec.type, inputs, wired=wired)
        return [{role: link(nf, output)} for role, output in spec.outputs]

    return translate_direct


def _not_installed(registry: Any, spec: Direct) -> str | None:
    """Why ``spec``'s nodeflow node cannot be used with ``registry`` (None when it can)."""
    schema = registry.schema(spec.type)
    if schema is None:
        return "not installed"
    missing = [n for _, n in spec.links.values() if schema.input(n) is None] + [n for n in spec.widgets.values() if schema.input(n) is None]
    missing += [o for _, o in spec.outputs if schema.output(o) is None]
    return f"the installed node lacks {', '.join(missing)}" if missing else None


def _why_not(found: dict[str, Any], name: str, class_type: str) -> str:
    if "empty" in found:
        return (f"input '{name}' gets an Empty Latent Image straight away; in nodeflow an empty latent only starts a KSampler"
                f" (it becomes the sampler's noise), it cannot feed {class_type}")
    return f"input '{name}' gets a value {class_type} cannot take"


def _usable(*bundles: Any) -> bool:
    return all(isinstance(found, dict) for found in bundles)


_SAMPLING = ("sd.scheduler", "sd.noise_latents", "sd.add_noise", "sd.empty_latents", "sd.denoise")

MAPPERS: dict[str, Mapper] = {
    "CheckpointLoaderSimple": _checkpoint,
    "CheckpointLoader": _checkpoint,
    "LoraLoader": _lora,
    "LoraLoaderModelOnly": _lora_model_only,
    "CLIPSetLastLayer": _clip_last_layer,
    "CLIPTextEncode": _text_encode,
    "CLIPTextEncodeSDXL": _text_encode_sdxl,
    "CLIPTextEncodeSDXLRefiner": _text_encode_refiner,
    "EmptyLatentImage": _empty_latent,
    "KSampler": _ksampler,
    "KSamplerAdvanced": _ksampler,
    "VAELoader": _vae_loader,
    "VAEEncodeForInpaint": _encode_for_inpaint,
    "InpaintModelConditioning": _inpaint_model_conditioning,
    "LoadImage": _load_image,
    "LoadImageMask": _load_image_mask,
    "ImageScale": _to_size,
    "LatentUpscale": _to_size,
    "ConditioningSetMask": _set_mask,
    "ControlNetLoader": _controlnet_loader,
    "ControlNetApply": _apply_controlnet,
    "ControlNetApplyAdvanced": _apply_controlnet_advanced,
    **{name: _primitive for name in PRIMITIVES},
    **{name: _direct(spec) for name, spec in DIRECT.items()},
}
"""Every class the importer can translate."""


NEEDS: dict[str, tuple[str, ...]] = {
    "CheckpointLoaderSimple": ("sd.load_model",), "CheckpointLoader": ("sd.load_model",), "VAELoader": ("sd.load_vae",),
    "LoraLoader": ("sd.lora",), "LoraLoaderModelOnly": ("sd.lora",), "CLIPTextEncode": ("sd.tokenize", "sd.text_encode"),
    "CLIPTextEncodeSDXL": ("sd.sdxl_text_encode",), "CLIPTextEncodeSDXLRefiner": ("sd.sdxl_text_encode",),
    "KSampler": _SAMPLING, "KSamplerAdvanced": _SAMPLING, "VAEEncodeForInpaint": ("sd.vae_encode_inpaint",),
    "InpaintModelConditioning": ("sd.vae_encode", "sd.set_latent_noise_mask", "sd.inpaint_model_conditioning"),
    "LoadImage": ("sd.load_image",), "LoadImageMask": ("sd.load_mask",), "ImageScale": ("sd.image_upscale",),
    "LatentUpscale": ("sd.latent_upscale",), "ConditioningSetMask": ("sd.conditioning_set_mask",),
    "ControlNetLoader": ("sd.load_controlnet",), "ControlNetApply": ("sd.apply_controlnet",),
    "ControlNetApplyAdvanced": ("sd.apply_controlnet",),
}
"""The nodeflow node types each non-direct mapper makes (a class is offered only where they are installed)."""


def available(registry: Any) -> list[str]:
    """The ComfyUI classes that translate with the nodes ``registry`` has (each needs its nodeflow nodes installed)."""
    missing = {name for name, types in NEEDS.items() if any(registry.schema(t) is None for t in types)}
    missing |= {name for name, spec in DIRECT.items() if _not_installed(registry, spec)}
    return sorted(name for name in MAPPERS if name not in missing and name in CLASSES)


# -- the whole graph -------------------------------------------------------------------------------------
def translate_nodes(b: Builder) -> None:
    """Translate every ComfyUI node of ``b.graph``, sources first; problems go to ``b.errors``."""
    for cid in _order(b):
        node = b.graph.nodes[cid]
        b.current, b.mode = node, node.mode
        slots = len(output_types(node))
        outputs = _translate_one(b, node)
        for slot in range(slots):
            b.sockets[(cid, slot)] = outputs[slot] if outputs is not None and slot < len(outputs) else FAILED
    b.current = None
    _unsized(b)


def _translate_one(b: Builder, node: CNode) -> list[Any] | None:
    mapper = MAPPERS.get(node.class_type) if node.subgraph is None else None
    if mapper is None:
        return _unsupported(b, node)
    missing = [t for t in NEEDS.get(node.class_type, ()) if b.registry.schema(t) is None]
    if missing:
        b.error("unsupported_comfy_node", f"{node.class_type} needs nodeflow node(s) {', '.join(missing)}, which are not installed")
        return None
    inputs = [b.sockets.get((v.node, v.slot), FAILED) for v in node.inputs.values() if isinstance(v, Ref)]
    if any(isinstance(found, Missing) and found.muted for found in inputs):
        b.muted.append(node.id)  # needs a muted node that left nothing behind: ComfyUI skips it too
        return [MUTED] * len(output_types(node))
    if node.mode is NodeMode.BYPASSED and node.class_type in BYPASS_AROUND:
        mapper(b, node)  # its nodes stay in the document, bypassed; users are linked around them
        return _passed_through(b, node)
    if node.mode is NodeMode.MUTED and node.class_type in FOLDED:
        mapper(b, node)
        return [MUTED] * len(output_types(node))
    return mapper(b, node)


def _unsupported(b: Builder, node: CNode) -> list[Any] | None:
    if node.mode is NodeMode.MUTED:
        b.muted.append(node.id)
        return [MUTED] * len(output_types(node))
    if node.mode is NodeMode.BYPASSED:
        return _passed_through(b, node)
    if node.subgraph is not None:
        b.error("unsupported_comfy_node", f"node {node.id} is a ComfyUI subgraph ('{node.subgraph}'); nodeflow does not import"
                                          " ComfyUI subgraphs (convert it to nodes in ComfyUI first)")
    else:
        b.error("unsupported_comfy_node", f"node {node.id} is a '{node.class_type}', which nodeflow cannot run (a custom node,"
                                          " or a ComfyUI node without a nodeflow counterpart)")
    return None


def _passed_through(b: Builder, node: CNode) -> list[Any]:
    """ComfyUI's bypass: each output gives the first linked input of the same type (nothing if none)."""
    known = CLASSES.get(node.class_type)
    types = {s.name: s.type for s in known.inputs} if known is not None else node.in_types
    outputs = []
    for out_type in output_types(node):
        passed: Any = MUTED
        for name, value in node.inputs.items():
            if isinstance(value, Ref) and types.get(name) == out_type:
                passed = b.sockets.get((value.node, value.slot), FAILED)
                break
        outputs.append(passed)
    return outputs


def _order(b: Builder) -> list[str]:
    """ComfyUI ids, every node after the nodes it links from; a cycle is reported and its nodes left out."""
    nodes = b.graph.nodes
    needs = {cid: {v.node for v in n.inputs.values() if isinstance(v, Ref) and v.node in nodes} for cid, n in nodes.items()}
    users: dict[str, list[str]] = {}
    for cid, sources in needs.items():
        for src in sources:
            users.setdefault(src, []).append(cid)
    waiting = {cid: len(sources) for cid, sources in needs.items()}
    ready = deque(sorted((c for c, n in waiting.items() if n == 0), key=_id_key))
    order = []
    while ready:
        cid = ready.popleft()
        order.append(cid)
        for user in users.get(cid, []):
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    for cid in sorted(set(nodes) - set(order), key=_id_key):
        b.errors.append(ErrorInfo("bad_comfy_link", f"node {cid} is part of a cycle of links", cid))
    return order


def _id_key(cid: str) -> tuple[int, str]:
    return (int(cid), "") if cid.isdigit() else (1 << 62, cid)


__all__ = ["BYPASS_AROUND", "DIRECT", "FOLDED", "MAPPERS", "NEEDS", "Direct", "available", "translate_nodes"]
