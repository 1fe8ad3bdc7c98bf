"""Stable Diffusion pack: every stage of SD 1.x txt2img/img2img as a typed node.

Results equal diffusers' ``StableDiffusionPipeline`` and
``StableDiffusionImg2ImgPipeline`` bit for bit for the same components, seed and
settings (tests/test_sd_*.py). Each module lists its nodes in ``NODES``; modules
written by other contributors (LoRA, textual inversion) join when present.
"""

from __future__ import annotations

import importlib
import importlib.util

_MODULES = ("load", "text", "schedulers", "latents", "sampling", "vae", "images", "lora", "textual_inversion")

NODES: list[type] = []
for _name in _MODULES:
    if importlib.util.find_spec(f"{__name__}.{_name}") is not None:
        NODES.extend(importlib.import_module(f"{__name__}.{_name}").NODES)
