"""Socket types: their names, their Python value classes, and the ONE connection rule.

A socket type is a name (``"LATENTS"``). Two sockets connect when :func:`can_connect`
says so; validation calls it and the server exports :func:`compatibility_table` so the
editor never re-implements the rule. A plugin may use a new type name without
registering it: an unknown name connects to itself (and to ``ANY`` inputs) only.

Tensors travel with the metadata that gives them meaning (a latents value knows the
VAE scaling it carries, an image knows its range and layout), as the frozen
dataclasses below. Values are shared through the cache, so nodes never mutate them.

This module also knows how to turn values into safetensors-friendly parts
(:func:`encode_value`/:func:`decode_value`) for the cache's disk tier.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

# ---------------------------------------------------------------------------
# Type names
# ---------------------------------------------------------------------------
ANY = "*"
INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BOOL = "BOOL"

TOKENIZER = "TOKENIZER"
TEXT_ENCODER = "TEXT_ENCODER"
UNET = "UNET"
VAE = "VAE"
SCHEDULER = "SCHEDULER"
TOKENS = "TOKENS"
CONDITIONING = "CONDITIONING"
LATENTS = "LATENTS"
TIMESTEPS = "TIMESTEPS"
NOISE_PRED = "NOISE_PRED"
IMAGE = "IMAGE"
MASK = "MASK"
EMBEDDING = "EMBEDDING"

#: Types whose values can be typed into a widget (a literal in the graph JSON).
LITERAL_TYPES = frozenset({INT, FLOAT, STRING, BOOL})

#: The only implicit conversions. Each is (from output type, to input type).
WIDENINGS: frozenset[tuple[str, str]] = frozenset({(INT, FLOAT)})

#: Editor colours and one-line meanings; the editor reads these from the schema endpoint.
TYPE_INFO: dict[str, dict[str, str]] = {
    ANY: {"color": "#aaaaaa", "description": "accepts any value"},
    INT: {"color": "#6fa8dc", "description": "an integer"},
    FLOAT: {"color": "#76a5af", "description": "a real number"},
    STRING: {"color": "#93c47d", "description": "text"},
    BOOL: {"color": "#b4a7d6", "description": "true or false"},
    TOKENIZER: {"color": "#c27ba0", "description": "a CLIP tokenizer"},
    TEXT_ENCODER: {"color": "#ffd966", "description": "a CLIP text encoder"},
    UNET: {"color": "#b19cd9", "description": "a denoising UNet"},
    VAE: {"color": "#ff6e6e", "description": "a VAE (image <-> latents)"},
    SCHEDULER: {"color": "#e69138", "description": "a diffusers scheduler and its timesteps/state"},
    TOKENS: {"color": "#d5a6bd", "description": "token ids and attention mask"},
    CONDITIONING: {"color": "#ffa931", "description": "text embeddings for cross-attention"},
    LATENTS: {"color": "#ff9cf9", "description": "latents in the UNet's (scaled) space"},
    TIMESTEPS: {"color": "#f6b26b", "description": "a scheduler's timesteps and explicit state"},
    NOISE_PRED: {"color": "#a4c2f4", "description": "a UNet noise prediction"},
    IMAGE: {"color": "#64b5f6", "description": "images, float [0,1], layout [B,3,H,W]"},
    MASK: {"color": "#81c784", "description": "masks, float [0,1], layout [B,1,H,W]"},
    EMBEDDING: {"color": "#e06666", "description": "a textual-inversion embedding and its token"},
}


def can_connect(output_type: str, input_type: str) -> bool:
    """Whether an output of ``output_type`` may feed an input of ``input_type``.

    The single connection rule of nodeflow: same name, an ``ANY`` input, or an
    explicit widening from :data:`WIDENINGS`. Nothing else is implicit.
    """
    return output_type == input_type or input_type == ANY or (output_type, input_type) in WIDENINGS


def convert(value: Any, output_type: str, input_type: str) -> Any:
    """Apply the widening that :func:`can_connect` allowed (INT -> FLOAT gives a float)."""
    if output_type == INT and input_type == FLOAT and isinstance(value, int):
        return float(value)
    return value


def compatibility_table() -> dict[str, Any]:
    """The connection rule as data, for the schema endpoint and ``nodeflow nodes --json``.

    ``matrix`` lists, for each known output type, the known input types it may feed;
    ``any`` and ``widenings`` let a client apply the same rule to type names it has
    not seen (a plugin's own type connects to itself only).
    """
    names = sorted(TYPE_INFO)
    return {
        "any": ANY,
        "widenings": sorted([a, b] for a, b in WIDENINGS),
        "rule": "connect when the names are equal, the input is ANY, or (output, input) is a widening",
        "matrix": {o: [i for i in names if can_connect(o, i)] for o in names if o != ANY},
        "types": TYPE_INFO,
    }


# ---------------------------------------------------------------------------
# Value classes
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Tokens:
    """Token ids for a batch of prompts: ``ids`` [B, 77] long, ``attention_mask`` [B, 77].

    ``truncated`` holds, per prompt, the text that did not fit (empty when none).
    """

    ids: torch.Tensor
    attention_mask: torch.Tensor
    truncated: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conditioning:
    """Text embeddings [B, 77, D] that the UNet cross-attends to."""

    embeddings: torch.Tensor


@dataclass(frozen=True)
class Latents:
    """Latents [B, C, h, w] in the UNet's space.

    ``scaling_factor`` is the VAE factor these latents were multiplied by (decoding
    divides by it); ``noise_sigma``-style details belong to the scheduler state.

    ``generator_state`` is the random stream that produced these latents: the
    ``get_state()`` of the CPU ``torch.Generator`` after their last draw, or ``None``.
    Stochastic samplers continue it, so a graph draws its numbers in the same order
    as diffusers' pipelines do with one generator (initial noise first, then step noise).
    """

    samples: torch.Tensor
    scaling_factor: float = 1.0
    generator_state: torch.Tensor | None = None


@dataclass(frozen=True)
class Image:
    """Images as float32 in [0, 1], layout [B, 3, H, W], on the CPU."""

    pixels: torch.Tensor


@dataclass(frozen=True)
class Mask:
    """Masks as float32 in [0, 1], layout [B, 1, H, W]; 1 marks the area to change."""

    mask: torch.Tensor


@dataclass(frozen=True)
class NoisePred:
    """A UNet noise prediction [B, C, h, w].

    ``uncond`` is set when the prediction came from a batch-2 classifier-free call and
    still needs guidance; a guided prediction has ``uncond=None``.
    """

    cond: torch.Tensor
    uncond: torch.Tensor | None = None


@dataclass(frozen=True)
class SchedulerState:
    """A diffusers scheduler part-way through a run: the TIMESTEPS value.

    ``scheduler`` has had ``set_timesteps(steps)`` called and carries the multistep
    history (PNDM's ``ets``, DPM-Solver's ``model_outputs``...) of the steps taken so
    far. It is never mutated once in a state: a step works on a deep copy and returns
    a new state, so a cached state can feed any number of branches. ``index`` is the
    position in ``scheduler.timesteps`` of the next step; ``eta`` is DDIM's eta.
    """

    scheduler: Any
    index: int = 0
    steps: int = 0
    name: str = ""
    eta: float = 0.0

    @property
    def timesteps(self) -> torch.Tensor:
        """All timesteps of the run (the steps already taken included)."""
        return self.scheduler.timesteps  # type: ignore[no-any-return]

    @property
    def remaining(self) -> int:
        """How many steps are left."""
        return len(self.scheduler.timesteps) - self.index


@dataclass(frozen=True)
class Embedding:
    """A textual-inversion embedding: ``vectors`` [n, D] bound to ``token``."""

    token: str
    vectors: torch.Tensor


#: Python class -> socket type, used when a node declares an input by annotation.
PY_TYPES: dict[Any, str] = {
    int: INT,
    float: FLOAT,
    str: STRING,
    bool: BOOL,
    Tokens: TOKENS,
    Conditioning: CONDITIONING,
    Latents: LATENTS,
    Image: IMAGE,
    Mask: MASK,
    NoisePred: NOISE_PRED,
    SchedulerState: TIMESTEPS,
    Embedding: EMBEDDING,
}

#: Value classes the disk cache may rebuild by name.
VALUE_CLASSES: dict[str, type] = {
    cls.__name__: cls for cls in (Tokens, Conditioning, Latents, Image, Mask, NoisePred, Embedding)
}


def socket_type_of(annotation: Any) -> str | None:
    """The socket type for a Python annotation, or ``None`` when it has none."""
    return PY_TYPES.get(annotation)


# ---------------------------------------------------------------------------
# Size and (de)serialisation, for the cache
# ---------------------------------------------------------------------------
def value_nbytes(value: Any) -> int:
    """Bytes held by tensors inside ``value`` (modules count 0: the model store owns them)."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, (list, tuple)):
        return sum(value_nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(value_nbytes(v) for v in value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(value_nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


def tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors directly inside ``value`` (one level of containers/dataclasses deep)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: list[torch.Tensor] = []
        for f in dataclasses.fields(value):
            out.extend(tensors_in(getattr(value, f.name)))
        return out
    return []


class NotSerializable(Exception):
    """Raised by :func:`encode_value` for values the disk tier cannot hold (models, objects)."""


def encode_value(value: Any, tensors: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """Encode ``value`` as JSON-able metadata, moving tensors into ``tensors``.

    Raises :class:`NotSerializable` for anything that is not a primitive, a tensor,
    a container of those, or one of :data:`VALUE_CLASSES`.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        name = f"{prefix}{len(tensors)}"
        tensors[name] = value.detach().contiguous().cpu()
        return {"__tensor__": name}
    if isinstance(value, (list, tuple)):
        items = [encode_value(v, tensors, prefix) for v in value]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: encode_value(v, tensors, prefix) for k, v in value.items()}}
    cls_name = type(value).__name__
    if VALUE_CLASSES.get(cls_name) is type(value) and dataclasses.is_dataclass(value):
        fields = {f.name: encode_value(getattr(value, f.name), tensors, prefix) for f in dataclasses.fields(value)}
        return {"__value__": cls_name, "fields": fields}
    raise NotSerializable(cls_name)


def decode_value(meta: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode_value`."""
    if isinstance(meta, list):
        return [decode_value(m, tensors) for m in meta]
    if isinstance(meta, dict):
        if "__tensor__" in meta:
            return tensors[meta["__tensor__"]]
        if "__tuple__" in meta:
            return tuple(decode_value(m, tensors) for m in meta["__tuple__"])
        if "__dict__" in meta:
            return {k: decode_value(v, tensors) for k, v in meta["__dict__"].items()}
        if "__value__" in meta:
            cls = VALUE_CLASSES[meta["__value__"]]
            return cls(**{k: decode_value(v, tensors) for k, v in meta["fields"].items()})
    return meta


__all__ = [
    "ANY", "INT", "FLOAT", "STRING", "BOOL", "TOKENIZER", "TEXT_ENCODER", "UNET", "VAE", "SCHEDULER",
    "TOKENS", "CONDITIONING", "LATENTS", "TIMESTEPS", "NOISE_PRED", "IMAGE", "MASK", "EMBEDDING",
    "LITERAL_TYPES", "WIDENINGS", "TYPE_INFO", "can_connect", "convert", "compatibility_table",
    "Tokens", "Conditioning", "Latents", "Image", "Mask", "NoisePred", "SchedulerState", "Embedding", "PY_TYPES",
    "VALUE_CLASSES", "socket_type_of", "value_nbytes", "tensors_in", "encode_value", "decode_value",
    "NotSerializable",
]
