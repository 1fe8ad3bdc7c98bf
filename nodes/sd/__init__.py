"""Stable Diffusion pack: every stage of SD 1.x txt2img/img2img as a typed node.

Results equal diffusers' ``StableDiffusionPipeline`` and
``StableDiffusionImg2ImgPipeline`` bit for bit for the same components, seed and
settings (tests/test_sd_*.py). Each module lists its nodes in ``NODES``.
"""

from __future__ import annotations

from . import (
    batches,
    conditioning_ops,
    dataset,
    images,
    latents,
    load,
    lora,
    sampling,
    schedulers,
    text,
    textual_inversion,
    train,
    vae,
)

NODES: list[type] = [
    *load.NODES, *text.NODES, *schedulers.NODES, *latents.NODES, *sampling.NODES, *vae.NODES, *images.NODES,
    *lora.NODES, *textual_inversion.NODES, *conditioning_ops.NODES, *batches.NODES, *dataset.NODES, *train.NODES,
]
