"""Tiny random Stable Diffusion parts, for tests, benches and plugin authors' own tests.

The one place that knows how to build SD-architecture components at toy widths and
write them as the folders people download: every test model, the demo model's
training script and the benches call these with their own widths, so the layouts
stay consistent and none of them re-types a UNet constructor.

* :func:`unet`, :func:`vae`, :func:`clip_config`: components from widths (block types
  follow from which levels cross-attend);
* :func:`save_sd_folder`: a ``StableDiffusionPipeline`` folder as published ones look
  (BPE tokenizer files, the scheduler JSON as given);
* :func:`random_from_skeleton`: a full-size random model from a shipped config skeleton
  (``nodeflow/models/configs/sd1``...), for real-shaped benchmarks with nothing downloaded.

Nothing is downloaded; the CLIP BPE files come from the package's config skeleton.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .resources import CONFIGS_DIR

#: The CLIP BPE tokenizer files every SD family shares.
TOKENIZER_DIR = CONFIGS_DIR / "sd1" / "tokenizer"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json")

#: SD 1.5's scheduler_config.json as published (PNDM, scaled-linear betas, clip_sample off).
SD15_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def seeded(seed: int | None) -> None:
    """Seed torch's global generator (components are initialised from it) unless ``seed`` is None."""
    if seed is not None:
        torch.manual_seed(seed)


def unet(channels: Sequence[int], attention: Sequence[bool], *, cross_attention_dim: int, layers_per_block: int = 1,
         in_channels: int = 4, seed: int | None = None, **config: Any) -> Any:
    """A ``UNet2DConditionModel``: one level per width, cross-attention where ``attention`` says (in eval mode)."""
    from diffusers import UNet2DConditionModel

    seeded(seed)
    down = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention]
    up = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)]
    options: dict[str, Any] = {"sample_size": 8, "out_channels": 4, "attention_head_dim": 8, "norm_num_groups": 32, **config}
    return UNet2DConditionModel(in_channels=in_channels, block_out_channels=tuple(channels), layers_per_block=layers_per_block,
                                down_block_types=tuple(down), up_block_types=tuple(up), cross_attention_dim=cross_attention_dim,
                                **options).eval()


def vae(channels: Sequence[int], *, layers_per_block: int = 1, seed: int | None = None, **config: Any) -> Any:
    """An ``AutoencoderKL`` with one level per width (pixels per latent: 2 ** (levels - 1)), in eval mode."""
    from diffusers import AutoencoderKL

    seeded(seed)
    options: dict[str, Any] = {"latent_channels": 4, "norm_num_groups": 32, **config}
    return AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=tuple(channels), layers_per_block=layers_per_block,
                         down_block_types=("DownEncoderBlock2D",) * len(channels),
                         up_block_types=("UpDecoderBlock2D",) * len(channels), **options).eval()


def clip_config(hidden: int, heads: int, *, layers: int = 2, intermediate: int | None = None, act: str = "quick_gelu",
                projection: int | None = None, special_ids: tuple[int, int, int] = (49406, 49407, 49407)) -> Any:
    """A ``CLIPTextConfig`` over the real 49,408-token vocabulary and 77 positions.

    ``special_ids`` are (bos, eos, pad); ``(0, 2, 1)`` is what published configs say
    (with eos 2, CLIP pools at argmax(ids), the end token).
    """
    from transformers import CLIPTextConfig

    bos, eos, pad = special_ids
    return CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, hidden_size=hidden, num_attention_heads=heads,
                          intermediate_size=intermediate or 2 * hidden, num_hidden_layers=layers, hidden_act=act,
                          projection_dim=projection or hidden, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)


def text_encoder(config: Any, *, with_projection: bool = False, seed: int | None = None) -> Any:
    """A CLIP text model (``CLIPTextModelWithProjection`` for SDXL's second encoder), in eval mode."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    seeded(seed)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config).eval()


def clip_tokenizer(pad: str = "<|endoftext|>") -> Any:
    """The CLIP BPE tokenizer; OpenCLIP's (SD 2.x, SDXL's second) pads with ``"!"``."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True, pad_token=pad)


def publish_tokenizer(folder: Path, slot: str = "tokenizer", skeleton: str | None = None) -> None:
    """Replace ``folder/slot`` with the BPE files (and the skeleton's two JSONs), as published folders hold them.

    transformers 5 would save ``tokenizer.json`` instead; real SD folders ship the BPE files.
    """
    shutil.rmtree(folder / slot, ignore_errors=True)
    (folder / slot).mkdir()
    for name in TOKENIZER_FILES:
        own = skeleton is not None and name in ("special_tokens_map.json", "tokenizer_config.json")
        shutil.copyfile((CONFIGS_DIR / skeleton / slot if own else TOKENIZER_DIR) / name, folder / slot / name)


def save_sd_folder(out: Path, parts: dict[str, Any], scheduler_config: dict[str, Any] | None = None) -> Path:
    """Write ``parts`` (``unet``, ``vae``, ``text_encoder``) as an SD 1.x/2.x pipeline folder at ``out``.

    The scheduler JSON is written as given (default: SD 1.5's published one, PNDM), not
    normalised by diffusers, like a downloaded folder.
    """
    import diffusers
    from diffusers import StableDiffusionPipeline

    config = scheduler_config or SD15_SCHEDULER_CONFIG
    scheduler = getattr(diffusers, config["_class_name"]).from_config(config)
    pipe = StableDiffusionPipeline(vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=clip_tokenizer(),
                                   unet=parts["unet"], scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    publish_tokenizer(out)
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(config, indent=2))
    return out


def random_from_skeleton(out: Path, skeleton: str = "sd1", *, seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """A random-weight, full-size SD 1.x/2.x folder built from a shipped config skeleton (nothing downloaded)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig

    folder = CONFIGS_DIR / skeleton
    seeded(seed)
    parts = {
        "unet": UNet2DConditionModel.from_config(json.loads((folder / "unet" / "config.json").read_text())),
        "vae": AutoencoderKL.from_config(json.loads((folder / "vae" / "config.json").read_text())),
        "text_encoder": text_encoder(CLIPTextConfig.from_pretrained(str(folder / "text_encoder"), local_files_only=True)),
    }
    for module in parts.values():
        module.to(dtype)
    return save_sd_folder(out, parts, json.loads((folder / "scheduler" / "scheduler_config.json").read_text()))


__all__ = [
    "SD15_SCHEDULER_CONFIG", "TOKENIZER_DIR", "TOKENIZER_FILES", "clip_config", "clip_tokenizer", "publish_tokenizer",
    "random_from_skeleton", "save_sd_folder", "seeded", "text_encoder", "unet", "vae",
]
