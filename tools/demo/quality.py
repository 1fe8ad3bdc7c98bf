"""Measure what the default model draws *through the shipped workflows*.

Shared by ``tests/test_default_model.py`` (few samples, asserted) and
``bench/default_model_quality.py`` (more samples, reported). Every image comes from
running ``workflows/txt2img.json`` or ``workflows/img2img.json`` with the executor and
reading back the PNG the save node wrote; ``tools.demo.digits.classify`` judges it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.graph import load_graph
from nodeflow.models import ModelStore
from nodeflow.registry import build_registry

from .digits import classify, digit_prompt

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


class WorkflowSampler:
    """Runs shipped workflows on one warm executor and returns their images."""

    def __init__(self, output_dir: str | Path | None = None):
        self.executor = Executor(build_registry(use_entry_points=False), Cache(), ModelStore())
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="nodeflow-quality-"))
        self._graphs: dict[str, Any] = {}

    def draw(self, workflow: str, **inputs: Any) -> np.ndarray:
        """Run ``workflow`` (e.g. ``"txt2img"``) with graph ``inputs``; the saved PNG as uint8 HxWx3."""
        if workflow not in self._graphs:
            self._graphs[workflow] = load_graph(WORKFLOWS / f"{workflow}.json")  # knows its folder: images/ resolve there
        result = self.executor.run(self._graphs[workflow], inputs=inputs, output_dir=self.output_dir)
        if result.status != "succeeded":
            raise RuntimeError(f"{workflow} failed: {[str(e) for e in result.errors]}")
        (output,) = result.outputs
        return np.asarray(Image.open(output["path"]).convert("RGB"))

    def digit_accuracy(self, guidance: float, seeds: Iterable[int]) -> float:
        """Fraction of "a handwritten digit {word}" images classified as that digit."""
        seeds = list(seeds)
        images = [self.draw("txt2img", prompt=digit_prompt(d), seed=s, guidance_scale=guidance) for d in range(10) for s in seeds]
        labels = [d for d in range(10) for _ in seeds]
        return float(np.mean(np.array(classify(images)) == np.array(labels)))

    def count_label(self, label: int, workflow: str, seeds: Iterable[int], **inputs: Any) -> int:
        """How many of the images drawn for ``seeds`` are classified as ``label``."""
        return classify([self.draw(workflow, seed=s, **inputs) for s in seeds]).count(label)
