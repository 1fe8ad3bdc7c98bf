"""Issue 16: the denoise loop asks the device for values no more often than diffusers' own loop.

On a GPU every ``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``, ``.cpu()``... makes
the host wait for the device. Those are Python-level calls, so they can be counted on the
CPU: the counter wraps them on ``torch.Tensor`` while one loop runs (syncs inside C++ ops,
e.g. an index with a boolean mask, are not seen). The graph's whole ``sd.denoise`` run
(plan and scheduler copy included) is compared with the loop of diffusers' pipeline for
the same scheduler (its ``progress_bar`` block, which is exactly the loop).

Previews are on (as in the CLI and the server) but not counted inside
``latent_preview``: on CUDA it only ever draws a pinned host copy whose copy event has
completed (``PreviewCopies``); on the CPU it works on host tensors, where ``.numpy()``
waits for nothing.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from nodeflow_nodes.sd import _common
from nodeflow_nodes.sd.sampling import Denoise

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.graph import load_graph

pytestmark = pytest.mark.usefixtures("sd_one_thread")

#: Tensor methods that make the host wait for the device's result.
SYNCING = ("item", "tolist", "numpy", "cpu", "nonzero", "__bool__", "__float__", "__int__", "__index__")
STEPS, SEED = 5, 3


class SyncCounter:
    """Counts calls to :data:`SYNCING` methods while ``active``."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.active = False

    @contextlib.contextmanager
    def patched(self) -> Iterator[SyncCounter]:
        originals = {name: getattr(torch.Tensor, name) for name in SYNCING}

        def wrap(name: str, method: Any) -> Any:
            def counted(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                if self.active:
                    self.counts[name] += 1
                return method(tensor, *args, **kwargs)
            return counted

        try:
            for name, method in originals.items():
                setattr(torch.Tensor, name, wrap(name, method))
            yield self
        finally:
            for name, method in originals.items():
                setattr(torch.Tensor, name, method)

    @contextlib.contextmanager
    def counting(self, on: bool = True) -> Iterator[None]:
        before, self.active = self.active, on
        try:
            yield
        finally:
            self.active = before


def _graph_count(tiny_sd_dir: Any, registry: Any, models: Any, scheduler: str, tmp_path: Any,
                 monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counter = SyncCounter()
    original = Denoise.run

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with counter.counting():
            return original(self, *args, **kwargs)

    monkeypatch.setattr(Denoise, "run", run)
    preview = _common.latent_preview

    def uncounted_preview(*args: Any, **kwargs: Any) -> Any:
        with counter.counting(on=False):
            return preview(*args, **kwargs)

    monkeypatch.setattr(_common, "latent_preview", uncounted_preview)
    inputs = {"model": str(tiny_sd_dir), "width": 64, "height": 64, "steps": STEPS, "scheduler": scheduler, "seed": SEED,
              "prompt": "a cube", "negative_prompt": "blur"}
    with counter.patched():
        # With event handling on, as the CLI and the server run (previews every step).
        result = Executor(registry, Cache(), models).run(load_graph(_workflow()), inputs=inputs, output_dir=tmp_path,
                                                         on_event=lambda event: None)
    assert result.status == "succeeded", result.errors
    return counter.counts


def _pipeline_count(sd_reference: Any, scheduler: str) -> Counter[str]:
    counter = SyncCounter()
    pipe = sd_reference(scheduler)
    bar = pipe.progress_bar

    @contextlib.contextmanager
    def loop_bar(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with bar(*args, **kwargs) as inner, counter.counting():
            yield inner

    pipe.progress_bar = loop_bar
    with counter.patched():
        pipe("a cube", negative_prompt="blur", num_inference_steps=STEPS, width=64, height=64, output_type="latent",
             generator=torch.Generator("cpu").manual_seed(SEED))
    return counter.counts


def _workflow() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "workflows" / "txt2img.json"


@pytest.mark.parametrize("scheduler", ["DPMSolverMultistepScheduler", "EulerAncestralDiscreteScheduler", "DDIMScheduler"])
def test_the_denoise_loop_makes_no_more_host_syncs_than_diffusers_loop(scheduler, tiny_sd_dir, sd_registry, sd_models,
                                                                       sd_reference, tmp_path, monkeypatch):
    ours = _graph_count(tiny_sd_dir, sd_registry, sd_models, scheduler, tmp_path, monkeypatch)
    theirs = _pipeline_count(sd_reference, scheduler)

    assert sum(ours.values()) <= sum(theirs.values()), (dict(ours), dict(theirs))
    # No kind of sync the pipeline does not make either (a .cpu() per preview would show here).
    assert set(ours) <= set(theirs), (dict(ours), dict(theirs))


def test_the_counter_sees_a_sync_in_the_loop(tiny_sd_dir, sd_registry, sd_models, tmp_path, monkeypatch):
    # The check above can fail: a loop that reads a value every step is caught.
    import nodeflow_nodes.sd.sampling as sampling

    original = sampling.guide

    def reading_guide(cond: torch.Tensor, *args: Any) -> torch.Tensor:
        cond.abs().max().item()
        return original(cond, *args)

    monkeypatch.setattr(sampling, "guide", reading_guide)
    counts = _graph_count(tiny_sd_dir, sd_registry, sd_models, "DDIMScheduler", tmp_path, monkeypatch)

    assert counts["item"] >= STEPS
