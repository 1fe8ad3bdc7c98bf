"""Package layout that pyproject.toml cannot express statically.

The repository keeps three folders beside the ``nodeflow`` package: ``nodes/`` (the
built-in node packs), ``web/`` (the editor) and ``workflows/`` (example graphs). A
wheel installs them as:

* ``nodes/``     -> the import package ``nodeflow_nodes`` (``import nodes`` would clash
  with ComfyUI's ``nodes`` module, or anyone's, in the same environment);
* ``web/``       -> ``nodeflow/_shipped/web/``;
* ``workflows/`` -> ``nodeflow/_shipped/workflows/``.

Every sub-folder is listed (not globbed by hand), so a new folder under ``web/`` or
``workflows/`` ships without editing this file. :mod:`nodeflow.resources` is the one
place that finds these folders at run time (installed, or in an editable checkout).
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
#: Files that travel as package data (code ships as modules already).
DATA = ["*.json", "*.txt", "*.safetensors", "*.md", "*.html", "*.js", "*.css", "*.png", "*.svg", "*.yaml", "*.jpg", "LICENSE*"]
#: repository folder -> import name it installs as.
MAPPED = {"nodeflow": "nodeflow", "nodes": "nodeflow_nodes", "web": "nodeflow._shipped.web", "workflows": "nodeflow._shipped.workflows"}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for folder, name in MAPPED.items():
        package_dir[name] = folder
        for path in sorted([ROOT / folder, *(ROOT / folder).rglob("*")]):
            if path.is_dir() and "__pycache__" not in path.parts and not path.name.startswith("."):
                relative = path.relative_to(ROOT / folder).parts
                packages.append(".".join([name, *relative]))
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

setup(packages=PACKAGES, package_dir=PACKAGE_DIR, package_data={name: DATA for name in PACKAGES})
