"""ComfyUI's ``extra_model_paths.yaml``: the model folders of an existing install, by kind.

The file has one section per install (``comfyui:``, ``a111:``...), each with an optional
``base_path`` and one entry per folder kind, whose value is a path or several paths, one
per line, relative to ``base_path`` (itself relative to the YAML file's folder)::

    comfyui:
        base_path: /opt/ComfyUI/
        checkpoints: models/checkpoints/
        loras: |
            models/loras
            models/lycoris

Only the kinds nodeflow reads are taken (``checkpoints``, ``loras``, ``embeddings``,
``vae``, ``controlnet``, ``upscale_models``); the others (``clip``, ``unet``...) are
returned apart so a caller can say they were skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import KINDS

#: ComfyUI folder key -> nodeflow file kind.
FOLDER_KINDS: dict[str, str] = {sub: kind for kind, (sub, _) in KINDS.items() if sub}


class ComfyPathsError(ValueError):
    """The YAML file cannot be read or has the wrong shape; the message names the file and the place."""


@dataclass
class ExtraModelPaths:
    """The folders per nodeflow kind, and the ComfyUI keys that were skipped."""

    kinds: dict[str, list[Path]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def read_extra_model_paths(path: str | Path) -> ExtraModelPaths:
    """Read ComfyUI's ``extra_model_paths.yaml`` at ``path`` (see the module docstring)."""
    import yaml  # lazy: only this option needs it

    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ComfyPathsError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ComfyPathsError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return ExtraModelPaths()
    if not isinstance(data, dict):
        raise ComfyPathsError(f"{path}: expected sections (comfyui:, a111: ...), not {type(data).__name__}")
    found = ExtraModelPaths()
    for section, entries in data.items():
        if not isinstance(entries, dict):
            raise ComfyPathsError(f"{path}: section '{section}' must map folder kinds to paths")
        _read_section(path, str(section), entries, found)
    return found


def _read_section(path: Path, section: str, entries: dict[str, Any], found: ExtraModelPaths) -> None:
    base = _base(path, entries.get("base_path"))
    for key, value in entries.items():
        if key in ("base_path", "is_default"):
            continue
        kind = FOLDER_KINDS.get(str(key))
        if kind is None:
            found.skipped.append(f"{section}.{key}")
            continue
        if not isinstance(value, str):
            raise ComfyPathsError(f"{path}: {section}.{key} must be a path or paths one per line, not {type(value).__name__}")
        for line in value.splitlines():
            line = line.strip()
            if line:
                folder = Path(os.path.expandvars(line)).expanduser()
                found.kinds.setdefault(kind, []).append(folder if folder.is_absolute() else base / folder)


def _base(path: Path, base: Any) -> Path:
    if base is None:
        return path.resolve().parent
    if not isinstance(base, str):
        raise ComfyPathsError(f"{path}: base_path must be a path")
    folder = Path(os.path.expandvars(base)).expanduser()
    return folder if folder.is_absolute() else (path.resolve().parent / folder)


__all__ = ["FOLDER_KINDS", "ComfyPathsError", "ExtraModelPaths", "read_extra_model_paths"]
