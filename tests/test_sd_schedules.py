"""The Scheduler node's ComfyUI names: samplers x schedules on diffusers' options, denoise, start step.

Every combination of ComfyUI's samplers and schedulers either makes the diffusers
scheduler with the option it maps to, or is refused by name before anything runs.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from nodeflow_nodes.sd.latents import AddNoise, EmptyLatents
from nodeflow_nodes.sd.schedulers import FRIENDLY, SCHEDULES, Scheduler, make_scheduler, schedule_problem

from nodeflow.node import Context
from nodeflow.values import Latents

SD_CONFIG = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "num_train_timesteps": 1000, "steps_offset": 1, "clip_sample": False, "set_alpha_to_one": False, "skip_prk_steps": True}
COMFY_SAMPLERS = ["euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_sde",
                  "ddim", "uni_pc", "ddpm", "lcm"]
COMFY_SCHEDULES = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"]
_OPTION = {"karras": "use_karras_sigmas", "exponential": "use_exponential_sigmas", "beta": "use_beta_sigmas"}


def _ctx() -> Context:
    return Context("s", "sd.scheduler")


@pytest.mark.parametrize("schedule", COMFY_SCHEDULES)
@pytest.mark.parametrize("sampler", COMFY_SAMPLERS)
def test_each_comfyui_sampler_and_schedule_maps_to_a_diffusers_option_or_is_refused_by_name(sampler, schedule):
    class_name = FRIENDLY[sampler][0]
    if class_name == "DPMSolverSDEScheduler" and importlib.util.find_spec("torchsde") is None:
        with pytest.raises(ValueError, match="needs the 'torchsde' package"):
            make_scheduler(SD_CONFIG, sampler, schedule)
        return
    problem = schedule_problem(class_name, schedule)
    if problem is not None:
        assert class_name in problem and _OPTION[schedule] in problem
        with pytest.raises(ValueError, match=class_name):
            make_scheduler(SD_CONFIG, sampler, schedule)
        return
    made = make_scheduler(SD_CONFIG, sampler, schedule)
    assert type(made).__name__ == class_name
    for option, value in SCHEDULES[schedule].items():
        assert made.config[option] == value


def test_a_refused_combination_is_a_validation_error_on_the_schedule_input():
    said = Scheduler().validate_inputs(None, name="euler_ancestral", schedule="karras", denoise=1.0, steps=10, start_step=0)
    assert [(e.code, e.input) for e in said] == [("invalid_value", "schedule")]
    assert "EulerAncestralDiscreteScheduler" in said[0].message


def test_schedules_diffusers_cannot_express_are_refused_by_name():
    assert "not supported" in schedule_problem("EulerDiscreteScheduler", "kl_optimal")
    assert "unknown schedule" in schedule_problem("EulerDiscreteScheduler", "karras2")


def test_the_default_schedule_keeps_todays_scheduler_names_as_they_were():
    import diffusers

    for name in ("ddim", "pndm", "euler", "euler_a", "dpmpp_2m", "lms", "unipc", "heun", "ddpm"):
        class_name, overrides = FRIENDLY[name]
        assert make_scheduler(SD_CONFIG, name).config == getattr(diffusers, class_name).from_config(SD_CONFIG, **overrides).config


@pytest.mark.parametrize("name, denoise, steps", [("euler", 0.5, 10), ("heun", 0.75, 6), ("dpmpp_2m", 0.3, 7), ("ddim", 0.6, 5)])
def test_denoise_keeps_the_last_steps_of_a_longer_schedule_as_comfyui_does(name, denoise, steps):
    state = Scheduler().run(_ctx(), SD_CONFIG, name, steps, 0.0, schedule="normal", denoise=denoise)
    total = int(steps / denoise)
    full = make_scheduler(SD_CONFIG, name, "normal")
    full.set_timesteps(total)
    assert state.steps == total
    assert torch.equal(state.timesteps[state.index:], full.timesteps[(total - steps) * full.order:])
    assert state.remaining == len(full.timesteps) - (total - steps) * full.order


def test_start_step_skips_that_many_steps():
    state = Scheduler().run(_ctx(), SD_CONFIG, "euler", 8, 0.0, start_step=3)
    assert state.index == 3 and state.remaining == 5 and state.scheduler.begin_index == 3


def test_denoise_zero_or_a_start_past_the_end_is_refused_before_running():
    said = Scheduler().validate_inputs(None, name="euler", schedule="normal", denoise=0.0, steps=4, start_step=4)
    assert sorted(e.input for e in said) == ["denoise", "start_step"]


def test_add_noise_noises_latents_to_the_states_current_timestep():
    state = Scheduler().run(_ctx(), SD_CONFIG, "euler", 10, 0.0, schedule="normal", denoise=0.5)
    latents = Latents(torch.ones(1, 4, 2, 2), 0.18215)
    noised = AddNoise().run(_ctx(), latents, state, seed=3)
    reference = copy.deepcopy(state.scheduler)
    noise = torch.randn((1, 4, 2, 2), generator=torch.Generator("cpu").manual_seed(3))
    expected = reference.add_noise(latents.samples, noise, state.timesteps[state.index:][:1])
    assert torch.equal(noised.samples, expected)
    assert state.scheduler.begin_index == state.index  # the state itself is untouched


def test_empty_latents_are_zeros_of_the_images_latent_shape():
    class Unet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.config = type("C", (), {"in_channels": 4})()

    class Vae(Unet):
        def __init__(self) -> None:
            super().__init__()
            self.config = type("C", (), {"block_out_channels": [1, 1, 1, 1], "scaling_factor": 0.18215, "latent_channels": 4})()

    made = EmptyLatents().run(_ctx(), Unet(), Vae(), 64, 32, 2)
    assert made.samples.shape == (2, 4, 4, 8) and not made.samples.any() and made.scaling_factor == 0.18215


def test_the_mapping_table_in_docs_comfyui_md_is_the_codes():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "comfyui.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| `") and line.count("|") == 10]
    assert len(rows) == 15
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        sampler = cells[0].strip("`")
        class_name = FRIENDLY[sampler][0]
        assert f"`{class_name}`" in cells[1]
        if class_name == "DPMSolverSDEScheduler" and importlib.util.find_spec("torchsde") is None:
            continue  # its options cannot be read without the package; the row says so
        told = ["refused" if schedule_problem(class_name, s) else "yes" for s in COMFY_SCHEDULES[:3] + ["sgm_uniform", "simple",
                                                                                                      "ddim_uniform", "beta"]]
        assert cells[2:] == told, sampler
