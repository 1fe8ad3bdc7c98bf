"""ControlNet: load one, apply it to conditioning, and make control images (canny, scribble, resize).

Apply ControlNet attaches a :class:`~nodeflow.values.ControlApplication` to every entry
of the positive and negative conditioning; the one denoise loop runs it (see
:mod:`nodeflow_nodes.sd._sampling`). Chained applications add up, in order, as diffusers'
``MultiControlNetModel`` does: the graph equals ``StableDiffusionControlNetPipeline``
with ``controlnet_conditioning_scale`` = scale and ``control_guidance_start/end`` =
start/end, for one ControlNet or several.

Preprocessors use OpenCV (``opencv-python-headless``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from nodeflow.budget import BudgetCheck, Pixels
from nodeflow.errors import ErrorInfo
from nodeflow.files import stamp_text
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import Conditioning, ControlApplication, Image

from . import _budget, _families
from ._sampling import resize_pixels
from .images import image_to_uint8


@node("sd.load_controlnet", display_name="Load ControlNet", category="sd/loaders", pure=False)
class LoadControlNet:
    """Load a ControlNet: a diffusers folder or a single .safetensors file, from local paths only.

    ``controlnets/digits-demo`` (shipped beside the workflows) is an untrained demo
    ControlNet for the embedded digits model: random, it shows the wiring (docs/image_tools.md).
    """

    path = Input("STRING", widget="model", file="controlnet",
                 description="a diffusers ControlNet folder or .safetensors file, by path or by name in the controlnet folders")
    dtype = Input("STRING", default="auto", choices=["auto", "fp32", "fp16", "bf16"], description="auto: as Load Model's auto")
    device = Input("STRING", default="auto", choices=["auto", "cpu", "cuda"], description="auto: CUDA when present, else CPU")
    controlnet = Output("CONTROLNET")

    def validate_inputs(self, check: ValidationContext, path: str | None = None, **other: Any) -> ErrorInfo | None:
        if path == "":  # the SDXL workflows ship without one
            return ErrorInfo("missing_input", "no ControlNet given: set it to a ControlNet folder or .safetensors file made for the"
                             " model (nodeflow run ... --set controlnet=PATH)", input="path")
        return None

    def fingerprint(self, ctx: Context, dtype: str | None = None, device: str | None = None, **other: Any) -> str:
        # The file's stamp joins the key through file=; "auto" must key on what it resolves to.
        where = ctx.models.resolve_device(None if device in (None, "auto") else device)
        return f"{ctx.models.default_dtype(where) if dtype in (None, 'auto') else dtype}:{where}"

    def run(self, ctx: Context, path: str, dtype: str, device: str) -> Any:
        from nodeflow.models.controlnet import demo_spec, load_controlnet
        from nodeflow.models.store import DTYPES

        where = ctx.models.resolve_device(None if device == "auto" else device)
        precision = ctx.models.default_dtype(where) if dtype == "auto" else dtype
        real = ctx.paths.resolve(path, "controlnet")
        spec = demo_spec(real) if real.is_dir() else None
        base = ctx.models.load_sd(str(spec.get("base", "default")), dtype=precision, device=where).unet if spec else None
        return ctx.models.derived(("controlnet", stamp_text(real), precision, where),
                                  lambda: load_controlnet(real, DTYPES[precision], where, base_unet=base))


@node("sd.apply_controlnet", display_name="Apply ControlNet", category="sd/conditioning")
class ApplyControlNet:
    """Steer sampling with a control image: attaches the ControlNet to the positive and negative conditioning.

    ``strength`` scales its residuals (diffusers' ``controlnet_conditioning_scale``);
    it acts from ``start`` to ``end`` (fractions of the schedule, diffusers'
    ``control_guidance_start/end``). Chain several to combine ControlNets.
    """

    positive = Input("CONDITIONING")
    negative = Input("CONDITIONING")
    controlnet = Input("CONTROLNET")
    image = Input("IMAGE", description="the control image (edges, scribble...), resized to the latents' size if needed")
    strength = Input("FLOAT", default=1.0, min=0.0, max=10.0, step=0.05)
    start = Input("FLOAT", default=0.0, min=0.0, max=1.0, step=0.05)
    end = Input("FLOAT", default=1.0, min=0.0, max=1.0, step=0.05)
    positive_out = Output("CONDITIONING", display_name="positive")
    negative_out = Output("CONDITIONING", display_name="negative")

    def validate_inputs(self, check: ValidationContext, start: float | None = None, end: float | None = None,
                        **other: Any) -> list[ErrorInfo]:
        problems = []
        if start is not None and end is not None and start > end:
            problems.append(ErrorInfo("invalid_value", f"start {start} is after end {end}: the ControlNet would never act", input="start"))
        return problems + _width_problems(check)

    def run(self, ctx: Context, positive: Conditioning, negative: Conditioning, controlnet: Any, image: Image,
            strength: float, start: float, end: float) -> dict[str, Conditioning]:
        from nodeflow.models.controlnet import controlnet_family

        width = int(controlnet.config.cross_attention_dim)
        if positive.embeddings.shape[-1] != width:
            raise ValueError(f"controlnet: this ControlNet is for {controlnet_family(controlnet)} models (text width {width}), "
                             f"but the conditioning is {positive.embeddings.shape[-1]} wide: use a ControlNet made for the model")
        application = ControlApplication(controlnet, image.pixels, float(strength), float(start), float(end))

        def attach(entry: Conditioning) -> Conditioning:
            return dataclasses.replace(entry, controls=(*entry.controls, application))

        return {"positive_out": positive.map_entries(attach), "negative_out": negative.map_entries(attach)}


def _width_problems(check: ValidationContext) -> list[ErrorInfo]:
    """A ControlNet whose text width is not its model's, told from configs and headers before anything loads."""
    from nodeflow.models.controlnet import width_label
    from nodeflow.models.facts import text_width

    wanted = _controlnet_width(check)
    if wanted is None:
        return []
    for loader in _families.loaders_above(check, "positive", _families.TEXT_PATH):
        model = _families.loader_path(loader)
        width = None if model is None else text_width(model)
        if width is not None and width != wanted:
            name = check.source("controlnet").literals["path"]  # type: ignore[union-attr]
            return [ErrorInfo("family_mismatch", f"the ControlNet {name!r} is for {width_label(wanted)} models, but the "
                              f"conditioning comes from {loader.node_id!r}: {width_label(width)} (text width {width}, the "
                              f"ControlNet's {wanted}); use a ControlNet made for that model", input="controlnet")]
    return []


def _controlnet_width(check: ValidationContext) -> int | None:
    """The text width of the ControlNet a Load ControlNet node feeding ``controlnet`` names (None: unknown now, or a demo)."""
    from nodeflow.models.controlnet import demo_spec
    from nodeflow.models.facts import text_width

    source = check.source("controlnet")
    name = source.literals.get("path") if source is not None and source.node_type == "sd.load_controlnet" else None
    if not isinstance(name, str) or not name or check.paths is None:
        return None
    try:
        path = check.paths.resolve(name, "controlnet")
    except (OSError, ValueError):
        return None  # reported on the loader itself
    return None if path.is_dir() and demo_spec(path) is not None else text_width(path)


def _gray(image: Image) -> list[np.ndarray]:
    import cv2

    return [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in image_to_uint8(image)]


def _as_image(frames: list[np.ndarray]) -> Image:
    """Single-channel uint8 frames as an RGB image (the channel repeated), with a loaded picture's layout."""
    stacked = np.stack([np.repeat(f[..., None], 3, axis=-1) for f in frames]).astype(np.float32) / 255.0
    return Image(torch.from_numpy(stacked.transpose(0, 3, 1, 2)))


@node("sd.canny", display_name="Canny Edges", category="sd/controlnet")
class Canny:
    """White edges on black (OpenCV's Canny), the control image canny ControlNets expect."""

    image = Input("IMAGE")
    low_threshold = Input("INT", default=100, min=0, max=255)
    high_threshold = Input("INT", default=200, min=0, max=255)
    edges = Output("IMAGE", display_name="image")

    def validate_inputs(self, check: ValidationContext, low_threshold: int | None = None, high_threshold: int | None = None,
                        **other: Any) -> str | None:
        if low_threshold is not None and high_threshold is not None and low_threshold > high_threshold:
            return f"low_threshold {low_threshold} is above high_threshold {high_threshold}"
        return None

    def run(self, ctx: Context, image: Image, low_threshold: int, high_threshold: int) -> Image:
        import cv2

        return _as_image([cv2.Canny(frame, low_threshold, high_threshold) for frame in _gray(image)])


@node("sd.scribble", display_name="Scribble", category="sd/controlnet")
class Scribble:
    """A black-and-white scribble from a drawing: pixels darker than ``threshold`` become white strokes on black.

    ``invert`` off keeps light strokes on a dark background as they are.
    """

    image = Input("IMAGE")
    threshold = Input("FLOAT", default=0.5, min=0.0, max=1.0, step=0.05)
    invert = Input("BOOL", default=True, description="on: dark strokes on white paper become white on black")
    scribble = Output("IMAGE", display_name="image")

    def run(self, ctx: Context, image: Image, threshold: float, invert: bool) -> Image:
        import cv2

        level = int(round(threshold * 255))
        mode = cv2.THRESH_BINARY_INV if invert else cv2.THRESH_BINARY
        return _as_image([cv2.threshold(frame, level, 255, mode)[1] for frame in _gray(image)])


@node("sd.control_image_resize", display_name="Resize for Control", category="sd/controlnet")
class ControlImageResize:
    """Fit a control image to the generation size: ``stretch``, or ``crop`` to the aspect ratio first (centered).

    Lanczos on 8-bit pixels, as diffusers' image processor resizes a control image.
    """

    image = Input("IMAGE")
    width = Input("INT", default=512, min=8, max=8192, step=8)
    height = Input("INT", default=512, min=8, max=8192, step=8)
    mode = Input("STRING", default="stretch", choices=["stretch", "crop"])
    resized = Output("IMAGE", display_name="image")

    def output_pixels(self, check: BudgetCheck, width: Any = None, height: Any = None, **other: Any) -> Pixels | None:
        incoming = check.pixels("image")
        return _budget.literal(width, height, incoming.batch if incoming else 1, ("width", "height"))

    def run(self, ctx: Context, image: Image, width: int, height: int, mode: str) -> Image:
        pixels = image.pixels
        if mode == "crop":
            old_h, old_w = pixels.shape[-2:]
            scale = min(old_w / width, old_h / height)
            crop_w, crop_h = round(width * scale), round(height * scale)
            top, left = (old_h - crop_h) // 2, (old_w - crop_w) // 2
            pixels = pixels[..., top : top + crop_h, left : left + crop_w]
        if tuple(pixels.shape[-2:]) == (height, width):
            return Image(pixels)
        return Image(resize_pixels(pixels, width, height))


NODES = [LoadControlNet, ApplyControlNet, Canny, Scribble, ControlImageResize]
