"""Batches: pick images or latents out of a batch, and join two batches into one.

As ComfyUI's ImageFromBatch / LatentFromBatch / ImageBatch / LatentBatch, except that
an index or size that does not fit is an error rather than silently clamped or resized.

Latents carry their random stream (see :class:`~nodeflow.values.Latents`). Per-image
streams (Noise Latents' ``per_image_seeds``) are picked and joined with their images,
so a stochastic sampler (Euler a) continues each picked image exactly as it would have
in its batch. A single stream shared by the batch cannot be split: picked latents keep
it as it is, and joined latents continue the first input's stream (unless both inputs
have per-image streams).

Inpainting latents keep what they carry: their noise mask (mask, original latents,
added noise) and an inpainting UNet's extra channels are picked and joined row by row
with the latents (a part shared by the whole batch, one row, is kept as it is when
picking). Joining latents with an inpainting mask to latents without one is an error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from nodeflow.budget import BudgetCheck, Pixels
from nodeflow.node import Context, Input, Output, node
from nodeflow.values import Image, Latents, NoiseMask

from . import _budget


def _span(size: int, index: int, length: int) -> slice:
    if index >= size:
        raise ValueError(f"index {index} is past the end of a batch of {size} (indices start at 0)")
    if index + length > size:
        raise ValueError(f"index {index} with length {length} runs past the end of a batch of {size}")
    return slice(index, index + length)


@node("sd.image_from_batch", display_name="Image From Batch", category="sd/image")
class ImageFromBatch:
    """Images ``index`` .. ``index + length - 1`` of a batch (0-based), as a new batch."""

    images = Input("IMAGE")
    index = Input("INT", default=0, min=0, max=4095, description="first image to take (0 is the first)")
    length = Input("INT", default=1, min=1, max=4096, description="how many images to take")
    picked = Output("IMAGE", display_name="images")

    def run(self, ctx: Context, images: Image, index: int, length: int) -> Image:
        return Image(images.pixels[_span(images.pixels.shape[0], index, length)])


@node("sd.latent_from_batch", display_name="Latent From Batch", category="sd/latents")
class LatentFromBatch:
    """Latents ``index`` .. ``index + length - 1`` of a batch (0-based), with their random streams."""

    latents = Input("LATENTS")
    index = Input("INT", default=0, min=0, max=4095, description="first latent to take (0 is the first)")
    length = Input("INT", default=1, min=1, max=4096, description="how many latents to take")
    picked = Output("LATENTS", display_name="latents")

    def run(self, ctx: Context, latents: Latents, index: int, length: int) -> Latents:
        span = _span(latents.samples.shape[0], index, length)
        state = latents.generator_state
        if state is not None and state.ndim == 2:
            state = state[span]
        mask = latents.noise_mask
        if mask is not None:
            mask = NoiseMask(_picked(mask.mask, span), _picked(mask.original, span), _picked(mask.noise, span))
        return dataclasses.replace(latents, samples=latents.samples[span], generator_state=state, noise_mask=mask,
                                   concat=_picked(latents.concat, span))


def _picked(rows: torch.Tensor | None, span: slice) -> torch.Tensor | None:
    """The rows of a per-image part in ``span``; a part of one row (shared by the batch) as it is."""
    return rows if rows is None or rows.shape[0] == 1 else rows[span]


@node("sd.join_images", display_name="Join Images", category="sd/image")
class JoinImages:
    """One batch holding ``images_a``'s images, then ``images_b``'s (same size; resize first if not)."""

    images_a = Input("IMAGE")
    images_b = Input("IMAGE")
    joined = Output("IMAGE", display_name="images")

    def output_pixels(self, check: BudgetCheck, **literals: Any) -> Pixels | None:
        return _budget.joined(check, "images_a", "images_b")

    def run(self, ctx: Context, images_a: Image, images_b: Image) -> Image:
        a, b = images_a.pixels, images_b.pixels
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(
                f"images_a are {a.shape[-1]}x{a.shape[-2]} and images_b {b.shape[-1]}x{b.shape[-2]}: "
                "a batch holds one size (pass one through Resize Image first)"
            )
        return Image(torch.cat([a, b]))


@node("sd.join_latents", display_name="Join Latents", category="sd/latents")
class JoinLatents:
    """One batch holding ``latents_a``, then ``latents_b`` (same shape and VAE scaling)."""

    latents_a = Input("LATENTS")
    latents_b = Input("LATENTS")
    joined = Output("LATENTS", display_name="latents")

    def output_pixels(self, check: BudgetCheck, **literals: Any) -> Pixels | None:
        return _budget.joined(check, "latents_a", "latents_b")

    def run(self, ctx: Context, latents_a: Latents, latents_b: Latents) -> Latents:
        a, b = latents_a.samples, latents_b.samples
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(f"latents_a are {tuple(a.shape[1:])} and latents_b {tuple(b.shape[1:])} (channels, height, width): they must match")
        if (latents_a.scaling_factor, latents_a.vae_factor) != (latents_b.scaling_factor, latents_b.vae_factor):
            raise ValueError(
                f"latents_a are scaled by {latents_a.scaling_factor} and latents_b by {latents_b.scaling_factor}: they come from different VAEs"
            )
        sizes = (a.shape[0], b.shape[0])
        ma, mb = latents_a.noise_mask, latents_b.noise_mask
        mask = None
        if ma is not None or mb is not None:
            if ma is None or mb is None:
                raise ValueError("only one of latents_a and latents_b carries an inpainting mask: set the mask on both, or after joining")
            mask = NoiseMask(*(_joined(x, y, sizes, "the noise masks' " + part)
                               for part, x, y in (("mask", ma.mask, mb.mask), ("original", ma.original, mb.original),
                                                  ("noise", ma.noise, mb.noise))))
        concat = _joined(latents_a.concat, latents_b.concat, sizes, "the inpainting channels")
        return dataclasses.replace(latents_a, samples=torch.cat([a, b.to(device=a.device, dtype=a.dtype)]),
                                   generator_state=_joined_state(latents_a, latents_b), noise_mask=mask, concat=concat)


def _joined(x: torch.Tensor | None, y: torch.Tensor | None, sizes: tuple[int, int], what: str) -> torch.Tensor | None:
    """Two per-image parts as one (a one-row part stands for every row of its batch); both absent: None."""
    if x is None and y is None:
        return None
    if x is None or y is None:
        raise ValueError(f"only one of latents_a and latents_b has {what}: join latents prepared the same way")
    x, y = (part.expand(size, *part.shape[1:]) if part.shape[0] == 1 else part for part, size in ((x, sizes[0]), (y, sizes[1])))
    return torch.cat([x, y.to(device=x.device, dtype=x.dtype)])


def _joined_state(a: Latents, b: Latents) -> torch.Tensor | None:
    """Per-image streams of both inputs side by side; else one stream, the first input's (its first image's)."""
    sa, sb = a.generator_state, b.generator_state
    if sa is not None and sb is not None and sa.ndim == 2 and sb.ndim == 2:
        return torch.cat([sa, sb])
    return sa[0] if sa is not None and sa.ndim == 2 else sa


NODES = [ImageFromBatch, LatentFromBatch, JoinImages, JoinLatents]
