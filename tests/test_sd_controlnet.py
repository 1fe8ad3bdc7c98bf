"""ControlNet: the shipped workflow gives StableDiffusionControlNetPipeline's exact pixels; loading; preprocessors.

Tiny random ControlNets for the suite's tiny SD model (hint encoder 8/16/32, a shape no
other test uses), with their zero layers filled with seeded noise: a freshly made
ControlNet adds exact zeros, which would prove nothing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.graph import load_graph, parse_graph

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
PROMPT, NEGATIVE, SEED, GUIDANCE, STEPS = "a lighthouse on a cliff", "fog", 99, 6.0, 5


def tiny_controlnet(seed: int):  # type: ignore[no-untyped-def]
    """A ControlNet matching the conftest tiny UNet, zero layers randomised."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    model = ControlNetModel(
        in_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), block_out_channels=(32, 64), layers_per_block=1,
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32, conditioning_embedding_out_channels=(8, 16, 32),
    )
    with torch.no_grad():
        for layer in [model.controlnet_cond_embedding.conv_out, *model.controlnet_down_blocks, model.controlnet_mid_block]:
            layer.weight.normal_(0.0, 0.3)
            layer.bias.normal_(0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def controlnets(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("controlnets")
    folders = []
    for seed in (3, 4):
        tiny_controlnet(seed).save_pretrained(root / f"cn{seed}", safe_serialization=True)
        folders.append(root / f"cn{seed}")
    return folders


@pytest.fixture(scope="module")
def control_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("control_images")
    rng = np.random.default_rng(4)
    paths = []
    for i, size in enumerate((64, 40)):  # the second is resized (Lanczos) to 64x64, by both sides
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"control{i}.png")
        paths.append(root / f"control{i}.png")
    return paths


def _pipeline(tiny_sd_dir: Path, controlnet_dirs: list[Path], scheduler: str):  # type: ignore[no-untyped-def]
    import diffusers
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    nets = [ControlNetModel.from_pretrained(str(d), local_files_only=True, low_cpu_mem_usage=False) for d in controlnet_dirs]
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        str(tiny_sd_dir), controlnet=nets[0] if len(nets) == 1 else nets, local_files_only=True, safety_checker=None,
        requires_safety_checker=False, low_cpu_mem_usage=False)
    pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pixels(result) -> np.ndarray:  # type: ignore[no-untyped-def]
    assert result.status == "succeeded", result.errors
    with Image.open(result.outputs[0]["path"]) as png:
        return np.array(png.convert("RGB"))


def _settings(model: Path, controlnet: Path, image: Path, scheduler: str, scale: float = 1.0) -> dict[str, object]:
    return {"model": str(model), "controlnet": str(controlnet), "control_image": str(image), "prompt": PROMPT, "negative_prompt": NEGATIVE,
            "seed": SEED, "steps": STEPS, "guidance_scale": GUIDANCE, "scheduler": scheduler, "width": 64, "height": 64,
            "controlnet_scale": scale}


@pytest.mark.parametrize(("scheduler", "scale", "start", "end", "image"), [
    ("DDIMScheduler", 1.0, 0.0, 1.0, 0),
    ("EulerAncestralDiscreteScheduler", 0.7, 0.2, 0.8, 0),
    ("DPMSolverMultistepScheduler", 1.3, 0.0, 0.6, 1),
])
def test_controlnet_workflow_equals_the_controlnet_pipeline(scheduler, scale, start, end, image, tiny_sd_dir, controlnets, control_images,
                                                            sd_registry, sd_models, tmp_path):
    with Image.open(control_images[image]) as picture:
        expected = _pipeline(tiny_sd_dir, controlnets[:1], scheduler)(
            PROMPT, image=picture, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE, width=64, height=64,
            controlnet_conditioning_scale=scale, control_guidance_start=start, control_guidance_end=end,
            generator=torch.Generator("cpu").manual_seed(SEED)).images[0]

    settings = {**_settings(tiny_sd_dir, controlnets[0], control_images[image], scheduler, scale), "apply.start": start, "apply.end": end}
    got = _pixels(Executor(sd_registry, Cache(), sd_models).run(load_graph(WORKFLOWS / "controlnet.json"), inputs=settings, output_dir=tmp_path))

    assert np.array_equal(got, np.array(expected))


def _with_second_controlnet(controlnet: Path, image: Path, scale: float, start: float, end: float):  # type: ignore[no-untyped-def]
    doc = json.loads((WORKFLOWS / "controlnet.json").read_text())
    nodes = doc["nodes"]
    nodes["load_controlnet_2"] = {"type": "sd.load_controlnet", "inputs": {"path": str(controlnet)}}
    nodes["control_image_2"] = {"type": "sd.load_image", "inputs": {"path": str(image)}}
    nodes["apply_2"] = {"type": "sd.apply_controlnet", "inputs": {
        "positive": {"node": "apply", "output": "positive_out"}, "negative": {"node": "apply", "output": "negative_out"},
        "controlnet": {"node": "load_controlnet_2", "output": "controlnet"}, "image": {"node": "control_image_2", "output": "image"},
        "strength": scale, "start": start, "end": end}}
    nodes["denoise"]["inputs"]["positive"] = {"node": "apply_2", "output": "positive_out"}
    nodes["denoise"]["inputs"]["negative"] = {"node": "apply_2", "output": "negative_out"}
    return parse_graph(doc)


def test_two_chained_controlnets_equal_the_multi_controlnet_pipeline(tiny_sd_dir, controlnets, control_images, sd_registry, sd_models, tmp_path):
    with Image.open(control_images[0]) as first, Image.open(control_images[1]) as second:
        expected = _pipeline(tiny_sd_dir, controlnets, "EulerDiscreteScheduler")(
            PROMPT, image=[first, second], negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
            width=64, height=64, controlnet_conditioning_scale=[0.9, 0.5], control_guidance_start=[0.0, 0.4],
            control_guidance_end=[0.6, 1.0], generator=torch.Generator("cpu").manual_seed(SEED)).images[0]

    graph = _with_second_controlnet(controlnets[1], control_images[1], 0.5, 0.4, 1.0)
    settings = {**_settings(tiny_sd_dir, controlnets[0], control_images[0], "euler", 0.9), "apply.end": 0.6}
    got = _pixels(Executor(sd_registry, Cache(), sd_models).run(graph, inputs=settings, output_dir=tmp_path))

    assert np.array_equal(got, np.array(expected))


def test_the_controlnet_changes_the_picture_and_scale_0_removes_it(tiny_sd_dir, controlnets, control_images, sd_registry, sd_models, tmp_path):
    executor = Executor(sd_registry, Cache(), sd_models)
    graph = load_graph(WORKFLOWS / "controlnet.json")
    plain = _pixels(executor.run(load_graph(WORKFLOWS / "txt2img.json"), output_dir=tmp_path / "a", inputs={
        "model": str(tiny_sd_dir), "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": STEPS,
        "guidance_scale": GUIDANCE, "scheduler": "ddim", "width": 64, "height": 64}))

    steered = _pixels(executor.run(graph, inputs=_settings(tiny_sd_dir, controlnets[0], control_images[0], "ddim"), output_dir=tmp_path / "b"))
    unsteered = _pixels(executor.run(graph, inputs=_settings(tiny_sd_dir, controlnets[0], control_images[0], "ddim", 0.0),
                                     output_dir=tmp_path / "c"))

    assert not np.array_equal(steered, plain)
    assert np.array_equal(unsteered, plain)


def test_unrolled_steps_with_a_controlnet_equal_the_loop(tiny_sd_dir, controlnets, control_images, sd_registry, sd_models, tmp_path):
    doc = json.loads((WORKFLOWS / "txt2img_unrolled.json").read_text())
    nodes = doc["nodes"]
    nodes["load_controlnet"] = {"type": "sd.load_controlnet", "inputs": {"path": str(controlnets[0])}}
    nodes["control_image"] = {"type": "sd.load_image", "inputs": {"path": str(control_images[0])}}
    nodes["apply"] = {"type": "sd.apply_controlnet", "inputs": {
        "positive": {"node": "encode_prompt", "output": "conditioning"}, "negative": {"node": "encode_negative", "output": "conditioning"},
        "controlnet": {"node": "load_controlnet", "output": "controlnet"}, "image": {"node": "control_image", "output": "image"},
        "strength": 0.8, "start": 0.25, "end": 0.75}}
    for i in range(1, 5):
        nodes[f"unet_{i}"]["inputs"]["positive"] = {"node": "apply", "output": "positive_out"}
        nodes[f"unet_{i}"]["inputs"]["negative"] = {"node": "apply", "output": "negative_out"}
    loop_doc = copy.deepcopy(doc)
    loop_doc["nodes"]["loop"] = {"type": "sd.denoise", "inputs": {
        "unet": {"node": "load", "output": "unet"}, "latents": {"node": "noise", "output": "latents"},
        "scheduler": {"node": "scheduler", "output": "scheduler"}, "positive": {"node": "apply", "output": "positive_out"},
        "negative": {"node": "apply", "output": "negative_out"}, "guidance_scale": 5.5}}
    settings = {"model": str(tiny_sd_dir), "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": 5, "width": 64, "height": 64,
                "scheduler": "euler_a", "guidance_scale": 5.5, "scheduler.steps": 4}

    result = Executor(sd_registry, Cache(), sd_models).run(parse_graph(loop_doc), inputs=settings, output_dir=tmp_path, targets=["loop", "step_4"])

    assert result.status == "succeeded", result.errors
    assert torch.equal(result.values["step_4"]["next_latents"].samples, result.values["loop"]["denoised"].samples)


def test_a_single_safetensors_controlnet_loads_the_folders_weights(controlnets, tmp_path):
    from safetensors.torch import load_file, save_file

    from nodeflow.models.controlnet import load_controlnet

    state = load_file(str(controlnets[0] / "diffusion_pytorch_model.safetensors"))
    save_file(state, str(tmp_path / "cn.safetensors"))
    folder = load_controlnet(controlnets[0], torch.float32, "cpu")

    single = load_controlnet(tmp_path / "cn.safetensors", torch.float32, "cpu")

    assert single.config.conditioning_embedding_out_channels == folder.config.conditioning_embedding_out_channels
    assert single.state_dict().keys() == folder.state_dict().keys()
    assert all(torch.equal(single.state_dict()[k], v) for k, v in folder.state_dict().items())


def test_a_controlnet_for_another_family_is_refused_naming_it(controlnets, control_images, tiny_sd_dir, sd_registry, sd_models, tmp_path):
    from nodeflow_nodes.sd.controlnet import ApplyControlNet

    from nodeflow.context import Context
    from nodeflow.values import Conditioning
    from nodeflow.values import Image as ImageValue

    net = tiny_controlnet(3)
    wide = Conditioning(torch.zeros(1, 77, 768))
    with pytest.raises(ValueError, match="text width 32"):
        ApplyControlNet().run(Context("apply", "sd.apply_controlnet"), wide, wide, net, ImageValue(torch.zeros(1, 3, 64, 64)), 1.0, 0.0, 1.0)


def _controlnet_graph(model: Path, controlnet: Path) -> dict:
    doc = json.loads((WORKFLOWS / "controlnet.json").read_text())
    doc["nodes"]["load"]["inputs"]["model"] = str(model)
    doc["nodes"]["load_controlnet"]["inputs"]["path"] = str(controlnet)
    return doc


def test_a_controlnet_for_another_model_width_is_a_validation_error_before_anything_loads(controlnets, tiny_sd_dir, sd_registry,
                                                                                         tmp_path):
    from nodeflow.files import PathResolver
    from nodeflow.validate import validate

    config = json.loads((controlnets[0] / "config.json").read_text())
    other = tmp_path / "cn_wide"
    other.mkdir()
    (other / "config.json").write_text(json.dumps(config | {"cross_attention_dim": 768}))  # config only: nothing can load
    paths = PathResolver.create(base=WORKFLOWS)

    assert validate(parse_graph(_controlnet_graph(tiny_sd_dir, controlnets[0])), sd_registry, paths) == []
    errors = validate(parse_graph(_controlnet_graph(tiny_sd_dir, other)), sd_registry, paths)
    assert [(e.code, e.node, e.input) for e in errors] == [("family_mismatch", "apply", "controlnet")]
    assert "SD 1.x" in errors[0].message and "'load'" in errors[0].message and "32-wide" in errors[0].message


def test_apply_controlnet_refuses_a_start_after_its_end_before_running(sd_registry):
    from nodeflow.validate import validate

    doc = json.loads((WORKFLOWS / "controlnet.json").read_text())
    doc["nodes"]["apply"]["inputs"].update(start=0.8, end=0.2)
    errors = validate(parse_graph(doc), sd_registry)
    assert [(e.node, e.message) for e in errors] == [("apply", "start 0.8 is after end 0.2: the ControlNet would never act")]


def test_canny_and_scribble_make_white_strokes_on_black():
    from nodeflow_nodes.sd.controlnet import Canny, ControlImageResize, Scribble

    from nodeflow.context import Context
    from nodeflow.values import Image as ImageValue

    pixels = torch.ones(1, 3, 32, 48)
    pixels[..., 8:24, 16:32] = 0.0  # a black square on white
    ctx = Context("x", "x")
    edges = Canny().run(ctx, ImageValue(pixels), 100, 200).pixels
    scribble = Scribble().run(ctx, ImageValue(pixels), 0.5, True).pixels
    resized = ControlImageResize().run(ctx, ImageValue(pixels), 16, 16, "crop").pixels

    assert edges.shape == (1, 3, 32, 48) and set(edges.unique().tolist()) == {0.0, 1.0}
    assert edges[0, 0, 7:9, 20].max() == 1.0 and edges[0, 0, 16, 24] == 0.0 and edges[0, 0, 0, 0] == 0.0  # the square's top edge
    assert torch.equal(scribble[0, 0], 1.0 - pixels[0, 0])
    assert resized.shape == (1, 3, 16, 16)


def _controlnet_to_ldm(model) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """A diffusers ControlNet's weights under the original layout's names (``control_model.*``)."""
    from types import SimpleNamespace

    from models_tiny import _RESNET, _rename, _unet_prefixes

    config = model.config
    shape = SimpleNamespace(block_out_channels=config.block_out_channels, layers_per_block=config.layers_per_block,
                            down_block_types=config.down_block_types, up_block_types=("UpBlock2D",) * len(config.block_out_channels))
    pairs = _unet_prefixes(shape)
    pairs += [(f"zero_convs.{i}.0.", f"controlnet_down_blocks.{i}.") for i in range(len(model.controlnet_down_blocks))]
    pairs += [("middle_block_out.0.", "controlnet_mid_block."), ("input_hint_block.0.", "controlnet_cond_embedding.conv_in."),
              ("input_hint_block.14.", "controlnet_cond_embedding.conv_out.")]
    pairs += [(f"input_hint_block.{2 * (k + 1)}.", f"controlnet_cond_embedding.blocks.{k}.") for k in range(6)]
    out = {}
    for key, value in model.state_dict().items():
        ldm = _rename(key, pairs)
        if ".resnets." in key:
            for old, new in _RESNET:
                ldm = ldm.replace(f".{new}.", f".{old}.")
        out["control_model." + ldm] = value.clone()
    return out


def test_an_original_layout_controlnet_file_loads_the_same_weights(tmp_path):
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    from nodeflow.models.controlnet import load_controlnet

    torch.manual_seed(6)  # the original layout's hint encoder has SD's four levels
    model = ControlNetModel(in_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), block_out_channels=(32, 64),
                            layers_per_block=2, cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
                            conditioning_embedding_out_channels=(8, 8, 16, 16)).eval()
    save_file(_controlnet_to_ldm(model), str(tmp_path / "control_tiny.safetensors"))

    loaded = load_controlnet(tmp_path / "control_tiny.safetensors", torch.float32, "cpu")

    assert loaded.config.layers_per_block == 2 and list(loaded.config.conditioning_embedding_out_channels) == [8, 8, 16, 16]
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_a_file_that_is_no_controlnet_is_refused_naming_it(tmp_path):
    from safetensors.torch import save_file

    from nodeflow.models.controlnet import ControlNetLoadError, load_controlnet

    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ControlNetLoadError, match="other.safetensors: not a ControlNet"):
        load_controlnet(tmp_path / "other.safetensors", torch.float32, "cpu")


def test_the_demo_controlnet_is_the_same_every_build(tiny_sd_dir, sd_models):
    from nodeflow.models.controlnet import demo_controlnet

    unet = sd_models.load_sd(str(tiny_sd_dir)).unet
    torch.manual_seed(1)
    first = demo_controlnet(unet, 5, (8, 16, 32)).state_dict()
    torch.manual_seed(2)  # the global random state must not matter
    second = demo_controlnet(unet, 5, (8, 16, 32)).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert first["controlnet_mid_block.weight"].abs().sum() > 0
