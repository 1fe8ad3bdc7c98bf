"""Acceptance: the shipped workflows, run through the CLI, give diffusers' exact pixels.

For each scheduler the issue names, ``nodeflow run workflows/txt2img.json`` (and
``img2img.json``) on the tiny random SD model writes a PNG whose uint8 pixels EQUAL
those of ``StableDiffusionPipeline`` (``StableDiffusionImg2ImgPipeline``) called with
``generator=torch.Generator("cpu").manual_seed(seed)`` and the same settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import png_pixels, run_graph
from PIL import Image

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
SCHEDULERS = [
    "DDIMScheduler",
    "PNDMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
]
PROMPT, NEGATIVE, SEED, STEPS, GUIDANCE = "a red cube on a table", "blurry, low quality", 1234, 4, 6.5


def _run_cli(graph: str, out: Path, capsys: pytest.CaptureFixture[str], **values: object) -> list[Path]:
    return [Path(p) for p in run_graph(WORKFLOWS / graph, out, capsys, **values)["outputs"]]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_txt2img_workflow_pixels_equal_stable_diffusion_pipeline(scheduler, tiny_sd_dir, sd_reference, tmp_path, capsys):
    expected = sd_reference(scheduler)(
        PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
        width=64, height=64, generator=torch.Generator("cpu").manual_seed(SEED),
    ).images[0]

    (png,) = _run_cli(
        "txt2img.json", tmp_path, capsys, model=tiny_sd_dir, prompt=PROMPT, negative_prompt=NEGATIVE,
        seed=SEED, steps=STEPS, guidance_scale=GUIDANCE, width=64, height=64, scheduler=scheduler,
    )

    assert np.array_equal(png_pixels(png), np.array(expected))


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_img2img_workflow_pixels_equal_img2img_pipeline(scheduler, tiny_sd_dir, sd_reference, tmp_path, capsys):
    start = tmp_path / "start.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(start)
    with Image.open(start) as picture:
        expected = sd_reference(scheduler, img2img=True)(
            PROMPT, image=picture, strength=0.7, negative_prompt=NEGATIVE, num_inference_steps=6,
            guidance_scale=GUIDANCE, generator=torch.Generator("cpu").manual_seed(SEED),
        ).images[0]

    (png,) = _run_cli(
        "img2img.json", tmp_path / "out", capsys, model=tiny_sd_dir, prompt=PROMPT, negative_prompt=NEGATIVE,
        seed=SEED, steps=6, guidance_scale=GUIDANCE, scheduler=scheduler, image=start, strength=0.7,
    )

    assert np.array_equal(png_pixels(png), np.array(expected))


def test_guidance_rescale_equals_the_pipelines_rescale_noise_cfg(tiny_sd_dir, sd_reference, tmp_path, capsys):
    expected = sd_reference("EulerDiscreteScheduler")(
        PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE, guidance_rescale=0.7,
        width=64, height=64, generator=torch.Generator("cpu").manual_seed(SEED),
    ).images[0]

    (png,) = _run_cli(
        "txt2img.json", tmp_path, capsys, model=tiny_sd_dir, prompt=PROMPT, negative_prompt=NEGATIVE, seed=SEED,
        steps=STEPS, guidance_scale=GUIDANCE, width=64, height=64, scheduler="euler", **{"denoise.guidance_rescale": 0.7},
    )

    assert np.array_equal(png_pixels(png), np.array(expected))


def test_a_batch_of_two_equals_num_images_per_prompt_2(tiny_sd_dir, sd_reference, tmp_path, capsys):
    expected = sd_reference("EulerAncestralDiscreteScheduler")(
        PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE, num_images_per_prompt=2,
        width=64, height=64, generator=torch.Generator("cpu").manual_seed(SEED),
    ).images

    pngs = _run_cli(
        "txt2img.json", tmp_path, capsys, model=tiny_sd_dir, prompt=PROMPT, negative_prompt=NEGATIVE, seed=SEED,
        steps=STEPS, guidance_scale=GUIDANCE, width=64, height=64, scheduler="euler_a", **{"noise.batch": 2},
    )

    assert [p.name for p in pngs] == ["txt2img_save_00000.png", "txt2img_save_00001.png"]
    assert all(np.array_equal(png_pixels(p), np.array(e)) for p, e in zip(pngs, expected, strict=True))


def test_guidance_scale_1_runs_the_unguided_single_branch_like_diffusers(tiny_sd_dir, sd_reference, tmp_path, capsys):
    expected = sd_reference("DDIMScheduler")(
        PROMPT, num_inference_steps=STEPS, guidance_scale=1.0, width=64, height=64,
        generator=torch.Generator("cpu").manual_seed(SEED),
    ).images[0]

    (png,) = _run_cli(
        "txt2img.json", tmp_path, capsys, model=tiny_sd_dir, prompt=PROMPT, seed=SEED, steps=STEPS,
        guidance_scale=1.0, width=64, height=64, scheduler="ddim",
    )

    assert np.array_equal(png_pixels(png), np.array(expected))
