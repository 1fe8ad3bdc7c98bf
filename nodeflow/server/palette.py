"""Socket colours for the editor: presentation, kept out of the engine's type rules.

Known types have fixed colours; a plugin's own type gets a stable colour from its
name, so the same type looks the same in every session.
"""

from __future__ import annotations

import hashlib

COLOURS: dict[str, str] = {
    "*": "#aaaaaa",
    "INT": "#6fa8dc",
    "FLOAT": "#76a5af",
    "STRING": "#93c47d",
    "BOOL": "#b4a7d6",
    "TOKENIZER": "#c27ba0",
    "TEXT_ENCODER": "#ffd966",
    "UNET": "#b19cd9",
    "VAE": "#ff6e6e",
    "SCHEDULER_CONFIG": "#e69138",
    "SCHEDULER": "#f6b26b",
    "TOKENS": "#d5a6bd",
    "CONDITIONING": "#ffa931",
    "LATENTS": "#ff9cf9",
    "NOISE_PRED": "#a4c2f4",
    "IMAGE": "#64b5f6",
    "MASK": "#81c784",
    "EMBEDDING": "#e06666",
}


def type_colour(name: str) -> str:
    """The editor colour of socket type ``name``."""
    known = COLOURS.get(name)
    if known is not None:
        return known
    hue = int(hashlib.blake2b(name.encode(), digest_size=2).hexdigest(), 16) % 360
    return f"hsl({hue}, 55%, 65%)"


__all__ = ["COLOURS", "type_colour"]
