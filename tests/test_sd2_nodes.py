"""SD 2.x through the nodes: ``workflows/sd2_txt2img.json`` gives ``StableDiffusionPipeline``'s exact pixels.

``workflows/img2img.json`` on the same model gives ``StableDiffusionImg2ImgPipeline``'s.

A tiny random SD 2.x model built here (linear-projection UNet 64/128 with 64-wide heads,
an OpenCLIP-style 64-wide text encoder with GELU, VAE 32/32/64: widths no other test
uses), saved once as an epsilon and once as a v-prediction folder. For DDIM, Euler,
Euler a and DPM++ 2M the graph's uint8 pixels EQUAL the pipeline's; the v-prediction runs
use ``guidance_rescale`` 0.7 (diffusers' ``rescale_noise_cfg``, applied after guidance).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from models_families import save_sd2
from PIL import Image

from nodeflow import testing
from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.graph import load_graph

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
SCHEDULERS = ["DDIMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler"]
TEXT = 64  # 16 heads (the SD 2.x skeleton's) of 4
PROMPT, NEGATIVE, SEED, GUIDANCE, WIDTH, HEIGHT, STEPS = "a lighthouse at dusk", "fog", 4242, 6.0, 48, 32, 3


@pytest.fixture(scope="module")
def sd2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same tiny SD 2.x weights as an epsilon and as a v-prediction folder."""
    root = tmp_path_factory.mktemp("sd2_nodes")
    parts = {
        "unet": testing.unet((64, 128), (True, False), cross_attention_dim=TEXT, attention_head_dim=(1, 2), use_linear_projection=True,
                             seed=21),
        "vae": testing.vae((32, 32, 64), scaling_factor=0.18215, sample_size=32, seed=22),
        "text_encoder": testing.text_encoder(testing.clip_config(TEXT, 16, act="gelu", special_ids=(0, 2, 1)), seed=23),
    }
    return {kind: save_sd2(parts, root / kind, prediction_type=kind) for kind in ("epsilon", "v_prediction")}


@pytest.fixture(scope="module")
def pipes(sd2: dict[str, Path]) -> dict[str, Any]:
    out = {}
    for kind, folder in sd2.items():
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True, low_cpu_mem_usage=False,
                                                                 safety_checker=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        out[kind] = pipe
    return out


def _pixels(registry: Any, models: Any, out: Path, inputs: dict[str, Any]) -> np.ndarray:
    result = Executor(registry, Cache(), models).run(load_graph(WORKFLOWS / "sd2_txt2img.json"), inputs=inputs, output_dir=out,
                                                     targets=["decode"])
    assert result.status == "succeeded", result.errors
    return (result.values["decode"]["image"].pixels.permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")


def _expected(pipe: Any, scheduler: Any, rescale: float) -> np.ndarray:
    pipe.scheduler = scheduler
    images = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE, guidance_rescale=rescale,
                  width=WIDTH, height=HEIGHT, generator=torch.Generator("cpu").manual_seed(SEED)).images
    return np.stack([np.array(i) for i in images])


def _inputs(model: Path, scheduler: str, rescale: float, **extra: Any) -> dict[str, Any]:
    return {"model": str(model), "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": STEPS, "guidance_scale": GUIDANCE,
            "guidance_rescale": rescale, "width": WIDTH, "height": HEIGHT, "scheduler": scheduler, **extra}


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize(("prediction", "rescale"), [("epsilon", 0.0), ("v_prediction", 0.7)])
def test_sd2_workflow_equals_stable_diffusion_pipeline(prediction, rescale, scheduler, sd2, pipes, sd_registry, sd_models, tmp_path):
    pipe = pipes[prediction]
    expected = _expected(pipe, getattr(diffusers, scheduler).from_config(pipe.scheduler.config), rescale)

    got = _pixels(sd_registry, sd_models, tmp_path, _inputs(sd2[prediction], scheduler, rescale))

    assert np.array_equal(got, expected)


def test_a_prediction_type_told_to_load_model_overrides_the_config(sd2, pipes, sd_registry, sd_models, tmp_path):
    pipe = pipes["epsilon"]
    told = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction")
    expected = _expected(pipe, told, 0.7)
    plain = _pixels(sd_registry, sd_models, tmp_path / "plain", _inputs(sd2["epsilon"], "euler", 0.7))

    got = _pixels(sd_registry, sd_models, tmp_path / "told", _inputs(sd2["epsilon"], "euler", 0.7, prediction="v_prediction"))

    assert np.array_equal(got, expected)
    assert not np.array_equal(got, plain)


@pytest.mark.parametrize("scheduler", ["EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler"])
def test_sd2_v_prediction_img2img_equals_the_img2img_pipeline(scheduler, sd2, sd_registry, sd_models, tmp_path):
    # No guidance_rescale: StableDiffusionImg2ImgPipeline has none (it swallows the argument unused).
    start = tmp_path / "start.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(start)
    pipe = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(str(sd2["v_prediction"]), local_files_only=True, low_cpu_mem_usage=False,
                                                                    safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    with Image.open(start) as picture:
        images = pipe(PROMPT, image=picture.convert("RGB"), strength=0.7, negative_prompt=NEGATIVE, num_inference_steps=4,
                      guidance_scale=GUIDANCE, generator=torch.Generator("cpu").manual_seed(SEED)).images
    inputs = {"model": str(sd2["v_prediction"]), "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": 4,
              "guidance_scale": GUIDANCE, "scheduler": scheduler, "image": str(start), "strength": 0.7,
              "width": WIDTH, "height": HEIGHT}

    result = Executor(sd_registry, Cache(), sd_models).run(load_graph(WORKFLOWS / "img2img.json"), inputs=inputs, output_dir=tmp_path,
                                                           targets=["decode"])

    assert result.status == "succeeded", result.errors
    got = (result.values["decode"]["image"].pixels.permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
    assert np.array_equal(got, np.stack([np.array(i) for i in images]))
