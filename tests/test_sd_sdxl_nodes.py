"""SDXL through the nodes: the shipped SDXL workflows give diffusers' exact pixels.

Tiny random SDXL base and refiner models built here (CLIP-L 24 wide, OpenCLIP-bigG 60
wide with a 20-wide projection, UNets 32/64 and 64/128 with SDXL's 64-wide attention heads,
VAE 64/64: widths no other test uses) run through ``workflows/sdxl_txt2img.json``, ``sdxl_img2img.json`` and
``sdxl_refiner.json``; their uint8 pixels EQUAL those of ``StableDiffusionXLPipeline``,
``StableDiffusionXLImg2ImgPipeline`` and the base + refiner ensemble of experts
(``denoising_end`` / ``denoising_start``) for DDIM, Euler, Euler a and DPM++ 2M. Pictures
are 48x32 (not square, so a height/width swap in the size conditioning would show).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from models_families import save_refiner, save_sdxl, sdxl_checkpoint
from PIL import Image
from safetensors.torch import save_file

from nodeflow import testing
from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.graph import load_graph, parse_graph
from nodeflow.validate import validate

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
SCHEDULERS = ["DDIMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler"]
TEXT_L, TEXT_G, POOLED, TIME = 24, 60, 20, 4
PROMPT, NEGATIVE, SEED, GUIDANCE, WIDTH, HEIGHT = "a red fox in the snow", "blurry", 321, 5.0, 48, 32


def _unet(channels: tuple[int, ...], text: int, time_ids: int, heads: tuple[int, ...], seed: int) -> Any:
    return testing.unet(channels, (False, True), cross_attention_dim=text, use_linear_projection=True, addition_embed_type="text_time",
                        addition_time_embed_dim=TIME, projection_class_embeddings_input_dim=POOLED + time_ids * TIME,
                        attention_head_dim=heads, transformer_layers_per_block=(1, 2), seed=seed)


@pytest.fixture(scope="module")
def xl(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The base and refiner folders (sharing bigG and the VAE, as diffusers' ensemble example does) and the base's parts."""
    root = tmp_path_factory.mktemp("sdxl_nodes")
    # 3 layers each, so that clip_skip can reach one layer further back than SDXL's penultimate.
    big_g = testing.text_encoder(testing.clip_config(TEXT_G, 20, layers=3, act="gelu", projection=POOLED, special_ids=(0, 2, 1)),
                                 with_projection=True, seed=5)
    vae = testing.vae((64, 64), scaling_factor=0.13025, force_upcast=True, sample_size=32, seed=6)
    base = {
        "unet": _unet((32, 64), TEXT_L + TEXT_G, 6, (1, 1), seed=7),
        "vae": vae,
        "text_encoder": testing.text_encoder(testing.clip_config(TEXT_L, 12, layers=3, projection=TEXT_L, special_ids=(0, 2, 1)), seed=8),
        "text_encoder_2": big_g,
    }
    refiner = {"unet": _unet((64, 128), TEXT_G, 5, (1, 2), seed=9), "vae": vae, "text_encoder_2": big_g}
    return {"base": save_sdxl(base, root / "base"), "refiner": save_refiner(refiner, root / "refiner"), "parts": base, "root": root}


@pytest.fixture(scope="module")
def pipes(xl: dict[str, Any]) -> dict[str, Any]:
    """diffusers' pipelines on the same folders, loaded the way a diffusers user loads them."""
    common = {"local_files_only": True, "low_cpu_mem_usage": False, "add_watermarker": False}
    base = diffusers.StableDiffusionXLPipeline.from_pretrained(str(xl["base"]), **common)
    refiner = diffusers.StableDiffusionXLImg2ImgPipeline.from_pretrained(str(xl["refiner"]), **common)
    base_img2img = diffusers.StableDiffusionXLImg2ImgPipeline.from_pretrained(str(xl["base"]), **common)
    for pipe in (base, refiner, base_img2img):
        pipe.set_progress_bar_config(disable=True)
    return {"base": base, "refiner": refiner, "base_img2img": base_img2img}


def _with(pipe: Any, scheduler: str) -> Any:
    """The pipeline with its scheduler swapped the documented way."""
    pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    return pipe


def _uint8(pixels: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] float [0, 1] -> uint8 [B, H, W, 3], as diffusers' numpy_to_pil rounds."""
    return (pixels.permute(0, 2, 3, 1).float().numpy() * 255).round().astype("uint8")


def _expected(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.array(i) for i in images])


def _run(registry: Any, models: Any, graph: Any, out: Path, inputs: dict[str, Any], target: str = "decode") -> Any:
    result = Executor(registry, Cache(), models).run(graph, inputs=inputs, output_dir=out, targets=[target])
    assert result.status == "succeeded", result.errors
    return result.values[target]


def _graph(name: str) -> Any:
    return load_graph(WORKFLOWS / f"{name}.json")


def _txt2img_inputs(model: Path, scheduler: str, **extra: Any) -> dict[str, Any]:
    return {"model": str(model), "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": 3, "guidance_scale": GUIDANCE,
            "width": WIDTH, "height": HEIGHT, "scheduler": scheduler, **extra}


# ------------------------------------------------------------------------------- txt2img
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_sdxl_txt2img_workflow_equals_stable_diffusion_xl_pipeline(scheduler, xl, pipes, sd_registry, sd_models, tmp_path):
    expected = _with(pipes["base"], scheduler)(
        PROMPT, negative_prompt=NEGATIVE, num_inference_steps=3, guidance_scale=GUIDANCE, width=WIDTH, height=HEIGHT,
        generator=torch.Generator("cpu").manual_seed(SEED),
    ).images

    got = _run(sd_registry, sd_models, _graph("sdxl_txt2img"), tmp_path, _txt2img_inputs(xl["base"], scheduler))

    assert np.array_equal(_uint8(got["image"].pixels), _expected(expected))


def test_an_empty_negative_prompt_is_zeros_as_the_pipeline_without_one(xl, pipes, sd_registry, sd_models, tmp_path):
    expected = _with(pipes["base"], "EulerDiscreteScheduler")(
        PROMPT, num_inference_steps=3, guidance_scale=GUIDANCE, width=WIDTH, height=HEIGHT,
        generator=torch.Generator("cpu").manual_seed(SEED),
    ).images

    got = _run(sd_registry, sd_models, _graph("sdxl_txt2img"), tmp_path,
               _txt2img_inputs(xl["base"], "euler", negative_prompt=""))

    assert np.array_equal(_uint8(got["image"].pixels), _expected(expected))


def test_prompt_2_and_size_conditioning_equal_the_pipelines(xl, pipes, sd_registry, sd_models, tmp_path):
    expected = _with(pipes["base"], "EulerDiscreteScheduler")(
        PROMPT, prompt_2="an oil painting", negative_prompt=NEGATIVE, negative_prompt_2="dark", num_inference_steps=3,
        guidance_scale=GUIDANCE, width=WIDTH, height=HEIGHT, original_size=(64, 96), crops_coords_top_left=(4, 8),
        target_size=(40, 56), negative_original_size=(16, 24), negative_crops_coords_top_left=(4, 8), negative_target_size=(24, 32),
        guidance_rescale=0.5, generator=torch.Generator("cpu").manual_seed(SEED),
    ).images
    sizes = {"prompt_2": "an oil painting", "negative_prompt_2": "dark", "original_width": 96, "original_height": 64,
             "crop_top": 4, "crop_left": 8, "target_width": 56, "target_height": 40, "negative_original_width": 24,
             "negative_original_height": 16, "negative_target_width": 32, "negative_target_height": 24}

    got = _run(sd_registry, sd_models, _graph("sdxl_txt2img"), tmp_path, _txt2img_inputs(
        xl["base"], "euler", **{f"encode.{k}": v for k, v in sizes.items()}, **{"denoise.guidance_rescale": 0.5}))

    assert np.array_equal(_uint8(got["image"].pixels), _expected(expected))


# ------------------------------------------------------------------------------- img2img
@pytest.fixture(scope="module")
def start_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sdxl_start") / "start.png"
    Image.fromarray(np.random.default_rng(11).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(path)
    return path


def _img2img(pipe: Any, scheduler: str, image: Path, **extra: Any) -> np.ndarray:
    with Image.open(image) as picture:
        return _expected(_with(pipe, scheduler)(
            PROMPT, image=picture.convert("RGB"), strength=0.6, negative_prompt=NEGATIVE, num_inference_steps=4,
            guidance_scale=GUIDANCE, generator=torch.Generator("cpu").manual_seed(SEED), **extra,
        ).images)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_refiner_img2img_equals_the_img2img_pipeline_with_aesthetic_scores(scheduler, xl, pipes, start_image, sd_registry, sd_models,
                                                                           tmp_path):
    expected = _img2img(pipes["refiner"], scheduler, start_image, aesthetic_score=7.0, negative_aesthetic_score=2.0)
    inputs = {"model": str(xl["refiner"]), "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": 4,
              "guidance_scale": GUIDANCE, "scheduler": scheduler, "image": str(start_image), "strength": 0.6,
              "encode.aesthetic_score": 7.0, "encode.negative_aesthetic_score": 2.0}

    got = _run(sd_registry, sd_models, _graph("sdxl_img2img"), tmp_path, inputs)

    assert np.array_equal(_uint8(got["image"].pixels), expected)


def test_base_img2img_equals_the_img2img_pipeline(xl, pipes, start_image, sd_registry, sd_models, tmp_path):
    expected = _img2img(pipes["base_img2img"], "EulerAncestralDiscreteScheduler", start_image)
    inputs = {"model": str(xl["base"]), "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": 4,
              "guidance_scale": GUIDANCE, "scheduler": "euler_a", "image": str(start_image), "strength": 0.6}

    got = _run(sd_registry, sd_models, _graph("sdxl_img2img"), tmp_path, inputs)

    assert np.array_equal(_uint8(got["image"].pixels), expected)


# ------------------------------------------------------------------------------- base + refiner
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_base_plus_refiner_equals_diffusers_ensemble_of_experts(scheduler, xl, pipes, sd_registry, sd_models, tmp_path):
    generator = torch.Generator("cpu").manual_seed(SEED)  # one stream through both calls
    settings = {"negative_prompt": NEGATIVE, "num_inference_steps": 4, "guidance_scale": GUIDANCE, "generator": generator}
    latents = _with(pipes["base"], scheduler)(PROMPT, width=WIDTH, height=HEIGHT, denoising_end=0.7, output_type="latent",
                                              **settings).images
    expected = _expected(_with(pipes["refiner"], scheduler)(PROMPT, image=latents, denoising_start=0.7, **settings).images)
    inputs = {"model": str(xl["base"]), "refiner": str(xl["refiner"]), "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED,
              "steps": 4, "guidance_scale": GUIDANCE, "width": WIDTH, "height": HEIGHT, "scheduler": scheduler, "high_noise_frac": 0.7}

    got = _run(sd_registry, sd_models, _graph("sdxl_refiner"), tmp_path, inputs)

    assert np.array_equal(_uint8(got["image"].pixels), expected)


def test_a_refiner_seeded_on_its_own_equals_a_refiner_call_with_its_own_generator(xl, pipes, sd_registry, sd_models, tmp_path):
    settings = {"negative_prompt": NEGATIVE, "num_inference_steps": 4, "guidance_scale": GUIDANCE}
    latents = _with(pipes["base"], "EulerAncestralDiscreteScheduler")(
        PROMPT, width=WIDTH, height=HEIGHT, denoising_end=0.7, output_type="latent", generator=torch.Generator("cpu").manual_seed(SEED),
        **settings).images
    expected = _expected(_with(pipes["refiner"], "EulerAncestralDiscreteScheduler")(
        PROMPT, image=latents, denoising_start=0.7, generator=torch.Generator("cpu").manual_seed(77), **settings).images)
    inputs = {"model": str(xl["base"]), "refiner": str(xl["refiner"]), "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED,
              "steps": 4, "guidance_scale": GUIDANCE, "width": WIDTH, "height": HEIGHT, "scheduler": "euler_a", "high_noise_frac": 0.7,
              "refiner_init.seed": 77}

    got = _run(sd_registry, sd_models, _graph("sdxl_refiner"), tmp_path, inputs)

    assert np.array_equal(_uint8(got["image"].pixels), expected)


# ------------------------------------------------------------------------------- single file
def test_a_single_file_in_the_sgm_layout_gives_its_folders_pixels(xl, sd_registry, sd_models, tmp_path):
    path = xl["root"] / "tiny-sdxl-nodes.safetensors"
    save_file(sdxl_checkpoint(xl["parts"]), str(path))
    graph = _graph("sdxl_txt2img")

    from_folder = _run(sd_registry, sd_models, graph, tmp_path / "a", _txt2img_inputs(xl["base"], "dpmpp_2m"))
    from_file = _run(sd_registry, sd_models, graph, tmp_path / "b", _txt2img_inputs(path, "dpmpp_2m"))

    assert torch.equal(from_file["image"].pixels, from_folder["image"].pixels)


# ------------------------------------------------------------------------------- unrolled
def _unrolled(doc: dict[str, Any], steps: int) -> dict[str, Any]:
    """The txt2img graph with its Denoise node replaced by ``steps`` UNet Step -> Guidance -> Scheduler Step triples."""
    doc = copy.deepcopy(doc)
    nodes = doc["nodes"]
    del nodes["denoise"]
    latents, scheduler = {"node": "noise", "output": "latents"}, {"node": "scheduler", "output": "scheduler"}
    for i in range(1, steps + 1):
        nodes[f"unet_{i}"] = {"type": "sd.unet_step", "inputs": {
            "unet": {"node": "load", "output": "unet"}, "latents": latents, "scheduler": scheduler,
            "positive": {"node": "encode", "output": "positive"}, "negative": {"node": "encode", "output": "negative"}}}
        nodes[f"guidance_{i}"] = {"type": "sd.guidance", "inputs": {"noise_pred": {"node": f"unet_{i}", "output": "noise_pred"},
                                                                    "guidance_scale": GUIDANCE, "guidance_rescale": 0.0}}
        nodes[f"step_{i}"] = {"type": "sd.scheduler_step", "inputs": {
            "scheduler": scheduler, "noise_pred": {"node": f"guidance_{i}", "output": "guided"}, "latents": latents}}
        latents, scheduler = {"node": f"step_{i}", "output": "next_latents"}, {"node": f"step_{i}", "output": "next_scheduler"}
    nodes["decode"]["inputs"]["latents"] = latents
    doc["inputs"].pop("guidance_scale")
    return doc


@pytest.mark.parametrize("scheduler", ["euler_a", "dpmpp_2m"])
def test_unrolled_sdxl_steps_equal_the_denoise_loop(scheduler, xl, sd_registry, sd_models, tmp_path):
    doc = json.loads((WORKFLOWS / "sdxl_txt2img.json").read_text())
    inputs = _txt2img_inputs(xl["base"], scheduler)
    inputs.pop("guidance_scale")

    loop = _run(sd_registry, sd_models, parse_graph({**doc}), tmp_path / "a", {**inputs, "denoise.guidance_scale": GUIDANCE}, "denoise")
    unrolled = _run(sd_registry, sd_models, parse_graph(_unrolled(doc, 3)), tmp_path / "b", inputs, "step_3")

    assert unrolled["next_scheduler"].remaining == 0
    assert torch.equal(unrolled["next_latents"].samples, loop["denoised"].samples)


# ------------------------------------------------------------------------------- families
def test_sdxl_conditioning_into_an_sd1_unet_is_a_validation_error_naming_both(xl, tiny_sd_dir, sd_registry):
    doc = json.loads((WORKFLOWS / "sdxl_txt2img.json").read_text())
    doc["nodes"]["load_sd1"] = {"type": "sd.load_model", "inputs": {"model": str(tiny_sd_dir)}}
    doc["nodes"]["denoise"]["inputs"]["unet"] = {"node": "load_sd1", "output": "unet"}
    doc["nodes"]["load"]["inputs"]["model"] = str(xl["base"])

    errors = validate(parse_graph(doc), sd_registry)

    mismatches = [e for e in errors if e.code == "family_mismatch"]
    assert {(e.node, e.input) for e in mismatches} == {("denoise", "positive"), ("denoise", "negative")}
    assert all("SDXL" in e.message and "SD 1.x" in e.message and "'load'" in e.message and "'load_sd1'" in e.message for e in mismatches)


def test_sdxl_text_encode_refuses_an_sd1_models_clip_before_loading(tiny_sd_dir, sd_registry):
    doc = json.loads((WORKFLOWS / "sdxl_txt2img.json").read_text())
    doc["nodes"]["load"]["inputs"]["model"] = str(tiny_sd_dir)

    errors = validate(parse_graph(doc), sd_registry)

    assert [(e.code, e.node, e.input) for e in errors] == [("family_mismatch", "encode", "clip")]
    assert "SD 1.x" in errors[0].message


def test_sd1_conditioning_into_an_sdxl_unet_fails_at_run_time_naming_both(xl, sd_registry, sd_models, tmp_path):
    # txt2img's plain Tokenize/Text Encode on the SDXL model: its CLIP-L alone, no pooled embedding or time ids.
    result = Executor(sd_registry, Cache(), sd_models).run(
        _graph("txt2img"), inputs={"model": str(xl["base"]), "steps": 2, "width": WIDTH, "height": HEIGHT}, output_dir=tmp_path)

    assert result.status == "failed"
    message = " ".join(e.message for e in result.errors)
    assert "SD 1.x/2.x" in message and "SDXL" in message and "SDXL Text Encode" in message


def test_a_linked_model_path_mismatch_fails_at_run_time_naming_both(xl, tiny_sd_dir, sd_registry, sd_models, tmp_path):
    doc = json.loads((WORKFLOWS / "sdxl_txt2img.json").read_text())
    doc["nodes"]["path"] = {"type": "core.string", "inputs": {"value": str(tiny_sd_dir)}}
    doc["nodes"]["load_sd1"] = {"type": "sd.load_model", "inputs": {"model": {"node": "path", "output": "out"}}}
    doc["nodes"]["denoise"]["inputs"]["unet"] = {"node": "load_sd1", "output": "unet"}
    graph = parse_graph(doc)
    assert not [e for e in validate(graph, sd_registry) if e.code == "family_mismatch"]  # a linked path: unknown before the run

    result = Executor(sd_registry, Cache(), sd_models).run(graph, inputs=_txt2img_inputs(xl["base"], "euler"), output_dir=tmp_path)

    assert result.status == "failed"
    message = " ".join(e.message for e in result.errors)
    assert "SDXL" in message and "SD 1.x" in message


# ------------------------------------------------------------------------------- prompt syntax
@pytest.fixture(scope="module")
def clip(xl, sd_models) -> Any:
    """The base model's CLIP value, as Load Model gives it."""
    from nodeflow.values import TextEncoders

    parts = sd_models.load_sd(xl["base"])
    return TextEncoders(parts.family.value, parts.tokenizer, parts.text_encoder, parts.tokenizer_2, parts.text_encoder_2,
                        dict(parts.pipeline_config))


def test_a_weight_of_one_encodes_as_the_plain_prompt(clip):
    from nodeflow_nodes.sd.sdxl import encode_prompts

    plain, plain_pooled = encode_prompts(clip, "a red fox", "")
    weighted, weighted_pooled = encode_prompts(clip, "a (red:1.0) fox", "")

    assert torch.equal(weighted, plain) and torch.equal(weighted_pooled, plain_pooled)


def test_a_weighted_token_moves_only_its_own_position_in_both_encoders(clip):
    from nodeflow_nodes.sd.sdxl import encode_prompts

    plain, plain_pooled = encode_prompts(clip, "a red fox", "")
    weighted, weighted_pooled = encode_prompts(clip, "a (red:1.5) fox", "")

    changed = (weighted != plain).any(dim=0)  # [77, D_l + D_g]
    assert changed[2, :TEXT_L].any() and changed[2, TEXT_L:].any()  # "red" (after the start token and "a"), both halves
    assert not changed[[0, 1, *range(3, 77)]].any()
    assert torch.equal(weighted_pooled, plain_pooled)  # the pooled embedding is the unweighted encoder output


def test_a_long_prompt_is_encoded_in_chunks_with_the_first_chunks_pool(clip):
    from nodeflow_nodes.sd.sdxl import encode_prompts

    long, long_pooled = encode_prompts(clip, " ".join(["fox"] * 100), "a cat")
    first, first_pooled = encode_prompts(clip, " ".join(["fox"] * 75), "a cat")
    empty, _ = encode_prompts(clip, "", "")

    # Chunks are encoded in one batch: equal to single encodes up to the batched kernels' rounding.
    assert long.shape == (1, 154, TEXT_L + TEXT_G)
    torch.testing.assert_close(long[:, :77], first, rtol=0, atol=1e-5)
    torch.testing.assert_close(long_pooled, first_pooled, rtol=0, atol=1e-5)
    torch.testing.assert_close(long[:, 77:, TEXT_L:], empty[:, :, TEXT_L:], rtol=0, atol=1e-5)  # bigG's short prompt: padded
    assert not torch.allclose(long[:, 77:, :TEXT_L], empty[:, :, :TEXT_L], atol=1e-3)  # CLIP-L's second chunk is the 25 foxes


# ------------------------------------------------------------------------------- embeddings, clip skip
@pytest.fixture(scope="module")
def xl_embedding(xl) -> Path:
    """An SDXL textual-inversion file (clip_l and clip_g, 2 vectors each) in an embeddings folder."""
    gen = torch.Generator().manual_seed(17)
    folder = xl["root"] / "embeddings"
    folder.mkdir(exist_ok=True)
    save_file({"clip_l": torch.randn(2, TEXT_L, generator=gen), "clip_g": torch.randn(2, TEXT_G, generator=gen)},
              str(folder / "xlstyle.safetensors"))
    return folder / "xlstyle.safetensors"


def _pipe_with_embedding(xl, path: Path) -> Any:
    """A fresh base pipeline taught the token the documented diffusers way: one load_textual_inversion per encoder."""
    from safetensors.torch import load_file

    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(str(xl["base"]), local_files_only=True, low_cpu_mem_usage=False,
                                                               add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    state = load_file(str(path))
    pipe.load_textual_inversion(state["clip_l"], token="xlstyle", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(state["clip_g"], token="xlstyle", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
    return _with(pipe, "EulerDiscreteScheduler")


def _run_with_embeddings(registry: Any, models: Any, graph: Any, out: Path, inputs: dict[str, Any], folder: Path,
                         target: str = "decode") -> Any:
    from nodeflow.files import PathResolver

    paths = PathResolver.create(kinds={"embedding": [folder]})
    result = Executor(registry, Cache(), models).run(graph, inputs=inputs, output_dir=out, targets=[target], paths=paths)
    assert result.status == "succeeded", result.errors
    return result.values[target]


def test_an_sdxl_embedding_in_a_prompt_and_through_the_ti_node_equal_diffusers_textual_inversion(xl, xl_embedding, sd_registry,
                                                                                                 sd_models, tmp_path):
    expected = _pipe_with_embedding(xl, xl_embedding)(
        "a red fox in xlstyle snow", negative_prompt=NEGATIVE, num_inference_steps=3, guidance_scale=GUIDANCE, width=WIDTH,
        height=HEIGHT, generator=torch.Generator("cpu").manual_seed(SEED),
    ).images
    inline = _txt2img_inputs(xl["base"], "euler", prompt="a red fox in embedding:xlstyle snow")
    got_inline = _run_with_embeddings(sd_registry, sd_models, _graph("sdxl_txt2img"), tmp_path / "inline", inline, xl_embedding.parent)
    doc = json.loads((WORKFLOWS / "sdxl_txt2img.json").read_text())
    doc["nodes"]["ti"] = {"type": "sd.textual_inversion", "inputs": {"clip": {"node": "load", "output": "clip"},
                                                                     "embedding": "xlstyle.safetensors", "token": "xlstyle"}}
    doc["nodes"]["encode"]["inputs"]["clip"] = {"node": "ti", "output": "ti_clip"}
    node = _txt2img_inputs(xl["base"], "euler", prompt="a red fox in xlstyle snow")
    got_node = _run_with_embeddings(sd_registry, sd_models, parse_graph(doc), tmp_path / "node", node, xl_embedding.parent)

    assert np.array_equal(_uint8(got_inline["image"].pixels), _expected(expected))
    assert np.array_equal(_uint8(got_node["image"].pixels), _expected(expected))


def test_clip_skip_3_encodes_as_diffusers_clip_skip_1_for_the_positive_and_the_negative(xl, pipes, sd_registry, sd_models, tmp_path):
    def diffusers_encode(text: str) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, _, pooled, _ = pipes["base"].encode_prompt(text, do_classifier_free_guidance=False, clip_skip=1)
        return embeds, pooled

    doc = json.loads((WORKFLOWS / "sdxl_txt2img.json").read_text())
    doc["nodes"]["encode"]["inputs"]["clip_skip"] = 3
    inputs = _txt2img_inputs(xl["base"], "euler")
    got = _run(sd_registry, sd_models, parse_graph(doc), tmp_path, inputs, "encode")
    default = _run(sd_registry, sd_models, _graph("sdxl_txt2img"), tmp_path / "default", inputs, "encode")

    # diffusers' SDXL encode_prompt applies clip_skip to the prompt only (its negative is always the penultimate
    # layer); nodeflow applies it to both, as A1111 and ComfyUI do, so each side is compared with diffusers'
    # encoding of that text as a prompt.
    for side, text in (("positive", PROMPT), ("negative", NEGATIVE)):
        embeds, pooled = diffusers_encode(text)
        assert torch.equal(got[side].embeddings, embeds) and torch.equal(got[side].added["text_embeds"], pooled)
    assert not torch.equal(got["positive"].embeddings, default["positive"].embeddings)


def test_a_missing_sdxl_embedding_is_a_validation_error_naming_the_prompt(xl, sd_registry, tmp_path):
    from nodeflow.files import PathResolver

    doc = json.loads((WORKFLOWS / "sdxl_txt2img.json").read_text())
    doc["nodes"]["encode"]["inputs"]["negative_prompt"] = "embedding:nowhere"
    doc["nodes"]["load"]["inputs"]["model"] = str(xl["base"])
    errors = validate(parse_graph(doc), sd_registry, paths=PathResolver.create([tmp_path]))

    assert [(e.code, e.node, e.input) for e in errors] == [("missing_file", "encode", "negative_prompt")]
    assert "nowhere" in errors[0].message


def test_an_sd1_embedding_in_an_sdxl_prompt_is_refused_naming_the_missing_half(clip, sd_models, tmp_path):
    from nodeflow_nodes.sd.sdxl import SDXLTextEncode

    from nodeflow.files import PathResolver
    from nodeflow.node import Context

    save_file({"emb_params": torch.randn(1, TEXT_L)}, str(tmp_path / "old.safetensors"))
    ctx = Context("encode", "sd.sdxl_text_encode", model_store=sd_models, paths=PathResolver.create(kinds={"embedding": [tmp_path]}))
    with pytest.raises(ValueError, match="embedding:old has no clip_g vectors"):
        SDXLTextEncode().run(ctx, clip, "a embedding:old fox", "", "", "", "auto", width=64, height=64)


# ------------------------------------------------------------------------------- LoRA
def test_the_lora_node_merges_an_sdxl_loras_text_layers_into_both_encoders_of_the_clip(xl, clip, sd_registry, sd_models, tmp_path):
    # peft names -> (module in the loaded model, in features, out features); alpha absent: scale 1.
    layers = {
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj": ("text_encoder", "encoder.layers.0.self_attn.q_proj", TEXT_L, TEXT_L),
        "text_encoder_2.text_model.encoder.layers.1.self_attn.out_proj": ("text_encoder_2", "text_model.encoder.layers.1.self_attn.out_proj",
                                                                          TEXT_G, TEXT_G),
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k": ("unet", "", TEXT_L + TEXT_G, 64),
    }
    gen = torch.Generator().manual_seed(3)
    tensors = {}
    for name, (_, _, width, out) in layers.items():
        tensors[f"{name}.lora_A.weight"] = torch.randn(4, width, generator=gen)
        tensors[f"{name}.lora_B.weight"] = torch.randn(out, 4, generator=gen)
    path = tmp_path / "xl_lora.safetensors"
    save_file(tensors, str(path))
    doc = json.loads((WORKFLOWS / "sdxl_txt2img.json").read_text())
    doc["nodes"]["lora"] = {"type": "sd.lora", "inputs": {"unet": {"node": "load", "output": "unet"}, "clip": {"node": "load", "output": "clip"},
                                                         "lora": str(path), "strength_unet": 0.5, "strength_text": 0.7}}
    doc["nodes"]["encode"]["inputs"]["clip"] = {"node": "lora", "output": "lora_clip"}
    doc["nodes"]["denoise"]["inputs"]["unet"] = {"node": "lora", "output": "lora_unet"}
    inputs = _txt2img_inputs(xl["base"], "euler")

    got = _run(sd_registry, sd_models, parse_graph(doc), tmp_path, inputs, "lora")
    image = _run(sd_registry, sd_models, parse_graph(doc), tmp_path / "lora", inputs)
    plain = _run(sd_registry, sd_models, _graph("sdxl_txt2img"), tmp_path / "plain", inputs)

    for name, (part, module, _, _) in list(layers.items())[:2]:
        base = dict(getattr(clip, part).named_modules())[module].weight
        merged = dict(getattr(got["lora_clip"], part).named_modules())[module].weight
        expected = base + 0.7 * (tensors[f"{name}.lora_B.weight"] @ tensors[f"{name}.lora_A.weight"])
        torch.testing.assert_close(merged, expected, rtol=0, atol=1e-5)
    assert got["lora_clip"].family == "sdxl" and got["lora_text_encoder"] is None
    assert not torch.equal(image["image"].pixels, plain["image"].pixels)
