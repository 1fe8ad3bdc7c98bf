"""The unrolled loop: N explicit UNet step -> guidance -> scheduler step triples equal the denoise node.

Compared as latent tensors with ``torch.equal`` (bit for bit), for single-step,
ancestral (random stream) and multistep (history in the state) schedulers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.graph import load_graph

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


def _settings(model: Path, scheduler: str) -> dict[str, object]:
    return {"model": str(model), "prompt": "a lighthouse", "negative_prompt": "fog", "seed": 77,
            "width": 64, "height": 64, "scheduler": scheduler, "guidance_scale": 5.5}


# PNDM (with skip_prk_steps, as SD ships it) takes steps + 1 timesteps: 3 steps fill the 4 triples.
@pytest.mark.parametrize(("scheduler", "steps"), [("ddim", 4), ("pndm", 3), ("euler_a", 4), ("dpmpp_2m", 4)])
def test_four_explicit_triples_equal_the_denoise_node(scheduler, steps, tiny_sd_dir, sd_registry, sd_models, tmp_path):
    executor = Executor(sd_registry, Cache(), sd_models)
    settings = _settings(tiny_sd_dir, scheduler)

    loop = executor.run(load_graph(WORKFLOWS / "txt2img.json"), inputs={**settings, "steps": steps},
                        output_dir=tmp_path, targets=["denoise"])
    unrolled = executor.run(load_graph(WORKFLOWS / "txt2img_unrolled.json"), inputs={**settings, "scheduler.steps": steps},
                            output_dir=tmp_path, targets=["step_4"])

    assert loop.status == unrolled.status == "succeeded", (loop.errors, unrolled.errors)
    final_state = unrolled.values["step_4"]["next_scheduler"]
    assert final_state.remaining == 0
    assert torch.equal(unrolled.values["step_4"]["next_latents"].samples, loop.values["denoise"]["denoised"].samples)


def test_changing_the_last_guidance_recomputes_only_the_last_step(tiny_sd_dir, sd_registry, sd_models, tmp_path):
    executor = Executor(sd_registry, Cache(), sd_models)
    graph = load_graph(WORKFLOWS / "txt2img_unrolled.json")
    settings = _settings(tiny_sd_dir, "dpmpp_2m")
    first = executor.run(graph, inputs=settings, output_dir=tmp_path)

    second = executor.run(graph, inputs={**settings, "guidance_4.guidance_scale": 2.0}, output_dir=tmp_path)

    assert first.status == second.status == "succeeded", second.errors
    ran = {node for node, report in second.nodes.items() if report.status == "ran"}
    assert ran == {"guidance_4", "step_4", "decode", "save"}
