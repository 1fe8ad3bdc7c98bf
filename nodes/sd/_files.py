"""Finding add-on files (LoRA, embeddings) named in a graph, and stamping them for cache keys.

Private to the pack. Relative paths resolve as image paths do: the working directory,
then each ``NODEFLOW_INPUT_DIR`` folder, then the shipped ``workflows/`` folder, so an
example workflow finds its files from anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from nodeflow.models.derive import file_stamp

#: Env var: extra folders (os.pathsep-separated) where relative paths are looked up.
INPUT_DIR_ENV = "NODEFLOW_INPUT_DIR"
WORKFLOWS_DIR = Path(__file__).resolve().parents[2] / "workflows"


def resolve_file(path: str, what: str) -> Path:
    """The file ``path`` names; ``FileNotFoundError`` naming ``what``, the path and where it looked."""
    given = Path(path).expanduser()
    if given.is_absolute():
        candidates = [given]
    else:
        roots = [Path.cwd(), *[Path(d) for d in os.environ.get(INPUT_DIR_ENV, "").split(os.pathsep) if d], WORKFLOWS_DIR]
        candidates = [root / given for root in roots]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = ", ".join(str(c.parent) for c in candidates)
    raise FileNotFoundError(f"{what} '{path}' not found (looked in {where})")


def fingerprint_file(path: str | None, what: str) -> str:
    """Real path + size + mtime of the file, so a replaced file gives a new cache key."""
    if path is None:
        return "linked"  # the path comes from another node, whose key already varies with it
    try:
        real, size, mtime = file_stamp(resolve_file(path, what))
    except FileNotFoundError:
        return f"missing:{path}"
    return f"{real}:{size}:{mtime}"
