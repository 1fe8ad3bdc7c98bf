"""Where the data nodeflow ships lives: the one place that knows.

Installed from a wheel (or ``pip install .``), the editor and the example workflows
are package data under ``nodeflow/_shipped/`` (``setup.py`` maps the repository's
``web/`` and ``workflows/`` there). In an editable install or a plain checkout they
are the repository's own ``web/`` and ``workflows/`` beside the package, so an edit
shows up without reinstalling. The embedded default model and the config skeletons
sit inside the package either way.

Nothing else in nodeflow builds these paths; ask :func:`shipped_dir` or the
constants below.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: The embedded default model (a diffusers folder).
DEFAULT_MODEL_DIR = PACKAGE_DIR / "default_model"
#: Weight-free config skeletons for single-file checkpoints, one folder per variant.
CONFIGS_DIR = PACKAGE_DIR / "models" / "configs"

_INSTALLED = PACKAGE_DIR / "_shipped"
_CHECKOUT = PACKAGE_DIR.parent


def shipped_dir(name: str) -> Path | None:
    """The shipped folder ``name`` (``"web"`` or ``"workflows"``), or ``None`` when absent.

    The installed copy wins; a checkout's folder counts only when ``pyproject.toml``
    sits beside it (once installed, the package's parent is ``site-packages``, where a
    ``web/`` folder would belong to some other distribution).
    """
    installed = _INSTALLED / name
    if installed.is_dir():
        return installed
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / name).is_dir():
        return _CHECKOUT / name
    return None


def workflows_dir() -> Path | None:
    """The shipped example workflows."""
    return shipped_dir("workflows")


def web_dir() -> Path | None:
    """The editor's static files."""
    return shipped_dir("web")


def shipped_workflow(name: str) -> Path | None:
    """The shipped workflow called ``name`` (``txt2img`` or ``txt2img.json``), if there is one."""
    folder = workflows_dir()
    if folder is None or not name or "/" in name or "\\" in name:
        return None
    path = folder / (name if name.endswith(".json") else f"{name}.json")
    return path if path.is_file() else None


__all__ = ["CONFIGS_DIR", "DEFAULT_MODEL_DIR", "PACKAGE_DIR", "shipped_dir", "shipped_workflow", "web_dir", "workflows_dir"]
