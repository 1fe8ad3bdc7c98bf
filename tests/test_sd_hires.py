"""Hires fix and upscaling: each half of workflows/hires_fix.json equals diffusers' pipelines; tiled VAE equals enable_tiling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.graph import load_graph, parse_graph
from nodeflow.validate import validate

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
PROMPT, NEGATIVE, SEED, HIRES_SEED, GUIDANCE = "a red boat", "blurry", 17, 23, 5.0


def _settings(model: Path, upscale: str) -> dict[str, object]:
    return {"model": str(model), "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": 4, "guidance_scale": GUIDANCE,
            "scheduler": "DDIMScheduler", "width": 32, "height": 32, "scale": 2.0, "upscale": upscale, "hires_steps": 5,
            "strength": 0.6, "hires.seed": HIRES_SEED}


def _run(registry, models, tmp_path: Path, settings: dict[str, object]) -> np.ndarray:  # type: ignore[no-untyped-def]
    result = Executor(registry, Cache(), models).run(load_graph(WORKFLOWS / "hires_fix.json"), inputs=settings, output_dir=tmp_path)
    assert result.status == "succeeded", result.errors
    with Image.open(result.outputs[0]["path"]) as png:
        return np.array(png.convert("RGB"))


def test_hires_fix_through_the_latents_equals_txt2img_then_img2img_on_upscaled_latents(tiny_sd_dir, sd_reference, sd_registry, sd_models, tmp_path):
    base = sd_reference("DDIMScheduler")(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=4, guidance_scale=GUIDANCE, width=32,
                                          height=32, output_type="latent", generator=torch.Generator("cpu").manual_seed(SEED)).images
    upscaled = torch.nn.functional.interpolate(base, size=(16, 16), mode="bicubic", align_corners=False)
    expected = sd_reference("DDIMScheduler", img2img=True)(PROMPT, image=upscaled, strength=0.6, negative_prompt=NEGATIVE,
                                                            num_inference_steps=5, guidance_scale=GUIDANCE,
                                                            generator=torch.Generator("cpu").manual_seed(HIRES_SEED)).images[0]

    got = _run(sd_registry, sd_models, tmp_path, _settings(tiny_sd_dir, "latent"))

    assert got.shape == (64, 64, 3)
    assert np.array_equal(got, np.array(expected))


def test_hires_fix_through_the_image_equals_txt2img_then_img2img_on_the_resized_picture(tiny_sd_dir, sd_reference, sd_registry, sd_models, tmp_path):
    base = sd_reference("DDIMScheduler")(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=4, guidance_scale=GUIDANCE, width=32,
                                          height=32, generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    resized = base.resize((64, 64), resample=Image.Resampling.LANCZOS)
    expected = sd_reference("DDIMScheduler", img2img=True)(PROMPT, image=resized, strength=0.6, negative_prompt=NEGATIVE,
                                                            num_inference_steps=5, guidance_scale=GUIDANCE,
                                                            generator=torch.Generator("cpu").manual_seed(HIRES_SEED)).images[0]

    got = _run(sd_registry, sd_models, tmp_path, _settings(tiny_sd_dir, "image"))

    assert np.array_equal(got, np.array(expected))


def test_tiled_decode_equals_diffusers_enable_tiling_and_leaves_the_shared_vae_untiled(tiny_sd_dir, sd_models):
    from nodeflow_nodes.sd.vae import VAEDecode, VAEDecodeTiled

    from nodeflow.context import Context
    from nodeflow.values import Latents

    vae = sd_models.load_sd(str(tiny_sd_dir)).vae
    latents = Latents(torch.randn(1, 4, 24, 20, generator=torch.Generator().manual_seed(1)), float(vae.config.scaling_factor))
    ctx = Context("decode", "sd.vae_decode_tiled")

    tiled = VAEDecodeTiled().run(ctx, vae, latents, 32, 0.25).pixels
    whole = VAEDecode().run(ctx, vae, latents).pixels
    reference = _diffusers_tiled_decode(tiny_sd_dir, latents.samples / latents.scaling_factor, tile=32)

    assert vae.use_tiling is False
    assert torch.equal(tiled, reference)
    assert tiled.shape == whole.shape and not torch.equal(tiled, whole)


def _diffusers_tiled_decode(model: Path, z: torch.Tensor, tile: int) -> torch.Tensor:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(model), subfolder="vae", local_files_only=True, low_cpu_mem_usage=False)
    vae.enable_tiling()
    vae.tile_sample_min_size, vae.tile_latent_min_size = tile, tile // 4
    with torch.no_grad():
        return (vae.decode(z).sample * 0.5 + 0.5).clamp(0, 1)


def test_tiled_encode_of_a_picture_smaller_than_a_tile_equals_vae_encode(tiny_sd_dir, sd_models):
    from nodeflow_nodes.sd.vae import VAEEncode, VAEEncodeTiled

    from nodeflow.context import Context
    from nodeflow.values import Image as ImageValue

    vae = sd_models.load_sd(str(tiny_sd_dir)).vae
    picture = ImageValue(torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(2)))
    ctx = Context("encode", "sd.vae_encode_tiled")

    assert torch.equal(VAEEncodeTiled().run(ctx, vae, picture, 5, "sample", 0, 0.25).samples, VAEEncode().run(ctx, vae, picture, 5, "sample").samples)
    assert VAEEncodeTiled().run(ctx, vae, ImageValue(torch.rand(1, 3, 96, 64)), 5, "argmax", 32, 0.25).samples.shape == (1, 4, 24, 16)


def test_latent_and_image_upscale_sizes():
    from nodeflow_nodes.sd.upscale import ImageUpscale, LatentUpscale

    from nodeflow.context import Context
    from nodeflow.values import Image as ImageValue
    from nodeflow.values import Latents

    ctx = Context("up", "sd.latent_upscale")
    latents = Latents(torch.randn(1, 4, 8, 6), 0.18, vae_factor=8)
    assert LatentUpscale().run(ctx, latents, "bilinear", 1.5, 0, 0).samples.shape == (1, 4, 12, 9)
    assert LatentUpscale().run(ctx, latents, "nearest", 0.0, 96, 128).samples.shape == (1, 4, 16, 12)
    image = ImageValue(torch.rand(2, 3, 10, 20))
    assert ImageUpscale().run(ctx, image, "bicubic", 2.0, 0, 0).pixels.shape == (2, 3, 20, 40)
    assert ImageUpscale().run(ctx, image, "lanczos", 1.0, 24, 16).pixels.shape == (2, 3, 16, 24)


def test_upscale_sizes_are_checked_before_running(sd_registry):
    doc = json.loads((WORKFLOWS / "hires_fix.json").read_text())
    doc["nodes"]["up"] = {"type": "sd.latent_upscale", "inputs": {"latents": {"node": "denoise", "output": "denoised"},
                                                                   "width": 100, "height": 0}}
    messages = sorted(e.message for e in validate(parse_graph(doc), sd_registry) if e.node == "up")
    assert messages == ["give both width and height, or neither (0: scale by scale_by)", "width 100 is not a multiple of 8 (VAEs work on 8-pixel blocks)"]
