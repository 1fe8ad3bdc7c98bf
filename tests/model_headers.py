"""Checkpoints that are only a header: the key names that tell a family, with one-number tensors.

For listings (``GET /api/models``, the editor's model menu), which read a file's header
and never its weights. Not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

from pathlib import Path

from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES

#: The key every single-file SD checkpoint has (its UNet's first convolution).
UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"
#: The text-encoder keys diffusers' probes look for, by family.
FAMILY_KEYS = {
    "sd1": (CHECKPOINT_KEY_NAMES["clip"],),
    "sd2": (CHECKPOINT_KEY_NAMES["open_clip"],),
    "sdxl": (CHECKPOINT_KEY_NAMES["clip_sdxl"], CHECKPOINT_KEY_NAMES["open_clip_sdxl"]),
    "sdxl_refiner": (CHECKPOINT_KEY_NAMES["open_clip_sdxl_refiner"],),
}


def header_checkpoint(path: Path, family: str) -> Path:
    """Write a ``.safetensors`` file at ``path`` whose keys say ``family``; returns ``path``."""
    import torch
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: torch.zeros(1) for key in (UNET_KEY, *FAMILY_KEYS[family])}, str(path))
    return path
