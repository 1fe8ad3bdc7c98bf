"""diffusers' training objective, and the random draws of one training step.

The loss is the one diffusers' ``examples/textual_inversion`` and
``examples/dreambooth/train_dreambooth_lora.py`` compute: encode the images with the
VAE (a posterior sample times ``scaling_factor``), add noise at uniform random
timesteps with a ``DDPMScheduler`` made from the model's own scheduler config, predict
with the UNet from the captions' text states, and take the MSE against the noise (or
the velocity, for v-prediction models) in float32. With prior preservation the batch
is instance images then as many class images, one UNet call, and the loss is
``mse(instance) + prior_weight * mse(class)``.

Every random number of a step comes from ONE CPU ``torch.Generator`` (seeded once per
training run), drawn in this order, so a run is reproducible for a seed and a thread
count and a reference loop can replay it:

1. :class:`Sampler` for the instance images: a new ``randperm`` of the dataset when the
   current one is used up, then ``rand(B)`` choosing each caption's alternative, then
   ``rand(B)`` for flips when the dataset flips;
2. the same for the class (prior) images, when there are any;
3. the VAE posterior sample (``latent_dist.sample(generator)``);
4. the noise (``randn`` of the latents' shape);
5. the timesteps (``randint(0, num_train_timesteps, (B,))``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

PREDICTION_TYPES = ("epsilon", "v_prediction")


class Sampler:
    """Which images a step uses: epochs of random permutations, caption alternatives, flips."""

    def __init__(self, pixels: torch.Tensor, captions: Sequence[Sequence[str]], flip: bool, generator: torch.Generator):
        self.pixels = pixels
        self.captions = captions
        self.flip = flip
        self.generator = generator
        self._order = torch.empty(0, dtype=torch.long)

    def _indices(self, size: int) -> torch.Tensor:
        # Like a shuffling DataLoader whose epochs run into each other: no image repeats before all were used.
        taken = []
        while size > 0:
            if len(self._order) == 0:
                self._order = torch.randperm(len(self.pixels), generator=self.generator)
            taken.append(self._order[:size])
            size -= len(taken[-1])
            self._order = self._order[len(taken[-1]):]
        return torch.cat(taken)

    def batch(self, size: int) -> tuple[torch.Tensor, list[str]]:
        """``size`` images [B, 3, S, S] in [-1, 1] and one caption each."""
        index = self._indices(size)
        choice = torch.rand(size, generator=self.generator)
        texts = []
        for i, u in zip(index.tolist(), choice.tolist(), strict=True):
            options = self.captions[i]
            texts.append(options[min(int(u * len(options)), len(options) - 1)])
        images = self.pixels[index]
        if self.flip:
            flipped = torch.rand(size, generator=self.generator) < 0.5
            images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
        return images, texts


def noise_schedule(scheduler_config: dict[str, Any]) -> Any:
    """``DDPMScheduler`` from the model's scheduler config, as diffusers' training scripts make it."""
    from diffusers import DDPMScheduler

    schedule = DDPMScheduler.from_config(scheduler_config)
    kind = schedule.config.prediction_type
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"cannot train a model whose prediction type is {kind!r} (only {', '.join(PREDICTION_TYPES)})")
    return schedule


class Objective:
    """The denoising loss of a UNet, with the VAE and noise schedule it needs."""

    def __init__(self, unet: Any, vae: Any, scheduler_config: dict[str, Any]):
        self.unet = unet
        self.vae = vae
        self.schedule = noise_schedule(scheduler_config)
        first = next(unet.parameters())
        self.device, self.dtype = first.device, first.dtype

    def latents(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A posterior sample of the VAE for ``pixels`` ([-1, 1]), scaled: the UNet's training input."""
        first = next(self.vae.parameters())
        with torch.no_grad():
            dist = self.vae.encode(pixels.to(device=first.device, dtype=first.dtype)).latent_dist
            latents = dist.sample(generator) * self.vae.config.scaling_factor
        return latents.to(device=self.device, dtype=self.dtype)

    def loss(self, latents: torch.Tensor, hidden: torch.Tensor, generator: torch.Generator,
             prior_weight: float | None = None) -> torch.Tensor:
        """The step's loss; ``prior_weight`` set means the second half of the batch holds class images."""
        from diffusers.utils.torch_utils import randn_tensor

        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        steps = self.schedule.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (latents.shape[0],), generator=generator).to(latents.device)
        noisy = self.schedule.add_noise(latents, noise, timesteps)
        prediction = self.unet(noisy, timesteps, hidden.to(self.dtype)).sample
        if self.schedule.config.prediction_type == "epsilon":
            target = noise
        else:
            target = self.schedule.get_velocity(latents, noise, timesteps)
        if prior_weight is None:
            return F.mse_loss(prediction.float(), target.float(), reduction="mean")
        prediction, prediction_prior = torch.chunk(prediction, 2, dim=0)
        target, target_prior = torch.chunk(target, 2, dim=0)
        loss = F.mse_loss(prediction.float(), target.float(), reduction="mean")
        return loss + prior_weight * F.mse_loss(prediction_prior.float(), target_prior.float(), reduction="mean")


def encode_text(tokenizer: Any, text_encoder: Any, texts: Sequence[str]) -> torch.Tensor:
    """Text states [B, 77, D] for ``texts``, padded to the tokenizer's length as SD pipelines pad."""
    ids = tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    first = next(text_encoder.parameters())
    return text_encoder(ids.to(first.device))[0]  # type: ignore[no-any-return]


__all__ = ["PREDICTION_TYPES", "Objective", "Sampler", "encode_text", "noise_schedule"]
