"""Stable Diffusion pack: every stage of SD 1.x/2.x and SDXL txt2img, img2img, inpainting, ControlNet and hires fix as a typed node.

Results equal diffusers' ``StableDiffusionPipeline``, ``StableDiffusionImg2ImgPipeline``,
``StableDiffusionInpaintPipeline``, ``StableDiffusionControlNetPipeline``, ``StableDiffusionXLPipeline``
and ``StableDiffusionXLImg2ImgPipeline`` bit for bit
for the same components, seed and settings (tests/test_sd_*.py). Each module lists its
nodes in ``NODES``; all of them sample through the one loop in :mod:`._sampling`.
"""

from __future__ import annotations

from . import (
    batches,
    conditioning,
    controlnet,
    dataset,
    images,
    inpaint,
    latents,
    load,
    lora,
    masks,
    sampling,
    schedulers,
    sdxl,
    text,
    textual_inversion,
    train,
    upscale,
    vae,
)

NODES: list[type] = [
    *load.NODES, *text.NODES, *sdxl.NODES, *schedulers.NODES, *latents.NODES, *sampling.NODES, *vae.NODES, *images.NODES,
    *lora.NODES, *textual_inversion.NODES, *masks.NODES, *inpaint.NODES,
    *conditioning.NODES, *controlnet.NODES, *upscale.NODES, *batches.NODES, *dataset.NODES, *train.NODES,
]
