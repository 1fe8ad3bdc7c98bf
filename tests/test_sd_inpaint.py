"""Inpainting and outpainting: the shipped workflows give StableDiffusionInpaintPipeline's exact pixels.

Two tiny random models with shapes no other test uses (UNet 16/32 channels, cross
attention 24, VAE 16/16/32, 48x48 images): an ordinary 4-channel one (latents blended
with the re-noised original after every step) and an inpainting 9-channel one (mask and
masked-image latents concatenated to the UNet input).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.graph import load_graph

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
PROMPT, NEGATIVE, SEED, GUIDANCE, SIZE = "a door in a wall", "dark", 321, 6.0, 48
#: SD 1.5's published scheduler config (PNDM, scaled-linear betas), from the shipped skeleton.
SD15_SCHEDULER = json.loads((Path(__file__).resolve().parent.parent / "nodeflow/models/configs/sd1/scheduler/scheduler_config.json").read_text())


def build_inpaint_model(out: Path, in_channels: int) -> Path:
    """A tiny random SD 1.x folder whose UNet takes ``in_channels`` (4: ordinary, 9: inpainting)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from nodeflow.models.single_file import TOKENIZER_DIR

    torch.manual_seed(11 + in_channels)
    unet = UNet2DConditionModel(
        sample_size=12, in_channels=in_channels, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=24, attention_head_dim=4, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 16, 32), layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=48,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, max_position_embeddings=77, hidden_size=24, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, projection_dim=24, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))
    tokenizer = CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)
    pipe = StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def inpaint_models(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Both kinds, built once for the module."""
    root = tmp_path_factory.mktemp("inpaint_models")
    return {channels: build_inpaint_model(root / f"unet{channels}", channels) for channels in (4, 9)}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random RGB picture and a grayscale mask with a soft edge (the pipeline binarizes it at 0.5)."""
    root = tmp_path_factory.mktemp("inpaint_pictures")
    rng = np.random.default_rng(9)
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / "picture.png")
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:34, 14:40] = 255
    mask[34:38, 14:40] = 120  # below the threshold: kept
    Image.fromarray(mask, "L").save(root / "mask.png")
    return root / "picture.png", root / "mask.png"


def _reference(model: Path, scheduler: str, image: Image.Image, mask: Image.Image, strength: float, steps: int) -> np.ndarray:
    import diffusers
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline.from_pretrained(str(model), local_files_only=True, safety_checker=None,
                                                          requires_safety_checker=False, low_cpu_mem_usage=False)
    pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(PROMPT, image=image, mask_image=mask, negative_prompt=NEGATIVE, height=image.height, width=image.width,
               strength=strength, num_inference_steps=steps, guidance_scale=GUIDANCE, generator=torch.Generator("cpu").manual_seed(SEED))
    return np.array(out.images[0])


def _run(workflow: str, registry, models, tmp_path: Path, **inputs: object) -> np.ndarray:  # type: ignore[no-untyped-def]
    result = Executor(registry, Cache(), models).run(load_graph(WORKFLOWS / f"{workflow}.json"), inputs=inputs, output_dir=tmp_path)
    assert result.status == "succeeded", result.errors
    with Image.open(result.outputs[0]["path"]) as png:
        return np.array(png.convert("RGB"))


@pytest.mark.parametrize(("channels", "scheduler", "strength"), [
    (4, "DDIMScheduler", 0.75),
    (4, "EulerAncestralDiscreteScheduler", 1.0),  # pure-noise start; the stream feeds the sampler's noise
    (4, "PNDMScheduler", 0.6),
    (9, "DDIMScheduler", 0.75),
    (9, "EulerAncestralDiscreteScheduler", 0.8),
])
def test_inpaint_workflow_equals_the_inpaint_pipeline(channels, scheduler, strength, inpaint_models, pictures, sd_registry, sd_models, tmp_path):
    picture, mask = pictures
    with Image.open(picture) as image, Image.open(mask) as mask_image:
        expected = _reference(inpaint_models[channels], scheduler, image, mask_image, strength, steps=5)

    got = _run("inpaint", sd_registry, sd_models, tmp_path, model=str(inpaint_models[channels]), prompt=PROMPT, negative_prompt=NEGATIVE,
               seed=SEED, steps=5, guidance_scale=GUIDANCE, scheduler=scheduler, image=str(picture), mask=str(mask), strength=strength)

    assert np.array_equal(got, expected)


def test_inpainting_unet_at_strength_1_equals_the_pipeline_with_an_argmax_encode(inpaint_models, pictures, sd_registry, sd_models, tmp_path):
    # At strength 1 the pipeline does not encode the picture for a 9-channel UNet, so its
    # first random numbers are the noise; an argmax VAE Encode draws none either.
    picture, mask = pictures
    with Image.open(picture) as image, Image.open(mask) as mask_image:
        expected = _reference(inpaint_models[9], "DDIMScheduler", image, mask_image, 1.0, steps=4)

    got = _run("inpaint", sd_registry, sd_models, tmp_path, model=str(inpaint_models[9]), prompt=PROMPT, negative_prompt=NEGATIVE,
               seed=SEED, steps=4, guidance_scale=GUIDANCE, scheduler="ddim", image=str(picture), mask=str(mask), strength=1.0,
               **{"encode_image.mode": "argmax"})

    assert np.array_equal(got, expected)


def test_outpaint_workflow_equals_the_inpaint_pipeline_on_the_padded_picture(inpaint_models, pictures, sd_registry, sd_models, tmp_path):
    from nodeflow_nodes.sd.images import image_to_uint8, pil_to_image
    from nodeflow_nodes.sd.masks import PadForOutpaint

    from nodeflow.context import Context

    picture, _ = pictures
    with Image.open(picture) as image:
        padded = PadForOutpaint().run(Context("pad", "sd.pad_for_outpaint"), pil_to_image(image), 8, 0, 16, 8, 0)
    padded_image = Image.fromarray(image_to_uint8(padded["padded"])[0])
    padded_mask = Image.fromarray((padded["mask"].mask[0, 0].numpy() * 255).astype(np.uint8), "L")
    expected = _reference(inpaint_models[4], "DDIMScheduler", padded_image, padded_mask, 1.0, steps=4)

    got = _run("outpaint", sd_registry, sd_models, tmp_path, model=str(inpaint_models[4]), prompt=PROMPT, negative_prompt=NEGATIVE,
               seed=SEED, steps=4, guidance_scale=GUIDANCE, scheduler="ddim", image=str(picture), strength=1.0,
               left=8, top=0, right=16, bottom=8)

    assert got.shape == (SIZE + 8, SIZE + 24, 3)
    assert np.array_equal(got, expected)


def test_an_ordinary_unet_ends_with_the_original_latents_outside_the_mask(inpaint_models, pictures, sd_registry, sd_models, tmp_path):
    picture, mask = pictures
    result = Executor(sd_registry, Cache(), sd_models).run(
        load_graph(WORKFLOWS / "inpaint.json"), output_dir=tmp_path, targets=["denoise", "noise_mask"],
        inputs={"model": str(inpaint_models[4]), "prompt": PROMPT, "seed": SEED, "steps": 3, "image": str(picture), "mask": str(mask)})
    assert result.status == "succeeded", result.errors
    final = result.values["denoise"]["denoised"].samples
    noise_mask = result.values["noise_mask"]["masked"].noise_mask

    keep = noise_mask.mask.expand_as(final) == 0
    assert keep.any() and not keep.all()
    assert torch.equal(final[keep], noise_mask.original[keep])  # the last blend keeps the clean original
    assert not torch.equal(final[~keep], noise_mask.original[~keep])
