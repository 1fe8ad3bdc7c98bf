"""Conditioning entries: combine prompts, restrict one to an area or a mask (ComfyUI's semantics).

A CONDITIONING value holds one or more entries (:class:`~nodeflow.values.Conditioning`).
At each step the sampler predicts the noise once per entry and takes, per latent cell,
the mean of the entries' predictions weighted by ``mask * strength`` within each entry's
area (areas without a mask fade in over up to 8 cells at their inner edges), as ComfyUI's
sampler does. Concat and Average change the text embeddings themselves (ComfyUI's
``ConditioningConcat`` / ``ConditioningAverage``): ``conditioning_from``'s first entry is
applied to every entry of ``conditioning_to``, a single prompt to every prompt of a batch. Text encoding and prompt syntax live in :mod:`nodeflow_nodes.sd.text`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

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


def _batch_to(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``source`` with ``target``'s batch size (a single prompt is repeated); both are [B, L, D]."""
    if source.shape[0] == target.shape[0]:
        return source
    if source.shape[0] == 1:
        return source.expand(target.shape[0], -1, -1)
    raise ValueError(f"conditioning_from holds {source.shape[0]} prompts, conditioning_to {target.shape[0]}: they must match, or from must hold one")


def _check_width(to: torch.Tensor, source: torch.Tensor) -> None:
    if to.shape[-1] != source.shape[-1]:
        raise ValueError(
            f"conditioning_from is {source.shape[-1]} wide and conditioning_to {to.shape[-1]}: "
            "they come from different text encoders (model families)"
        )


@node("sd.conditioning_concat", display_name="Conditioning Concat", category="sd/conditioning")
class ConditioningConcat:
    """Append ``conditioning_from``'s embeddings to each of ``conditioning_to``'s entries along the sequence.

    The UNet then attends to both prompts' tokens at once: ``[B, L_to + L_from, D]``,
    as ComfyUI's ConditioningConcat. Unlike one long prompt, each part was encoded on
    its own, so the words of one do not colour the other's.
    """

    conditioning_to = Input("CONDITIONING")
    conditioning_from = Input("CONDITIONING")
    conditioning = Output("CONDITIONING")

    def run(self, ctx: Context, conditioning_to: Conditioning, conditioning_from: Conditioning) -> Conditioning:
        source = conditioning_from.entries[0].embeddings

        def concat(entry: Conditioning) -> Conditioning:
            to = entry.embeddings
            _check_width(to, source)
            return dataclasses.replace(entry, embeddings=torch.cat((to, _batch_to(source.to(device=to.device, dtype=to.dtype), to)), dim=1))

        return conditioning_to.map_entries(concat)


@node("sd.conditioning_average", display_name="Conditioning Average", category="sd/conditioning")
class ConditioningAverage:
    """Blend two prompts: ``to * to_strength + from * (1 - to_strength)`` (ComfyUI's ConditioningAverage).

    Each of ``conditioning_to``'s entries is blended with ``conditioning_from``'s first
    entry, as ComfyUI does. The result has ``conditioning_to``'s length: a longer ``from`` is cut to it, a
    shorter one is padded with zeros, as ComfyUI does.
    """

    conditioning_to = Input("CONDITIONING")
    conditioning_from = Input("CONDITIONING")
    to_strength = Input("FLOAT", default=1.0, min=0.0, max=1.0, step=0.01, description="1: only conditioning_to; 0: only conditioning_from")
    conditioning = Output("CONDITIONING")

    def run(self, ctx: Context, conditioning_to: Conditioning, conditioning_from: Conditioning, to_strength: float) -> Conditioning:
        first = conditioning_from.entries[0].embeddings
        return conditioning_to.map_entries(lambda e: dataclasses.replace(e, embeddings=_blend(e.embeddings, first, to_strength)))


def _blend(to: torch.Tensor, source: torch.Tensor, to_strength: float) -> torch.Tensor:
    """``to * to_strength + source * (1 - to_strength)``, ``source`` cut or zero-padded to ``to``'s length."""
    _check_width(to, source)
    source = _batch_to(source.to(device=to.device, dtype=to.dtype), to)[:, : to.shape[1]]
    if source.shape[1] < to.shape[1]:
        zeros = source.new_zeros(source.shape[0], to.shape[1] - source.shape[1], source.shape[2])
        source = torch.cat([source, zeros], dim=1)
    return torch.mul(to, to_strength) + torch.mul(source, 1.0 - to_strength)


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


NODES = [ConditioningCombine, ConditioningConcat, ConditioningAverage, ConditioningSetArea, ConditioningSetMask]
