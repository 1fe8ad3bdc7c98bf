"""The model store: each component loaded once per process, shared across runs.

Entries are keyed by real path + size + mtime + dtype + device, so a file replaced on
disk is loaded again and two dtypes of one model coexist.

CONTRACT (being filled in; do not change the shape without telling the others):
``ModelStore.load_sd(path, dtype=None, device=None) -> SDComponents`` where ``path`` is
a diffusers folder, a single-file ``.safetensors`` checkpoint, or ``"default"`` (the
embedded model in ``nodeflow/default_model``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where the embedded default model lives (a diffusers folder shipped in the package).
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "default_model"


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


class ModelStore:
    """Loads models by local path and keeps them for the life of the process. Thread-safe."""

    def __init__(self, device: str | None = None, dtype: str = "fp32", allow_pickle: bool = False):
        self.device = device
        self.dtype = dtype
        self.allow_pickle = allow_pickle
        self._lock = threading.Lock()
        self._items: dict[tuple[Any, ...], Any] = {}
