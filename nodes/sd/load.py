"""Load a Stable Diffusion 1.x model through the model store (``sd.load_model``).

The store loads each model once per process (a diffusers folder, a single-file
``.safetensors`` checkpoint, or the embedded ``"default"`` model) and shares it across
runs; this node only picks the path, precision and device.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nodeflow.models import DEFAULT_MODEL, ModelStore
from nodeflow.node import Context, Input, Output, node


@node("sd.load_model", display_name="Load Model", category="sd/loaders", pure=False)
class LoadModel:
    """Load an SD 1.x model (a diffusers folder, a .safetensors file or "default") from a local path."""

    model = Input("STRING", default="default", widget="model", description='a diffusers folder, a single-file .safetensors checkpoint, or "default" (the embedded digits model)')
    dtype = Input("STRING", default="auto", choices=["auto", "fp32", "fp16", "bf16"], description="weight precision; auto: the store's default (nodeflow run --dtype, fp32 unless set)")
    device = Input("STRING", default="auto", choices=["auto", "cpu", "cuda"], description="auto: CUDA when present, else CPU")
    tokenizer = Output("TOKENIZER")
    text_encoder = Output("TEXT_ENCODER")
    unet = Output("UNET")
    vae = Output("VAE")
    scheduler = Output("SCHEDULER", description="the model's scheduler config (a dict)")

    def fingerprint(self, ctx: Context, model: str | None = None, dtype: str | None = None, **other: Any) -> str:
        # The weights on disk may change under the same path: key on what the store keys on,
        # and on the precision "auto" resolves to, so a disk cache never mixes fp32 and fp16 runs.
        if dtype in (None, "auto"):
            dtype = getattr(ctx.models, "dtype", "fp32")
        if model is None:
            return f"linked:{dtype}"
        path = DEFAULT_MODEL if model == "default" else Path(model).expanduser()
        if not path.exists():
            return f"missing:{model}"
        stats = [path.stat()] if path.is_file() else [p.stat() for p in sorted(path.rglob("*")) if p.is_file()]
        return f"{os.path.realpath(path)}:{sum(s.st_size for s in stats)}:{max((s.st_mtime_ns for s in stats), default=0)}:{dtype}"

    def run(self, ctx: Context, model: str, dtype: str, device: str) -> dict[str, Any]:
        store = ctx.models if ctx.models is not None else ModelStore()
        parts = store.load_sd(model, dtype=None if dtype == "auto" else dtype, device=None if device == "auto" else device)
        if parts.family.is_sdxl:  # the SD nodes cannot drive SDXL's second text encoder and added conditioning yet
            raise ValueError(f"model: {model} is an {parts.family.label} model; the SD nodes run SD 1.x and SD 2.x models only")
        return {
            "tokenizer": parts.tokenizer,
            "text_encoder": parts.text_encoder,
            "unet": parts.unet,
            "vae": parts.vae,
            "scheduler": dict(parts.scheduler_config),
        }


NODES = [LoadModel]
