"""Stand-alone VAEs, loaded offline: a diffusers folder or a single weights file (ComfyUI's ``models/vae``).

* **Folder** (``config.json`` + weights): diffusers' ``AutoencoderKL.from_pretrained``
  with ``local_files_only=True``.
* **Single file** (``.safetensors``; pickle formats only with the store's
  ``allow_pickle``): the original LDM key layout (``encoder.down.0...``, optionally under
  ``first_stage_model.``, as ComfyUI's VAE files are) is renamed with diffusers'
  ``convert_ldm_vae_checkpoint``; diffusers' own layout (``encoder.down_blocks...``)
  loads as it is. A file has no config: channels and layers are read from the tensor
  shapes onto the SD 1.x skeleton; what shapes cannot tell (the latent scaling factor)
  comes from the skeleton (0.18215) unless the caller gives one. Weights load strictly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..resources import CONFIGS_DIR
from .single_file import _VAE, CheckpointError, _aligned, _build, _converted, _fit_vae, read_state_dict

#: The config the single-file layout is fitted onto.
SKELETON = CONFIGS_DIR / "sd1" / "vae" / "config.json"


def load_vae(path: str | Path, dtype: torch.dtype, device: str, allow_pickle: bool = False, scaling_factor: float = 0.0) -> Any:
    """The ``AutoencoderKL`` at ``path``, on ``device`` in ``dtype``; ``scaling_factor`` > 0 replaces its config's."""
    from diffusers import AutoencoderKL

    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: not a diffusers VAE folder (no config.json)")
        vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True, low_cpu_mem_usage=False)
    else:
        vae = _from_single_file(path, dtype, allow_pickle)
    if scaling_factor > 0:
        vae.register_to_config(scaling_factor=float(scaling_factor))
    return vae.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _from_single_file(path: Path, dtype: torch.dtype, allow_pickle: bool) -> Any:
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    state = read_state_dict(path, allow_pickle=allow_pickle)
    state = {k: _aligned(v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    config = json.loads(SKELETON.read_text())
    if any(k.startswith(("encoder.down_blocks.", "decoder.up_blocks.")) for k in state):  # diffusers' layout
        config.update(_fit_diffusers(state, path))
        return _build(AutoencoderKL, config, state, path, "VAE")
    ldm = {(k if k.startswith(_VAE) else _VAE + k): v for k, v in state.items()}
    config.update(_converted(_fit_vae, ldm, path=path, what="VAE"))
    return _build(AutoencoderKL, config, _converted(convert_ldm_vae_checkpoint, ldm, config, path=path, what="VAE"), path, "VAE")


def _fit_diffusers(state: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """Config fields read from a diffusers-layout VAE state dict's shapes."""
    try:
        levels = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.down_blocks.")})
        blocks = {int(k.split(".")[4]) for k in state if k.startswith("encoder.down_blocks.0.resnets.")}
        return {
            "in_channels": int(state["encoder.conv_in.weight"].shape[1]),
            "out_channels": int(state["decoder.conv_out.weight"].shape[0]),
            "block_out_channels": [int(state[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in levels],
            "layers_per_block": len(blocks),
            "latent_channels": int(state["decoder.conv_in.weight"].shape[1]),
            "down_block_types": ["DownEncoderBlock2D"] * len(levels),
            "up_block_types": ["UpDecoderBlock2D"] * len(levels),
        }
    except (KeyError, IndexError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a VAE weights file ({exc})") from exc


__all__ = ["SKELETON", "load_vae"]
