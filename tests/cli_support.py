"""Running a graph through the `nodeflow` CLI in-process, as SD tests do to compare pixels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nodeflow.cli import main


def run_graph(graph: str | Path, out: Path, capsys: pytest.CaptureFixture[str], *flags: str, **values: object) -> dict[str, Any]:
    """``nodeflow run GRAPH --out OUT --json --device cpu FLAGS --set NAME=VALUE...``; asserts success, returns the report."""
    args = ["run", str(graph), "--out", str(out), "--json", "--device", "cpu", *flags]
    for name, value in values.items():
        args += ["--set", f"{name}={value}"]
    code = main(args)
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["errors"]
    return report


def png_pixels(path: str | Path) -> np.ndarray:
    """An image file's pixels as uint8 RGB [H, W, 3]."""
    with Image.open(path) as picture:
        return np.array(picture.convert("RGB"))
