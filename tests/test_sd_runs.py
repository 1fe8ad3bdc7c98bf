"""Running SD graphs: warm-run caching, cancellation, progress and previews."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.graph import load_graph
from nodeflow.node import CancelToken, Event

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


def _inputs(model: Path, **extra: object) -> dict[str, object]:
    return {"model": str(model), "width": 64, "height": 64, "steps": 3, "scheduler": "euler_a", **extra}


def test_a_seed_change_on_a_warm_run_recomputes_noise_denoise_and_decode_only(tiny_sd_dir, sd_registry, sd_models, tmp_path):
    executor = Executor(sd_registry, Cache(), sd_models)
    graph = load_graph(WORKFLOWS / "txt2img.json")
    executor.run(graph, inputs=_inputs(tiny_sd_dir, seed=1), output_dir=tmp_path)

    warm = executor.run(graph, inputs=_inputs(tiny_sd_dir, seed=2), output_dir=tmp_path)

    statuses = {node: report.status for node, report in warm.nodes.items()}
    assert warm.status == "succeeded"
    assert {n for n, s in statuses.items() if s == "ran"} == {"noise", "denoise", "decode", "save"}
    assert all(statuses[n] == "cached" for n in ("load", "encode_prompt", "encode_negative", "scheduler"))
    # The tokenizers only feed the (cached) encoders: not needed at all this time.
    assert statuses["prompt"] == statuses["negative"] == "not_needed"


def test_cancelling_at_the_first_progress_event_stops_the_denoise_loop_after_one_step(tiny_sd_dir, sd_registry, sd_models, tmp_path):
    executor = Executor(sd_registry, Cache(), sd_models)
    cancel = CancelToken()
    progress: list[Event] = []

    def on_event(event: Event) -> None:
        if event.type == "progress":
            progress.append(event)
            cancel.cancel()

    result = executor.run(load_graph(WORKFLOWS / "txt2img.json"), inputs=_inputs(tiny_sd_dir, steps=8),
                          output_dir=tmp_path, on_event=on_event, cancel=cancel)

    assert result.status == "cancelled"
    assert [(e.node, e.data["value"], e.data["max"]) for e in progress] == [("denoise", 1, 8)]
    assert result.nodes["decode"].status == "skipped"
    assert not list(tmp_path.glob("*.png"))


def test_the_denoise_node_reports_progress_every_step_and_previews_the_last(tiny_sd_dir, sd_registry, sd_models, tmp_path):
    events: list[Event] = []
    executor = Executor(sd_registry, Cache(), sd_models)

    executor.run(load_graph(WORKFLOWS / "txt2img.json"), inputs=_inputs(tiny_sd_dir, steps=3),
                 output_dir=tmp_path, on_event=events.append)

    denoise = [e for e in events if e.node == "denoise" and e.type in ("progress", "preview")]
    assert [(e.data["value"], e.data["max"]) for e in denoise if e.type == "progress"] == [(1, 3), (2, 3), (3, 3)]
    assert [e.type for e in denoise][:2] == ["preview", "progress"] and [e.type for e in denoise][-2:] == ["preview", "progress"]
    picture = next(e.data["image"] for e in denoise if e.type == "preview")
    assert picture.mode == "RGB" and picture.size[0] >= 64


def test_previews_come_every_step_when_steps_are_slower_than_the_preview_interval(tiny_sd_dir, sd_registry, sd_models, tmp_path, monkeypatch):
    monkeypatch.setattr("nodeflow_nodes.sd.sampling.PREVIEW_INTERVAL", 0.0)
    events: list[Event] = []

    Executor(sd_registry, Cache(), sd_models).run(load_graph(WORKFLOWS / "txt2img.json"), inputs=_inputs(tiny_sd_dir, steps=4),
                                                  output_dir=tmp_path, on_event=events.append)

    assert sum(e.type == "preview" and e.node == "denoise" for e in events) == 4
