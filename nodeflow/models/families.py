"""Model families (SD 1.x, SD 2.x, SDXL base, SDXL refiner) and how a model tells its own.

The family decides which text encoders a model has, how prompts are encoded and which
extra conditioning its UNet takes, so the loader records it on the loaded components
(:attr:`~nodeflow.models.store.SDComponents.family`) and later nodes can carry it on
their values. It is told two ways:

* **diffusers folders** (:func:`folder_family`): a UNet with ``addition_embed_type:
  "text_time"`` (or an ``StableDiffusionXL*`` pipeline class) is SDXL; without a first
  text encoder it is the refiner. Otherwise an OpenCLIP text encoder (``hidden_act:
  "gelu"``; OpenAI's CLIP uses ``quick_gelu``) or a UNet with linear attention
  projections (``use_linear_projection``) is SD 2.x; anything else SD 1.x.
* **single-file checkpoints** (:func:`checkpoint_family`): by the key layout of the
  text encoders, with diffusers' own probes (``is_clip_model``, ``is_open_clip_model``,
  ``is_open_clip_sdxl_model``, ``is_open_clip_sdxl_refiner_model`` in
  ``diffusers.loaders.single_file_utils``). They look for width-independent keys, so
  fine-tunes and the tiny test models are told like the real ones. (diffusers'
  ``infer_diffusers_model_type`` also probes depth-specific keys such as
  ``resblocks.9``, which a shallower model lacks, so it is not used directly.)

The prediction type (``epsilon`` or ``v_prediction``) is not a family: it lives in the
scheduler config (:attr:`~nodeflow.models.store.SDComponents.prediction_type`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any


class ModelFamily(str, Enum):
    """The architecture family of a Stable Diffusion model; the value is its short name."""

    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    SDXL_REFINER = "sdxl_refiner"

    @property
    def is_sdxl(self) -> bool:
        """Whether the UNet takes SDXL's added conditioning (pooled text embeddings + time ids)."""
        return self in (ModelFamily.SDXL, ModelFamily.SDXL_REFINER)

    @property
    def text_encoders(self) -> tuple[str, ...]:
        """The text-encoder slots the family has: ``text_encoder`` and/or ``text_encoder_2``."""
        return _TEXT_ENCODERS[self]

    @property
    def label(self) -> str:
        """A human name for menus and messages."""
        return _LABELS[self]


_TEXT_ENCODERS = {
    ModelFamily.SD1: ("text_encoder",),
    ModelFamily.SD2: ("text_encoder",),
    ModelFamily.SDXL: ("text_encoder", "text_encoder_2"),
    ModelFamily.SDXL_REFINER: ("text_encoder_2",),
}
_LABELS = {
    ModelFamily.SD1: "SD 1.x",
    ModelFamily.SD2: "SD 2.x",
    ModelFamily.SDXL: "SDXL",
    ModelFamily.SDXL_REFINER: "SDXL refiner",
}

#: The components folder each family needs (besides ``scheduler/``).
FOLDER_PARTS = {
    ModelFamily.SD1: ("tokenizer", "text_encoder", "unet", "vae", "scheduler"),
    ModelFamily.SD2: ("tokenizer", "text_encoder", "unet", "vae", "scheduler"),
    ModelFamily.SDXL: ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2", "unet", "vae", "scheduler"),
    ModelFamily.SDXL_REFINER: ("tokenizer_2", "text_encoder_2", "unet", "vae", "scheduler"),
}

#: The SDXL pipelines' constructor defaults for the options a folder's model_index may set.
SDXL_PIPELINE_DEFAULTS = {"force_zeros_for_empty_prompt": True, "requires_aesthetics_score": False}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def _declares(index: dict[str, Any], folder: Path, part: str) -> bool:
    """Whether the folder has component ``part``: model_index's entry when it has one, else the subfolder."""
    if part in index:
        entry = index[part]
        return isinstance(entry, list) and bool(entry) and entry[0] is not None
    return (folder / part).is_dir()


def folder_family(folder: str | Path) -> ModelFamily:
    """The family of a diffusers pipeline folder, from its ``model_index.json`` and component configs."""
    folder = Path(folder)
    index = _read_json(folder / "model_index.json")
    unet = _read_json(folder / "unet" / "config.json")
    if unet.get("addition_embed_type") == "text_time" or "StableDiffusionXL" in str(index.get("_class_name", "")):
        return ModelFamily.SDXL if _declares(index, folder, "text_encoder") else ModelFamily.SDXL_REFINER
    text = _read_json(folder / "text_encoder" / "config.json")
    if text.get("hidden_act") == "gelu" or unet.get("use_linear_projection") is True:
        return ModelFamily.SD2
    return ModelFamily.SD1


def pipeline_options(family: ModelFamily, index: dict[str, Any]) -> dict[str, Any]:
    """What diffusers' pipeline for ``family`` reads from ``model_index.json`` besides components.

    SDXL: ``force_zeros_for_empty_prompt`` (an empty negative prompt becomes zero
    embeddings) and ``requires_aesthetics_score`` (the refiner's time ids carry an
    aesthetic score instead of the target size), with the pipelines' defaults.
    The SD 1.x/2.x pipeline reads none; their dict is empty.
    """
    if not family.is_sdxl:
        return {}
    return {key: bool(index.get(key, default)) for key, default in SDXL_PIPELINE_DEFAULTS.items()}


def checkpoint_family(checkpoint: Mapping[str, Any]) -> ModelFamily | None:
    """The family of a single-file checkpoint by its text-encoder keys, or None when none fits.

    SDXL base: CLIP-L at ``conditioner.embedders.0.transformer.*`` and OpenCLIP-bigG at
    ``conditioner.embedders.1.model.*``; refiner: OpenCLIP-bigG alone at
    ``conditioner.embedders.0.model.*``; SD 2.x: OpenCLIP-H at ``cond_stage_model.model.*``;
    SD 1.x: CLIP-L at ``cond_stage_model.transformer.*``.
    """
    from diffusers.loaders import single_file_utils as probes

    if probes.is_open_clip_sdxl_model(checkpoint) and probes.is_clip_sdxl_model(checkpoint):
        return ModelFamily.SDXL
    if probes.is_open_clip_sdxl_refiner_model(checkpoint):
        return ModelFamily.SDXL_REFINER
    if probes.is_open_clip_model(checkpoint):
        return ModelFamily.SD2
    # Some early SD 1.x files lack CLIP's ``text_model.`` level; the prefix alone tells them.
    if probes.is_clip_model(checkpoint) or any(k.startswith("cond_stage_model.transformer.") for k in checkpoint):
        return ModelFamily.SD1
    return None


def probe_family(path: str | Path) -> ModelFamily | None:
    """The family of the model at ``path`` without loading weights, or None when it cannot be told.

    A folder is read by its configs; a ``.safetensors`` file by its header's key names
    only. Pickle checkpoints are not opened (unpickling can run code), so they give None,
    as does anything that is not a model. Meant for listings (a model menu), not loading.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if (path / "model_index.json").is_file() or (path / "unet" / "config.json").is_file():
            return folder_family(path)
        return None
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = dict.fromkeys(handle.keys())
    except Exception:  # a damaged or foreign file is "unknown" in a listing; loading it names the fault
        return None
    return checkpoint_family(keys) if "model.diffusion_model.input_blocks.0.0.weight" in keys else None


__all__ = [
    "FOLDER_PARTS",
    "ModelFamily",
    "SDXL_PIPELINE_DEFAULTS",
    "checkpoint_family",
    "folder_family",
    "pipeline_options",
    "probe_family",
]
