"""What a model is, read before loading it: parameter count and widths, for the run budget.

Only small files are read: a diffusers folder's ``unet/`` and ``vae/`` ``config.json``
and the JSON headers of its ``.safetensors`` weights (tensor shapes, no tensor data); a
single-file checkpoint's header. Pickle weights (``.bin``, ``.ckpt``) are counted from
their size in bytes at 4 bytes a parameter. See :mod:`nodeflow.budget`.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from ..budget import ModelFacts

_HEADER_LIMIT = 100 << 20
_PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")
_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
_VAE_OUT = "first_stage_model.decoder.conv_out.weight"


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, from a ``.safetensors`` file's header (the weights are not read)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > _HEADER_LIMIT:
            raise ValueError(f"{path.name}: a safetensors header of {length} bytes is not plausible")
        header = json.loads(f.read(length))
    return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


def _count(shapes: dict[str, list[int]]) -> int:
    return sum(math.prod(shape) for shape in shapes.values())


def _weights(part: Path) -> int:
    """Parameters in one component folder (the plain files when variants such as ``.fp16`` sit beside them)."""
    files = sorted(p for p in part.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    plain = [p for p in files if p.name.count(".") == 1]
    total = 0
    for path in plain or files:
        total += _count(safetensors_shapes(path)) if path.suffix == ".safetensors" else path.stat().st_size // 4
    return total


def _channels(config: dict[str, Any]) -> int:
    return int(config["block_out_channels"][0])


def folder_facts(folder: Path, dtype: str = "auto") -> ModelFacts:
    """Facts of a diffusers folder (its ``unet`` and ``vae`` configs and weight headers)."""
    unet = json.loads((folder / "unet" / "config.json").read_text())
    vae = json.loads((folder / "vae" / "config.json").read_text())
    parameters = sum(_weights(folder / part) for part in _PARTS if (folder / part).is_dir())
    return ModelFacts(parameters, _channels(unet), _channels(vae), 2 ** (len(vae["block_out_channels"]) - 1), dtype, folder.name)


def file_facts(path: Path, dtype: str = "auto") -> ModelFacts | None:
    """Facts of a single-file ``.safetensors`` checkpoint (``None`` for other files or unknown layouts)."""
    if path.suffix != ".safetensors":
        return None
    shapes = safetensors_shapes(path)
    if _UNET_IN not in shapes or _VAE_OUT not in shapes:
        return None
    return ModelFacts(_count(shapes), shapes[_UNET_IN][0], shapes[_VAE_OUT][1], 8, dtype, path.name)


def model_facts(path: Path, dtype: str = "auto") -> ModelFacts | None:
    """Facts of the model at ``path`` (a folder or a file), ``None`` when they cannot be read cheaply."""
    try:
        return folder_facts(path, dtype) if path.is_dir() else file_facts(path, dtype)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def text_width(path: Path) -> int | None:
    """The text-embedding width a UNet or ControlNet cross-attends to (``cross_attention_dim``), read cheaply.

    ``path``: a diffusers model folder (its ``unet/config.json``), a component folder
    with its own ``config.json``, or a ``.safetensors`` file (the first ``attn2.to_k``
    weight's input width in its header). ``None`` when it cannot be told that way.
    """
    try:
        for config in (path / "unet" / "config.json", path / "config.json"):
            if path.is_dir() and config.is_file():
                width = json.loads(config.read_text()).get("cross_attention_dim")
                return int(width) if isinstance(width, int) else None
        if path.is_file() and path.suffix == ".safetensors":
            return next((int(s[1]) for k, s in safetensors_shapes(path).items() if k.endswith("attn2.to_k.weight")), None)
    except (OSError, ValueError, TypeError):
        return None
    return None


__all__ = ["file_facts", "folder_facts", "model_facts", "safetensors_shapes", "text_width"]
