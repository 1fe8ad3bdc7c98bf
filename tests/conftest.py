"""Shared fixtures: a tiny random-weight Stable Diffusion 1.x pipeline saved as a diffusers folder.

The model keeps SD 1.x's architecture (CLIP text encoder over the real 49,408-token
vocabulary, cross-attention UNet, AutoencoderKL, SD 1.5's own scheduler config) at
toy widths, so it builds and saves in a second or two and a 64x64 image takes a few
milliseconds per step. Nothing is downloaded: models are built from configs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Models load from local paths only: make any accidental hub lookup fail fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The CLI's thread policy (passive OpenMP waits) for the tests' own torch too: the suite runs
# beside other busy processes on CI's two cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parent.parent


def build_tiny_sd(out: Path, seed: int = 0) -> Path:
    """Write a tiny random-weight ``StableDiffusionPipeline`` folder at ``out`` and return it.

    VAE factor 4 (a 64x64 image has 16x16x4 latents), a 2-level UNet with one
    cross-attention level, a 2-layer 32-wide CLIP text encoder, SD 1.5's published
    scheduler config and tokenizer files.
    """
    from nodeflow import testing

    parts = {
        "unet": testing.unet((32, 64), (True, False), cross_attention_dim=32, sample_size=16, seed=seed),
        "vae": testing.vae((32, 32, 32), sample_size=64),
        "text_encoder": testing.text_encoder(testing.clip_config(32, 4, intermediate=64)),
    }
    return testing.save_sd_folder(out, parts)


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
