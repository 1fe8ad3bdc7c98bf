"""Train the embedded default model: a tiny Stable Diffusion 1.x on handwritten digits.

    python -m tools.demo.train [--out DIR] [--steps N] [--vae-steps N] [--seed S]
                                  [--minutes M]

The result is an ordinary diffusers `StableDiffusionPipeline` folder with the real SD 1.x
architecture (AutoencoderKL, UNet2DConditionModel with cross-attention, CLIP text encoder
and CLIP BPE tokenizer, DDIM scheduler with SD 1.x betas), only very small: 16x16 px
images, 4x4x4 latents, about 8.6M parameters, about 19 MB on disk in fp16. It is trained
on scikit-learn's 1,797 8x8 digits (upscaled to 16x16, grey replicated to RGB), so a
fresh install can render a recognisable digit without downloading anything.

Training is two stages on the CPU, both fixed step counts so a run is reproducible for a
given seed and thread count: the VAE (reconstruction + small KL), then the UNet and the
text encoder jointly (epsilon prediction, min-SNR-5 weighting, EMA weights saved).
The defaults take about 10 minutes on 2 idle CPU cores (18-26 minutes measured on busy ones).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from nodeflow import testing
from tools.demo.digits import DIGIT_WORDS

IMAGE_SIZE = 16
"""Side of the training images and of the model's native output, in pixels."""

LATENT_SIZE = 4
"""Side of the latents: the VAE downsamples by 4 (three blocks, two downsamplers)."""

TOKENIZER_SOURCE = testing.TOKENIZER_DIR
"""Where the CLIP BPE files come from (vocab.json, merges.txt and the two configs)."""

LABELLED_TEMPLATES: tuple[str, ...] = (
    "a handwritten digit {word}",
    "a handwritten digit {digit}",
    "a handwritten {word}",
    "a handwritten {digit}",
    "the digit {word}",
    "the digit {digit}",
    "the number {word}",
    "the number {digit}",
    "digit {word}",
    "number {word}",
    "a {digit}",
    "{word}",
    "{digit}",
)
"""Caption templates that name the digit, filled with `word` ("seven") and `digit` ("7")."""

UNLABELLED_CAPTIONS: tuple[str, ...] = (
    "a handwritten digit",
    "a handwritten number",
    "a digit",
    "a number",
    "the digit",
    "handwriting",
)
"""Captions that name no digit, so a prompt can leave the digit to a negative prompt."""

EMPTY_CAPTION_RATE = 0.1
"""Fraction of captions replaced by "" (the unconditional branch of classifier-free guidance)."""

UNLABELLED_CAPTION_RATE = 0.1
"""Fraction of captions replaced by a label-free one from `UNLABELLED_CAPTIONS`."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (with the thread count, fixed at 2)."""

    out: Path = Path("nodeflow/default_model")
    seed: int = 0
    vae_steps: int = 600
    unet_steps: int = 1100
    batch_size: int = 128
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-5
    unet_lr: float = 1e-3
    warmup_steps: int = 50
    ema_decay: float = 0.998
    snr_gamma: float = 5.0
    max_minutes: float | None = None


# --------------------------------------------------------------------------- data


def load_digit_images() -> tuple[torch.Tensor, torch.Tensor]:
    """Return sklearn's digits as images (N, 3, 16, 16) in [-1, 1] and labels (N,) int64.

    The 8x8 originals (0..16, white strokes on black) are upscaled 2x bilinearly and the
    grey channel is replicated so the model is an ordinary RGB model.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    grey = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    grey = F.interpolate(grey, size=IMAGE_SIZE, mode="bilinear", align_corners=False)
    images = (grey * 2.0 - 1.0).clamp(-1.0, 1.0).repeat(1, 3, 1, 1)
    return images.contiguous(), torch.tensor(data.target, dtype=torch.int64)


@dataclass(frozen=True)
class _CaptionTable:
    """Every caption the run can draw, tokenized once.

    `token_ids` is (C, 77): caption ids padded to max length exactly as
    `StableDiffusionPipeline.encode_prompt` pads them. `labelled[d]` holds the caption
    indices that name digit d; `unlabelled` those naming none; `empty` is the "" caption.
    """

    captions: tuple[str, ...]
    token_ids: torch.Tensor
    labelled: torch.Tensor
    unlabelled: torch.Tensor
    empty: int


def _build_caption_table(tokenizer: object) -> _CaptionTable:
    captions: list[str] = [""]
    labelled: list[list[int]] = []
    for digit, word in enumerate(DIGIT_WORDS):
        row = []
        for template in LABELLED_TEMPLATES:
            row.append(len(captions))
            captions.append(template.format(word=word, digit=digit))
        labelled.append(row)
    unlabelled = list(range(len(captions), len(captions) + len(UNLABELLED_CAPTIONS)))
    captions.extend(UNLABELLED_CAPTIONS)
    token_ids = tokenizer(  # type: ignore[operator]
        captions,
        padding="max_length",
        max_length=77,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    return _CaptionTable(
        captions=tuple(captions),
        token_ids=token_ids,
        labelled=torch.tensor(labelled, dtype=torch.int64),
        unlabelled=torch.tensor(unlabelled, dtype=torch.int64),
        empty=0,
    )


def _sample_captions(table: _CaptionTable, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pick one caption index per label: 80% naming it, 10% label-free, 10% empty."""
    n = labels.shape[0]
    template = torch.randint(0, table.labelled.shape[1], (n,), generator=generator)
    chosen = table.labelled[labels, template]
    free = table.unlabelled[torch.randint(0, len(table.unlabelled), (n,), generator=generator)]
    u = torch.rand(n, generator=generator)
    chosen = torch.where(u < EMPTY_CAPTION_RATE + UNLABELLED_CAPTION_RATE, free, chosen)
    return torch.where(u < EMPTY_CAPTION_RATE, torch.full_like(chosen, table.empty), chosen)


# ------------------------------------------------------------------------ models


def make_vae() -> torch.nn.Module:
    """AutoencoderKL mapping 16x16x3 images to 4x4x4 latents (SD 1.x layout, scaled down)."""
    return testing.vae((32, 64, 64), sample_size=IMAGE_SIZE).train()  # type: ignore[no-any-return]


def make_unet() -> torch.nn.Module:
    """UNet2DConditionModel on 4x4x4 latents, cross-attending to 64-wide text states."""
    return testing.unet((64, 128), (True, False), cross_attention_dim=64, layers_per_block=2,  # type: ignore[no-any-return]
                        sample_size=LATENT_SIZE).train()


def make_text_encoder() -> torch.nn.Module:
    """A 2-layer, 64-wide CLIPTextModel over the full CLIP vocabulary and 77 positions."""
    return testing.text_encoder(testing.clip_config(64, 2, intermediate=128)).train()  # type: ignore[no-any-return]


def make_scheduler() -> object:
    """DDIM with SD 1.x's training betas and inference options, all set explicitly."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
        timestep_spacing="leading",
    )


def _training_noise_schedule() -> object:
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
    )


def _warmup_cosine(warmup: int, total: int) -> object:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _param_count(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


# ---------------------------------------------------------------------- training


def train_vae(vae: torch.nn.Module, images: torch.Tensor, config: TrainConfig, generator: torch.Generator) -> float:
    """Fit the VAE (MSE reconstruction + small KL); return the final mean squared error."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        _warmup_cosine(config.warmup_steps, config.vae_steps),  # type: ignore[arg-type]
    )
    vae.train()
    mse = float("nan")
    progress = tqdm(range(config.vae_steps), desc="vae", unit="step")
    for _ in progress:
        batch = images[torch.randint(0, len(images), (config.batch_size,), generator=generator)]
        posterior = vae.encode(batch).latent_dist  # type: ignore[operator]
        eps = torch.randn(posterior.mean.shape, generator=generator)
        latents = posterior.mean + posterior.std * eps
        reconstruction = vae.decode(latents).sample  # type: ignore[operator]
        recon_loss = F.mse_loss(reconstruction, batch)
        loss = recon_loss + config.vae_kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        mse = recon_loss.item()
        progress.set_postfix(mse=f"{mse:.4f}")
    vae.eval()
    return mse


@torch.no_grad()
def encode_dataset(vae: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the VAE posterior mean and std for every image, each (N, 4, 4, 4)."""
    means, stds = [], []
    for chunk in images.split(256):
        posterior = vae.encode(chunk).latent_dist  # type: ignore[operator]
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


def latent_scaling_factor(means: torch.Tensor, stds: torch.Tensor, generator: torch.Generator) -> float:
    """1 / std of sampled latents over the whole data set (SD's `scaling_factor`)."""
    samples = means + stds * torch.randn(means.shape, generator=generator)
    return float(1.0 / samples.std())


def train_unet(
    unet: torch.nn.Module,
    text_encoder: torch.nn.Module,
    latent_means: torch.Tensor,
    latent_stds: torch.Tensor,
    labels: torch.Tensor,
    captions: _CaptionTable,
    config: TrainConfig,
    generator: torch.Generator,
    deadline: float,
) -> tuple[int, float]:
    """Train UNet and text encoder jointly; load their EMA weights at the end.

    Latents must already be multiplied by the scaling factor. Returns the number of
    steps taken (fewer than asked only if `deadline`, a `time.monotonic()` value, passed)
    and the mean loss over the last 50 steps.
    """
    noise_schedule = _training_noise_schedule()
    alphas_cumprod = noise_schedule.alphas_cumprod  # type: ignore[attr-defined]
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    # min-SNR-gamma for epsilon prediction: weight = min(SNR, gamma) / SNR.
    loss_weight = torch.clamp(snr, max=config.snr_gamma) / snr

    params = [p for m in (unet, text_encoder) for p in m.parameters()]
    ema = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=config.unet_lr, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        _warmup_cosine(config.warmup_steps, config.unet_steps),  # type: ignore[arg-type]
    )
    unet.train()
    text_encoder.train()
    recent: list[float] = []
    steps_done = 0
    progress = tqdm(range(config.unet_steps), desc="unet+text", unit="step")
    for step in progress:
        if time.monotonic() > deadline:
            progress.write(f"time budget reached: stopping after {step} of {config.unet_steps} steps")
            break
        index = torch.randint(0, len(labels), (config.batch_size,), generator=generator)
        latents = latent_means[index] + latent_stds[index] * torch.randn(latent_means[index].shape, generator=generator)
        caption_index = _sample_captions(captions, labels[index], generator)
        # Encode each distinct caption once; the batch repeats a small caption set.
        distinct, inverse = torch.unique(caption_index, return_inverse=True)
        states = text_encoder(captions.token_ids[distinct]).last_hidden_state  # type: ignore[operator]
        encoder_hidden_states = states[inverse]

        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, 1000, (config.batch_size,), generator=generator)
        noisy = noise_schedule.add_noise(latents, noise, timesteps)  # type: ignore[attr-defined]
        prediction = unet(noisy, timesteps, encoder_hidden_states=encoder_hidden_states).sample  # type: ignore[operator]
        per_sample = F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_sample * loss_weight[timesteps]).mean()

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        # EMA with the usual warm-up so the saved weights hold almost nothing of the init.
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - decay)
        recent = (recent + [loss.item()])[-50:]
        steps_done = step + 1
        progress.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")

    with torch.no_grad():
        for p, e in zip(params, ema, strict=True):
            p.copy_(e)
    unet.eval()
    text_encoder.eval()
    return steps_done, sum(recent) / max(1, len(recent))


# ------------------------------------------------------------------------ saving


def save_pipeline(
    out: Path,
    vae: torch.nn.Module,
    unet: torch.nn.Module,
    text_encoder: torch.nn.Module,
    tokenizer: object,
) -> None:
    """Write a StableDiffusionPipeline folder at `out` with fp16 safetensors weights.

    The tokenizer folder gets the original CLIP BPE files rather than what
    `save_pretrained` would write (transformers 5 writes a single tokenizer.json).
    """
    from diffusers import StableDiffusionPipeline

    if out.exists() and any(out.iterdir()) and not (out / "model_index.json").is_file():
        raise FileExistsError(f"{out} exists and is not a pipeline folder; refusing to replace it")
    pipeline = StableDiffusionPipeline(
        vae=vae.half(),  # type: ignore[arg-type]
        text_encoder=text_encoder.half(),  # type: ignore[arg-type]
        tokenizer=tokenizer,  # type: ignore[arg-type]
        unet=unet.half(),  # type: ignore[arg-type]
        scheduler=make_scheduler(),  # type: ignore[arg-type]
        safety_checker=None,
        feature_extractor=None,  # type: ignore[arg-type]
        requires_safety_checker=False,
    )
    if out.exists():
        shutil.rmtree(out)
    pipeline.save_pretrained(out, safe_serialization=True)  # type: ignore[attr-defined]
    testing.publish_tokenizer(out)


def _folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# -------------------------------------------------------------------------- main


def train(config: TrainConfig) -> None:
    """Run both training stages and write the pipeline folder to `config.out`."""
    from transformers import CLIPTokenizer

    torch.set_num_threads(2)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    started = time.monotonic()
    deadline = math.inf if config.max_minutes is None else started + 60.0 * config.max_minutes
    generator = torch.Generator().manual_seed(config.seed)

    images, labels = load_digit_images()
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_SOURCE)
    captions = _build_caption_table(tokenizer)
    vae, unet, text_encoder = make_vae(), make_unet(), make_text_encoder()
    print(
        f"{len(images)} images, {len(captions.captions)} captions; parameters: "
        f"vae {_param_count(vae):,}, unet {_param_count(unet):,}, "
        f"text encoder {_param_count(text_encoder):,}, "
        f"total {_param_count(vae, unet, text_encoder):,}"
    )

    mse = train_vae(vae, images, config, generator)
    for p in vae.parameters():
        p.requires_grad_(False)
    means, stds = encode_dataset(vae, images)
    scaling_factor = latent_scaling_factor(means, stds, generator)
    vae.register_to_config(scaling_factor=scaling_factor)  # type: ignore[operator]
    vae_done = time.monotonic()
    print(
        f"vae: final mse {mse:.4f}, latent mean {float(means.mean()):.3f}, "
        f"scaling_factor {scaling_factor:.4f} ({vae_done - started:.0f} s)"
    )

    steps, loss = train_unet(
        unet,
        text_encoder,
        means * scaling_factor,
        stds * scaling_factor,
        labels,
        captions,
        config,
        generator,
        deadline,
    )
    unet_done = time.monotonic()
    print(f"unet+text: {steps} steps, final loss {loss:.4f} ({unet_done - vae_done:.0f} s)")

    save_pipeline(config.out, vae, unet, text_encoder, tokenizer)
    largest = max((f for f in config.out.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    print(
        f"wrote {config.out}: {_folder_size(config.out) / 1e6:.1f} MB "
        f"(largest file {largest.relative_to(config.out)}, {largest.stat().st_size / 1e6:.1f} MB); "
        f"total {time.monotonic() - started:.0f} s"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and train."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m tools.demo.train", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=defaults.out, help="output folder (an existing pipeline folder there is replaced)"
    )
    parser.add_argument("--steps", type=int, default=defaults.unet_steps, help="UNet+text-encoder steps")
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps, help="VAE steps")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--minutes",
        type=float,
        default=defaults.max_minutes,
        help="optional wall-clock cap; if hit, UNet training stops early and the run is no longer reproducible by step count",
    )
    args = parser.parse_args(argv)
    train(
        TrainConfig(
            out=args.out,
            seed=args.seed,
            vae_steps=args.vae_steps,
            unet_steps=args.steps,
            max_minutes=args.minutes,
        )
    )


def restart_with_passive_openmp(module: str) -> None:
    """Re-run `python -m module` with OMP_WAIT_POLICY=PASSIVE unless it is already set.

    OpenMP threads that spin while waiting make each step 5-10x slower when other
    processes share the cores. libgomp reads the variable only when torch loads it,
    which importing the `nodeflow` package has already done, hence the restart.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.execv(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]])


if __name__ == "__main__":
    restart_with_passive_openmp("tools.demo.train")
    main()
