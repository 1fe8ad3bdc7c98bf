"""ComfyUI class -> nodeflow nodes: the translation table.

=========================  ==================================================  ==========
ComfyUI class              nodeflow                                            status
=========================  ==================================================  ==========
CheckpointLoaderSimple     ``sd.load_model``                                   translated
CheckpointLoader           ``sd.load_model`` (``config_name`` ignored)         translated
LoraLoader                 ``sd.lora``                                         translated
LoraLoaderModelOnly        ``sd.lora`` (text strength 0)                       translated
CLIPSetLastLayer           folded: ``clip_skip`` of the text encodes after it  translated
CLIPTextEncode             ``sd.tokenize`` + ``sd.text_encode`` (+ one         translated
                           ``sd.textual_inversion`` per ``embedding:name``)
EmptyLatentImage           folded into the sampler's ``sd.noise_latents``, or  translated
                           ``sd.empty_latents``
KSampler, KSamplerAdvanced ``sd.scheduler`` + ``sd.noise_latents`` or          translated
                           ``sd.add_noise`` + ``sd.denoise``
VAEDecode / VAEEncode      ``sd.vae_decode`` / ``sd.vae_encode`` (argmax)      translated
LoadImage (IMAGE)          ``sd.load_image``                                   translated
ImageScale                 ``sd.resize_image`` (lanczos, no crop, both sides)  translated
SaveImage / PreviewImage   ``sd.save_image`` / ``sd.preview_image``            translated
Primitive* (backend)       folded: the literal                                 translated
PrimitiveNode, Reroute,    resolved by :mod:`nodeflow.comfy.formats`           translated
Note, MarkdownNote
the rest of :data:`PENDING` the nodeflow node named there, once installed       pending
=========================  ==================================================  ==========

A pending class translates as soon as a node of the type :data:`PENDING` names, with
the inputs and outputs it names, is installed (issue 12 adds them); until then it is
reported as ``unsupported_comfy_node`` like any class nodeflow does not know.

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
from .build import FAILED, MUTED, Builder, Missing, link, output_types
from .classes import CLASSES, PRIMITIVES
from .formats import CNode, Ref
from .prompts import PromptSyntaxError, embedding_words, plain_text

Mapper = Callable[[Builder, CNode], list[Any] | None]

#: Suffixes ComfyUI tries for an ``embedding:name`` given without one.
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin", ".pth")


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
}

_ISSUE12 = "issue 12 (inpainting, ControlNet, upscaling, conditioning nodes)"
#: Classes whose nodeflow counterparts are being added: translated once the named node is installed.
PENDING: dict[str, Direct] = {
    "VAELoader": Direct("sd.load_vae", widgets={"vae_name": "vae"}, outputs=(("vae", "vae"),), source="a VAE loader node"),
    "VAEEncodeForInpaint": Direct("sd.inpaint_encode", {"pixels": ("image", "image"), "vae": ("vae", "vae"), "mask": ("mask", "mask")},
                                  {"grow_mask_by": "grow"}, (("latents", "latents"),), source=_ISSUE12),
    "SetLatentNoiseMask": Direct("sd.set_noise_mask", {"samples": ("latents", "latents"), "mask": ("mask", "mask")},
                                 outputs=(("latents", "latents"),), source=_ISSUE12),
    "LatentUpscale": Direct("sd.latent_upscale", {"samples": ("latents", "latents")},
                            {"upscale_method": "method", "width": "width", "height": "height", "crop": "crop"},
                            (("latents", "latents"),), source=_ISSUE12),
    "LatentUpscaleBy": Direct("sd.latent_upscale_by", {"samples": ("latents", "latents")}, {"upscale_method": "method", "scale_by": "scale"},
                              (("latents", "latents"),), source=_ISSUE12),
    "ImageScaleBy": Direct("sd.image_scale_by", {"image": ("image", "images")}, {"upscale_method": "method", "scale_by": "scale"},
                           (("image", "image"),), source=_ISSUE12),
    "LoadImageMask": Direct("sd.load_mask", widgets={"image": "path", "channel": "channel"}, outputs=(("mask", "mask"),), source=_ISSUE12),
    "ConditioningCombine": Direct("sd.conditioning_combine", {"conditioning_1": ("conditioning", "a"), "conditioning_2": ("conditioning", "b")},
                                  outputs=(("conditioning", "conditioning"),), source=_ISSUE12),
    "ConditioningConcat": Direct("sd.conditioning_concat", {"conditioning_to": ("conditioning", "to"),
                                                            "conditioning_from": ("conditioning", "source")},
                                 outputs=(("conditioning", "conditioning"),), source=_ISSUE12),
    "ConditioningAverage": Direct("sd.conditioning_average", {"conditioning_to": ("conditioning", "to"),
                                                              "conditioning_from": ("conditioning", "source")},
                                  {"conditioning_to_strength": "strength"}, (("conditioning", "conditioning"),), source=_ISSUE12),
    "ControlNetLoader": Direct("sd.load_controlnet", widgets={"control_net_name": "controlnet"}, outputs=(("controlnet", "controlnet"),),
                               source=_ISSUE12),
    "ControlNetApply": Direct("sd.apply_controlnet", {"conditioning": ("conditioning", "conditioning"),
                                                      "control_net": ("controlnet", "controlnet"), "image": ("image", "image")},
                              {"strength": "scale"}, (("conditioning", "conditioning"),), source=_ISSUE12),
    "ControlNetApplyAdvanced": Direct("sd.apply_controlnet_advanced",
                                      {"positive": ("conditioning", "positive"), "negative": ("conditioning", "negative"),
                                       "control_net": ("controlnet", "controlnet"), "image": ("image", "image")},
                                      {"strength": "scale", "start_percent": "start", "end_percent": "end"},
                                      (("conditioning", "positive"), ("conditioning", "negative")), source=_ISSUE12),
}

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
    clip = {"tokenizer": link(nf, "tokenizer"), "text_encoder": link(nf, "text_encoder"), "clip_skip": 1}
    return [model, clip, {"vae": link(nf, "vae")}]


def _lora(b: Builder, node: CNode) -> list[Any] | None:
    model, clip = b.bundle(node, "model"), b.bundle(node, "clip")
    name = _model_name(b, node, "lora_name")
    strengths = b.values(node, "strength_model", "strength_clip")
    if not _usable(model, clip) or name is None or strengths is None:
        return None
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
    try:
        text = plain_text(text)
    except PromptSyntaxError as exc:
        b.error("unsupported_comfy_value", str(exc), "text")
        return None
    tokenizer, encoder = clip["tokenizer"], clip["text_encoder"]
    for number, (word, name) in enumerate(embedding_words(text), start=1):
        token = _embedding_token(name)
        ti = b.add(f"embedding{number}", "sd.textual_inversion", {"tokenizer": tokenizer, "text_encoder": encoder,
                                                                  "embedding": _embedding_file(b, name), "token": token},
                   wired={"embedding": "text"})
        tokenizer, encoder = link(ti, "ti_tokenizer"), link(ti, "ti_text_encoder")
        text = text.replace(word, token)
    tokens = b.add("tokens", "sd.tokenize", {"tokenizer": tokenizer, "text": text}, wired={"text": "text"})
    nf = b.add("", "sd.text_encode", {"text_encoder": encoder, "tokens": link(tokens, "tokens"), "clip_skip": clip["clip_skip"]})
    return [{"conditioning": link(nf, "conditioning")}]


def _embedding_token(name: str) -> str:
    stem = name.rsplit("/", 1)[-1]
    for suffix in EMBEDDING_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return "<" + "".join(c if c.isalnum() or c in "-_" else "_" for c in stem.lower()) + ">"


def _embedding_file(b: Builder, name: str) -> str:
    """The file ``embedding:name`` means: the name itself, else with the first suffix that exists (ComfyUI's order)."""
    name = name.replace("\\", "/")
    if name.lower().endswith(EMBEDDING_SUFFIXES):
        return name
    if b.paths is not None:
        for suffix in EMBEDDING_SUFFIXES:
            try:
                b.paths.resolve(name + suffix, "embedding")
                return name + suffix
            except (OSError, ValueError):
                continue
    return name + ".safetensors"  # not found: validation names the folders searched


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
    if not _usable(model, positive, negative, latent) or settings is None:
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
def _load_image(b: Builder, node: CNode) -> list[Any] | None:
    name = _model_name(b, node, "image")
    if name is None:
        return None
    for annotation in (" [input]", " [output]", " [temp]"):  # ComfyUI's folder annotations
        name = name.removesuffix(annotation)
    nf = b.add("", "sd.load_image", {"path": name}, wired={"path": "image"})
    return [{"image": link(nf, "image")}, Missing("LoadImage's MASK output needs nodeflow's mask nodes (" + _ISSUE12 + ")")]


def _image_scale(b: Builder, node: CNode) -> list[Any] | None:
    image = b.bundle(node, "image")
    settings = b.values(node, "upscale_method", "width", "height", "crop")
    if not _usable(image) or settings is None:
        return None
    method, width, height, crop = settings
    if method != "lanczos" or crop != "disabled" or not width or not height:
        b.error("unsupported_comfy_node", f"ImageScale with upscale_method '{method}', crop '{crop}' and a size of {width}x{height}"
                                          f" needs nodeflow's image tools ({_ISSUE12}); lanczos without crop to a given size works")
        return None
    nf = b.add("", "sd.resize_image", {"images": image["image"], "width": width, "height": height})
    return [{"image": link(nf, "resized")}]


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


MAPPERS: dict[str, Mapper] = {
    "CheckpointLoaderSimple": _checkpoint,
    "CheckpointLoader": _checkpoint,
    "LoraLoader": _lora,
    "LoraLoaderModelOnly": _lora_model_only,
    "CLIPSetLastLayer": _clip_last_layer,
    "CLIPTextEncode": _text_encode,
    "EmptyLatentImage": _empty_latent,
    "KSampler": _ksampler,
    "KSamplerAdvanced": _ksampler,
    "LoadImage": _load_image,
    "ImageScale": _image_scale,
    **{name: _primitive for name in PRIMITIVES},
    **{name: _direct(spec) for name, spec in {**DIRECT, **PENDING}.items()},
}
"""Every class the importer can translate (pending ones only once their node is installed)."""


def available(registry: Any) -> list[str]:
    """The ComfyUI classes that translate with the nodes ``registry`` has (pending ones once installed)."""
    pending = {name for name, spec in {**DIRECT, **PENDING}.items() if _not_installed(registry, spec)}
    return sorted(name for name in MAPPERS if name not in pending and name in CLASSES)


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


def _translate_one(b: Builder, node: CNode) -> list[Any] | None:
    mapper = MAPPERS.get(node.class_type) if node.subgraph is None else None
    if mapper is None:
        return _unsupported(b, node)
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


__all__ = ["BYPASS_AROUND", "DIRECT", "FOLDED", "available", "EMBEDDING_SUFFIXES", "MAPPERS", "PENDING", "Direct", "translate_nodes"]
