"""Conditioning entries: combine prompts, restrict one to an area or a mask (ComfyUI's semantics).

A CONDITIONING value holds one or more entries (:class:`~nodeflow.values.Conditioning`).
At each step the sampler predicts the noise once per entry and takes, per latent cell,
the mean of the entries' predictions weighted by ``mask * strength`` within each entry's
area (areas without a mask fade in over up to 8 cells at their inner edges), as ComfyUI's
sampler does. Text encoding and prompt syntax live in :mod:`nodeflow_nodes.sd.text`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import Conditioning, Mask

from ._files import image_size


@node("sd.conditioning_combine", display_name="Conditioning Combine", category="sd/conditioning")
class ConditioningCombine:
    """Use both conditionings: their noise predictions are averaged (ComfyUI's ConditioningCombine)."""

    first = Input("CONDITIONING")
    second = Input("CONDITIONING")
    combined = Output("CONDITIONING", display_name="conditioning")

    def run(self, ctx: Context, first: Conditioning, second: Conditioning) -> Conditioning:
        return first.combine(second)


@node("sd.conditioning_set_area", display_name="Conditioning Set Area", category="sd/conditioning")
class ConditioningSetArea:
    """Restrict a conditioning to a rectangle (in pixels; rounded down to latent cells); ``strength`` weighs it."""

    conditioning = Input("CONDITIONING")
    x = Input("INT", default=0, min=0, max=8192, step=8)
    y = Input("INT", default=0, min=0, max=8192, step=8)
    width = Input("INT", default=64, min=8, max=8192, step=8)
    height = Input("INT", default=64, min=8, max=8192, step=8)
    strength = Input("FLOAT", default=1.0, min=0.0, max=10.0, step=0.05)
    restricted = Output("CONDITIONING", display_name="conditioning")

    def run(self, ctx: Context, conditioning: Conditioning, x: int, y: int, width: int, height: int, strength: float) -> Conditioning:
        return conditioning.map_entries(lambda e: dataclasses.replace(e, area=(x, y, width, height), mask=None, strength=strength))


@node("sd.conditioning_set_mask", display_name="Conditioning Set Mask", category="sd/conditioning")
class ConditioningSetMask:
    """Weigh a conditioning per pixel by a mask (resized bilinearly to the latents), times ``strength``.

    ``area`` ``bounds`` also restricts the entry to the mask's bounding box (ComfyUI's
    "mask bounds"), so the UNet runs on that crop only.
    """

    conditioning = Input("CONDITIONING")
    mask = Input("MASK")
    strength = Input("FLOAT", default=1.0, min=0.0, max=10.0, step=0.05)
    area = Input("STRING", default="default", choices=["default", "bounds"])
    restricted = Output("CONDITIONING", display_name="conditioning")

    def validate_inputs(self, check: ValidationContext, **literals: Any) -> str | None:
        size = image_size(check, "mask")
        if size is not None and (size[0] % 8 or size[1] % 8):
            return f"the mask is {size[0]}x{size[1]} pixels, not a multiple of 8 like an image the VAE makes"
        return None

    def run(self, ctx: Context, conditioning: Conditioning, mask: Mask, strength: float, area: str) -> Conditioning:
        box = _bounds(mask) if area == "bounds" else None  # the sampler crops the mask to the box
        return conditioning.map_entries(lambda e: dataclasses.replace(e, mask=mask.mask, area=box, strength=strength))


def _bounds(mask: Mask) -> tuple[int, int, int, int] | None:
    """The mask's non-zero bounding box ``(x, y, w, h)`` in pixels, grown to 8-pixel blocks; None when empty."""
    nonzero = (mask.mask > 0).any(dim=0)[0].nonzero()
    if nonzero.numel() == 0:
        return None
    (y0, x0), (y1, x1) = nonzero.min(dim=0).values.tolist(), nonzero.max(dim=0).values.tolist()
    x0, y0 = x0 - x0 % 8, y0 - y0 % 8
    return x0, y0, x1 + 1 - x0, y1 + 1 - y0


NODES = [ConditioningCombine, ConditioningSetArea, ConditioningSetMask]
