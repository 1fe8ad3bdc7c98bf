"""One denoising step in three parts, shared by the denoise loop and the step nodes.

Both ways of denoising call these same functions in the same order, so they give the
same tensors by construction; the order inside each function is diffusers'
``StableDiffusionPipeline.__call__`` loop body, so both also match diffusers.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch


def cfg_embeddings(cond: torch.Tensor, uncond: torch.Tensor | None, batch: int) -> torch.Tensor:
    """The UNet's ``encoder_hidden_states``: ``cat([uncond, cond])`` (or ``cond`` alone), one row per latent."""
    cond = _match_batch(cond, batch)
    if uncond is None:
        return cond
    return torch.cat([_match_batch(uncond, batch), cond])


def _match_batch(embeddings: torch.Tensor, batch: int) -> torch.Tensor:
    # diffusers' num_images_per_prompt: repeat each prompt's embedding for its images.
    if embeddings.shape[0] == batch:
        return embeddings
    if batch % embeddings.shape[0]:
        raise ValueError(f"{embeddings.shape[0]} prompt(s) cannot be spread over a batch of {batch} latents")
    per_prompt = batch // embeddings.shape[0]
    return embeddings.repeat_interleave(per_prompt, dim=0)


def predict_noise(
    unet: Any, scheduler: Any, latents: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor, guided: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One UNet call: ``(cond, uncond)`` predictions, from one batch-2 call when ``guided``.

    ``scheduler.scale_model_input`` may update the scheduler's step bookkeeping, so
    pass a scheduler this call may change.
    """
    model_input = torch.cat([latents] * 2) if guided else latents
    if hasattr(scheduler, "scale_model_input"):
        model_input = scheduler.scale_model_input(model_input, t)
    with torch.no_grad():
        out = unet(
            model_input,
            t,
            encoder_hidden_states=embeddings,
            timestep_cond=None,
            cross_attention_kwargs=None,
            added_cond_kwargs=None,
            return_dict=False,
        )[0]
    if not guided:
        return out, None
    uncond, cond = out.chunk(2)
    return cond, uncond


def guide(cond: torch.Tensor, uncond: torch.Tensor | None, scale: float, rescale: float = 0.0) -> torch.Tensor:
    """Classifier-free guidance ``u + g * (c - u)``, then diffusers' ``rescale_noise_cfg`` when ``rescale > 0``.

    With no unconditional prediction, or ``scale <= 1`` (where diffusers skips
    guidance), the conditional prediction is returned as it is.
    """
    if uncond is None or scale <= 1.0:
        return cond
    guided = uncond + scale * (cond - uncond)
    if rescale > 0.0:
        # diffusers' own function (lazily: the pipeline module is slow to import) keeps this bit-identical.
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

        guided = rescale_noise_cfg(guided, cond, guidance_rescale=rescale)
    return guided  # type: ignore[no-any-return]


def scheduler_step(
    scheduler: Any, noise_pred: torch.Tensor, t: torch.Tensor, latents: torch.Tensor, generator: torch.Generator, eta: float
) -> torch.Tensor:
    """``scheduler.step`` with the pipeline's extra arguments (``eta``, ``generator``) where accepted.

    Advances ``scheduler`` (its step index and history) and ``generator``.
    """
    params = _step_params(type(scheduler))
    kwargs: dict[str, Any] = {}
    if "eta" in params:
        kwargs["eta"] = eta
    if "generator" in params:
        kwargs["generator"] = generator
    return scheduler.step(noise_pred, t, latents, **kwargs, return_dict=False)[0]  # type: ignore[no-any-return]


_PARAMS: dict[type, frozenset[str]] = {}


def _step_params(cls: type) -> frozenset[str]:
    # inspect.signature costs ~20 us; a sampler asks every step.
    found = _PARAMS.get(cls)
    if found is None:
        found = _PARAMS[cls] = frozenset(inspect.signature(cls.step).parameters)  # type: ignore[attr-defined]
    return found
