"""Upscaling, for hires fix: latents (nearest, bilinear, bicubic, area) and images (Lanczos, bicubic, ...).

Hires fix is txt2img at a small size, an upscale, then img2img on the result
(``workflows/hires_fix.json``). **Hires Upscale** is that middle stage with a choice of
path: ``latent`` interpolates the latents; ``image`` decodes them, resizes the 8-bit
picture (as a saved PNG would be) and encodes it again. Either way its output feeds
Img2Img Init. With ``seed`` >= 0 the img2img half draws from a fresh stream seeded by it
(as a second diffusers pipeline call with ``manual_seed(seed)``); -1 continues the stream.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from nodeflow.budget import BudgetCheck, Pixels
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import Image, Latents

from . import _budget, _common
from .images import image_to_uint8, pil_to_image
from .vae import decode, encode

LATENT_MODES = ["nearest", "nearest-exact", "bilinear", "bicubic", "area"]
#: lanczos and bicubic resize 8-bit pixels with PIL (as a saved PNG would be); the others interpolate the float pixels with torch.
IMAGE_MODES = ["lanczos", "bicubic", "nearest-exact", "bilinear", "area"]
_TORCH_IMAGE_MODES = frozenset({"nearest-exact", "bilinear", "area"})


def target_size(height: int, width: int, scale_by: float, new_width: int, new_height: int, multiple: int = 1) -> tuple[int, int]:
    """``(height, width)``: the literal size when given (0 keeps the scaled one), else ``round(side * scale_by)``, to ``multiple``."""
    h = new_height or max(1, round(height * scale_by))
    w = new_width or max(1, round(width * scale_by))
    return max(multiple, h - h % multiple), max(multiple, w - w % multiple)


def upscale_latents(latents: Latents, mode: str, height: int, width: int) -> Latents:
    """``latents`` interpolated to ``height`` x ``width`` cells; a noise mask or extra channels no longer fit and are dropped."""
    samples = latents.samples
    resized = _interpolate(samples, mode, height, width)
    return dataclasses.replace(latents, samples=resized, noise_mask=None, concat=None)


def _interpolate(samples: torch.Tensor, mode: str, height: int, width: int) -> torch.Tensor:
    """torch's interpolation (``align_corners=False`` where it applies, as ComfyUI's ``common_upscale`` calls it)."""
    kwargs: dict[str, Any] = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return torch.nn.functional.interpolate(samples, size=(height, width), mode=mode, **kwargs)


def upscale_image(image: Image, mode: str, width: int, height: int) -> Image:
    """Images resized with PIL (Lanczos or bicubic) on 8-bit pixels, or with torch (:data:`IMAGE_MODES`) on the floats."""
    from PIL import Image as PILImage

    if mode in _TORCH_IMAGE_MODES:
        return Image(_interpolate(image.pixels.float(), mode, height, width).clamp(0.0, 1.0))

    resample = PILImage.Resampling.LANCZOS if mode == "lanczos" else PILImage.Resampling.BICUBIC
    frames = [pil_to_image(PILImage.fromarray(p).resize((width, height), resample=resample)).pixels for p in image_to_uint8(image)]
    return Image(frames[0] if len(frames) == 1 else torch.cat(frames))


def _size_problems(scale_by: Any, width: Any, height: Any) -> list[str]:
    problems = [f"{side} {value} is not a multiple of 8 (VAEs work on 8-pixel blocks)"
                for side, value in (("width", width), ("height", height)) if isinstance(value, int) and value % 8]
    if isinstance(width, int) and isinstance(height, int) and (width == 0) != (height == 0):
        problems.append("give both width and height, or neither (0: scale by scale_by)")
    if scale_by == 0 and width == 0 and height == 0:
        problems.append("scale_by 0 with no width and height gives no size")
    return problems


@node("sd.latent_upscale", display_name="Latent Upscale", category="sd/latents")
class LatentUpscale:
    """Resize latents by a factor, or to a size in pixels (divided by the VAE's factor)."""

    latents = Input("LATENTS")
    mode = Input("STRING", default="nearest", choices=LATENT_MODES)
    scale_by = Input("FLOAT", default=2.0, min=0.0, max=8.0, step=0.25, description="used when width and height are 0")
    width = Input("INT", default=0, min=0, max=16384, step=8, description="pixels; 0: width x scale_by")
    height = Input("INT", default=0, min=0, max=16384, step=8, description="pixels; 0: height x scale_by")
    upscaled = Output("LATENTS", display_name="latents")

    def validate_inputs(self, check: ValidationContext, scale_by: Any = None, width: Any = None, height: Any = None, **other: Any) -> list[str]:
        return _size_problems(scale_by, width, height)

    def output_pixels(self, check: BudgetCheck, scale_by: Any = None, width: Any = None, height: Any = None, **other: Any) -> Pixels | None:
        return _budget.resized(check, "latents", scale_by, width, height)

    def run(self, ctx: Context, latents: Latents, mode: str, scale_by: float, width: int, height: int) -> Latents:
        factor = latents.vae_factor
        h, w = latents.samples.shape[-2:]
        cells = target_size(h, w, scale_by, width // factor, height // factor)
        return upscale_latents(latents, mode, *cells)


@node("sd.image_upscale", display_name="Upscale Image", category="sd/image")
class ImageUpscale:
    """Resize images by a factor or to a size: Lanczos or bicubic on 8-bit pixels, or torch interpolation on the floats."""

    image = Input("IMAGE")
    mode = Input("STRING", default="lanczos", choices=IMAGE_MODES)
    scale_by = Input("FLOAT", default=2.0, min=0.0, max=8.0, step=0.25, description="used when width and height are 0")
    width = Input("INT", default=0, min=0, max=16384, step=8, description="0: width x scale_by")
    height = Input("INT", default=0, min=0, max=16384, step=8, description="0: height x scale_by")
    upscaled = Output("IMAGE", display_name="image")

    def validate_inputs(self, check: ValidationContext, scale_by: Any = None, width: Any = None, height: Any = None, **other: Any) -> list[str]:
        return _size_problems(scale_by, width, height)

    def output_pixels(self, check: BudgetCheck, scale_by: Any = None, width: Any = None, height: Any = None, **other: Any) -> Pixels | None:
        return _budget.resized(check, "image", scale_by, width, height)

    def run(self, ctx: Context, image: Image, mode: str, scale_by: float, width: int, height: int) -> Image:
        h, w = image.pixels.shape[-2:]
        new_h, new_w = target_size(h, w, scale_by, width, height)
        return upscale_image(image, mode, new_w, new_h)


@node("sd.hires_upscale", display_name="Hires Upscale", category="sd/latents")
class HiresUpscale:
    """Hires fix's middle stage: upscale denoised latents through the latents or through the image (see the module docstring)."""

    latents = Input("LATENTS", description="denoised latents (from the first Denoise)")
    vae = Input("VAE")
    upscale = Input("STRING", default="latent", choices=["latent", "image"])
    scale_by = Input("FLOAT", default=2.0, min=0.25, max=8.0, step=0.25)
    latent_mode = Input("STRING", default="bicubic", choices=LATENT_MODES)
    image_mode = Input("STRING", default="lanczos", choices=IMAGE_MODES)
    seed = Input("INT", default=-1, min=-1, max=_common.MAX_SEED, widget="seed", description="-1: continue the latents' stream")
    upscaled = Output("LATENTS", display_name="latents")

    def output_pixels(self, check: BudgetCheck, scale_by: Any = None, **other: Any) -> Pixels | None:
        return _budget.resized(check, "latents", scale_by, 0, 0)

    def run(self, ctx: Context, latents: Latents, vae: Any, upscale: str, scale_by: float, latent_mode: str, image_mode: str,
            seed: int) -> Latents:
        h, w = latents.samples.shape[-2:]
        if upscale == "latent":
            generator = _common.stream(latents.generator_state) if seed < 0 else _common.stream(seed=seed)
            up = upscale_latents(latents, latent_mode, *target_size(h, w, scale_by, 0, 0))
            return dataclasses.replace(up, generator_state=generator.get_state())
        factor = latents.vae_factor
        new_h, new_w = target_size(h * factor, w * factor, scale_by, 0, 0, multiple=factor)
        picture = upscale_image(decode(vae, latents), image_mode, new_w, new_h)
        return encode(vae, picture, _common.stream(latents.generator_state) if seed < 0 else _common.stream(seed=seed))


NODES = [LatentUpscale, ImageUpscale, HiresUpscale]
