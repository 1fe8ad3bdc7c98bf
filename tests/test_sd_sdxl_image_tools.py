"""SDXL inpainting and ControlNet: the shipped SDXL workflows give diffusers' exact pixels.

A tiny random SDXL family built here (CLIP-L 60 wide, OpenCLIP-bigG 100 wide with a
16-wide projection, UNet 64/128 with SDXL's 64-wide heads and its 256-wide time-id
embedding, VAE 32/32: a shape no other test uses): an ordinary 4-channel UNet, a
9-channel inpainting one, and a ControlNet made from the 4-channel UNet with diffusers'
``ControlNetModel.from_unet`` (its zero layers filled with seeded noise: a fresh one adds
exact zeros, which would prove nothing). ``workflows/sdxl_inpaint.json`` and
``sdxl_controlnet.json`` run on them with the graph inputs a user sets (``--set``); their
PNGs EQUAL ``StableDiffusionXLInpaintPipeline``'s and ``StableDiffusionXLControlNetPipeline``'s.
Pictures are 40x32 (not square).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from models_families import save_sdxl, sdxl_checkpoint
from PIL import Image

from nodeflow import testing
from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.files import PathResolver
from nodeflow.graph import load_graph, parse_graph
from nodeflow.validate import validate

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
TEXT_L, TEXT_G, POOLED = 60, 100, 16  # CLIP-L's 12 heads and bigG's 20 (what a single file cannot tell)
TIME = 256  # SDXL's own: a single-file ControlNet cannot tell it from its tensors, the loader assumes SDXL's
PROMPT, NEGATIVE, SEED, GUIDANCE, WIDTH, HEIGHT, STEPS = "a cat on a windowsill", "blurry", 2024, 5.0, 40, 32, 4


def _unet(in_channels: int, seed: int) -> Any:
    return testing.unet((64, 128), (False, True), cross_attention_dim=TEXT_L + TEXT_G, in_channels=in_channels,
                        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=TIME,
                        projection_class_embeddings_input_dim=POOLED + 6 * TIME, attention_head_dim=(1, 2),
                        transformer_layers_per_block=(1, 2), seed=seed)


def _controlnet(unet: Any, seed: int) -> Any:
    """An SDXL ControlNet from ``unet`` (hint encoder 16/32: the VAE's factor 2), every layer from_unet does not copy seeded."""
    from diffusers import ControlNetModel

    testing.seeded(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in [net.controlnet_cond_embedding.conv_out, *net.controlnet_down_blocks, net.controlnet_mid_block]:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.3)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.1)
    return net.eval()


@pytest.fixture(scope="module")
def xl(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The 4- and 9-channel SDXL folders (same text encoders and VAE), the ControlNet as a folder and as one file."""
    root = tmp_path_factory.mktemp("sdxl_image_tools")
    shared = {
        "vae": testing.vae((32, 32), scaling_factor=0.13025, force_upcast=True, sample_size=32, seed=41),
        "text_encoder": testing.text_encoder(testing.clip_config(TEXT_L, 12, projection=TEXT_L, special_ids=(0, 2, 1)), seed=42),
        "text_encoder_2": testing.text_encoder(testing.clip_config(TEXT_G, 20, act="gelu", projection=POOLED, special_ids=(0, 2, 1)),
                                               with_projection=True, seed=43),
    }
    unet = _unet(4, seed=44)
    paths = {"base": save_sdxl({**shared, "unet": unet}, root / "base"),
             "inpainting": save_sdxl({**shared, "unet": _unet(9, seed=45)}, root / "inpainting")}
    _controlnet(unet, seed=46).save_pretrained(root / "controlnet", safe_serialization=True)
    shutil.copyfile(root / "controlnet" / "diffusion_pytorch_model.safetensors", root / "controlnet.safetensors")
    return {**paths, "controlnet": root / "controlnet", "controlnet_file": root / "controlnet.safetensors", "root": root}


@pytest.fixture(scope="module")
def pictures(xl: dict[str, Path]) -> dict[str, Path]:
    """A random picture, its mask (a soft-edged rectangle: the pipeline binarizes at 0.5), larger ones, a control image."""
    rng = np.random.default_rng(13)
    out = {}
    for name, (width, height) in {"": (WIDTH, HEIGHT), "large_": (56, 48)}.items():
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(xl["root"] / f"{name}picture.png")
        mask = np.zeros((height, width), np.uint8)
        mask[6 : height // 2 + 6, 8 : width - 10] = 255
        mask[height // 2 + 6 : height // 2 + 9, 8 : width - 10] = 120  # below the threshold: kept
        Image.fromarray(mask, "L").save(xl["root"] / f"{name}mask.png")
        out |= {f"{name}picture": xl["root"] / f"{name}picture.png", f"{name}mask": xl["root"] / f"{name}mask.png"}
    return out


def _pipeline(cls: str, model: Path, scheduler: str, **components: Any) -> Any:
    pipe = getattr(diffusers, cls).from_pretrained(str(model), local_files_only=True, low_cpu_mem_usage=False, add_watermarker=False,
                                                   **components)
    pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _png(result: Any) -> np.ndarray:
    assert result.status == "succeeded", result.errors
    with Image.open(result.outputs[0]["path"]) as png:
        return np.array(png.convert("RGB"))


def _run(registry: Any, models: Any, graph: Any, out: Path, inputs: dict[str, Any]) -> np.ndarray:
    """The graph run with these graph inputs (what ``nodeflow run ... --set NAME=VALUE`` sets); its PNG's pixels."""
    return _png(Executor(registry, Cache(), models).run(graph, inputs=inputs, output_dir=out))


def _common(model: Path, scheduler: str) -> dict[str, Any]:
    return {"model": str(model), "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": STEPS,
            "guidance_scale": GUIDANCE, "scheduler": scheduler}


# ------------------------------------------------------------------------------- inpainting
def _inpaint_reference(model: Path, scheduler: str, picture: Path, mask: Path, strength: float) -> np.ndarray:
    with Image.open(picture) as image, Image.open(mask) as mask_image:
        out = _pipeline("StableDiffusionXLInpaintPipeline", model, scheduler)(
            PROMPT, image=image.convert("RGB"), mask_image=mask_image, negative_prompt=NEGATIVE, width=WIDTH, height=HEIGHT,
            strength=strength, num_inference_steps=STEPS, guidance_scale=GUIDANCE, generator=torch.Generator("cpu").manual_seed(SEED))
    return np.array(out.images[0])


@pytest.mark.parametrize(("kind", "scheduler", "strength"), [
    ("base", "EulerDiscreteScheduler", 1.0),  # pure noise in the mask; the blend keeps the rest
    ("base", "DPMSolverMultistepScheduler", 0.75),
    ("base", "EulerAncestralDiscreteScheduler", 0.6),  # the stream feeds the sampler's noise too
    ("inpainting", "EulerAncestralDiscreteScheduler", 0.75),
    ("inpainting", "DPMSolverMultistepScheduler", 0.5),
])
def test_sdxl_inpaint_workflow_equals_the_sdxl_inpaint_pipeline(kind, scheduler, strength, xl, pictures, sd_registry, sd_models,
                                                                tmp_path):
    expected = _inpaint_reference(xl[kind], scheduler, pictures["picture"], pictures["mask"], strength)

    got = _run(sd_registry, sd_models, load_graph(WORKFLOWS / "sdxl_inpaint.json"), tmp_path,
               {**_common(xl[kind], scheduler), "image": str(pictures["picture"]), "mask": str(pictures["mask"]), "strength": strength})

    assert got.shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(got, expected)


def test_an_inpainting_unet_at_strength_1_equals_the_pipeline_with_an_argmax_encode(xl, pictures, sd_registry, sd_models, tmp_path):
    # As for SD 1.x: at strength 1 the pipeline does not encode the picture for a 9-channel
    # UNet, so its first random numbers are the noise; an argmax VAE Encode draws none either.
    expected = _inpaint_reference(xl["inpainting"], "EulerDiscreteScheduler", pictures["picture"], pictures["mask"], 1.0)

    got = _run(sd_registry, sd_models, load_graph(WORKFLOWS / "sdxl_inpaint.json"), tmp_path,
               {**_common(xl["inpainting"], "euler"), "image": str(pictures["picture"]), "mask": str(pictures["mask"]), "strength": 1.0,
                "encode_image.mode": "argmax"})

    assert np.array_equal(got, expected)


def test_width_and_height_resize_picture_and_mask_as_the_pipeline_does(xl, pictures, sd_registry, sd_models, tmp_path):
    # The pipeline resizes both (Lanczos; the mask as 8-bit gray, then binarized) to width x height.
    expected = _inpaint_reference(xl["base"], "EulerDiscreteScheduler", pictures["large_picture"], pictures["large_mask"], 0.75)

    got = _run(sd_registry, sd_models, load_graph(WORKFLOWS / "sdxl_inpaint.json"), tmp_path,
               {**_common(xl["base"], "euler"), "image": str(pictures["large_picture"]), "mask": str(pictures["large_mask"]),
                "strength": 0.75, "width": WIDTH, "height": HEIGHT})

    assert np.array_equal(got, expected)


def test_an_ordinary_sdxl_unet_keeps_the_original_latents_outside_the_mask(xl, pictures, sd_registry, sd_models, tmp_path):
    inputs = {**_common(xl["base"], "euler"), "image": str(pictures["picture"]), "mask": str(pictures["mask"]), "strength": 0.75}
    result = Executor(sd_registry, Cache(), sd_models).run(load_graph(WORKFLOWS / "sdxl_inpaint.json"), inputs=inputs,
                                                           output_dir=tmp_path, targets=["denoise", "noise_mask"])
    assert result.status == "succeeded", result.errors
    final = result.values["denoise"]["denoised"].samples
    noise_mask = result.values["noise_mask"]["masked"].noise_mask

    keep = noise_mask.mask.expand_as(final) == 0
    assert keep.any() and not keep.all()
    assert torch.equal(final[keep], noise_mask.original[keep])
    assert not torch.equal(final[~keep], noise_mask.original[~keep])


def test_a_single_file_sdxl_inpainting_checkpoint_gives_its_folders_pixels(xl, pictures, sd_registry, sd_models, tmp_path):
    from safetensors.torch import save_file

    parts = sd_models.load_sd(str(xl["inpainting"]))
    path = tmp_path / "tiny-sdxl-inpainting.safetensors"  # the SGM layout, in_channels 9 told by the tensors
    save_file(sdxl_checkpoint({"unet": parts.unet, "vae": parts.vae, "text_encoder": parts.text_encoder,
                               "text_encoder_2": parts.text_encoder_2}), str(path))
    graph = load_graph(WORKFLOWS / "sdxl_inpaint.json")
    inputs = {"image": str(pictures["picture"]), "mask": str(pictures["mask"]), "strength": 0.75}

    from_folder = _run(sd_registry, sd_models, graph, tmp_path / "a", {**_common(xl["inpainting"], "euler"), **inputs})
    from_file = _run(sd_registry, sd_models, graph, tmp_path / "b", {**_common(path, "euler"), **inputs})

    assert np.array_equal(from_file, from_folder)


def test_inpaint_model_conditioning_upcast_encodes_a_half_precision_vae_as_the_sdxl_pipeline(xl, pictures, sd_models):
    # The SDXL pipelines encode with their VAE moved to fp32 when it says force_upcast (fp16 on
    # a GPU; bf16 here, on the CPU): the masked-image latents must be those, in the model's dtype.
    import copy

    from nodeflow_nodes.sd.images import pil_to_image
    from nodeflow_nodes.sd.inpaint import InpaintModelConditioning
    from nodeflow_nodes.sd.masks import mask_from_picture

    from nodeflow.context import Context
    from nodeflow.values import Latents

    pipe = _pipeline("StableDiffusionXLInpaintPipeline", xl["inpainting"], "EulerDiscreteScheduler", dtype=torch.bfloat16)
    vae = copy.deepcopy(pipe.vae)
    with Image.open(pictures["picture"]) as picture, Image.open(pictures["mask"]) as mask_picture:
        image, mask = pil_to_image(picture), mask_from_picture(mask_picture, "luminance")
        init = pipe.image_processor.preprocess(picture.convert("RGB"), height=HEIGHT, width=WIDTH).to(torch.float32)
        full = pipe.mask_processor.preprocess(mask_picture, height=HEIGHT, width=WIDTH)
    _, expected = pipe.prepare_mask_latents(full, init * (full < 0.5), 1, HEIGHT, WIDTH, torch.bfloat16, "cpu",
                                            torch.Generator().manual_seed(7), False)
    latents = Latents(torch.zeros(1, 4, HEIGHT // 2, WIDTH // 2, dtype=torch.bfloat16), 0.13025,
                      torch.Generator().manual_seed(7).get_state(), vae_factor=2)
    ctx = Context("inpaint", "sd.inpaint_model_conditioning", model_store=sd_models)

    upcast = InpaintModelConditioning().run(ctx, pipe.unet, vae, image, mask, latents, True, upcast=True).concat[:, 1:]
    plain = InpaintModelConditioning().run(ctx, pipe.unet, vae, image, mask, latents, True, upcast=False).concat[:, 1:]

    assert upcast.dtype == torch.bfloat16 and torch.equal(upcast, expected)
    assert not torch.equal(plain, expected)  # a bf16 encode is not the pipeline's
    assert vae.dtype == torch.bfloat16  # the shared VAE stays as it was


# ------------------------------------------------------------------------------- ControlNet
def _controlnet_reference(xl: dict[str, Path], scheduler: str, image: Path, scale: float, start: float, end: float) -> np.ndarray:
    from diffusers import ControlNetModel

    net = ControlNetModel.from_pretrained(str(xl["controlnet"]), local_files_only=True, low_cpu_mem_usage=False)
    with Image.open(image) as picture:
        out = _pipeline("StableDiffusionXLControlNetPipeline", xl["base"], scheduler, controlnet=net)(
            PROMPT, image=picture.convert("RGB"), negative_prompt=NEGATIVE, width=WIDTH, height=HEIGHT, num_inference_steps=STEPS,
            guidance_scale=GUIDANCE, controlnet_conditioning_scale=scale, control_guidance_start=start, control_guidance_end=end,
            generator=torch.Generator("cpu").manual_seed(SEED))
    return np.array(out.images[0])


def _controlnet_inputs(xl: dict[str, Path], controlnet: Path, scheduler: str, image: Path, scale: float, start: float,
                       end: float) -> dict[str, Any]:
    return {**_common(xl["base"], scheduler), "width": WIDTH, "height": HEIGHT, "controlnet": str(controlnet),
            "control_image": str(image), "controlnet_scale": scale, "apply.start": start, "apply.end": end}


@pytest.mark.parametrize(("scheduler", "scale", "start", "end", "image"), [
    ("EulerDiscreteScheduler", 0.7, 0.2, 0.8, "picture"),
    ("DPMSolverMultistepScheduler", 1.3, 0.0, 0.6, "large_picture"),  # resized (Lanczos) to 40x32 by both
    ("EulerAncestralDiscreteScheduler", 0.5, 0.25, 1.0, "picture"),
])
def test_sdxl_controlnet_workflow_equals_the_sdxl_controlnet_pipeline(scheduler, scale, start, end, image, xl, pictures, sd_registry,
                                                                      sd_models, tmp_path):
    expected = _controlnet_reference(xl, scheduler, pictures[image], scale, start, end)

    got = _run(sd_registry, sd_models, load_graph(WORKFLOWS / "sdxl_controlnet.json"), tmp_path,
               _controlnet_inputs(xl, xl["controlnet"], scheduler, pictures[image], scale, start, end))

    assert np.array_equal(got, expected)


def test_the_sdxl_controlnet_changes_the_picture_and_scale_0_removes_it(xl, pictures, sd_registry, sd_models, tmp_path):
    plain = _run(sd_registry, sd_models, load_graph(WORKFLOWS / "sdxl_txt2img.json"), tmp_path / "a",
                 {**_common(xl["base"], "euler"), "width": WIDTH, "height": HEIGHT})
    graph = load_graph(WORKFLOWS / "sdxl_controlnet.json")

    steered = _run(sd_registry, sd_models, graph, tmp_path / "b",
                   _controlnet_inputs(xl, xl["controlnet"], "euler", pictures["picture"], 1.0, 0.0, 1.0))
    unsteered = _run(sd_registry, sd_models, graph, tmp_path / "c",
                     _controlnet_inputs(xl, xl["controlnet"], "euler", pictures["picture"], 0.0, 0.0, 1.0))

    assert not np.array_equal(steered, plain)
    assert np.array_equal(unsteered, plain)


def test_an_sdxl_controlnet_file_loads_with_its_folders_config_and_pixels(xl, pictures, sd_registry, sd_models, tmp_path):
    from nodeflow.models.controlnet import load_controlnet

    folder = load_controlnet(xl["controlnet"], torch.float32, "cpu")
    single = load_controlnet(xl["controlnet_file"], torch.float32, "cpu")
    graph = load_graph(WORKFLOWS / "sdxl_controlnet.json")

    for field in ("addition_embed_type", "addition_time_embed_dim", "projection_class_embeddings_input_dim", "transformer_layers_per_block",
                  "attention_head_dim", "conditioning_embedding_out_channels", "use_linear_projection", "cross_attention_dim"):
        assert list(np.atleast_1d(single.config[field])) == list(np.atleast_1d(folder.config[field])), field
    assert all(torch.equal(single.state_dict()[k], v) for k, v in folder.state_dict().items())
    from_folder = _run(sd_registry, sd_models, graph, tmp_path / "a",
                       _controlnet_inputs(xl, xl["controlnet"], "euler", pictures["picture"], 0.9, 0.0, 1.0))
    from_file = _run(sd_registry, sd_models, graph, tmp_path / "b",
                     _controlnet_inputs(xl, xl["controlnet_file"], "euler", pictures["picture"], 0.9, 0.0, 1.0))
    assert np.array_equal(from_file, from_folder)


# ------------------------------------------------------------------------------- families
def _config_only(folder: Path, config: dict[str, Any]) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))  # config only: nothing can load
    return folder


def _with_literals(name: str, **literals: str) -> Any:
    doc = json.loads((WORKFLOWS / f"{name}.json").read_text())
    for target, value in literals.items():
        node, field = target.split(".")
        doc["nodes"][node]["inputs"][field] = value
    return parse_graph(doc)


def test_an_sd1_controlnet_with_sdxl_conditioning_is_a_validation_error_before_anything_loads(xl, sd_registry, tmp_path):
    config = json.loads((xl["controlnet"] / "config.json").read_text())
    sd1 = _config_only(tmp_path / "cn_sd1", {k: v for k, v in config.items() if not k.startswith(("addition", "projection_class"))}
                       | {"cross_attention_dim": 768})
    paths = PathResolver.create(base=WORKFLOWS)

    ok = validate(_with_literals("sdxl_controlnet", **{"load.model": str(xl["base"]), "load_controlnet.path": str(xl["controlnet"])}),
                  sd_registry, paths)
    errors = validate(_with_literals("sdxl_controlnet", **{"load.model": str(xl["base"]), "load_controlnet.path": str(sd1)}),
                      sd_registry, paths)

    assert ok == []
    assert [(e.code, e.node, e.input) for e in errors] == [("family_mismatch", "apply", "controlnet")]
    assert "SD 1.x" in errors[0].message and "'load'" in errors[0].message and f"text width {TEXT_L + TEXT_G}" in errors[0].message


def test_an_sdxl_controlnet_with_sd1_conditioning_is_a_validation_error_before_anything_loads(xl, tiny_sd_dir, sd_registry):
    errors = validate(_with_literals("controlnet", **{"load.model": str(tiny_sd_dir), "load_controlnet.path": str(xl["controlnet_file"])}),
                      sd_registry, PathResolver.create(base=WORKFLOWS))

    assert [(e.code, e.node, e.input) for e in errors] == [("family_mismatch", "apply", "controlnet")]
    assert f"{TEXT_L + TEXT_G}-wide" in errors[0].message and "'load'" in errors[0].message


SDXL_INPUTS = {"model", "prompt", "negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "scheduler"}


@pytest.mark.parametrize(("name", "extra"), [("sdxl_inpaint", {"image", "mask", "strength"}),
                                             ("sdxl_controlnet", {"controlnet", "control_image", "controlnet_scale"})])
def test_the_sdxl_workflows_expose_sdxl_txt2img_inputs_and_are_laid_out(name, extra):
    graph = load_graph(WORKFLOWS / f"{name}.json")
    txt2img = load_graph(WORKFLOWS / "sdxl_txt2img.json")

    assert set(graph.inputs) == SDXL_INPUTS | extra
    assert graph.nodes["load"].inputs["model"] == ""  # no SDXL model ships: the user's
    assert all(len(node.ui["pos"]) == 2 for node in graph.nodes.values())
    assert {k: v.description for k, v in graph.inputs.items() if k in {"model", "prompt", "negative_prompt", "steps", "scheduler"}} == \
        {k: v.description for k, v in txt2img.inputs.items() if k in {"model", "prompt", "negative_prompt", "steps", "scheduler"}}


def test_the_sdxl_workflows_ask_for_a_model_and_a_controlnet_before_anything_loads(sd_registry):
    inpaint = validate(load_graph(WORKFLOWS / "sdxl_inpaint.json"), sd_registry, PathResolver.create(base=WORKFLOWS))
    controlnet = validate(load_graph(WORKFLOWS / "sdxl_controlnet.json"), sd_registry, PathResolver.create(base=WORKFLOWS))

    assert [(e.code, e.node, e.input) for e in inpaint] == [("missing_input", "load", "model")]
    assert [(e.code, e.node, e.input) for e in controlnet] == [("missing_input", "load", "model"),
                                                               ("missing_input", "load_controlnet", "path")]
