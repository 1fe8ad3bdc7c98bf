"""ComfyUI SDXL workflows: the checkpoint's family is probed at import, its prompts become SDXL Text Encode.

A tiny random SDXL base (CLIP-L 48 wide, OpenCLIP-bigG 80 wide with a 24-wide projection,
UNet 32/64 with 64-wide heads, VAE 32/32: widths no other test uses) saved as one
single file in the original SGM layout, in a ComfyUI ``models/checkpoints`` folder. The
ComfyUI default workflow pointed at it imports to ``sd.sdxl_text_encode`` nodes sized by the
sampled latents (as ComfyUI's sampler sizes a plain CLIPTextEncode) and gives the pixels of
``workflows/sdxl_txt2img.json`` with the same settings. Pictures are 48x32 (not square).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from comfy_support import api_to_ui, deep, default_workflow
from models_families import sdxl_checkpoint
from safetensors.torch import save_file

from nodeflow import testing
from nodeflow.cache import Cache
from nodeflow.comfy import import_comfy
from nodeflow.executor import Executor
from nodeflow.files import PathResolver
from nodeflow.graph import load_graph
from nodeflow.resources import shipped_workflow

pytestmark = pytest.mark.usefixtures("sd_one_thread")

CKPT = "tiny-sdxl-comfy.safetensors"
TEXT_L, TEXT_G, POOLED, TIME = 48, 80, 24, 4
PROMPT, NEGATIVE, SEED, CFG, WIDTH, HEIGHT, STEPS = "a lighthouse at dusk", "fog", 4242, 6.0, 48, 32, 3


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ComfyUI checkpoints folder holding the tiny SDXL base as one SGM-layout file."""
    folder = tmp_path_factory.mktemp("comfy_sdxl") / "models" / "checkpoints"
    folder.mkdir(parents=True)
    parts = {
        "unet": testing.unet((32, 64), (False, True), cross_attention_dim=TEXT_L + TEXT_G, use_linear_projection=True,
                             addition_embed_type="text_time", addition_time_embed_dim=TIME,
                             projection_class_embeddings_input_dim=POOLED + 6 * TIME, attention_head_dim=(1, 1),
                             transformer_layers_per_block=(1, 2), seed=31),
        "vae": testing.vae((32, 32), scaling_factor=0.13025, force_upcast=True, sample_size=32, seed=32),
        "text_encoder": testing.text_encoder(testing.clip_config(TEXT_L, 12, projection=TEXT_L, special_ids=(0, 2, 1)), seed=33),
        "text_encoder_2": testing.text_encoder(testing.clip_config(TEXT_G, 20, act="gelu", projection=POOLED, special_ids=(0, 2, 1)),
                                               with_projection=True, seed=34),
    }
    save_file({k: v.contiguous() for k, v in sdxl_checkpoint(parts).items()}, str(folder / CKPT))
    return folder


def _paths(checkpoints: Path) -> PathResolver:
    return PathResolver.create(kinds={"checkpoint": [checkpoints]})


def _prompt() -> dict[str, Any]:
    """ComfyUI's default API prompt on the SDXL checkpoint, small."""
    prompt = default_workflow("api", size=WIDTH, steps=STEPS)
    prompt["4"]["inputs"]["ckpt_name"] = CKPT
    prompt["5"]["inputs"].update(width=WIDTH, height=HEIGHT)
    prompt["6"]["inputs"]["text"], prompt["7"]["inputs"]["text"] = PROMPT, NEGATIVE
    prompt["3"]["inputs"].update(seed=SEED, cfg=CFG, sampler_name="euler", scheduler="normal")
    return prompt


def _run(graph: Any, sd_registry: Any, sd_models: Any, out: Path, target: str, **kwargs: Any) -> torch.Tensor:
    result = Executor(sd_registry, Cache(), sd_models).run(graph, output_dir=out, targets=[target], **kwargs)
    assert result.status == "succeeded" and not result.errors, result.errors
    return result.values[target]["image"].pixels


def test_an_sdxl_checkpoints_clip_text_encodes_become_sdxl_text_encode_sized_by_the_sampled_latents(checkpoints, sd_registry):
    imported = import_comfy(_prompt(), sd_registry, _paths(checkpoints))

    assert imported.ok, imported.errors
    nodes = imported.doc.nodes
    for cid, text in (("6", PROMPT), ("7", NEGATIVE)):
        assert nodes[cid].type == "sd.sdxl_text_encode"
        assert nodes[cid].inputs["clip"] == {"node": "4", "output": "clip"}
        assert (nodes[cid].inputs["prompt"], nodes[cid].inputs["prompt_2"]) == (text, "")  # one text for both encoders
        assert nodes[cid].inputs["latents"] == {"node": "3.noise", "output": "latents"}
    assert nodes["3"].inputs["positive"] == {"node": "6", "output": "positive"}
    assert nodes["3"].inputs["negative"] == {"node": "7", "output": "positive"}


def test_a_checkpoint_that_does_not_resolve_keeps_the_sd1_wiring(sd_registry):
    imported = import_comfy(_prompt(), sd_registry)  # no resolver: the family cannot be probed

    assert imported.ok, imported.errors
    assert imported.doc.nodes["6"].type == "sd.text_encode"


def test_an_sdxl_comfyui_workflow_gives_the_pixels_of_the_native_sdxl_workflow(checkpoints, sd_registry, sd_models, tmp_path):
    paths = _paths(checkpoints)
    imported = import_comfy(_prompt(), sd_registry, paths)
    assert imported.ok, imported.errors
    got = _run(imported.doc, sd_registry, sd_models, tmp_path / "comfy", "8", paths=paths)

    native = load_graph(shipped_workflow("sdxl_txt2img"))
    native.nodes["scheduler"].inputs["schedule"] = "normal"  # what ComfyUI's "normal" maps to, as the import sets it
    inputs = {"model": str(checkpoints / CKPT), "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": STEPS,
              "guidance_scale": CFG, "width": WIDTH, "height": HEIGHT, "scheduler": "euler"}
    expected = _run(native, sd_registry, sd_models, tmp_path / "native", "decode", inputs=inputs)

    assert got.shape == (1, 3, HEIGHT, WIDTH)
    assert torch.equal(got, expected)


def _sdxl_encode_prompt(**widgets: Any) -> dict[str, Any]:
    prompt = _prompt()
    prompt["6"] = {"class_type": "CLIPTextEncodeSDXL", "inputs": {
        "clip": ["4", 1], "width": 1024, "height": 768, "crop_w": 16, "crop_h": 8, "target_width": 960, "target_height": 640,
        "text_g": "a castle (on a hill:1.2)", "text_l": "oil painting", **widgets}}
    return prompt


def test_clip_text_encode_sdxl_widgets_map_to_sdxl_text_encodes_inputs(checkpoints, sd_registry):
    prompt = _sdxl_encode_prompt()
    paths = _paths(checkpoints)
    from_api, from_ui = import_comfy(deep(prompt), sd_registry, paths), import_comfy(api_to_ui(prompt), sd_registry, paths)

    assert from_api.ok and from_ui.ok, (from_api.errors, from_ui.errors)
    inputs = from_api.doc.nodes["6"].inputs
    assert from_ui.doc.nodes["6"].inputs == inputs  # widgets_values in ComfyUI's order read the same
    assert {k: inputs[k] for k in ("prompt", "prompt_2", "width", "height", "original_width", "original_height", "crop_left",
                                   "crop_top", "target_width", "target_height")} == {
        "prompt": "oil painting", "prompt_2": "a castle (on a hill:1.2)", "width": 1024, "height": 768, "original_width": 1024,
        "original_height": 768, "crop_left": 16, "crop_top": 8, "target_width": 960, "target_height": 640}
    assert "latents" not in inputs  # every size is given: the sampler's latents are not needed
    assert from_api.doc.meta["comfy"]["inputs"]["6"]["crop_left"] == "crop_w"


@pytest.mark.parametrize("widgets, name", [({"text_g": ""}, "text_g"), ({"target_width": 0}, "target_width")])
def test_clip_text_encode_sdxl_settings_nodeflow_reads_otherwise_are_refused_by_name(widgets, name, checkpoints, sd_registry):
    imported = import_comfy(_sdxl_encode_prompt(**widgets), sd_registry, _paths(checkpoints))

    assert [(e.code, e.node, e.input) for e in imported.errors] == [("unsupported_comfy_value", "6", name)]


def test_sdxl_encoders_on_a_checkpoint_not_known_as_sdxl_are_refused_naming_the_clip(sd_registry):
    imported = import_comfy(_sdxl_encode_prompt(), sd_registry)  # not probed: the SD 1.x wiring

    assert [(e.code, e.node, e.input) for e in imported.errors] == [("unsupported_comfy_value", "6", "clip")]
    assert "SDXL" in imported.errors[0].message


def test_a_refiner_encode_on_an_sdxl_base_clip_is_refused(checkpoints, sd_registry):
    prompt = _prompt()
    prompt["6"] = {"class_type": "CLIPTextEncodeSDXLRefiner",
                   "inputs": {"clip": ["4", 1], "ascore": 6.0, "width": 1024, "height": 1024, "text": "x"}}
    imported = import_comfy(prompt, sd_registry, _paths(checkpoints))

    assert [(e.code, e.node, e.input) for e in imported.errors] == [("unsupported_comfy_value", "6", "clip")]


def test_clip_set_last_layer_on_sdxl_sets_the_sdxl_encodes_clip_skip(checkpoints, sd_registry):
    prompt = _prompt()
    plain = import_comfy(prompt, sd_registry, _paths(checkpoints))
    prompt["10"] = {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["4", 1], "stop_at_clip_layer": -3}}
    prompt["6"]["inputs"]["clip"] = ["10", 0]
    imported = import_comfy(prompt, sd_registry, _paths(checkpoints))

    assert plain.ok and imported.ok, imported.errors
    assert imported.doc.nodes["6"].inputs["clip_skip"] == 3
    assert plain.doc.nodes["6"].inputs["clip_skip"] == 2  # ComfyUI's SDXL default (-2): the penultimate layer


def test_an_encode_shared_by_samplers_of_other_latents_gets_a_copy_sized_by_each(checkpoints, sd_registry):
    prompt = _prompt()
    prompt["10"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    prompt["11"] = {"class_type": "KSampler", "inputs": {**prompt["3"]["inputs"], "latent_image": ["10", 0]}}
    prompt["12"] = {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["4", 2]}}
    prompt["13"] = {"class_type": "PreviewImage", "inputs": {"images": ["12", 0]}}
    imported = import_comfy(prompt, sd_registry, _paths(checkpoints))

    assert imported.ok, imported.errors
    nodes = imported.doc.nodes
    assert nodes["11"].inputs["positive"] == {"node": "6.for1", "output": "positive"}
    assert nodes["6.for1"].inputs["latents"] == {"node": "11.noise", "output": "latents"}
    assert nodes["6"].inputs["latents"] == {"node": "3.noise", "output": "latents"}
    assert imported.doc.meta["comfy"]["ids"]["6.for1"] == "6"
