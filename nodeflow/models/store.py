"""The model store: each component loaded once per process, shared across runs.

Entries are keyed by the path's stamp (:func:`nodeflow.files.stamp`: real path, size,
mtime; for a diffusers folder, over the files its loaders read) plus dtype and device,
so a file replaced on disk is loaded again and two dtypes of one model coexist.

:class:`ModelStore` implements :class:`nodeflow.context.ModelStoreAPI`, the interface
nodes see as ``ctx.models``: ``load_sd(path, dtype=None, device=None) -> SDComponents``
where ``path`` is a diffusers folder, a single-file ``.safetensors`` checkpoint (handled
by :mod:`nodeflow.models.single_file`), or ``"default"`` (the embedded model).

Precision: ``dtype=None`` (the default) means fp16 on CUDA and fp32 on the CPU, the
usual choice for each; a store made with ``dtype="fp32"`` (``nodeflow run --dtype``)
uses that everywhere; a node's own dtype wins over both.

Everything loads with ``local_files_only=True`` from local paths: nothing here can
reach a model hub. Modules come back in eval mode with gradients off.

The scheduler config is normalised the way diffusers' ``StableDiffusionPipeline``
constructor does it (``steps_offset`` forced to 1, ``clip_sample`` forced off), so a
graph and the pipeline built from the same folder step with the same config.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..files import stamp
from ..resources import DEFAULT_MODEL_DIR

#: Where the embedded default model lives (a diffusers folder shipped in the package).
DEFAULT_MODEL = DEFAULT_MODEL_DIR

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
"""The precisions a model may load in, by the names nodes and the CLI use."""

#: Devices a user may name (``cuda:1`` included).
DEVICE_KINDS = ("cpu", "cuda", "mps")

T = TypeVar("T")


@dataclass(frozen=True)
class SDComponents:
    """A loaded SD 1.x model: tokenizer, text encoder, UNet, VAE and the scheduler config.

    ``scheduler_config`` is the plain dict of the model's scheduler config (with
    ``_class_name``); scheduler objects are made fresh per run from it.
    """

    tokenizer: Any
    text_encoder: Any
    unet: Any
    vae: Any
    scheduler_config: dict[str, Any]
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)


class ModelLoadError(ValueError):
    """A model path that cannot be loaded (missing, wrong layout, a refused pickle file)."""


class ModelStore:
    """Loads models by local path and keeps them for the life of the process. Thread-safe.

    ``device`` is the default device (``None``: CUDA when available, else CPU) and
    ``dtype`` the default precision (``fp32``/``fp16``/``bf16``; ``None``: see the module
    docstring). ``allow_pickle`` opts in to pickle checkpoints (``.ckpt``/``.bin``/``.pt``),
    which then load with ``weights_only=True``. An unknown or unavailable device or dtype
    raises ``ValueError`` here, before anything loads.
    """

    def __init__(self, device: str | None = None, dtype: str | None = None, allow_pickle: bool = False):
        if dtype not in (None, *DTYPES):
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        check_device(device)
        self.device = device
        self.dtype = dtype
        self.allow_pickle = allow_pickle
        self._lock = threading.Lock()
        self._items: dict[tuple[Any, ...], Any] = {}
        self.loads = 0  # how many times weights were really read (tests and benches count it)

    def resolve_device(self, device: str | None = None) -> str:
        """The device a load will use: ``device``, else the store's, else CUDA when present."""
        chosen = device or self.device
        if chosen in (None, "auto"):
            return "cuda" if torch.cuda.is_available() else "cpu"
        return chosen

    def default_dtype(self, device: str | None = None) -> str:
        """The precision ``"auto"`` means: the store's dtype, else fp16 on CUDA and fp32 elsewhere."""
        if self.dtype is not None:
            return self.dtype
        return "fp16" if self.resolve_device(device).startswith("cuda") else "fp32"

    def load_sd(self, path: str | Path, dtype: str | None = None, device: str | None = None) -> SDComponents:
        """Load (or return the already loaded) SD 1.x model at ``path``; see the module docstring."""
        device = self.resolve_device(device)
        check_device(device)
        dtype = dtype or self.default_dtype(device)
        if dtype not in DTYPES:
            raise ModelLoadError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        real = self._resolve(path)
        try:
            key = ("sd", *stamp(real), dtype, device)
        except ValueError as exc:  # a folder that is not a model
            raise ModelLoadError(str(exc)) from None
        with self._lock:  # one lock for all loads: two runs asking at once load once
            found = self._items.get(key)
            if found is None:
                found = self._load(real, dtype, device)
                self._items[key] = found
                self.loads += 1
            return found

    def derived(self, key: tuple[Any, ...], build: Callable[[], T]) -> T:
        """The derived model under ``key`` (a LoRA merge, a model with an added embedding), built once.

        ``key`` must identify everything the result depends on (base model, add-on file
        stamp, weights); ``build`` runs only when the store does not hold it yet.
        """
        full = ("derived", *key)
        with self._lock:
            found = self._items.get(full)
            if found is None:
                found = build()
                self._items[full] = found
            return found  # type: ignore[no-any-return]

    def clear(self) -> None:
        """Forget every loaded model (the memory is freed once no run holds them)."""
        with self._lock:
            self._items.clear()

    # -- internals ------------------------------------------------------------
    def _resolve(self, path: str | Path) -> Path:
        if str(path) == "default":
            if not (DEFAULT_MODEL / "model_index.json").is_file():
                raise ModelLoadError(f"the embedded default model is missing from {DEFAULT_MODEL}")
            return DEFAULT_MODEL
        real = Path(os.path.realpath(Path(path).expanduser()))
        if not real.exists():
            raise ModelLoadError(f"model path {path} does not exist (models load from local paths only)")
        return real

    def _load(self, real: Path, dtype: str, device: str) -> SDComponents:
        if real.is_dir():
            return load_diffusers_folder(real, dtype=dtype, device=device)
        # Single files (and the pickle refusal, with its message) are single_file's business.
        from .single_file import load_single_file

        return load_single_file(real, dtype=dtype, device=device, allow_pickle=self.allow_pickle)


def check_device(device: str | None) -> None:
    """Raise ``ValueError`` for a device name torch does not know or this machine lacks (``None``/``auto`` pass)."""
    if device in (None, "auto"):
        return
    kind, _, index = device.partition(":")
    if kind not in DEVICE_KINDS or (index and not index.isdigit()):
        raise ValueError(f"unknown device {device!r} (use auto, cpu, cuda, cuda:N or mps)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but torch sees no CUDA GPU here (torch {torch.__version__})")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} was asked for, but there are {torch.cuda.device_count()} CUDA devices")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for, but Apple MPS is not available here")


def load_diffusers_folder(folder: Path, dtype: str = "fp32", device: str = "cpu") -> SDComponents:
    """Load the components of a ``StableDiffusionPipeline`` folder, offline.

    Accepts folders whose weights are only saved as a variant (``*.fp16.safetensors``)
    and casts every module to ``dtype`` on ``device``.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    for part in ("tokenizer", "text_encoder", "unet", "vae", "scheduler"):
        if not (folder / part).is_dir():
            raise ModelLoadError(f"{folder} is not a Stable Diffusion folder: '{part}/' is missing")
    from transformers.utils import logging as transformers_logging

    # transformers 5 draws a "Loading weights" bar per model; nodeflow draws its own progress.
    transformers_logging.disable_progress_bar()
    torch_dtype = DTYPES[dtype]
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(
        str(folder / "text_encoder"), dtype=torch_dtype, local_files_only=True, variant=_variant(folder / "text_encoder", "model")
    )
    # low_cpu_mem_usage=False: the fast path needs `accelerate`, which we do not depend on.
    unet = UNet2DConditionModel.from_pretrained(
        str(folder / "unet"), torch_dtype=torch_dtype, local_files_only=True, low_cpu_mem_usage=False,
        variant=_variant(folder / "unet", "diffusion_pytorch_model"),
    )
    vae = AutoencoderKL.from_pretrained(
        str(folder / "vae"), torch_dtype=torch_dtype, local_files_only=True, low_cpu_mem_usage=False,
        variant=_variant(folder / "vae", "diffusion_pytorch_model"),
    )
    modules = {"text_encoder": text_encoder, "unet": unet, "vae": vae}
    for module in modules.values():
        module.to(device)  # already in torch_dtype: a dtype cast here would make diffusers warn
        module.eval()
        module.requires_grad_(False)
    scheduler_config = pipeline_scheduler_config(json.loads((folder / "scheduler" / "scheduler_config.json").read_text()))
    info = {"format": "diffusers", "dtype": dtype, "device": device, "scheduler": scheduler_config.get("_class_name")}
    return SDComponents(tokenizer, text_encoder, unet, vae, scheduler_config, source=str(folder), info=info)


def _variant(part: Path, stem: str) -> str | None:
    """The variant (``"fp16"``) when only a variant file holds the weights, as diffusers names them."""
    if any(part.glob(f"{stem}.safetensors")) or any(part.glob(f"{stem}.bin")):
        return None
    for file in sorted(part.glob(f"{stem}.*.safetensors")):
        return file.name[len(stem) + 1 : -len(".safetensors")]
    return None


def pipeline_scheduler_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A scheduler config as diffusers' SD pipeline sees it: defaults filled in, legacy keys fixed.

    The pipeline constructor instantiates the scheduler (so class defaults join the
    config) and then rewrites ``steps_offset`` to 1 and ``clip_sample`` to False on
    legacy configs. We do the same so that a graph and the pipeline agree. The fixed
    keys are also dropped from ``_use_default_values``, otherwise ``from_config`` would
    silently put the class default back.
    """
    import diffusers

    cls = getattr(diffusers, str(raw.get("_class_name", "")), None)
    if cls is None or not hasattr(cls, "from_config"):
        return dict(raw)
    config = dict(cls.from_config(raw).config)
    fixed = {}
    if config.get("steps_offset", 1) != 1:
        fixed["steps_offset"] = 1
    if config.get("clip_sample", False) is True:
        fixed["clip_sample"] = False
    config.update(fixed)
    if fixed and "_use_default_values" in config:
        config["_use_default_values"] = [k for k in config["_use_default_values"] if k not in fixed]
    return config


__all__ = ["DEFAULT_MODEL", "DTYPES", "ModelStore", "SDComponents", "ModelLoadError", "check_device", "load_diffusers_folder",
           "pipeline_scheduler_config"]
