"""Diffusers pipeline folders (SD 1.x, SD 2.x, SDXL base and refiner), loaded offline.

The family is told from the folder (:func:`~nodeflow.models.families.folder_family`)
and decides which components are read:

=============  ==============================================================
family         components
=============  ==============================================================
SD 1.x / 2.x   ``tokenizer``, ``text_encoder`` (``CLIPTextModel``), ``unet``, ``vae``
SDXL base      the same plus ``tokenizer_2`` and ``text_encoder_2``
               (``CLIPTextModelWithProjection``: OpenCLIP-bigG with its projection)
SDXL refiner   ``tokenizer_2`` and ``text_encoder_2`` only
=============  ==============================================================

SD 2.x's OpenCLIP text encoder is stored by diffusers as a transformers
``CLIPTextModel`` already cut to its penultimate layer, so it loads like SD 1.x's.
Every module is read with ``local_files_only=True`` in the requested dtype, on the
requested device, in eval mode without gradients; weights saved only as a variant
(``*.fp16.safetensors``) are found too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .families import FOLDER_PARTS, ModelFamily, folder_family, pipeline_options
from .store import DTYPES, ModelLoadError, SDComponents, pipeline_scheduler_config


def load_folder(folder: Path, dtype: str = "fp32", device: str = "cpu", prediction_type: str | None = None) -> SDComponents:
    """Load every component of the pipeline folder ``folder`` for its family.

    ``prediction_type`` overrides the scheduler config's. Raises
    :class:`~nodeflow.models.store.ModelLoadError` naming the first missing component.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    family = folder_family(folder)
    for part in FOLDER_PARTS[family]:
        if not (folder / part).is_dir():
            raise ModelLoadError(f"{folder} is not a {_what(family)} folder: '{part}/' is missing")
    from transformers.utils import logging as transformers_logging

    # transformers 5 draws a "Loading weights" bar per model; nodeflow draws its own progress.
    transformers_logging.disable_progress_bar()
    torch_dtype = DTYPES[dtype]
    texts = _text_parts(folder, family, torch_dtype)
    # low_cpu_mem_usage=False: the fast path needs `accelerate`, which we do not depend on.
    with _built_on(device):
        unet = UNet2DConditionModel.from_pretrained(
            str(folder / "unet"), torch_dtype=torch_dtype, local_files_only=True, low_cpu_mem_usage=False,
            variant=_variant(folder / "unet", "diffusion_pytorch_model"),
        )
        vae = AutoencoderKL.from_pretrained(
            str(folder / "vae"), torch_dtype=torch_dtype, local_files_only=True, low_cpu_mem_usage=False,
            variant=_variant(folder / "vae", "diffusion_pytorch_model"),
        )
    modules = [unet, vae, *(m for k, m in texts.items() if k.startswith("text_encoder"))]
    for module in modules:
        module.to(device)  # already in torch_dtype: a dtype cast here would make diffusers warn
        module.eval()
        module.requires_grad_(False)
    raw = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    scheduler_config = pipeline_scheduler_config(raw, fix_legacy=not family.is_sdxl)
    if prediction_type is not None:
        scheduler_config["prediction_type"] = prediction_type
    index = _model_index(folder)
    info = {"format": "diffusers", "family": family.value, "dtype": dtype, "device": device, "scheduler": scheduler_config.get("_class_name")}
    return SDComponents(
        texts.get("tokenizer"), texts.get("text_encoder"), unet, vae, scheduler_config, source=str(folder), info=info,
        family=family, tokenizer_2=texts.get("tokenizer_2"), text_encoder_2=texts.get("text_encoder_2"),
        pipeline_config=pipeline_options(family, index),
    )


def _built_on(device: str) -> Any:
    """Where diffusers builds a model's (uninitialised, ``torch_dtype``) parameters before filling them from the file.

    On a GPU, the device itself: the weights go from the memory-mapped file straight into
    device memory in the target dtype, with no model-sized copy on the CPU first. On the
    CPU, the ordinary path (the one the parity tests pin down). The text encoders load on
    the CPU in the target dtype and are moved after: transformers refuses a device there
    without ``accelerate``.
    """
    import contextlib

    return contextlib.nullcontext() if device == "cpu" else torch.device(device)


def _what(family: ModelFamily) -> str:
    return "Stable Diffusion" if family is ModelFamily.SD1 else f"{family.label} Stable Diffusion"


def _text_parts(folder: Path, family: ModelFamily, torch_dtype: torch.dtype) -> dict[str, Any]:
    """The tokenizer(s) and text encoder(s) of ``family``, by their folder names."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    classes = {"text_encoder": CLIPTextModel, "text_encoder_2": CLIPTextModelWithProjection}
    parts: dict[str, Any] = {}
    for name in family.text_encoders:
        suffix = name.removeprefix("text_encoder")  # "" or "_2"
        parts[f"tokenizer{suffix}"] = CLIPTokenizer.from_pretrained(str(folder / f"tokenizer{suffix}"), local_files_only=True)
        parts[name] = classes[name].from_pretrained(
            str(folder / name), dtype=torch_dtype, local_files_only=True, variant=_variant(folder / name, "model")
        )
    return parts


def _model_index(folder: Path) -> dict[str, Any]:
    path = folder / "model_index.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    return data if isinstance(data, dict) else {}


def _variant(part: Path, stem: str) -> str | None:
    """The variant (``"fp16"``) when only a variant file holds the weights, as diffusers names them."""
    if any(part.glob(f"{stem}.safetensors")) or any(part.glob(f"{stem}.bin")):
        return None
    for file in sorted(part.glob(f"{stem}.*.safetensors")):
        return file.name[len(stem) + 1 : -len(".safetensors")]
    return None


__all__ = ["load_folder"]
