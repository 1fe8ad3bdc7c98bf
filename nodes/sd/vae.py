"""Latents <-> pixels with the VAE, with diffusers' exact pre- and post-processing."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nodeflow.interrupt import watch
from nodeflow.node import Context, Input, Output, node
from nodeflow.values import Image, Latents

from . import _common


@node("sd.vae_decode", display_name="VAE Decode", category="sd/latents")
class VAEDecode:
    """Decode latents into images (float in [0, 1]), as diffusers' pipelines postprocess them."""

    vae = Input("VAE")
    latents = Input("LATENTS")
    upcast = Input("BOOL", default=False, description="decode an fp16 VAE in fp32 when its config says force_upcast, as"
                   " diffusers' SDXL pipelines do (SDXL's original VAE overflows in fp16)")
    image = Output("IMAGE")

    def run(self, ctx: Context, vae: Any, latents: Latents, upcast: bool = False) -> Image:
        return decode(upcast_vae(ctx, vae, (torch.float16,)) if upcast else vae, latents)


def upcast_vae(ctx: Context, vae: Any, dtypes: tuple[torch.dtype, ...]) -> Any:
    """An fp32 copy of ``vae`` when its weights are one of ``dtypes`` and its config asks for it (``force_upcast``), else ``vae``.

    diffusers' SDXL pipelines move their VAE to fp32 to decode when it is fp16, and to
    encode (img2img) whatever its precision; the copy (made once, kept by the model
    store) leaves the shared VAE as it is.
    """
    _, dtype = _common.placement(vae)
    if dtype not in dtypes or not getattr(vae.config, "force_upcast", False):
        return vae
    import copy

    # The entry keeps `vae` alive, so its id() cannot be reused while cached.
    return ctx.models.derived(("vae_fp32", id(vae)), lambda: (vae, copy.deepcopy(vae).float()))[1]


def decode(vae: Any, latents: Latents) -> Image:
    """Latents -> images in [0, 1] with ``vae`` (or a tiling view of it, :func:`tiling`)."""
    device, dtype = _common.placement(watch(vae))  # a cancel reaches between the decoder's blocks
    samples = latents.samples.to(device=device, dtype=dtype)
    with torch.no_grad():
        decoded = vae.decode(samples / latents.scaling_factor, return_dict=False)[0]
    # VaeImageProcessor.postprocess: denormalise and clamp in the VAE's dtype, then float32.
    pixels = (decoded * 0.5 + 0.5).clamp(0, 1)
    return Image(pixels.cpu().float())


@node("sd.vae_encode", display_name="VAE Encode", category="sd/latents")
class VAEEncode:
    """Encode images into latents (scaled by the VAE's factor), as diffusers' img2img pipeline does.

    ``sample`` draws from the VAE's posterior with a CPU generator seeded by ``seed``
    (the pipeline's behaviour); ``argmax`` takes its mean. Either way the latents carry
    the seeded stream on, for Img2Img Init's noise. Sizes that are not a multiple of
    the VAE factor are resized down to one (Lanczos, as diffusers does).
    """

    vae = Input("VAE")
    image = Input("IMAGE")
    seed = Input("INT", default=0, min=0, max=_common.MAX_SEED, widget="seed")
    mode = Input("STRING", default="sample", choices=["sample", "argmax"])
    upcast = Input("BOOL", default=False, description="encode with a half-precision VAE in fp32 when its config says force_upcast"
                   " (diffusers' SDXL img2img pipeline); the latents come back in the VAE's own precision")
    latents = Output("LATENTS")

    def run(self, ctx: Context, vae: Any, image: Image, seed: int, mode: str, upcast: bool = False) -> Latents:
        if not upcast:
            return encode(vae, image, _common.stream(seed=seed), mode)
        return encode(upcast_vae(ctx, vae, (torch.float16, torch.bfloat16)), image, _common.stream(seed=seed), mode, out_dtype=_common.placement(vae)[1])


def encode(vae: Any, image: Image, generator: torch.Generator, mode: str = "sample", out_dtype: torch.dtype | None = None) -> Latents:
    """Images -> scaled latents with ``vae`` (or a tiling view of it), sampling with ``generator``; the stream travels on.

    ``out_dtype``: the latents' precision when it differs from the VAE's (an upcast VAE),
    cast before scaling as the SDXL img2img pipeline does.
    """
    pixels = _fit(image.pixels, _common.vae_scale_factor(vae))
    device, dtype = _common.placement(watch(vae))
    normalised = 2.0 * pixels - 1.0
    if out_dtype is not None:  # the SDXL img2img pipeline casts the image to the model's dtype before upcasting it
        normalised = normalised.to(out_dtype)
    normalised = normalised.to(device=device, dtype=dtype)
    with torch.no_grad():
        posterior = vae.encode(normalised).latent_dist
        samples = posterior.sample(generator) if mode == "sample" else posterior.mode()
    if out_dtype is not None:
        samples = samples.to(out_dtype)
    scaling = float(vae.config.scaling_factor)
    return Latents(scaling * samples, scaling, generator.get_state(), vae_factor=_common.vae_scale_factor(vae))


def tiling(vae: Any, tile_size: int, overlap: float) -> Any:
    """A view of ``vae`` that decodes and encodes in overlapping tiles (diffusers' ``enable_tiling``), leaving ``vae`` as it is.

    A shallow copy: it shares the modules and weights, and only its own tiling settings
    differ, so a VAE shared through the model store is never switched for other runs.
    ``tile_size`` 0 keeps the VAE's own (its config's ``sample_size``, 512 for SD).
    """
    import copy

    if not hasattr(vae, "tiled_decode"):
        raise ValueError(f"this VAE ({type(vae).__name__}) cannot decode in tiles")
    view = copy.copy(vae)
    view.use_tiling = True
    if tile_size:
        view.tile_sample_min_size = tile_size
        view.tile_latent_min_size = tile_size // _common.vae_scale_factor(vae)
    view.tile_overlap_factor = overlap
    return view


_TILE = Input("INT", default=0, min=0, max=4096, step=64, description="tile size in pixels; 0: the VAE's own (512 for SD)")
_OVERLAP = Input("FLOAT", default=0.25, min=0.0, max=0.75, step=0.05, description="fraction of a tile blended with its neighbours")


@node("sd.vae_decode_tiled", display_name="VAE Decode (Tiled)", category="sd/latents")
class VAEDecodeTiled:
    """Decode latents tile by tile, so big pictures fit in memory (diffusers' VAE tiling; seams are blended).

    Latents no larger than one tile decode in one piece, exactly as VAE Decode.
    """

    vae = Input("VAE")
    latents = Input("LATENTS")
    tile_size = _TILE
    overlap = _OVERLAP
    image = Output("IMAGE")

    def run(self, ctx: Context, vae: Any, latents: Latents, tile_size: int, overlap: float) -> Image:
        return decode(tiling(vae, tile_size, overlap), latents)


@node("sd.vae_encode_tiled", display_name="VAE Encode (Tiled)", category="sd/latents")
class VAEEncodeTiled:
    """Encode images tile by tile (diffusers' VAE tiling), for pictures too big to encode at once."""

    vae = Input("VAE")
    image = Input("IMAGE")
    seed = Input("INT", default=0, min=0, max=_common.MAX_SEED, widget="seed")
    mode = Input("STRING", default="sample", choices=["sample", "argmax"])
    tile_size = _TILE
    overlap = _OVERLAP
    latents = Output("LATENTS")

    def run(self, ctx: Context, vae: Any, image: Image, seed: int, mode: str, tile_size: int, overlap: float) -> Latents:
        return encode(tiling(vae, tile_size, overlap), image, _common.stream(seed=seed), mode)


def _fit(pixels: torch.Tensor, factor: int) -> torch.Tensor:
    """``pixels`` resized down to multiples of ``factor`` with PIL Lanczos, as diffusers' preprocessing does."""
    height, width = pixels.shape[-2:]
    new_h, new_w = height - height % factor, width - width % factor
    if (new_h, new_w) == (height, width):
        return pixels
    if new_h == 0 or new_w == 0:
        raise ValueError(f"the image ({width}x{height}) is smaller than the VAE factor {factor}")
    from PIL import Image as PILImage

    resized = []
    for one in pixels:
        array = (one.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        picture = PILImage.fromarray(array).resize((new_w, new_h), resample=PILImage.Resampling.LANCZOS)
        resized.append(np.array(picture).astype(np.float32) / 255.0)
    # The same (channels-last) strides as diffusers' numpy_to_pt: convolution kernels follow the layout.
    return torch.from_numpy(np.stack(resized).transpose(0, 3, 1, 2))


NODES = [VAEDecode, VAEEncode, VAEDecodeTiled, VAEEncodeTiled]
