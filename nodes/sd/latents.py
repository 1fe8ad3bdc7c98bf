"""Starting latents: seeded noise for txt2img, noised image latents for img2img."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from nodeflow.node import Context, Input, Output, node
from nodeflow.types import Latents, SchedulerState

from . import _common


@node("sd.noise_latents", display_name="Noise Latents", category="sd/latents")
class NoiseLatents:
    """Seeded starting noise for txt2img, scaled for the scheduler (its ``init_noise_sigma``).

    The noise comes from a CPU generator seeded with ``seed``, so a seed gives the same
    picture on any device; the generator's stream travels on in the latents for
    samplers that draw more noise (Euler a, DDPM).
    """

    unet = Input("UNET", description="gives the latent channels, device and dtype")
    vae = Input("VAE", description="gives the pixels-per-latent factor and the latent scaling")
    timesteps = Input("TIMESTEPS", description="the scheduler state the noise is scaled for")
    seed = Input("INT", default=0, min=0, max=_common.MAX_SEED, widget="seed")
    width = Input("INT", default=512, min=8, max=8192, step=8)
    height = Input("INT", default=512, min=8, max=8192, step=8)
    batch = Input("INT", default=1, min=1, max=64)
    latents = Output("LATENTS")

    def run(self, ctx: Context, unet: Any, vae: Any, timesteps: SchedulerState, seed: int, width: int, height: int, batch: int) -> Latents:
        factor = _common.vae_scale_factor(vae)
        if width % factor or height % factor:
            raise ValueError(f"width and height must be multiples of {factor} for this VAE, not {width}x{height}")
        shape = (batch, unet.config.in_channels, height // factor, width // factor)
        generator = _common.stream(seed=seed)
        samples = _common.noise(shape, generator, *_common.placement(unet)) * timesteps.scheduler.init_noise_sigma
        return Latents(samples, float(vae.config.scaling_factor), generator.get_state())


@node("sd.img2img_init", display_name="Img2Img Init", category="sd/latents")
class Img2ImgInit:
    """Noise encoded image latents to the timestep ``strength`` sets, and skip the steps before it.

    As diffusers' img2img pipeline: of ``steps`` timesteps, the last ``int(steps *
    strength)`` remain. The noise continues the latents' random stream (the one VAE
    Encode started), unless ``seed`` is set to start a new one.
    """

    latents = Input("LATENTS", description="the image's latents (from VAE Encode)")
    timesteps = Input("TIMESTEPS")
    strength = Input("FLOAT", default=0.8, min=0.0, max=1.0, step=0.05, description="1 ignores the image; 0 keeps it")
    seed = Input("INT", default=-1, min=-1, max=_common.MAX_SEED, widget="seed", description="-1: continue the latents' stream")
    noised = Output("LATENTS", display_name="latents")
    remaining = Output("TIMESTEPS", display_name="timesteps")

    def run(self, ctx: Context, latents: Latents, timesteps: SchedulerState, strength: float, seed: int) -> dict[str, Any]:
        if timesteps.index != 0:
            raise ValueError("img2img init needs a fresh scheduler state (straight from the Scheduler node)")
        steps = timesteps.steps
        init_timestep = min(int(steps * strength), steps)
        t_start = max(steps - init_timestep, 0)
        if init_timestep == 0:
            raise ValueError(f"strength {strength} with {steps} steps leaves no step to run; raise the strength or the steps")
        scheduler = copy.deepcopy(timesteps.scheduler)
        begin = t_start * scheduler.order
        start_t = scheduler.timesteps[begin:][:1]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(begin)
        samples = latents.samples
        generator = _common.stream(latents.generator_state) if seed < 0 else _common.stream(seed=seed)
        noise = _common.noise(tuple(samples.shape), generator, samples.device, samples.dtype)
        noised = scheduler.add_noise(samples, noise, start_t.repeat(samples.shape[0]))
        return {
            "noised": Latents(noised, latents.scaling_factor, generator.get_state()),
            "remaining": dataclasses.replace(timesteps, scheduler=scheduler, index=begin),
        }


NODES = [NoiseLatents, Img2ImgInit]
