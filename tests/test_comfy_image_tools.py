"""ComfyUI's inpainting, upscaling, conditioning, ControlNet and VAE classes on nodeflow's image-tools nodes.

Each class imports from both shapes (UI workflow and API prompt) to the same nodes; the
run tests use the embedded digits model (16 px) and the shipped demo ControlNet, and
compare with the native nodeflow graph that means the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from comfy_support import api_to_ui, deep
from PIL import Image

from nodeflow.cache import Cache
from nodeflow.comfy import import_comfy
from nodeflow.executor import Executor
from nodeflow.files import PathResolver
from nodeflow.graph import load_graph

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
STEPS, SEED, CFG = 3, 42, 7.5


def _base(sampler: str = "ddim", schedule: str = "ddim_uniform") -> dict[str, Any]:
    """txt2img on the embedded model, 16 px, in ComfyUI's API shape (ids as the default workflow's)."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "default"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a handwritten digit three", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 16, "height": 16, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": SEED, "steps": STEPS, "cfg": CFG, "sampler_name": sampler,
                                                   "scheduler": schedule, "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0], "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "comfy", "images": ["8", 0]}},
    }


def _inpaint() -> dict[str, Any]:
    api = _base("euler", "normal")
    api["10"] = {"class_type": "LoadImage", "inputs": {"image": "images/digit3.png"}}
    api["11"] = {"class_type": "LoadImageMask", "inputs": {"image": "images/digit3_mask.png", "channel": "red"}}
    api["12"] = {"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["11", 0], "grow_mask_by": 6}}
    api["3"]["inputs"]["latent_image"] = ["12", 0]
    del api["5"]
    return api


def _controlnet(strength: float = 0.8) -> dict[str, Any]:
    api = _base()
    api["10"] = {"class_type": "LoadImage", "inputs": {"image": "images/digit3.png"}}
    api["11"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "digits-demo"}}
    api["12"] = {"class_type": "ControlNetApplyAdvanced", "inputs": {"positive": ["6", 0], "negative": ["7", 0], "control_net": ["11", 0],
                                                                     "image": ["10", 0], "strength": strength, "start_percent": 0.0,
                                                                     "end_percent": 1.0}}
    api["3"]["inputs"].update(positive=["12", 0], negative=["12", 1])
    return api


def _hires() -> dict[str, Any]:
    api = _base()
    api["13"] = {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "upscale_method": "bilinear", "scale_by": 2.0}}
    api["14"] = {"class_type": "KSampler", "inputs": {**api["3"]["inputs"], "latent_image": ["13", 0], "denoise": 0.5, "steps": 2}}
    api["8"]["inputs"]["samples"] = ["14", 0]
    return api


def _paths() -> PathResolver:
    return PathResolver.create([WORKFLOWS], kinds={"controlnet": [WORKFLOWS / "controlnets"]})


def _both(api: dict[str, Any], sd_registry: Any) -> Any:
    """The API prompt's translation, checked to equal its UI-workflow twin's."""
    from_api = import_comfy(deep(api), sd_registry, _paths())
    from_ui = import_comfy(api_to_ui(api), sd_registry, _paths())
    assert from_api.ok, from_api.errors
    assert from_ui.ok, from_ui.errors
    assert {k: (n.type, n.inputs) for k, n in from_ui.doc.nodes.items()} == {k: (n.type, n.inputs) for k, n in from_api.doc.nodes.items()}
    return from_api.doc


def _run_pixels(graph: Any, sd_registry: Any, sd_models: Any, out: Path, inputs: dict[str, Any] | None = None) -> np.ndarray:
    result = Executor(sd_registry, Cache(), sd_models).run(graph, inputs=inputs, output_dir=out, paths=_paths())
    assert result.status == "succeeded" and not result.errors, result.errors
    (path,) = [o["path"] for o in result.outputs]
    with Image.open(path) as picture:
        return np.array(picture.convert("RGB"))


# -- imports: each class to its nodes ------------------------------------------------------------------------
def test_an_inpainting_workflow_imports_to_the_inpaint_nodes(sd_registry):
    doc = _both(_inpaint(), sd_registry)
    assert doc.nodes["11"].type == "sd.load_mask" and doc.nodes["11"].inputs == {"path": "images/digit3_mask.png", "channel": "red"}
    encode = doc.nodes["12"]
    assert encode.type == "sd.vae_encode_inpaint"
    assert {k: encode.inputs[k] for k in ("grow", "mode", "binarize")} == {"grow": 6, "mode": "argmax", "binarize": True}
    assert encode.inputs["unet"] == {"node": "4", "output": "unet"} and encode.inputs["mask"] == {"node": "11", "output": "mask"}
    assert doc.nodes["3.noise"].type == "sd.add_noise" and doc.nodes["3.noise"].inputs["latents"] == {"node": "12", "output": "latents"}


def test_set_latent_noise_mask_and_load_images_mask_output(sd_registry):
    api = _base()
    api["10"] = {"class_type": "LoadImage", "inputs": {"image": "images/digit3.png"}}
    api["12"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    api["13"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["12", 0], "mask": ["10", 1]}}
    api["3"]["inputs"].update(latent_image=["13", 0], denoise=0.7)
    del api["5"]
    doc = _both(api, sd_registry)
    mask = doc.nodes["13"]
    assert mask.type == "sd.set_latent_noise_mask" and mask.inputs["binarize"] is False  # ComfyUI keeps a soft mask
    assert mask.inputs["mask"] == {"node": "10", "output": "mask"} and doc.nodes["3.noise"].inputs["latents"] == {"node": "13", "output": "masked"}


def test_upscale_classes_import_to_the_upscale_nodes(sd_registry):
    api = _hires()
    api["15"] = {"class_type": "LatentUpscale", "inputs": {"samples": ["14", 0], "upscale_method": "nearest-exact", "width": 48,
                                                           "height": 40, "crop": "disabled"}}
    api["16"] = {"class_type": "ImageScale", "inputs": {"image": ["8", 0], "upscale_method": "area", "width": 24, "height": 24,
                                                        "crop": "disabled"}}
    api["17"] = {"class_type": "ImageScaleBy", "inputs": {"image": ["16", 0], "upscale_method": "lanczos", "scale_by": 1.5}}
    api["18"] = {"class_type": "PreviewImage", "inputs": {"images": ["17", 0]}}
    api["19"] = {"class_type": "VAEDecode", "inputs": {"samples": ["15", 0], "vae": ["4", 2]}}
    api["20"] = {"class_type": "PreviewImage", "inputs": {"images": ["19", 0]}}
    doc = _both(api, sd_registry)
    assert (doc.nodes["13"].type, doc.nodes["13"].inputs["mode"], doc.nodes["13"].inputs["scale_by"]) == ("sd.latent_upscale", "bilinear", 2.0)
    assert doc.nodes["14.noise"].inputs["latents"] == {"node": "13", "output": "upscaled"}
    assert doc.nodes["14.scheduler"].inputs["denoise"] == 0.5
    latent = doc.nodes["15"].inputs
    assert doc.nodes["15"].type == "sd.latent_upscale" and (latent["mode"], latent["width"], latent["height"]) == ("nearest-exact", 48, 40)
    assert doc.nodes["16"].type == "sd.image_upscale" and doc.nodes["16"].inputs["mode"] == "area"
    assert doc.nodes["17"].inputs == {"image": {"node": "16", "output": "upscaled"}, "mode": "lanczos", "scale_by": 1.5, "width": 0, "height": 0}


def test_upscale_settings_nodeflow_lacks_are_refused_by_name(sd_registry):
    api = _hires()
    api["15"] = {"class_type": "ImageScale", "inputs": {"image": ["8", 0], "upscale_method": "bilinear", "width": 32, "height": 32,
                                                        "crop": "center"}}
    api["16"] = {"class_type": "LatentUpscale", "inputs": {"samples": ["3", 0], "upscale_method": "bilinear", "width": 0, "height": 32,
                                                           "crop": "disabled"}}
    result = import_comfy(api, sd_registry)
    assert sorted((e.code, e.node, e.input) for e in result.errors) == [("unsupported_comfy_value", "15", "crop"),
                                                                        ("unsupported_comfy_value", "16", "width")]
    api = _hires()
    api["13"]["inputs"]["upscale_method"] = "bislerp"
    doc = import_comfy(api, sd_registry).doc
    from nodeflow.comfy import comfy_errors
    from nodeflow.validate import validate

    told = comfy_errors(validate(doc, sd_registry), doc.meta)
    assert [(e.code, e.node, e.input) for e in told] == [("invalid_value", "13", "upscale_method")]


def test_conditioning_classes_import_to_the_conditioning_nodes(sd_registry):
    api = _base()
    api["10"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a seven", "clip": ["4", 1]}}
    api["11"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["10", 0]}}
    api["12"] = {"class_type": "ConditioningConcat", "inputs": {"conditioning_to": ["11", 0], "conditioning_from": ["10", 0]}}
    api["13"] = {"class_type": "ConditioningAverage", "inputs": {"conditioning_to": ["12", 0], "conditioning_from": ["6", 0],
                                                                 "conditioning_to_strength": 0.25}}
    api["14"] = {"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["13", 0], "width": 64, "height": 72, "x": 8, "y": 16,
                                                                 "strength": 0.9}}
    api["15"] = {"class_type": "LoadImageMask", "inputs": {"image": "images/digit3_mask.png", "channel": "alpha"}}
    api["16"] = {"class_type": "ConditioningSetMask", "inputs": {"conditioning": ["14", 0], "mask": ["15", 0], "strength": 0.5,
                                                                 "set_cond_area": "mask bounds"}}
    api["3"]["inputs"]["positive"] = ["16", 0]
    doc = _both(api, sd_registry)
    assert doc.nodes["11"].inputs == {"first": {"node": "6", "output": "conditioning"}, "second": {"node": "10", "output": "conditioning"}}
    assert doc.nodes["12"].inputs["conditioning_to"] == {"node": "11", "output": "combined"}
    assert doc.nodes["13"].type == "sd.conditioning_average" and doc.nodes["13"].inputs["to_strength"] == 0.25
    area = doc.nodes["14"].inputs
    assert (area["x"], area["y"], area["width"], area["height"], area["strength"]) == (8, 16, 64, 72, 0.9)
    assert doc.nodes["16"].type == "sd.conditioning_set_mask" and (doc.nodes["16"].inputs["area"], doc.nodes["16"].inputs["strength"]) == ("bounds", 0.5)
    assert doc.nodes["3"].inputs["positive"] == {"node": "16", "output": "restricted"}


def test_controlnet_classes_import_to_load_and_apply_controlnet(sd_registry):
    doc = _both(_controlnet(), sd_registry)
    assert doc.nodes["11"].type == "sd.load_controlnet" and doc.nodes["11"].inputs["path"] == "digits-demo"
    apply = doc.nodes["12"].inputs
    assert (apply["strength"], apply["start"], apply["end"]) == (0.8, 0.0, 1.0)
    assert doc.nodes["3"].inputs["positive"] == {"node": "12", "output": "positive_out"}
    assert doc.nodes["3"].inputs["negative"] == {"node": "12", "output": "negative_out"}
    untouched = _both(_controlnet(strength=0.0), sd_registry)  # ComfyUI hands the conditioning on at strength 0
    assert untouched.nodes["3"].inputs["positive"] == {"node": "6", "output": "conditioning"} and "12" not in untouched.nodes


def test_the_old_controlnet_apply_also_steers_the_negative_as_comfyuis_sampler_does(sd_registry):
    api = _controlnet()
    api["12"] = {"class_type": "ControlNetApply", "inputs": {"conditioning": ["6", 0], "control_net": ["11", 0], "image": ["10", 0],
                                                             "strength": 0.6}}
    api["3"]["inputs"].update(positive=["12", 0], negative=["7", 0])
    doc = _both(api, sd_registry)
    assert doc.nodes["3"].inputs["positive"] == {"node": "12", "output": "positive_out"}
    uncond = doc.nodes["3.uncond_control1"]
    assert uncond.type == "sd.apply_controlnet" and uncond.inputs["negative"] == {"node": "7", "output": "conditioning"}
    assert (uncond.inputs["strength"], uncond.inputs["controlnet"]) == (0.6, {"node": "11", "output": "controlnet"})
    assert doc.nodes["3"].inputs["negative"] == {"node": "3.uncond_control1", "output": "negative_out"}


def test_vae_loader_imports_to_load_vae(sd_registry):
    api = _base()
    api["10"] = {"class_type": "VAELoader", "inputs": {"vae_name": "sub\\vae-ft-mse.safetensors"}}
    api["8"]["inputs"]["vae"] = ["10", 0]
    doc = _both(api, sd_registry)
    assert doc.nodes["10"].type == "sd.load_vae" and doc.nodes["10"].inputs == {"path": "sub/vae-ft-mse.safetensors"}
    assert doc.nodes["8"].inputs["vae"] == {"node": "10", "output": "vae"}


# -- runs on the embedded model ---------------------------------------------------------------------------------
def test_a_comfyui_controlnet_workflow_gives_the_pixels_of_workflows_controlnet_json(sd_registry, sd_models, tmp_path):
    comfy = import_comfy(_controlnet(), sd_registry, _paths()).doc
    got = _run_pixels(comfy, sd_registry, sd_models, tmp_path / "comfy")
    native = {"prompt": "a handwritten digit three", "negative_prompt": "", "seed": SEED, "steps": STEPS, "guidance_scale": CFG,
              "controlnet_scale": 0.8, "scheduler": "ddim", "width": 16, "height": 16}
    expected = _run_pixels(load_graph(WORKFLOWS / "controlnet.json"), sd_registry, sd_models, tmp_path / "native", native)
    without = _run_pixels(import_comfy(_base(), sd_registry).doc, sd_registry, sd_models, tmp_path / "plain")
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, without)  # the ControlNet did act


def _native_inpaint(grow: int) -> dict[str, Any]:
    """The nodeflow graph ComfyUI's inpainting workflow means, written by hand (euler, normal schedule)."""
    def out(node: str, name: str) -> dict[str, str]:
        return {"node": node, "output": name}

    nodes = {
        "load": {"type": "sd.load_model", "inputs": {"model": "default"}},
        "image": {"type": "sd.load_image", "inputs": {"path": "images/digit3.png"}},
        "mask": {"type": "sd.load_mask", "inputs": {"path": "images/digit3_mask.png", "channel": "red"}},
        "encode": {"type": "sd.vae_encode_inpaint", "inputs": {"unet": out("load", "unet"), "vae": out("load", "vae"), "image": out("image", "image"),
                                                                "mask": out("mask", "mask"), "seed": 0, "grow": grow, "mode": "argmax"}},
        "prompt": {"type": "sd.tokenize", "inputs": {"tokenizer": out("load", "tokenizer"), "text": "a handwritten digit three"}},
        "negative": {"type": "sd.tokenize", "inputs": {"tokenizer": out("load", "tokenizer"), "text": ""}},
        "pos": {"type": "sd.text_encode", "inputs": {"text_encoder": out("load", "text_encoder"), "tokens": out("prompt", "tokens")}},
        "neg": {"type": "sd.text_encode", "inputs": {"text_encoder": out("load", "text_encoder"), "tokens": out("negative", "tokens")}},
        "scheduler": {"type": "sd.scheduler", "inputs": {"config": out("load", "scheduler_config"), "unet": out("load", "unet"),
                                                         "name": "euler", "schedule": "normal", "steps": STEPS}},
        "noise": {"type": "sd.add_noise", "inputs": {"latents": out("encode", "latents"), "scheduler": out("scheduler", "scheduler"), "seed": SEED}},
        "denoise": {"type": "sd.denoise", "inputs": {"unet": out("load", "unet"), "latents": out("noise", "noised"),
                                                     "scheduler": out("scheduler", "scheduler"), "positive": out("pos", "conditioning"),
                                                     "negative": out("neg", "conditioning"), "guidance_scale": CFG}},
        "decode": {"type": "sd.vae_decode", "inputs": {"vae": out("load", "vae"), "latents": out("denoise", "denoised")}},
        "save": {"type": "sd.save_image", "inputs": {"images": out("decode", "image")}},
    }
    return {"format": "nodeflow/graph", "version": 2, "nodes": nodes}


def test_a_comfyui_inpainting_workflow_runs_as_the_native_inpaint_nodes(sd_registry, sd_models, tmp_path):
    from nodeflow.graph import parse_graph

    got = _run_pixels(import_comfy(_inpaint(), sd_registry, _paths()).doc, sd_registry, sd_models, tmp_path / "comfy")
    expected = _run_pixels(parse_graph(_native_inpaint(grow=6)), sd_registry, sd_models, tmp_path / "native")
    assert got.shape == (16, 16, 3) and np.array_equal(got, expected)
    ungrown = _run_pixels(parse_graph(_native_inpaint(grow=0)), sd_registry, sd_models, tmp_path / "ungrown")
    assert not np.array_equal(got, ungrown)  # grow_mask_by reached the sampler


def test_a_comfyui_hires_fix_workflow_runs(sd_registry, sd_models, tmp_path):
    got = _run_pixels(import_comfy(_hires(), sd_registry).doc, sd_registry, sd_models, tmp_path)
    assert got.shape == (32, 32, 3) and got.std() > 0


# -- node changes the mapping needed --------------------------------------------------------------------------
def test_grown_mask_follows_comfyuis_square_kernel():
    from nodeflow_nodes.sd.inpaint import grown_mask

    full = torch.zeros((1, 1, 9, 9))
    full[..., 4, 4] = 1.0
    assert torch.equal(grown_mask(full, 0), full)
    odd = grown_mask(full, 3)[0, 0]
    assert odd[3:6, 3:6].eq(1).all() and odd.sum() == 9
    even = grown_mask(full, 6)[0, 0]  # padding 3 on a 6-wide kernel: reaches 2 up/left, 3 down/right
    assert even[2:8, 2:8].eq(1).all() and even.sum() == 36


def test_torch_image_modes_interpolate_the_float_pixels():
    from nodeflow_nodes.sd.upscale import upscale_image

    from nodeflow.values import Image as ImageValue

    pixels = torch.rand((1, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    area = upscale_image(ImageValue(pixels), "area", 4, 4).pixels
    assert torch.allclose(area, torch.nn.functional.avg_pool2d(pixels, 2))


# -- sd.load_vae --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vae_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A tiny VAE saved three ways: a ComfyUI-style original-layout file, a diffusers-layout file, a diffusers folder."""
    from models_tiny import tiny_vae, vae_to_ldm
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("vae")
    vae = tiny_vae(seed=23)
    prefix = "first_stage_model."
    save_file({k[len(prefix):]: v.contiguous() for k, v in vae_to_ldm(vae).items()}, str(root / "original.safetensors"))
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(root / "diffusers.safetensors"))
    vae.save_pretrained(root / "folder", safe_serialization=True)
    return vae, root


@pytest.mark.parametrize("name", ["original.safetensors", "diffusers.safetensors", "folder"])
def test_load_vae_reads_each_layout_offline(vae_files, name):
    from nodeflow.models.vae import load_vae

    vae, root = vae_files
    loaded = load_vae(root / name, torch.float32, "cpu")
    expected = vae.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected.items())
    assert loaded.config.scaling_factor == pytest.approx(0.18215)
    assert load_vae(root / name, torch.float32, "cpu", scaling_factor=0.13025).config.scaling_factor == pytest.approx(0.13025)


def test_a_file_that_is_no_vae_is_refused_with_its_name(tmp_path):
    from safetensors.torch import save_file

    from nodeflow.models.single_file import CheckpointError
    from nodeflow.models.vae import load_vae

    save_file({"something.else": torch.zeros(2)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(CheckpointError, match="odd.safetensors"):
        load_vae(tmp_path / "odd.safetensors", torch.float32, "cpu")


def test_a_comfyui_vae_loader_with_the_checkpoints_own_vae_gives_the_same_pixels(sd_registry, sd_models, tmp_path):
    """The embedded model's VAE written as a ComfyUI VAE file: VAELoader -> VAEDecode changes nothing."""
    from models_tiny import vae_to_ldm
    from safetensors.torch import save_file

    vae = sd_models.load_sd("default", dtype="fp32", device="cpu").vae
    folder = tmp_path / "models" / "vae"
    folder.mkdir(parents=True)
    save_file({k[len("first_stage_model."):]: v.contiguous() for k, v in vae_to_ldm(vae).items()}, str(folder / "digits.safetensors"))
    api = _base()
    api["10"] = {"class_type": "VAELoader", "inputs": {"vae_name": "digits.safetensors"}}
    api["8"]["inputs"]["vae"] = ["10", 0]
    paths = PathResolver.create([WORKFLOWS], kinds={"vae": [folder]})
    doc = import_comfy(api, sd_registry, paths).doc
    result = Executor(sd_registry, Cache(), sd_models).run(doc, output_dir=tmp_path / "a", paths=paths)
    assert result.status == "succeeded" and not result.errors, result.errors
    own = _run_pixels(import_comfy(_base(), sd_registry).doc, sd_registry, sd_models, tmp_path / "b")
    with Image.open(result.outputs[0]["path"]) as picture:
        assert np.array_equal(np.array(picture.convert("RGB")), own)
    assert json.dumps(doc.nodes["10"].inputs) == '{"path": "digits.safetensors"}'


# -- InpaintModelConditioning ----------------------------------------------------------------------------------
def _model_conditioning(noise_mask: bool | None = True, latent: list[Any] | None = None) -> dict[str, Any]:
    """ComfyUI's inpainting with InpaintModelConditioning: its three outputs into the KSampler (denoise 0.8)."""
    api = _base("euler", "normal")
    api["10"] = {"class_type": "LoadImage", "inputs": {"image": "images/digit3.png"}}
    api["11"] = {"class_type": "LoadImageMask", "inputs": {"image": "images/digit3_mask.png", "channel": "red"}}
    api["12"] = {"class_type": "InpaintModelConditioning", "inputs": {"positive": ["6", 0], "negative": ["7", 0], "vae": ["4", 2],
                                                                      "pixels": ["10", 0], "mask": ["11", 0]}}
    if noise_mask is not None:
        api["12"]["inputs"]["noise_mask"] = noise_mask
    api["3"]["inputs"].update(positive=["12", 0], negative=["12", 1], latent_image=latent or ["12", 2], denoise=0.8)
    if latent is None:
        del api["5"]
    return api


def test_inpaint_model_conditioning_imports_to_encode_noise_mask_and_inpaint_model_conditioning(sd_registry):
    doc = _both(_model_conditioning(), sd_registry)
    encode, masked, conditioned = doc.nodes["12.encode"], doc.nodes["12.noise_mask"], doc.nodes["12"]
    assert encode.type == "sd.vae_encode" and encode.inputs["mode"] == "argmax" and encode.inputs["image"] == {"node": "10", "output": "image"}
    assert masked.type == "sd.set_latent_noise_mask" and masked.inputs["binarize"] is False  # ComfyUI's noise mask stays soft
    assert masked.inputs["latents"] == {"node": "12.encode", "output": "latents"}
    assert conditioned.type == "sd.inpaint_model_conditioning"
    assert {k: conditioned.inputs[k] for k in ("mode", "binarize")} == {"mode": "argmax", "binarize": True}  # ComfyUI rounds it
    assert conditioned.inputs["latents"] == {"node": "12.noise_mask", "output": "masked"}
    assert conditioned.inputs["unet"] == {"node": "4", "output": "unet"}
    assert doc.nodes["3.noise"].inputs["latents"] == {"node": "12", "output": "conditioned"}
    # the conditioning passes through: the sampler reads the text encodes themselves
    assert doc.nodes["3"].inputs["positive"]["node"] == "6" and doc.nodes["3"].inputs["negative"]["node"] == "7"

    plain = import_comfy(_model_conditioning(noise_mask=False), sd_registry, _paths())
    assert plain.ok, plain.errors
    assert "12.noise_mask" not in plain.doc.nodes
    assert plain.doc.nodes["12"].inputs["latents"] == {"node": "12.encode", "output": "latents"}
    old = api_to_ui(_model_conditioning())  # a file saved before ComfyUI added the noise_mask widget
    next(n for n in old["nodes"] if n["type"] == "InpaintModelConditioning")["widgets_values"] = []
    before_widget = import_comfy(old, sd_registry, _paths())
    assert before_widget.ok, before_widget.errors
    assert "12.noise_mask" in before_widget.doc.nodes  # ComfyUI's default: on


def test_inpaint_model_conditioning_with_other_latents_is_refused_naming_the_input(sd_registry):
    imported = import_comfy(_model_conditioning(latent=["5", 0]), sd_registry, _paths())
    assert not imported.ok
    (error,) = [e for e in imported.errors if e.node == "3"]
    assert error.code == "unsupported_comfy_value" and error.input == "latent_image" and "InpaintModelConditioning" in error.message


def test_on_an_ordinary_model_inpaint_model_conditioning_gives_the_pixels_of_vae_encode_and_set_latent_noise_mask(sd_registry, sd_models,
                                                                                                                 tmp_path):
    # ComfyUI: a 4-channel model ignores the inpainting channels, so the latent (the picture, soft noise mask) is all that acts
    got = _run_pixels(import_comfy(_model_conditioning(), sd_registry, _paths()).doc, sd_registry, sd_models, tmp_path / "imc")
    api = _model_conditioning()
    api["12"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    api["13"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["12", 0], "mask": ["11", 0]}}
    api["3"]["inputs"].update(positive=["6", 0], negative=["7", 0], latent_image=["13", 0])
    expected = _run_pixels(import_comfy(api, sd_registry, _paths()).doc, sd_registry, sd_models, tmp_path / "set_mask")
    assert got.shape == (16, 16, 3) and np.array_equal(got, expected)
    unmasked = _run_pixels(import_comfy(_model_conditioning(noise_mask=False), sd_registry, _paths()).doc, sd_registry, sd_models,
                           tmp_path / "unmasked")
    assert not np.array_equal(got, unmasked)  # the noise mask reached the sampler


def test_on_an_inpainting_model_the_channels_are_the_mask_and_the_masked_pictures_mean(sd_registry, sd_models, tmp_path):
    import shutil

    from diffusers import AutoencoderKL, UNet2DConditionModel

    from nodeflow.graph import parse_graph

    folder = tmp_path / "checkpoints" / "digits9"
    shutil.copytree(Path(__file__).resolve().parent.parent / "nodeflow" / "default_model", folder)
    base = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True)
    torch.manual_seed(5)
    UNet2DConditionModel.from_config({**dict(base.config), "in_channels": 9}).save_pretrained(folder / "unet")
    paths = PathResolver.create([WORKFLOWS], kinds={"checkpoint": [tmp_path / "checkpoints"]})
    api = _model_conditioning()
    api["4"]["inputs"]["ckpt_name"] = "digits9"
    imported = import_comfy(api, sd_registry, paths)
    assert imported.ok, imported.errors
    result = Executor(sd_registry, Cache(), sd_models).run(parse_graph(imported.doc.model_dump(mode="json")), output_dir=tmp_path / "out",
                                                           paths=paths, targets=["9", "12"])
    assert result.status == "succeeded", result.errors
    latents = result.values["12"]["conditioned"]

    vae = AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True)
    with Image.open(WORKFLOWS / "images/digit3.png") as picture, Image.open(WORKFLOWS / "images/digit3_mask.png") as mask_file:
        pixels = torch.from_numpy(np.array(picture.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
        mask = torch.from_numpy(np.array(mask_file.convert("RGB"))[..., 0])[None, None].float() / 255
    with torch.no_grad():
        mean = vae.encode((2 * pixels - 1) * (mask < 0.5)).latent_dist.mode() * vae.config.scaling_factor
        whole = vae.encode(2 * pixels - 1).latent_dist.mode() * vae.config.scaling_factor
    small = torch.nn.functional.interpolate((mask >= 0.5).float(), size=mean.shape[-2:])
    assert torch.allclose(latents.concat, torch.cat([small, mean], dim=1), atol=1e-5)
    assert torch.allclose(latents.noise_mask.original, whole, atol=1e-5)  # the picture itself, not the blanked one, is denoised
    assert small.min() == 0 and small.max() == 1
