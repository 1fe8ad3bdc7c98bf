"""What the two training nodes share: one step, the run around the steps, sample previews, output files.

Private to the pack; the training itself lives in :mod:`nodeflow.training`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nodeflow.errors import ErrorInfo
from nodeflow.node import Context
from nodeflow.training import dataset as datasets
from nodeflow.training.loop import Schedule, recent_mean, run_steps, write_checkpoint
from nodeflow.training.objective import Objective, Sampler, encode_text
from nodeflow.values import Dataset

from . import _common
from ._sampling import cfg_embeddings, guide, predict_noise, scheduler_step
from .schedulers import make_scheduler

#: AdamW as diffusers' training scripts configure it by default.
ADAM = {"betas": (0.9, 0.999), "weight_decay": 1e-2, "eps": 1e-8}
#: Denoising steps and guidance of the preview samples.
SAMPLE_STEPS, SAMPLE_GUIDANCE = 20, 7.5


def native_size(unet: Any, vae: Any) -> int:
    """The model's native image side in pixels: UNet sample size x VAE factor."""
    size = unet.config.sample_size
    return int((size if isinstance(size, int) else size[0]) * _common.vae_scale_factor(vae))


def sampler(data: Dataset, token: str, size: int, generator: torch.Generator, what: str = "dataset") -> Sampler:
    """A :class:`~nodeflow.training.objective.Sampler` over ``data``, captions filled with ``token``."""
    try:
        texts = datasets.captions(data, token)
    except datasets.DatasetError as exc:
        raise ValueError(f"{what}: {exc}") from exc
    return Sampler(datasets.pixels(data, size), texts, data.flip, generator)


def require_token(data: Dataset, texts: Sequence[Sequence[str]], token: str) -> None:
    """Every caption alternative must name the token (an image whose caption does not trains nothing)."""
    for name, options in zip(data.names, texts, strict=True):
        if any(token not in option for option in options):
            raise ValueError(f"dataset: the caption of {name} does not contain the token ({datasets.TOKEN}); "
                             "every caption must name it")


@dataclass
class Step:
    """One optimisation step of diffusers' loss over the trainer's parameters."""

    objective: Objective
    tokenizer: Any
    text_encoder: Any
    samplers: list[Sampler]
    batch_size: int
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    prior_weight: float | None = None
    clip_norm: float | None = None

    def __call__(self, index: int) -> float:
        images, texts = [], []
        for source in self.samplers:  # instances, then class images (prior preservation)
            batch, captions = source.batch(self.batch_size)
            images.append(batch)
            texts.extend(captions)
        latents = self.objective.latents(torch.cat(images), self.generator)
        hidden = encode_text(self.tokenizer, self.text_encoder, texts)
        loss = self.objective.loss(latents, hidden, self.generator, self.prior_weight)
        loss.backward()
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(parameters, self.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach().item())
        if not math.isfinite(value):
            raise ValueError(f"the loss became {value} at step {index}; lower the learning_rate")
        return value


def adamw(parameters: list[torch.nn.Parameter], learning_rate: float) -> torch.optim.Optimizer:
    """AdamW over ``parameters`` with diffusers' script defaults."""
    return torch.optim.AdamW(parameters, lr=learning_rate, **ADAM)  # type: ignore[arg-type]


def output_path(ctx: Context, stem: str) -> Path:
    """Where the trained file goes: ``<output folder>/<stem>.safetensors`` (``stem`` made file-safe)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "trained"
    return Path(ctx.output_dir) / f"{safe}.safetensors"


def train(ctx: Context, schedule: Schedule, step: Step, path: Path, kind: str, tensors: Callable[[], dict[str, torch.Tensor]],
          metadata: dict[str, str], sample: Callable[[], Any] | None) -> list[float]:
    """Run the steps: progress with the loss, a checkpoint file rewritten at each save, previews; the losses."""
    written: list[int] = []

    def save(index: int) -> None:
        write_checkpoint(path, tensors(), {**metadata, "nodeflow_step": str(index), "nodeflow_steps": str(schedule.steps)})
        if not written:  # one file, rewritten at each save: reported once
            ctx.add_output(path, kind=kind, step=index)
        written.append(index)

    def preview(index: int) -> None:
        if sample is not None and ctx.emit is not None:
            ctx.preview(sample())

    return run_steps(schedule, step, save=save, sample=preview,
                     report=lambda index, loss: ctx.progress(index, schedule.steps, loss=loss))


def final_loss(losses: list[float]) -> float:
    """The figure a training node reports: the mean loss of its last tenth of steps."""
    return recent_mean(losses)


def sample_image(tokenizer: Any, text_encoder: Any, unet: Any, vae: Any, scheduler_config: dict[str, Any], prompt: str,
                 seed: int, size: int) -> Any:
    """One picture of ``prompt`` from the parts as they are now (a PIL image): the model's scheduler, 20 steps, guidance 7.5."""
    from PIL import Image as PILImage

    device, dtype = _common.placement(unet)
    factor = _common.vae_scale_factor(vae)
    with torch.no_grad():
        states = encode_text(tokenizer, text_encoder, [prompt, ""]).to(dtype)
        scheduler = make_scheduler(scheduler_config, "default")
        scheduler.set_timesteps(SAMPLE_STEPS, device=device)
        shape = (1, unet.config.in_channels, size // factor, size // factor)
        generator = _common.stream(seed=seed)
        latents = _common.noise(shape, generator, device, dtype) * scheduler.init_noise_sigma
        embeddings = cfg_embeddings(states[:1], states[1:], 1)
        for t in scheduler.timesteps:
            cond, uncond = predict_noise(unet, scheduler, latents, t, embeddings, guided=True)
            latents = scheduler_step(scheduler, guide(cond, uncond, SAMPLE_GUIDANCE), t, latents, generator, 0.0)
        first = next(vae.parameters())
        decoded = vae.decode(latents.to(first.device, first.dtype) / vae.config.scaling_factor, return_dict=False)[0]
    pixels = ((decoded[0].float() * 0.5 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return PILImage.fromarray(pixels)


def rate_problem(learning_rate: float | None) -> ErrorInfo | None:
    """A learning rate of 0 trains nothing (NaN and infinity fail the input's range check already)."""
    if learning_rate is not None and learning_rate == 0:
        return ErrorInfo("invalid_value", "a learning_rate of 0 trains nothing", input="learning_rate")
    return None


def caption_template(check: Any) -> str | None:
    """The caption template of the dataset node feeding ``dataset``, when some image will use it (else ``None``)."""
    upstream = check.upstream("dataset") or {}
    template, folder = upstream.get("caption"), upstream.get("folder")
    if not isinstance(template, str):
        return None
    if isinstance(folder, str) and check.paths is not None:
        try:
            listing = datasets.scan(check.paths.resolve(folder, "dataset"))
        except (OSError, ValueError):
            return template
        if listing.images and all(p.stem in listing.captions for p in listing.images):
            return None  # every image has its own caption file: the template is not used
    return template
