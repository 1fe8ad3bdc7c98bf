"""The shipped SD workflows: valid as they are, exposing the documented inputs, laid out for the editor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.graph import load_graph
from nodeflow.models import DEFAULT_MODEL
from nodeflow.validate import validate

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
SD_WORKFLOWS = ["txt2img", "img2img", "txt2img_unrolled", "negative_prompt"]
TXT2IMG_INPUTS = {"model", "prompt", "negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "scheduler"}


@pytest.mark.parametrize("name", SD_WORKFLOWS)
def test_workflow_validates_against_the_installed_nodes(name, sd_registry):
    assert validate(load_graph(WORKFLOWS / f"{name}.json"), sd_registry) == []


@pytest.mark.parametrize("name", SD_WORKFLOWS)
def test_every_node_has_an_editor_position(name):
    nodes = json.loads((WORKFLOWS / f"{name}.json").read_text())["nodes"]
    assert all(len(node["ui"]["pos"]) == 2 for node in nodes.values())


def test_txt2img_exposes_the_documented_inputs_with_the_default_model():
    graph = load_graph(WORKFLOWS / "txt2img.json")
    assert set(graph.inputs) == TXT2IMG_INPUTS
    assert graph.nodes["load"].inputs["model"] == "default"
    assert (graph.nodes["noise"].inputs["width"], graph.nodes["noise"].inputs["height"]) == (16, 16)


def test_img2img_exposes_image_and_strength_too_and_its_default_image_exists():
    graph = load_graph(WORKFLOWS / "img2img.json")
    assert set(graph.inputs) == TXT2IMG_INPUTS | {"image", "strength"}
    with Image.open(WORKFLOWS / graph.nodes["image"].inputs["path"]) as picture:
        assert picture.size == (16, 16) and picture.mode == "RGB"


@pytest.mark.skipif(not (DEFAULT_MODEL / "model_index.json").is_file(), reason="the embedded default model is not installed")
@pytest.mark.parametrize("name", ["txt2img", "img2img"])
def test_workflow_runs_as_shipped_on_the_default_model(name, sd_registry, sd_models, tmp_path):
    result = Executor(sd_registry, Cache(), sd_models).run(load_graph(WORKFLOWS / f"{name}.json"), inputs={"steps": 4}, output_dir=tmp_path)
    assert result.status == "succeeded", result.errors
    with Image.open(result.outputs[0]["path"]) as png:
        assert png.size == (16, 16) and np.array(png).std() > 0
