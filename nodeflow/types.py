"""Socket types: their names and the ONE connection rule.

A socket type is a name (``"LATENTS"``). Two sockets connect when :func:`can_connect`
says so; validation calls it and the server exports :func:`compatibility_table` so the
editor never re-implements the rule. A plugin may use a new type name without
registering it: an unknown name connects to itself (and to ``ANY`` inputs) only.

This module imports nothing heavy, so declaring nodes stays cheap. The Python value
classes that travel on the sockets (tensors with their meaning) live in
:mod:`nodeflow.values`; ``from nodeflow.types import Latents`` still works and loads
them (and torch) on first use.
"""

from __future__ import annotations

from typing import Any

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
SCHEDULER_CONFIG = "SCHEDULER_CONFIG"
SCHEDULER = "SCHEDULER"
TOKENS = "TOKENS"
CONDITIONING = "CONDITIONING"
LATENTS = "LATENTS"
NOISE_PRED = "NOISE_PRED"
IMAGE = "IMAGE"
MASK = "MASK"
EMBEDDING = "EMBEDDING"
CONTROLNET = "CONTROLNET"
LORA = "LORA"
DATASET = "DATASET"
CLIP = "CLIP"

#: Types whose values can be typed into a widget (a literal in the graph JSON).
LITERAL_TYPES = frozenset({INT, FLOAT, STRING, BOOL})

#: The only implicit conversions. Each is (from output type, to input type).
WIDENINGS: frozenset[tuple[str, str]] = frozenset({(INT, FLOAT)})

#: One line per known type: what its values are.
DESCRIPTIONS: dict[str, str] = {
    ANY: "accepts any value",
    INT: "an integer",
    FLOAT: "a real number",
    STRING: "text",
    BOOL: "true or false",
    TOKENIZER: "a CLIP tokenizer",
    TEXT_ENCODER: "a CLIP text encoder",
    UNET: "a denoising UNet",
    VAE: "a VAE (image <-> latents)",
    SCHEDULER_CONFIG: "a model's scheduler configuration (a dict)",
    SCHEDULER: "a diffusers scheduler with its timesteps, position and multistep history",
    TOKENS: "token ids and attention mask",
    CONDITIONING: "text embeddings for cross-attention (one or more entries, with areas, masks, ControlNets)",
    LATENTS: "latents in the UNet's (scaled) space",
    NOISE_PRED: "a UNet noise prediction",
    IMAGE: "images, float [0,1], layout [B,3,H,W]",
    MASK: "masks, float [0,1], layout [B,1,H,W]",
    EMBEDDING: "a textual-inversion embedding and its token",
    CONTROLNET: "a ControlNet model (diffusers ControlNetModel)",
    LORA: "LoRA weights (low-rank deltas for UNet and text-encoder layers)",
    DATASET: "training images with their captions",
    CLIP: "a model's tokenizers and text encoders with its family (SDXL's two; SD 1.x/2.x's one)",
}

#: Python annotations that stand for a primitive socket type.
PRIMITIVES: dict[Any, str] = {int: INT, float: FLOAT, str: STRING, bool: BOOL}


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
    names = sorted(DESCRIPTIONS)
    return {
        "any": ANY,
        "widenings": sorted([a, b] for a, b in WIDENINGS),
        "rule": "connect when the names are equal, the input is ANY, or (output, input) is a widening",
        "matrix": {o: [i for i in names if can_connect(o, i)] for o in names if o != ANY},
        "types": {name: {"description": text} for name, text in DESCRIPTIONS.items()},
    }


def socket_type_of(annotation: Any) -> str | None:
    """The socket type for a Python annotation (a primitive, or a value class), or ``None``.

    Value classes say their socket type in a ``__socket_type__`` class attribute.
    """
    found = PRIMITIVES.get(annotation)
    if found is not None:
        return found
    declared = getattr(annotation, "__socket_type__", None)
    return declared if isinstance(declared, str) else None


_VALUE_NAMES = frozenset({"Tokens", "ControlApplication", "Conditioning", "NoiseMask", "Latents", "Image", "Mask", "NoisePred", "SchedulerState",
                          "Embedding", "Lora", "LoraLayer", "Dataset"})


def __getattr__(name: str) -> Any:
    # Value classes moved to nodeflow.values; old imports keep working (loading torch then).
    if name in _VALUE_NAMES:
        from . import values

        return getattr(values, name)
    raise AttributeError(f"module 'nodeflow.types' has no attribute {name!r}")


__all__ = [
    "ANY", "INT", "FLOAT", "STRING", "BOOL", "TOKENIZER", "TEXT_ENCODER", "UNET", "VAE", "SCHEDULER_CONFIG",
    "SCHEDULER", "TOKENS", "CONDITIONING", "LATENTS", "NOISE_PRED", "IMAGE", "MASK", "EMBEDDING", "CONTROLNET", "LORA", "DATASET", "CLIP",
    "LITERAL_TYPES", "WIDENINGS", "DESCRIPTIONS", "PRIMITIVES", "can_connect", "convert", "compatibility_table",
    "socket_type_of",
]
