"""The model store: each component loaded once per process, shared across runs.

Entries are keyed by the path's stamp (:func:`nodeflow.files.stamp`: real path, size,
mtime; for a diffusers folder, over the files its loaders read) plus dtype and device,
so a file replaced on disk is loaded again and two dtypes of one model coexist.

SD 1.x, SD 2.x and SDXL base/refiner models load; :attr:`SDComponents.family` says which
(:mod:`nodeflow.models.families`).

:class:`ModelStore` implements :class:`nodeflow.context.ModelStoreAPI`, the interface
nodes see as ``ctx.models``: ``load_sd(path, dtype=None, device=None, prediction_type=None)
-> SDComponents`` where ``path`` is a diffusers folder (:mod:`nodeflow.models.folder`), a
single-file ``.safetensors`` checkpoint (:mod:`nodeflow.models.single_file`), or
``"default"`` (the embedded model).

Precision: ``dtype=None`` (the default) means fp16 on CUDA and fp32 on the CPU, the
usual choice for each; a store made with ``dtype="fp32"`` (``nodeflow run --dtype``)
uses that everywhere; a node's own dtype wins over both.

Everything loads with ``local_files_only=True`` from local paths: nothing here can
reach a model hub. Modules come back in eval mode with gradients off.

The scheduler config is normalised the way diffusers' ``StableDiffusionPipeline``
constructor does it (``steps_offset`` forced to 1, ``clip_sample`` forced off), so a
graph and the pipeline built from the same folder step with the same config. SDXL
pipelines do not rewrite those keys, so SDXL configs only get the class defaults.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..files import Stamp, stamp
from ..resources import DEFAULT_MODEL_DIR
from .families import ModelFamily

#: Where the embedded default model lives (a diffusers folder shipped in the package).
DEFAULT_MODEL = DEFAULT_MODEL_DIR

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
"""The precisions a model may load in, by the names nodes and the CLI use."""

#: Devices a user may name (``cuda:1`` included).
DEVICE_KINDS = ("cpu", "cuda", "mps")

#: The values a caller may give to override a model's prediction type (None: keep the model's).
PREDICTION_TYPES = (None, "epsilon", "v_prediction", "sample")

T = TypeVar("T")

ModelKey = tuple[Any, ...]
"""How the store files a loaded model: ``("sd", real path, bytes, mtime_ns, dtype, device, prediction_type)``."""


def model_key(path_stamp: Stamp, dtype: str, device: str, prediction_type: str | None = None) -> ModelKey:
    """The store's key for a model whose path has ``path_stamp``, loaded in ``dtype`` on ``device``.

    The one definition: :meth:`ModelStore.load_sd` files models under it, and the Ray
    backend computes it for a queued run to send it to a worker that already holds the model.
    """
    return ("sd", *path_stamp, dtype, device, prediction_type)


def precision_for(device: str, dtype: str | None = None) -> str:
    """The precision ``auto`` means on ``device`` for a store made with ``dtype``: it, else fp16 on CUDA, fp32 elsewhere."""
    if dtype is not None:
        return dtype
    return "fp16" if device.startswith("cuda") else "fp32"


def describe_key(key: ModelKey) -> dict[str, Any]:
    """A loaded model's key as the server shows it: the file or folder name (no server path), dtype, device."""
    return {"name": Path(str(key[1])).name, "dtype": key[4], "device": key[5]}


@dataclass(frozen=True)
class SDComponents:
    """A loaded Stable Diffusion model: tokenizer(s), text encoder(s), UNet, VAE, scheduler config.

    ``scheduler_config`` is the plain dict of the model's scheduler config (with
    ``_class_name``); scheduler objects are made fresh per run from it. ``family`` tells
    which slots are filled: SD 1.x/2.x use ``tokenizer``/``text_encoder``; SDXL base adds
    ``tokenizer_2``/``text_encoder_2`` (OpenCLIP-bigG with projection); the SDXL refiner
    has only the second pair (``tokenizer``/``text_encoder`` are None).
    ``pipeline_config`` holds what diffusers' pipeline reads from the folder's
    ``model_index.json`` (SDXL: ``force_zeros_for_empty_prompt``, ``requires_aesthetics_score``).
    """

    tokenizer: Any
    text_encoder: Any
    unet: Any
    vae: Any
    scheduler_config: dict[str, Any]
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    family: ModelFamily = ModelFamily.SD1
    tokenizer_2: Any = None
    text_encoder_2: Any = None
    pipeline_config: dict[str, Any] = field(default_factory=dict)

    @property
    def prediction_type(self) -> str:
        """What the UNet predicts: ``"epsilon"`` (noise), ``"v_prediction"`` or ``"sample"``."""
        return str(self.scheduler_config.get("prediction_type", "epsilon"))


class ModelLoadError(ValueError):
    """A model path that cannot be loaded (missing, wrong layout, a refused pickle file)."""


class ModelStore:
    """Loads models by local path and keeps them for the life of the process. Thread-safe.

    ``device`` is the default device (``None``: CUDA when available, else CPU) and
    ``dtype`` the default precision (``fp32``/``fp16``/``bf16``; ``None``: see the module
    docstring). ``allow_pickle`` opts in to pickle checkpoints (``.ckpt``/``.bin``/``.pt``),
    which then load with ``weights_only=True``. ``compile`` is the fast path's mode for load
    nodes left at ``auto`` (``nodeflow run --compile``; ``None``: off; see
    :mod:`nodeflow.models.fast`). An unknown or unavailable device, dtype or compile mode
    raises ``ValueError`` here, before anything loads.
    """

    def __init__(self, device: str | None = None, dtype: str | None = None, allow_pickle: bool = False,
                 compile: str | None = None):
        from .fast import MODES

        if dtype not in (None, *DTYPES):
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if compile not in (None, *MODES):
            raise ValueError(f"compile mode must be one of {', '.join(MODES)}, not {compile!r}")
        check_device(device)
        self.device = device
        self.dtype = dtype
        self.allow_pickle = allow_pickle
        self.compile = compile
        self._lock = threading.Lock()
        self._items: dict[tuple[Any, ...], Any] = {}
        self.loads = 0  # how many times weights were really read (tests and benches count it)
        self.load_seconds = 0.0  # time spent reading weights, all loads together (``nodeflow run --json``)

    def resolve_device(self, device: str | None = None) -> str:
        """The device a load will use: ``device``, else the store's, else CUDA when present."""
        chosen = device or self.device
        if chosen in (None, "auto"):
            return "cuda" if torch.cuda.is_available() else "cpu"
        return chosen

    def default_dtype(self, device: str | None = None) -> str:
        """The precision ``"auto"`` means: the store's dtype, else fp16 on CUDA and fp32 elsewhere."""
        return precision_for(self.resolve_device(device), self.dtype)

    def load_sd(
        self, path: str | Path, dtype: str | None = None, device: str | None = None, prediction_type: str | None = None
    ) -> SDComponents:
        """Load (or return the already loaded) model at ``path``; see the module docstring.

        ``prediction_type`` (``"epsilon"``, ``"v_prediction"``, ``"sample"``) overrides the
        one the scheduler config gives or a single file's inference picks.
        """
        if prediction_type not in PREDICTION_TYPES:
            raise ModelLoadError(f"prediction_type must be one of {sorted(t for t in PREDICTION_TYPES if t)}, not {prediction_type!r}")
        device = self.resolve_device(device)
        check_device(device)
        dtype = dtype or self.default_dtype(device)
        if dtype not in DTYPES:
            raise ModelLoadError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        real = self._resolve(path)
        try:
            key = model_key(stamp(real), dtype, device, prediction_type)
        except ValueError as exc:  # a folder that is not a model
            raise ModelLoadError(str(exc)) from None
        with self._lock:  # one lock for all loads: two runs asking at once load once
            found = self._items.get(key)
            if found is None:
                started = time.perf_counter()
                found = self._load(real, dtype, device, prediction_type)
                self.load_seconds += time.perf_counter() - started
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

    def held(self) -> list[ModelKey]:
        """The keys of the models loaded now (:func:`model_key`; derived models left out), oldest first.

        Read without the lock, which a load holds for its whole duration (seconds): a status
        answer must not wait for it. Copying a dict's keys is one step under the GIL.
        """
        return [key for key in list(self._items) if key[0] == "sd"]

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

    def _load(self, real: Path, dtype: str, device: str, prediction_type: str | None = None) -> SDComponents:
        if real.is_dir():
            return load_diffusers_folder(real, dtype=dtype, device=device, prediction_type=prediction_type)
        # Single files (and the pickle refusal, with its message) are single_file's business.
        from .single_file import load_single_file

        return load_single_file(real, dtype=dtype, device=device, allow_pickle=self.allow_pickle, prediction_type=prediction_type)


def check_device(device: str | None) -> None:
    """Raise ``ValueError`` for a device name torch does not know or this machine lacks (``None``/``auto`` pass)."""
    if device in (None, "auto"):
        return
    kind, _, index = device.partition(":")
    if kind not in DEVICE_KINDS or (index and not index.isdigit()):
        raise ValueError(f"unknown device {device!r} (use auto, cpu, cuda, cuda:N or mps)")
    problem = _missing_device(kind, int(index) if index else None)
    if problem:
        raise ValueError(f"device {device!r} was asked for, but {problem}")


def _missing_device(kind: str, index: int | None) -> str | None:
    """Why this machine has no device of ``kind`` (number ``index``), or ``None`` when it has one."""
    if kind == "cuda" and not torch.cuda.is_available():
        return f"torch sees no CUDA GPU here (torch {torch.__version__})"
    if kind == "cuda" and index is not None and index >= torch.cuda.device_count():
        return f"there are {torch.cuda.device_count()} CUDA devices"
    mps = getattr(torch.backends, "mps", None)
    if kind == "mps" and not (mps is not None and mps.is_available()):
        return "Apple MPS is not available here"
    return None


def load_diffusers_folder(
    folder: Path, dtype: str = "fp32", device: str = "cpu", prediction_type: str | None = None
) -> SDComponents:
    """Load the components of a diffusers SD 1.x/2.x or SDXL (base or refiner) folder, offline.

    See :func:`nodeflow.models.folder.load_folder`.
    """
    from .folder import load_folder

    return load_folder(folder, dtype=dtype, device=device, prediction_type=prediction_type)


def pipeline_scheduler_config(raw: dict[str, Any], fix_legacy: bool = True) -> dict[str, Any]:
    """A scheduler config as diffusers' SD pipeline sees it: defaults filled in, legacy keys fixed.

    The pipeline constructor instantiates the scheduler (so class defaults join the
    config) and then rewrites ``steps_offset`` to 1 and ``clip_sample`` to False on
    legacy configs. We do the same so that a graph and the pipeline agree. The fixed
    keys are also dropped from ``_use_default_values``, otherwise ``from_config`` would
    silently put the class default back. SDXL pipelines fix nothing: pass
    ``fix_legacy=False`` for them.
    """
    import diffusers

    cls = getattr(diffusers, str(raw.get("_class_name", "")), None)
    if cls is None or not hasattr(cls, "from_config"):
        return dict(raw)
    config = dict(cls.from_config(raw).config)
    if not fix_legacy:
        return config
    fixed = {}
    if config.get("steps_offset", 1) != 1:
        fixed["steps_offset"] = 1
    if config.get("clip_sample", False) is True:
        fixed["clip_sample"] = False
    config.update(fixed)
    if fixed and "_use_default_values" in config:
        config["_use_default_values"] = [k for k in config["_use_default_values"] if k not in fixed]
    return config


__all__ = [
    "DEFAULT_MODEL",
    "DTYPES",
    "PREDICTION_TYPES",
    "ModelFamily",
    "ModelLoadError",
    "ModelStore",
    "SDComponents",
    "check_device",
    "load_diffusers_folder",
    "pipeline_scheduler_config",
]
