"""Masks (the MASK socket: float [B, 1, H, W] in [0, 1], 1 = repaint): load, invert, threshold, grow/feather, pad, resize.

Loading follows diffusers' mask preprocessing (PIL ``convert("L")``, divided by 255,
the same tensor layout), so a mask PNG gives the numbers ``StableDiffusionInpaintPipeline``
sees. Grow and feather use OpenCV (dilate/erode with an elliptical kernel, Gaussian blur).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nodeflow.budget import BudgetCheck, Pixels
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import Image, Mask

from . import _budget
from ._files import image_size

#: Pixel value the padding of an outpainted image gets: mid gray, an exact 8-bit value (128/255)
#: so the padded picture saved as PNG and loaded again is the same picture.
PAD_GRAY = 128 / 255


def mask_from_array(array: np.ndarray) -> Mask:
    """A [H, W] or [B, H, W] float32 array in [0, 1] as a Mask, with diffusers' ``numpy_to_pt`` layout."""
    if array.ndim == 2:
        array = array[None]
    return Mask(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)[..., None].transpose(0, 3, 1, 2)))


def mask_from_picture(picture: Any, channel: str) -> Mask:
    """A PIL picture's ``luminance`` (white = repaint), ``alpha`` (transparent = repaint) or one colour channel."""
    if channel == "luminance":
        return mask_from_array(np.array(picture.convert("L")).astype(np.float32) / 255.0)
    if channel == "alpha":
        if "A" not in picture.getbands() and "transparency" not in picture.info:
            return mask_from_array(np.zeros((picture.height, picture.width), np.float32))
        return mask_from_array(1.0 - np.array(picture.convert("RGBA").getchannel("A")).astype(np.float32) / 255.0)
    band = {"red": "R", "green": "G", "blue": "B"}[channel]
    return mask_from_array(np.array(picture.convert("RGB").getchannel(band)).astype(np.float32) / 255.0)


@node("sd.load_mask", display_name="Load Mask", category="sd/mask")
class LoadMask:
    """Load a mask picture: white (or, with ``alpha``, transparent) marks what to repaint.

    ``luminance`` converts the picture to grayscale as diffusers does (an editor-painted
    or uploaded mask PNG works as it is).
    """

    path = Input("STRING", widget="image", file="mask",
                 description="absolute, or relative to the graph file's folder, the working dir or the server's uploads")
    channel = Input("STRING", default="luminance", choices=["luminance", "alpha", "red", "green", "blue"],
                    description="luminance: white = repaint; alpha: transparent = repaint")
    mask = Output("MASK")
    width = Output("INT")
    height = Output("INT")

    def run(self, ctx: Context, path: str, channel: str) -> dict[str, Any]:
        from PIL import Image as PILImage

        with PILImage.open(ctx.paths.resolve(path, "mask")) as picture:
            mask = mask_from_picture(picture, channel)
        return {"mask": mask, "width": mask.mask.shape[-1], "height": mask.mask.shape[-2]}


@node("sd.invert_mask", display_name="Invert Mask", category="sd/mask")
class InvertMask:
    """Swap what is repainted and what is kept: ``1 - mask``."""

    mask = Input("MASK")
    inverted = Output("MASK", display_name="mask")

    def run(self, ctx: Context, mask: Mask) -> Mask:
        return Mask(1.0 - mask.mask)


@node("sd.threshold_mask", display_name="Threshold Mask", category="sd/mask")
class ThresholdMask:
    """Make a soft mask hard: 1 where ``mask >= threshold``, else 0 (diffusers binarizes at 0.5)."""

    mask = Input("MASK")
    threshold = Input("FLOAT", default=0.5, min=0.0, max=1.0, step=0.05)
    binary = Output("MASK", display_name="mask")

    def run(self, ctx: Context, mask: Mask, threshold: float) -> Mask:
        return Mask((mask.mask >= threshold).to(mask.mask.dtype))


@node("sd.grow_mask", display_name="Grow Mask", category="sd/mask")
class GrowMask:
    """Grow (or, negative, shrink) the repainted area by some pixels, then feather its edge with a blur.

    OpenCV's dilate/erode with an elliptical kernel of ``2 * |grow| + 1`` pixels, then a
    Gaussian blur over ``2 * feather + 1`` pixels (0: none).
    """

    mask = Input("MASK")
    grow = Input("INT", default=0, min=-256, max=256, description="pixels; negative shrinks")
    feather = Input("INT", default=0, min=0, max=256, description="blur radius in pixels")
    grown = Output("MASK", display_name="mask")

    def run(self, ctx: Context, mask: Mask, grow: int, feather: int) -> Mask:
        import cv2

        frames = []
        for one in mask.mask[:, 0].detach().cpu().float().numpy():
            if grow:
                kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(grow) + 1, 2 * abs(grow) + 1))
                one = (cv2.dilate if grow > 0 else cv2.erode)(one, kernel)
            if feather:
                one = cv2.GaussianBlur(one, (2 * feather + 1, 2 * feather + 1), 0)
            frames.append(np.clip(one, 0.0, 1.0))
        return mask_from_array(np.stack(frames))


@node("sd.pad_for_outpaint", display_name="Pad Image for Outpaint", category="sd/mask")
class PadForOutpaint:
    """Add borders to an image for outpainting; the mask marks the new borders (1) for repainting.

    The borders are mid gray. ``feathering`` > 0 lets the mask fade into the original
    picture over that many pixels (ComfyUI's quadratic ramp), so the seam is repainted too.
    """

    image = Input("IMAGE")
    left = Input("INT", default=0, min=0, max=4096, step=8)
    top = Input("INT", default=0, min=0, max=4096, step=8)
    right = Input("INT", default=0, min=0, max=4096, step=8)
    bottom = Input("INT", default=0, min=0, max=4096, step=8)
    feathering = Input("INT", default=0, min=0, max=1024)
    padded = Output("IMAGE", display_name="image")
    mask = Output("MASK")

    def output_pixels(self, check: BudgetCheck, **literals: Any) -> Pixels | None:
        incoming = check.pixels("image")
        sides = [literals.get(k) for k in ("left", "top", "right", "bottom")]
        if incoming is None or not all(isinstance(v, int) for v in sides):
            return None
        left, top, right, bottom = sides
        return Pixels(incoming.width + left + right, incoming.height + top + bottom, incoming.batch,  # type: ignore[operator]
                      ("left", "top", "right", "bottom"))

    def validate_inputs(self, check: ValidationContext, **literals: Any) -> list[str]:
        size = image_size(check, "image")
        sides = [literals.get(k) for k in ("left", "top", "right", "bottom")]
        if size is None or any(not isinstance(v, int) for v in sides):
            return []
        left, top, right, bottom = sides
        width, height = size[0] + left + right, size[1] + top + bottom  # type: ignore[operator]
        return [f"the padded {side} {value} is not a multiple of 8 (the VAE works on 8-pixel blocks)"
                for side, value in (("width", width), ("height", height)) if value % 8]

    def run(self, ctx: Context, image: Image, left: int, top: int, right: int, bottom: int, feathering: int) -> dict[str, Any]:
        batch, channels, height, width = image.pixels.shape
        # Built channels-last in numpy, as a loaded picture is: the VAE's kernels follow the layout.
        padded = np.full((batch, height + top + bottom, width + left + right, channels), PAD_GRAY, dtype=np.float32)
        padded[:, top : top + height, left : left + width] = image.pixels.detach().cpu().float().permute(0, 2, 3, 1).numpy()
        mask = torch.ones((height + top + bottom, width + left + right), dtype=torch.float32)
        mask[top : top + height, left : left + width] = _inner_ramp(height, width, (top, bottom, left, right), feathering)
        return {"padded": Image(torch.from_numpy(padded.transpose(0, 3, 1, 2))), "mask": mask_from_array(mask.expand(batch, -1, -1).numpy())}


@node("sd.resize_mask", display_name="Resize Mask", category="sd/mask")
class ResizeMask:
    """Resize a mask as diffusers' mask processor does: Lanczos on the 8-bit grayscale picture; 0 keeps that side.

    Pair it with Resize Image to inpaint at another size than the picture's (the SDXL
    inpaint pipeline resizes picture and mask to ``width`` x ``height`` this way). A
    soft mask comes back soft; Inpaint Model Conditioning binarizes it.
    """

    mask = Input("MASK")
    width = Input("INT", default=0, min=0, max=8192, description="0: keep the width")
    height = Input("INT", default=0, min=0, max=8192, description="0: keep the height")
    resized = Output("MASK", display_name="mask")

    def output_pixels(self, check: BudgetCheck, width: Any = None, height: Any = None, **other: Any) -> Pixels | None:
        return _budget.kept_sides(check, "mask", width, height)

    def run(self, ctx: Context, mask: Mask, width: int, height: int) -> Mask:
        from PIL import Image as PILImage

        old_h, old_w = mask.mask.shape[-2:]
        size = (width or old_w, height or old_h)
        if size == (old_w, old_h):
            return mask
        # Back to the 8-bit values the mask file held (exact: Load Mask divided them by 255).
        frames = (mask.mask[:, 0].detach().cpu().float().numpy() * 255).round().astype(np.uint8)
        resized = [np.array(PILImage.fromarray(f, "L").resize(size, resample=PILImage.Resampling.LANCZOS)) for f in frames]
        return mask_from_array(np.stack(resized).astype(np.float32) / 255.0)


def _inner_ramp(height: int, width: int, sides: tuple[int, int, int, int], feathering: int) -> torch.Tensor:
    """The mask over the original picture: 0, rising as ((f - d) / f)^2 within ``feathering`` px of a padded side."""
    if feathering <= 0 or feathering * 2 >= height or feathering * 2 >= width:
        return torch.zeros((height, width))
    top, bottom, left, right = sides
    rows, cols = torch.arange(height, dtype=torch.float32)[:, None], torch.arange(width, dtype=torch.float32)[None, :]
    far_h, far_w = torch.full_like(rows, float(height)), torch.full_like(cols, float(width))
    distance = torch.minimum(
        torch.minimum(rows if top else far_h, (height - rows) if bottom else far_h),
        torch.minimum(cols if left else far_w, (width - cols) if right else far_w),
    )
    ramp = ((feathering - distance) / feathering).clamp(min=0.0)
    return ramp * ramp


NODES = [LoadMask, InvertMask, ThresholdMask, GrowMask, PadForOutpaint, ResizeMask]
