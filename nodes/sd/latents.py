"""Starting latents: seeded noise for txt2img, noised image latents for img2img.

Besides the diffusers-pipeline pair (Noise Latents, Img2Img Init), two smaller nodes
make the same steps usable one by one: Empty Latents (zeros of an image's latent
shape) and Add Noise (noise a latent to the scheduler state's current timestep, as
ComfyUI's KSampler does at the start of its remaining steps).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from nodeflow.budget import BudgetCheck, Pixels
from nodeflow.errors import ErrorInfo
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import Latents, SchedulerState

from . import _budget, _common


@node("sd.noise_latents", display_name="Noise Latents", category="sd/latents")
class NoiseLatents:
    """Seeded starting noise for txt2img, scaled for the scheduler (its ``init_noise_sigma``).

    The noise comes from a CPU generator seeded with ``seed``, so a seed gives the same
    picture on any device; the generator's stream travels on in the latents for
    samplers that draw more noise (Euler a, DDPM). A batch draws from that one stream,
    as diffusers' ``num_images_per_prompt`` does; with ``per_image_seeds`` image ``i``
    has its own stream seeded ``seed + i`` instead, and comes out as a batch of one
    with that seed would.
    """

    unet = Input("UNET", description="gives the latent channels, device and dtype")
    vae = Input("VAE", description="gives the pixels-per-latent factor and the latent scaling")
    scheduler = Input("SCHEDULER", aliases=("timesteps",), description="the scheduler state the noise is scaled for")
    seed = Input("INT", default=0, min=0, max=_common.MAX_SEED, widget="seed")
    width = Input("INT", default=512, min=8, max=8192, step=8)
    height = Input("INT", default=512, min=8, max=8192, step=8)
    batch = Input("INT", default=1, min=1, max=64)
    per_image_seeds = Input("BOOL", default=False, description="image i uses seed + i (the image a batch of one with that seed gives)")
    latents = Output("LATENTS")

    def validate_inputs(self, check: ValidationContext, width: int | None = None, height: int | None = None,
                        **other: Any) -> list[ErrorInfo]:
        return _size_problems(width, height)

    def output_pixels(self, check: BudgetCheck, width: Any = None, height: Any = None, batch: Any = None, **other: Any) -> Pixels | None:
        return _budget.literal(width, height, batch)

    def run(
        self, ctx: Context, unet: Any, vae: Any, scheduler: SchedulerState, seed: int, width: int, height: int, batch: int,
        per_image_seeds: bool = False,
    ) -> Latents:
        factor = _common.vae_scale_factor(vae)
        if width % factor or height % factor:
            raise ValueError(f"width and height must be multiples of {factor} for this VAE, not {width}x{height}")
        shape = (batch, _common.latent_channels(unet, vae), height // factor, width // factor)
        generator = _common.per_image_streams([seed + i for i in range(batch)]) if per_image_seeds else _common.stream(seed=seed)
        samples = _common.noise(shape, generator, *_common.placement(unet)) * scheduler.scheduler.init_noise_sigma
        return Latents(samples, float(vae.config.scaling_factor), generator.get_state(), vae_factor=factor)


@node("sd.img2img_init", display_name="Img2Img Init", category="sd/latents")
class Img2ImgInit:
    """Noise encoded image latents to the timestep ``strength`` sets, and skip the steps before it.

    As diffusers' img2img pipeline: of ``steps`` timesteps, the last ``int(steps *
    strength)`` remain. The noise continues the latents' random stream (the one VAE
    Encode started), unless ``seed`` is set to start a new one.

    Latents carrying a noise mask (Set Latent Noise Mask) are inpainting latents and
    follow ``StableDiffusionInpaintPipeline``: the noise is kept with the mask (the
    sampler re-noises the original with it after every step), and at strength 1 they
    start from pure noise (times the scheduler's ``init_noise_sigma``), not the noised image.
    """

    latents = Input("LATENTS", description="the image's latents (from VAE Encode)")
    scheduler = Input("SCHEDULER", aliases=("timesteps",))
    strength = Input("FLOAT", default=0.8, min=0.0, max=1.0, step=0.05, description="1 ignores the image; 0 keeps it")
    seed = Input("INT", default=-1, min=-1, max=_common.MAX_SEED, widget="seed", description="-1: continue the latents' stream")
    denoising_start = Input("FLOAT", default=0.0, min=0.0, max=1.0, step=0.05,
                            description="> 0: continue latents a base model left at this fraction of the noise (diffusers'"
                                        " denoising_start); strength is then ignored and no noise is added")
    noised = Output("LATENTS", display_name="latents")
    remaining = Output("SCHEDULER", display_name="scheduler", description="the scheduler state with the skipped steps behind it")

    def validate_inputs(self, check: ValidationContext, strength: float | None = None, denoising_start: float | None = None,
                        **other: Any) -> ErrorInfo | None:
        steps = (check.upstream("scheduler") or {}).get("steps")
        if denoising_start is not None and 0 < denoising_start < 1:
            return None  # the strength plays no part
        if strength is not None and isinstance(steps, int) and int(steps * strength) == 0:
            return ErrorInfo("invalid_value", _no_step_left(strength, steps), input="strength")
        return None

    def run(self, ctx: Context, latents: Latents, scheduler: SchedulerState, strength: float, seed: int,
            denoising_start: float = 0.0) -> dict[str, Any]:
        if scheduler.index != 0:
            raise ValueError("img2img init needs a fresh scheduler state (straight from the Scheduler node)")
        if 0 < denoising_start < 1:
            return _continued(latents, scheduler, denoising_start, seed)
        steps = scheduler.steps
        init_timestep = min(int(steps * strength), steps)
        t_start = max(steps - init_timestep, 0)
        if init_timestep == 0:
            raise ValueError(_no_step_left(strength, steps))
        state = scheduler
        sched: Any = copy.deepcopy(state.scheduler)
        begin = t_start * sched.order
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(begin)
        return {
            "noised": _noised(latents, sched, begin, seed, pure_noise=strength == 1.0),
            "remaining": dataclasses.replace(state, scheduler=sched, index=begin, start=begin),
        }


def _continued(latents: Latents, state: SchedulerState, denoising_start: float, seed: int) -> dict[str, Any]:
    """Latents a base model stopped at ``denoising_start``, as they are, and the state from there on.

    ``StableDiffusionXLImg2ImgPipeline`` with ``denoising_start``: the steps whose
    timesteps lie below the cutoff remain, and no noise is added (the latents still
    carry the noise the base model left). ``seed`` >= 0 starts a new random stream for
    stochastic steps (a refiner called with its own generator); -1 continues the latents'.
    """
    from .schedulers import start_index

    sched: Any = copy.deepcopy(state.scheduler)
    begin = start_index(sched, denoising_start)
    if begin >= len(sched.timesteps):
        raise ValueError(f"denoising_start {denoising_start} leaves no step to run with {state.steps} steps")
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(begin)
    if seed >= 0:
        latents = dataclasses.replace(latents, generator_state=_common.stream(seed=seed).get_state())
    return {"noised": latents, "remaining": dataclasses.replace(state, scheduler=sched, index=begin, start=begin)}


def _size_problems(width: int | None, height: int | None) -> list[ErrorInfo]:
    return [ErrorInfo("invalid_value", f"{side} {value} is not a multiple of 8 (VAEs work on 8-pixel blocks)", input=side)
            for side, value in (("width", width), ("height", height)) if value is not None and value % 8]


def _noised(latents: Latents, scheduler: Any, begin: int, seed: int, pure_noise: bool = False) -> Latents:
    """``latents`` noised to ``scheduler.timesteps[begin]`` with seeded noise (``seed`` < 0: the latents' own stream).

    With a noise mask (inpainting with an ordinary UNet) the mask keeps the clean
    latents and the noise, to restore the unmasked area after every step; and at full
    strength (``pure_noise``) the start is plain noise, as the inpainting pipeline's
    ``is_strength_max`` makes it.
    """
    start_t = scheduler.timesteps[begin:][:1]
    samples = latents.samples
    mask = latents.noise_mask
    if mask is not None:
        # The inpainting pipeline tiles the image latents over the batch; the copy is contiguous,
        # and the UNet's kernels sum in another order on other layouts.
        samples = samples.repeat(1, 1, 1, 1)
    generator = _common.stream(latents.generator_state) if seed < 0 else _common.stream(seed=seed)
    noise = _common.noise(tuple(samples.shape), generator, samples.device, samples.dtype)
    if mask is not None and pure_noise:
        noised = noise * scheduler.init_noise_sigma
    else:
        noised = scheduler.add_noise(samples, noise, start_t.repeat(samples.shape[0]))
    kept = None if mask is None else dataclasses.replace(mask, original=samples, noise=noise)
    return dataclasses.replace(latents, samples=noised, generator_state=generator.get_state(), noise_mask=kept)


@node("sd.empty_latents", display_name="Empty Latents", category="sd/latents", version="1.0.0")
class EmptyLatents:
    """Latents of zeros for an image of ``width`` x ``height`` (ComfyUI's Empty Latent Image).

    Feed them to Add Noise, or to anything that takes latents; for plain txt2img,
    Noise Latents gives the diffusers pipeline's starting noise directly.
    """

    unet = Input("UNET", description="gives the latent channels, device and dtype")
    vae = Input("VAE", description="gives the pixels-per-latent factor and the latent scaling")
    width = Input("INT", default=512, min=8, max=8192, step=8)
    height = Input("INT", default=512, min=8, max=8192, step=8)
    batch = Input("INT", default=1, min=1, max=64)
    latents = Output("LATENTS")

    def validate_inputs(self, check: ValidationContext, width: int | None = None, height: int | None = None,
                        **other: Any) -> list[ErrorInfo]:
        return _size_problems(width, height)

    def output_pixels(self, check: BudgetCheck, width: Any = None, height: Any = None, batch: Any = None, **other: Any) -> Pixels | None:
        return _budget.literal(width, height, batch)

    def run(self, ctx: Context, unet: Any, vae: Any, width: int, height: int, batch: int) -> Latents:
        import torch

        factor = _common.vae_scale_factor(vae)
        if width % factor or height % factor:
            raise ValueError(f"width and height must be multiples of {factor} for this VAE, not {width}x{height}")
        device, dtype = _common.placement(unet)
        samples = torch.zeros((batch, _common.latent_channels(unet, vae), height // factor, width // factor), device=device, dtype=dtype)
        return Latents(samples, float(vae.config.scaling_factor), vae_factor=factor)


@node("sd.add_noise", display_name="Add Noise", category="sd/latents", version="1.0.0")
class AddNoise:
    """Noise latents to the scheduler state's current timestep (the first step still to run).

    ComfyUI's KSampler start: with a state whose first steps were skipped (the
    Scheduler's ``denoise`` or ``start_step``), the latents are noised to where the
    remaining steps begin. The noise comes from a CPU generator seeded with ``seed``
    (-1: continue the latents' own stream).
    """

    latents = Input("LATENTS")
    scheduler = Input("SCHEDULER", description="the state whose current timestep the noise is scaled for")
    seed = Input("INT", default=0, min=-1, max=_common.MAX_SEED, widget="seed", description="-1: continue the latents' stream")
    noised = Output("LATENTS", display_name="latents")

    def run(self, ctx: Context, latents: Latents, scheduler: SchedulerState, seed: int) -> Latents:
        if scheduler.remaining <= 0:
            raise ValueError(f"the {scheduler.name} state has no steps left to noise for")
        # add_noise reads (and may move) the scheduler's sigmas: work on a copy, the state stays as it is
        return _noised(latents, copy.deepcopy(scheduler.scheduler), scheduler.index, seed)


def _no_step_left(strength: float, steps: int) -> str:
    return f"strength {strength} with {steps} steps leaves no step to run (int(steps * strength) is 0); raise the strength or the steps"


NODES = [NoiseLatents, Img2ImgInit, EmptyLatents, AddNoise]
