"""Validation-time helpers: what the literals around a node say about image sizes, without running anything."""

from __future__ import annotations

from typing import Any

from nodeflow.node import ValidationContext


def image_size(check: ValidationContext, name: str) -> tuple[int, int] | None:
    """``(width, height)`` of the picture feeding input ``name``, when literals tell it; else None.

    Known when ``name`` is linked straight to a loader whose file exists (Load Image,
    Load Mask: the file's header is read, not its pixels) or to a node with literal
    non-zero ``width`` and ``height`` (Resize Image, Noise Latents).
    """
    upstream = check.upstream(name)
    if not upstream:
        return None
    width, height = upstream.get("width"), upstream.get("height")
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    path = upstream.get("path")
    if not isinstance(path, str) or check.paths is None:
        return None
    return _file_size(check.paths, path)


def _file_size(paths: Any, path: str) -> tuple[int, int] | None:
    from PIL import Image as PILImage

    for kind in ("image", "mask"):
        try:
            with PILImage.open(paths.resolve(path, kind)) as picture:
                return int(picture.width), int(picture.height)
        except (OSError, ValueError):
            continue
    return None
