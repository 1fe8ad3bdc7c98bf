"""Denoising: the loop node, and the three step nodes that unroll it.

``sd.denoise`` runs every remaining timestep of a scheduler state. ``sd.unet_step``
-> ``sd.guidance`` -> ``sd.scheduler_step`` is one of those steps as three nodes; a
chain of N such triples gives the same tensors as the loop over N timesteps, because
both call :mod:`nodes.sd._sampling` in the same order. The scheduler state and the
latents' random stream travel along the chain as values (see
:class:`~nodeflow.values.SchedulerState` and :class:`~nodeflow.values.Latents`), so a
multistep scheduler's history (PNDM, DPM++ 2M) and an ancestral sampler's noise
(Euler a) come out identical too.

Note that some schedulers take more timesteps than ``steps`` (PNDM: ``steps + 1``;
Heun: ``2 * steps - 1``): the loop takes them all, an unrolled chain needs one triple
per timestep (``SchedulerState.remaining``).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import torch

from nodeflow.errors import ErrorInfo
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import Conditioning, Latents, NoisePred, SchedulerState

from . import _common
from ._families import mismatch_problems
from ._sampling import guide, keep_unmasked, predict, prepare, scheduler_step

#: Seconds between two previews. A preview costs ~0.1-0.4 ms: nothing beside a real SD step
#: (every step gets one), but 2% of a tiny model's 17 ms step; nobody watches faster than this.
PREVIEW_INTERVAL = 0.05


def _current_t(state: SchedulerState) -> torch.Tensor:
    if state.remaining <= 0:
        raise ValueError(f"the {state.name} state has no steps left (all {state.stop} of its timesteps taken)")
    return state.timesteps[state.index]


def _position(state: SchedulerState, index: int) -> tuple[int, int]:
    """Step ``index`` as ``(i, n)``: its place among the timesteps this run started with (ControlNet start/end)."""
    return index - state.start, len(state.timesteps) - state.start


def _next_t(timesteps: torch.Tensor, index: int) -> torch.Tensor | None:
    """The timestep after ``index`` (None after the last): where a noise mask re-noises its original to."""
    return timesteps[index + 1] if index + 1 < len(timesteps) else None


@node("sd.unet_step", display_name="UNet Step", category="sd/sampling/steps")
class UNetStep:
    """Predict the noise in the latents at the state's current timestep.

    With a negative conditioning, one batch-2 UNet call gives both the conditional and
    the unconditional prediction (feed them to Guidance); without, a single call.
    """

    unet = Input("UNET")
    latents = Input("LATENTS")
    scheduler = Input("SCHEDULER", aliases=("timesteps",))
    positive = Input("CONDITIONING")
    negative = Input("CONDITIONING", optional=True, description="leave unconnected for no classifier-free guidance")
    noise_pred = Output("NOISE_PRED")

    def validate_inputs(self, check: ValidationContext, **literals: Any) -> list[ErrorInfo]:
        return mismatch_problems(check)

    def run(
        self, ctx: Context, unet: Any, latents: Latents, scheduler: SchedulerState, positive: Conditioning, negative: Conditioning | None = None
    ) -> NoisePred:
        state = scheduler
        t = _current_t(state)
        scheduler = copy.deepcopy(state.scheduler)  # scale_model_input may update its bookkeeping
        plan = prepare(unet, positive, negative, latents)
        cond, uncond = predict(unet, scheduler, plan, latents.samples, t, _position(state, state.index))
        return NoisePred(cond, uncond)


@node("sd.guidance", display_name="Guidance", category="sd/sampling/steps")
class Guidance:
    """Combine a conditional/unconditional prediction pair with classifier-free guidance.

    ``uncond + scale * (cond - uncond)``; ``rescale`` > 0 applies diffusers'
    ``rescale_noise_cfg`` (fixes over-exposure). ``scale <= 1`` means no guidance,
    as in diffusers.
    """

    noise_pred = Input("NOISE_PRED")
    guidance_scale = Input("FLOAT", default=7.5, min=0.0, max=100.0, step=0.5)
    guidance_rescale = Input("FLOAT", default=0.0, min=0.0, max=1.0, step=0.05)
    guided = Output("NOISE_PRED")

    def run(self, ctx: Context, noise_pred: NoisePred, guidance_scale: float, guidance_rescale: float) -> NoisePred:
        return NoisePred(guide(noise_pred.cond, noise_pred.uncond, guidance_scale, guidance_rescale))


@node("sd.scheduler_step", display_name="Scheduler Step", category="sd/sampling/steps")
class SchedulerStep:
    """Take one scheduler step: latents at t -> latents at the next timestep, and the next state."""

    scheduler = Input("SCHEDULER", aliases=("timesteps",))
    noise_pred = Input("NOISE_PRED", description="a guided prediction (from Guidance), or an unguided one")
    latents = Input("LATENTS")
    next_latents = Output("LATENTS", display_name="latents")
    next_scheduler = Output("SCHEDULER", display_name="scheduler", aliases=("next_timesteps",))

    def run(self, ctx: Context, scheduler: SchedulerState, noise_pred: NoisePred, latents: Latents) -> dict[str, Any]:
        if noise_pred.uncond is not None:
            raise ValueError("this noise prediction still holds an unguided pair: pass it through a Guidance node first")
        state = scheduler
        t = _current_t(state)
        scheduler = copy.deepcopy(state.scheduler)
        # Replay the pipeline's call order on this copy: scale_model_input comes before step
        # and may initialise the step index; its result is not needed here.
        if hasattr(scheduler, "scale_model_input"):
            scheduler.scale_model_input(latents.samples, t)
        generator = _common.stream(latents.generator_state)
        prev = scheduler_step(scheduler, noise_pred.cond, t, latents.samples, generator, state.eta)
        prev = keep_unmasked(scheduler, latents, prev, _next_t(state.timesteps, state.index))
        return {
            "next_latents": dataclasses.replace(latents, samples=prev, generator_state=generator.get_state()),
            "next_scheduler": dataclasses.replace(state, scheduler=scheduler, index=state.index + 1),
        }


@node("sd.denoise", display_name="Denoise", category="sd/sampling")
class Denoise:
    """Run every remaining step of the scheduler on the latents (the sampler loop).

    Reports progress after each step and a cheap latent preview after each step too
    (at most one per 50 ms, and always after the last), and stops within a step when
    the run is cancelled.
    """

    unet = Input("UNET")
    latents = Input("LATENTS")
    scheduler = Input("SCHEDULER", aliases=("timesteps",))
    positive = Input("CONDITIONING")
    negative = Input("CONDITIONING", description='the unconditional branch (encode "" for none)')
    guidance_scale = Input("FLOAT", default=7.5, min=0.0, max=100.0, step=0.5, description="<= 1 turns classifier-free guidance off")
    guidance_rescale = Input("FLOAT", default=0.0, min=0.0, max=1.0, step=0.05)
    denoised = Output("LATENTS", display_name="latents")

    def validate_inputs(self, check: ValidationContext, **literals: Any) -> list[ErrorInfo]:
        return mismatch_problems(check)

    def run(
        self,
        ctx: Context,
        unet: Any,
        latents: Latents,
        scheduler: SchedulerState,
        positive: Conditioning,
        negative: Conditioning,
        guidance_scale: float,
        guidance_rescale: float,
    ) -> Latents:
        state = scheduler
        scheduler = copy.deepcopy(state.scheduler)  # private: stepped in place like the pipeline's own
        remaining = scheduler.timesteps[state.index : state.stop]  # a denoising_end stops early
        guided = guidance_scale > 1.0  # diffusers' do_classifier_free_guidance
        samples = latents.samples
        plan = prepare(unet, positive, negative if guided else None, latents)
        generator = _common.stream(latents.generator_state)
        total = len(remaining)
        last_preview = -PREVIEW_INTERVAL
        previews = _common.PreviewCopies(ctx.preview)  # never waits for the GPU mid-loop
        for i, t in enumerate(remaining):
            ctx.check_cancelled()
            index = state.index + i
            cond, uncond = predict(unet, scheduler, plan, samples, t, _position(state, index))
            noise_pred = guide(cond, uncond, guidance_scale, guidance_rescale)
            samples = scheduler_step(scheduler, noise_pred, t, samples, generator, state.eta)
            samples = keep_unmasked(scheduler, latents, samples, _next_t(scheduler.timesteps, index))
            now = time.perf_counter()
            if ctx.emit is not None and (now - last_preview >= PREVIEW_INTERVAL or i + 1 == total):
                previews.offer(samples, last=i + 1 == total)
                last_preview = now
            ctx.progress(i + 1, total)
        return dataclasses.replace(latents, samples=samples, generator_state=generator.get_state())


NODES = [Denoise, UNetStep, Guidance, SchedulerStep]
