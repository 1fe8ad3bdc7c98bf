"""Shared fixtures: a tiny random-weight Stable Diffusion 1.x pipeline saved as a diffusers folder.

The model keeps SD 1.x's architecture (CLIP text encoder over the real 49,408-token
vocabulary, cross-attention UNet, AutoencoderKL, SD 1.5's own scheduler config) at
toy widths, so it builds and saves in a second or two and a 64x64 image takes a few
milliseconds per step. Nothing is downloaded: models are built from configs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

# Models load from local paths only: make any accidental hub lookup fail fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent

#: CLIP BPE files: shipped in the package's config skeleton, or the shared data copy.
TOKENIZER_DIRS = (REPO / "nodeflow" / "models" / "configs" / "sd1" / "tokenizer", Path("/work/shared/data/clip-tokenizer"))
TOKENIZER_FILES = ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json")

#: SD 1.5's scheduler_config.json as published (PNDM, scaled-linear betas, clip_sample off).
SD15_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def tokenizer_dir() -> Path:
    """The first folder holding the CLIP tokenizer files."""
    for folder in TOKENIZER_DIRS:
        if all((folder / name).is_file() for name in TOKENIZER_FILES):
            return folder
    raise FileNotFoundError(f"no CLIP tokenizer files in any of {TOKENIZER_DIRS}")


def build_tiny_sd(out: Path, seed: int = 0) -> Path:
    """Write a tiny random-weight ``StableDiffusionPipeline`` folder at ``out`` and return it.

    VAE factor 4 (a 64x64 image has 16x16x4 latents), a 2-level UNet with one
    cross-attention level, a 2-layer 32-wide CLIP text encoder.
    """
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            max_position_embeddings=77,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            projection_dim=32,
            hidden_act="quick_gelu",
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    source = tokenizer_dir()
    tokenizer = CLIPTokenizer.from_pretrained(str(source), local_files_only=True)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    # The published SD folders carry the BPE files and the original scheduler JSON;
    # transformers 5 would write tokenizer.json instead, diffusers a normalised config.
    shutil.rmtree(out / "tokenizer")
    (out / "tokenizer").mkdir()
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, out / "tokenizer" / name)
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD15_SCHEDULER_CONFIG, indent=2))
    return out


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SD 1.x diffusers folder, built once per test session."""
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd") / "model")


@pytest.fixture(scope="session")
def sd_registry():  # type: ignore[no-untyped-def]
    """The built-in node registry (built once: importing the packs takes a few seconds)."""
    from nodeflow.registry import build_registry

    registry = build_registry(use_entry_points=False)
    assert not registry.errors, registry.errors
    return registry


@pytest.fixture(scope="session")
def sd_models():  # type: ignore[no-untyped-def]
    """One model store for the session: each model folder loads once."""
    from nodeflow.models import ModelStore

    return ModelStore(device="cpu")


@pytest.fixture(scope="session")
def sd_reference(tiny_sd_dir: Path):  # type: ignore[no-untyped-def]
    """A factory of diffusers reference pipelines on the tiny model: ``sd_reference(class_name, img2img=False)``.

    Loaded the way a diffusers user loads them (``from_pretrained`` on the folder), with
    the scheduler swapped the documented way (``Cls.from_config(pipe.scheduler.config)``).
    """
    import diffusers
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    base = StableDiffusionPipeline.from_pretrained(
        str(tiny_sd_dir), local_files_only=True, safety_checker=None, requires_safety_checker=False, low_cpu_mem_usage=False
    )

    def make(class_name: str, img2img: bool = False):  # type: ignore[no-untyped-def]
        cls = StableDiffusionImg2ImgPipeline if img2img else StableDiffusionPipeline
        components = {**base.components, "scheduler": getattr(diffusers, class_name).from_config(base.scheduler.config)}
        pipe = cls(**components, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return make


@pytest.fixture(scope="module")
def sd_one_thread():  # type: ignore[no-untyped-def]
    """Run a module's SD tests on one torch thread, then restore the count.

    On a shared 2-core box two busy-waiting threads per process slow tiny models down
    tenfold; one thread is steady. Bit-identity is unaffected: the graph and diffusers
    always run in the same process with the same count.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
