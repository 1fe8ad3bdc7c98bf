"""Inpainting: masks attached to latents, for both kinds of model, as ``StableDiffusionInpaintPipeline`` does.

* An ordinary (4-channel) UNet denoises everything; after every step the sampler puts
  back the original latents, re-noised to the next timestep, outside the mask. That is
  the latents' *noise mask* (:class:`~nodeflow.values.NoiseMask`), attached by
  **Set Latent Noise Mask**; Img2Img Init then records the noise it adds.
* An inpainting (9-channel) UNet sees the mask and the masked image's latents as extra
  input channels (``Latents.concat``), attached by **Inpaint Model Conditioning** (or
  **VAE Encode for Inpaint**); the sampler concatenates them and does not blend.

The pipeline's order, and so its random numbers, is the graph
``VAE Encode -> Set Latent Noise Mask -> Img2Img Init -> Inpaint Model Conditioning ->
Denoise`` (``workflows/inpaint.json``): image latents, initial noise, masked-image
latents, then the sampler's own noise, all from one seeded stream. Both nodes that
encode the masked image take the UNet only to tell the two kinds apart: for an ordinary
UNet the masked image is still encoded (the pipeline does it too, and draws from the
stream), but not attached. Masks are binarized at 0.5 by default, as the pipeline does.
The same chain serves SDXL (``workflows/sdxl_inpaint.json``, ``StableDiffusionXLInpaintPipeline``),
with ``upcast`` on: a half-precision ``force_upcast`` VAE encodes in fp32, as that pipeline does.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import Image, Latents, Mask, NoiseMask

from . import _common
from ._files import image_size
from .vae import _fit, upcast_vae


def pixel_mask(mask: Mask, height: int, width: int, binarize: bool, node: str = "mask") -> torch.Tensor:
    """The mask at ``height`` x ``width`` pixels (it must be that size), binarized at 0.5 when asked."""
    found = tuple(mask.mask.shape[-2:])
    if found != (height, width):
        raise ValueError(f"{node}: the mask is {found[1]}x{found[0]} pixels but the image is {width}x{height}; resize one of them")
    full = mask.mask.float()
    return (full >= 0.5).to(full.dtype) if binarize else full


def latent_mask(full: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """A pixel mask at the latents' size (nearest, as the pipeline's ``prepare_mask_latents``), on their device and dtype."""
    small = torch.nn.functional.interpolate(full, size=tuple(latents.shape[-2:]))
    return small.to(device=latents.device, dtype=latents.dtype)


def takes_extra_channels(unet: Any, vae: Any) -> bool:
    """Whether ``unet`` is an inpainting UNet (more input channels than the VAE's latents)."""
    return int(unet.config.in_channels) > int(vae.config.latent_channels)


def encode_masked(vae: Any, image: Image, full: torch.Tensor, generator: torch.Generator, mode: str = "sample",
                  out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """The masked image's latents: pixels where ``full >= 0.5`` set to 0 (mid gray) in [-1, 1], sampled with ``generator``.

    ``mode`` ``argmax`` takes the posterior's mean instead (the generator is not drawn from).
    ``out_dtype``: the latents' precision when ``vae`` is an upcast copy (as VAE Encode's).
    """
    pixels = _fit(image.pixels, _common.vae_scale_factor(vae))
    device, dtype = _common.placement(vae)
    masked = (2.0 * pixels - 1.0) * (full < 0.5)  # the pipeline's init_image * (mask_condition < 0.5)
    if out_dtype is not None:  # the SDXL inpaint pipeline casts the masked image to the model's dtype before upcasting it
        masked = masked.to(out_dtype)
    with torch.no_grad():
        posterior = vae.encode(masked.to(device=device, dtype=dtype)).latent_dist
        sample = posterior.sample(generator) if mode == "sample" else posterior.mode()
    if out_dtype is not None:
        sample = sample.to(out_dtype)
    return float(vae.config.scaling_factor) * sample  # type: ignore[no-any-return]


def grown_mask(full: torch.Tensor, grow: int) -> torch.Tensor:
    """``full`` [B, 1, H, W] grown by a ``grow`` x ``grow`` square, as ComfyUI's VAEEncodeForInpaint grows its noise mask.

    ComfyUI's arithmetic: a convolution with a ones kernel, padding ``ceil((grow - 1) / 2)``
    (so an even size reaches one pixel further down and right), clamped to [0, 1], cut to
    the image and rounded.
    """
    if grow <= 0:
        return full
    kernel = torch.ones((1, 1, grow, grow), dtype=full.dtype)
    padding = math.ceil((grow - 1) / 2)
    height, width = full.shape[-2:]
    spread = torch.nn.functional.conv2d(full.round(), kernel, padding=padding).clamp(0.0, 1.0)
    return spread[..., :height, :width].round()


def _sizes_agree(check: ValidationContext, first: str, second: str) -> str | None:
    a, b = image_size(check, first), image_size(check, second)
    if a is None or b is None or a == b:
        return None
    return f"the {first} is {a[0]}x{a[1]} pixels but the {second} is {b[0]}x{b[1]}; they must be the same size"


_BINARIZE = Input("BOOL", default=True, description="threshold the mask at 0.5 as diffusers does; off keeps a feathered mask soft")


@node("sd.set_latent_noise_mask", display_name="Set Latent Noise Mask", category="sd/inpaint")
class SetLatentNoiseMask:
    """Attach a mask to clean image latents: the sampler then only changes the masked area (ordinary UNets).

    Feed the result to Img2Img Init (which records its noise for re-noising the kept
    area), then to the sampler. The mask must have the latents' pixel size.
    """

    latents = Input("LATENTS", description="the image's clean latents (from VAE Encode)")
    mask = Input("MASK", description="1 = repaint")
    binarize = _BINARIZE
    masked = Output("LATENTS", display_name="latents")

    def run(self, ctx: Context, latents: Latents, mask: Mask, binarize: bool) -> Latents:
        samples = latents.samples
        height, width = (side * latents.vae_factor for side in samples.shape[-2:])
        full = pixel_mask(mask, height, width, binarize, "Set Latent Noise Mask")
        return dataclasses.replace(latents, noise_mask=NoiseMask(latent_mask(full, samples), samples))


@node("sd.inpaint_model_conditioning", display_name="Inpaint Model Conditioning", category="sd/inpaint", version="1.1.0")
class InpaintModelConditioning:
    """Encode the masked image and attach it, with the mask, as an inpainting UNet's extra input channels.

    Continues the latents' random stream (after Img2Img Init's noise), as the pipeline's
    ``prepare_mask_latents`` does. For an ordinary UNet nothing is attached (the stream
    still advances the same way), so one graph serves both kinds of model.
    """

    unet = Input("UNET", description="tells an inpainting UNet (9 input channels) from an ordinary one")
    vae = Input("VAE")
    image = Input("IMAGE", description="the original picture")
    mask = Input("MASK", description="1 = repaint; the image's size")
    latents = Input("LATENTS", description="the noised latents (from Img2Img Init)")
    binarize = _BINARIZE
    upcast = Input("BOOL", default=False, description="encode with a half-precision VAE in fp32 when its config says force_upcast"
                   " (diffusers' SDXL inpaint pipeline)")
    mode = Input("STRING", default="sample", choices=["sample", "argmax"],
                 description="as VAE Encode's: argmax takes the posterior's mean and draws nothing from the stream (ComfyUI)")
    conditioned = Output("LATENTS", display_name="latents")

    def validate_inputs(self, check: ValidationContext, **literals: Any) -> str | None:
        return _sizes_agree(check, "image", "mask")

    def run(self, ctx: Context, unet: Any, vae: Any, image: Image, mask: Mask, latents: Latents, binarize: bool,
            upcast: bool = False, mode: str = "sample") -> Latents:
        height, width = _fit(image.pixels, _common.vae_scale_factor(vae)).shape[-2:]
        full = pixel_mask(mask, height, width, binarize, "Inpaint Model Conditioning")
        generator = _common.stream(latents.generator_state)
        encoder = upcast_vae(ctx, vae, (torch.float16, torch.bfloat16)) if upcast else vae
        masked = encode_masked(encoder, image, full, generator, mode, _common.placement(vae)[1] if upcast else None)
        concat = torch.cat([latent_mask(full, masked), masked], dim=1) if takes_extra_channels(unet, vae) else None
        return dataclasses.replace(latents, concat=concat, generator_state=generator.get_state())


@node("sd.vae_encode_inpaint", display_name="VAE Encode for Inpaint", category="sd/inpaint")
class VAEEncodeForInpaint:
    """Encode an image with its masked area blanked to gray, for repainting it from scratch (ComfyUI's node).

    The latents carry the mask as a noise mask and, for an inpainting UNet, the mask and
    masked-image latents as extra channels. Use with Img2Img Init at strength 1. (Its
    random numbers come in another order than diffusers' pipeline: for the pipeline's
    exact pixels use the chain in ``workflows/inpaint.json``.)
    """

    unet = Input("UNET", description="tells an inpainting UNet (9 input channels) from an ordinary one")
    vae = Input("VAE")
    image = Input("IMAGE")
    mask = Input("MASK", description="1 = repaint; the image's size")
    seed = Input("INT", default=0, min=0, max=_common.MAX_SEED, widget="seed")
    binarize = _BINARIZE
    grow = Input("INT", default=0, min=0, max=64,
                 description="pixels the noise mask reaches past the blanked area (ComfyUI's grow_mask_by, a square kernel)")
    mode = Input("STRING", default="sample", choices=["sample", "argmax"], description="as VAE Encode's: argmax takes the mean")
    latents = Output("LATENTS")

    def validate_inputs(self, check: ValidationContext, **literals: Any) -> str | None:
        return _sizes_agree(check, "image", "mask")

    def run(self, ctx: Context, unet: Any, vae: Any, image: Image, mask: Mask, seed: int, binarize: bool, grow: int = 0,
            mode: str = "sample") -> Latents:
        factor = _common.vae_scale_factor(vae)
        height, width = _fit(image.pixels, factor).shape[-2:]
        full = pixel_mask(mask, height, width, binarize, "VAE Encode for Inpaint")
        generator = _common.stream(seed=seed)
        masked = encode_masked(vae, image, full, generator, mode)
        small = latent_mask(grown_mask(full, grow), masked)
        concat = torch.cat([small, masked], dim=1) if takes_extra_channels(unet, vae) else None
        return Latents(masked, float(vae.config.scaling_factor), generator.get_state(), vae_factor=factor,
                       noise_mask=NoiseMask(small, masked), concat=concat)


NODES = [SetLatentNoiseMask, InpaintModelConditioning, VAEEncodeForInpaint]
