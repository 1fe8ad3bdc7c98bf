"""The image-tool workflows (inpaint, outpaint, controlnet, hires_fix): valid, documented inputs, run as shipped.

Also: masks load from a server's uploads through ``file="mask"``, and bad sizes are
reported before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.files import PathResolver
from nodeflow.graph import load_graph, parse_graph
from nodeflow.models import DEFAULT_MODEL
from nodeflow.validate import validate

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
COMMON = {"model", "prompt", "negative_prompt", "seed", "steps", "guidance_scale", "scheduler"}
INPUTS = {
    "inpaint": COMMON | {"image", "mask", "strength"},
    "outpaint": COMMON | {"image", "strength", "left", "right", "top", "bottom"},
    "controlnet": COMMON | {"controlnet", "width", "height", "control_image", "controlnet_scale"},
    "hires_fix": COMMON | {"width", "height", "scale", "hires_steps", "strength", "upscale"},
}
HAS_DEFAULT = (DEFAULT_MODEL / "model_index.json").is_file()


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_workflow_validates_exposes_its_inputs_and_is_laid_out(name, sd_registry):
    graph = load_graph(WORKFLOWS / f"{name}.json")
    assert validate(graph, sd_registry, paths=PathResolver().with_base(WORKFLOWS)) == []
    assert set(graph.inputs) == INPUTS[name]
    assert graph.nodes["load"].inputs["model"] == "default"
    assert all(len(node.ui["pos"]) == 2 for node in graph.nodes.values())


def test_the_shipped_mask_is_a_grayscale_picture_the_size_of_the_example_image():
    with Image.open(WORKFLOWS / "images" / "digit3_mask.png") as mask, Image.open(WORKFLOWS / "images" / "digit3.png") as image:
        assert mask.mode == "L" and mask.size == image.size
        assert set(np.unique(np.array(mask))) == {0, 255}


@pytest.mark.skipif(not HAS_DEFAULT, reason="the embedded default model is not installed")
@pytest.mark.parametrize(("name", "size"), [("inpaint", (16, 16)), ("outpaint", (32, 16)), ("controlnet", (16, 16)), ("hires_fix", (32, 32))])
def test_workflow_runs_as_shipped_on_the_default_model(name, size, sd_registry, sd_models, tmp_path):
    result = Executor(sd_registry, Cache(), sd_models).run(load_graph(WORKFLOWS / f"{name}.json"), inputs={"steps": 3}, output_dir=tmp_path)
    assert result.status == "succeeded", result.errors
    with Image.open(result.outputs[0]["path"]) as png:
        assert png.size == size and np.array(png).std() > 0


@pytest.mark.skipif(not HAS_DEFAULT, reason="the embedded default model is not installed")
@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_an_uploaded_mask_loads_through_a_confined_resolver(mode, sd_registry, sd_models, tmp_path):
    uploads = tmp_path / "inputs"
    uploads.mkdir()
    pixels = np.zeros((16, 16), np.uint8)
    pixels[4:12, 2:10] = 255
    if mode == "L":
        Image.fromarray(pixels, "L").save(uploads / "painted.png")
    else:  # an editor-style mask: white strokes on transparent paper
        Image.fromarray(np.dstack([pixels, pixels, pixels, pixels]), "RGBA").save(uploads / "painted.png")
    paths = PathResolver.create([uploads], fallback=[WORKFLOWS], confined=True)
    graph = load_graph(WORKFLOWS / "inpaint.json")

    result = Executor(sd_registry, Cache(), sd_models).run(graph, inputs={"mask": "painted.png", "steps": 2}, output_dir=tmp_path / "out",
                                                           paths=paths, targets=["mask", "save"])

    assert result.status == "succeeded", result.errors
    assert np.array_equal(result.values["mask"]["mask"].mask[0, 0].numpy(), pixels / 255.0)


def test_an_image_and_mask_of_different_sizes_are_refused_before_running(sd_registry, tmp_path):
    Image.new("L", (24, 16)).save(tmp_path / "wide_mask.png")
    doc = json.loads((WORKFLOWS / "inpaint.json").read_text())
    doc["nodes"]["mask"]["inputs"]["path"] = str(tmp_path / "wide_mask.png")
    errors = validate(parse_graph(doc), sd_registry, paths=PathResolver().with_base(WORKFLOWS))
    assert [(e.node, e.message) for e in errors] == [
        ("inpaint", "the image is 16x16 pixels but the mask is 24x16; they must be the same size")]


def test_outpaint_padding_that_breaks_the_8_pixel_grid_is_refused_before_running(sd_registry):
    doc = json.loads((WORKFLOWS / "outpaint.json").read_text())
    doc["nodes"]["pad"]["inputs"]["left"] = 4
    errors = validate(parse_graph(doc), sd_registry, paths=PathResolver().with_base(WORKFLOWS))
    assert [(e.node, e.input, e.message) for e in errors] == [
        ("pad", None, "the padded width 28 is not a multiple of 8 (the VAE works on 8-pixel blocks)")]


def test_a_validation_hook_sees_the_literals_of_an_upstream_node_listed_after_it(sd_registry):
    # img2img.json lists "init" before "scheduler": the hook must still see the scheduler's steps.
    doc = json.loads((WORKFLOWS / "img2img.json").read_text())
    doc["nodes"]["init"]["inputs"]["strength"] = 0.01
    errors = validate(parse_graph(doc), sd_registry)
    assert [(e.node, e.message.split(" (")[0]) for e in errors] == [("init", "strength 0.01 with 20 steps leaves no step to run")]
