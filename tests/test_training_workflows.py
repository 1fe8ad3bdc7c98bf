"""The shipped training workflows: their inputs, a run as shipped, the cache, and diffusers loading what they write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nodeflow import testing
from nodeflow.cache import Cache
from nodeflow.executor import Executor
from nodeflow.graph import load_graph
from nodeflow.models import DEFAULT_MODEL
from nodeflow.validate import validate

pytestmark = pytest.mark.usefixtures("sd_one_thread")

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
TI_INPUTS = {"model", "dataset", "token", "initializer", "train_steps", "learning_rate", "seed", "prompt"}
LORA_INPUTS = {"model", "dataset", "rank", "train_steps", "learning_rate", "seed", "prompt"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD folder of its own shape (40-wide text encoder, 2-level VAE)."""
    parts = {
        "unet": testing.unet((32, 32), (True, False), cross_attention_dim=40, sample_size=4, seed=21),
        "vae": testing.vae((32, 32), sample_size=8, seed=22),
        "text_encoder": testing.text_encoder(testing.clip_config(40, 2, intermediate=80), seed=23),
    }
    return testing.save_sd_folder(tmp_path_factory.mktemp("wf_sd") / "model", parts)


def _pipeline(model_dir: Path):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False, low_cpu_mem_usage=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(name: str, executor: Executor, out: Path, **inputs):
    result = executor.run(load_graph(WORKFLOWS / f"{name}.json"), inputs=inputs, output_dir=out)
    assert result.status == "succeeded", result.errors
    picture = next(o["path"] for o in result.outputs if o["path"].endswith(".png"))
    trained = next(o["path"] for o in result.outputs if o["path"].endswith(".safetensors"))
    return result, np.array(Image.open(picture).convert("RGB")), Path(trained)


@pytest.mark.parametrize(("name", "inputs"), [("train_textual_inversion", TI_INPUTS), ("train_lora", LORA_INPUTS)])
def test_training_workflow_validates_and_exposes_the_documented_inputs(name, inputs, sd_registry):
    graph = load_graph(WORKFLOWS / f"{name}.json")
    assert set(graph.inputs) == inputs
    assert validate(graph, sd_registry) == []
    assert graph.nodes["load"].inputs["model"] == "default"
    assert all(len(node.ui["pos"]) == 2 for node in graph.nodes.values())


@pytest.mark.parametrize(("name", "folder"), [("train_textual_inversion", "crossed_seven"), ("train_lora", "plus")])
def test_each_workflow_ships_a_few_dozen_small_pictures_of_its_concept(name, folder):
    assert load_graph(WORKFLOWS / f"{name}.json").nodes["dataset"].inputs["folder"] == f"datasets/{folder}"
    pictures = sorted((WORKFLOWS / "datasets" / folder).glob("*.png"))
    assert 24 <= len(pictures) <= 64
    assert sum(p.stat().st_size for p in pictures) < 100_000
    with Image.open(pictures[0]) as first:
        assert first.size == (16, 16)


def test_shipped_datasets_are_what_the_drawing_script_draws(tmp_path):
    from tools.demo.make_dataset import main

    main(["--out", str(tmp_path)])
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in (WORKFLOWS / "datasets").iterdir() if p.is_dir()}
    for folder in sorted(p.name for p in tmp_path.iterdir()):
        shipped = sorted((WORKFLOWS / "datasets" / folder).glob("*.png"))
        drawn = sorted((tmp_path / folder).glob("*.png"))
        assert [p.name for p in drawn] == [p.name for p in shipped]
        assert all(np.array_equal(np.array(Image.open(a)), np.array(Image.open(b))) for a, b in zip(drawn, shipped, strict=True))


@pytest.mark.skipif(not (DEFAULT_MODEL / "model_index.json").is_file(), reason="the embedded default model is not installed")
@pytest.mark.parametrize("name", ["train_textual_inversion", "train_lora"])
def test_training_workflow_runs_as_shipped_on_the_default_model(name, sd_registry, sd_models, tmp_path):
    result, picture, trained = _run(name, Executor(sd_registry, Cache(), sd_models), tmp_path, train_steps=2)
    assert picture.shape == (16, 16, 3) and picture.std() > 0 and trained.stat().st_size > 0


def test_a_rerun_with_nothing_changed_trains_nothing(model_dir, sd_registry, sd_models, tmp_path):
    executor = Executor(sd_registry, Cache(), sd_models)
    _run("train_textual_inversion", executor, tmp_path, model=str(model_dir), train_steps=2)
    again = executor.run(load_graph(WORKFLOWS / "train_textual_inversion.json"), inputs={"model": str(model_dir), "train_steps": 2},
                         output_dir=tmp_path)
    assert again.status == "succeeded"
    assert again.nodes["train"].status in ("cached", "not_needed") and again.nodes["save"].status != "failed"
    changed = executor.run(load_graph(WORKFLOWS / "train_textual_inversion.json"), inputs={"model": str(model_dir), "train_steps": 3},
                           output_dir=tmp_path)
    assert changed.nodes["train"].status == "ran"


def test_trained_embedding_file_in_diffusers_gives_the_graphs_picture(model_dir, sd_registry, sd_models, tmp_path):
    result, picture, trained = _run("train_textual_inversion", Executor(sd_registry, Cache(), sd_models), tmp_path,
                                    model=str(model_dir), train_steps=3, learning_rate=0.05, seed=4)
    prompt = load_graph(WORKFLOWS / "train_textual_inversion.json").nodes["prompt"].inputs["text"]  # names the token
    pipe = _pipeline(model_dir)
    plain = pipe(prompt, num_inference_steps=20, guidance_scale=7.5, width=16, height=16,
                 generator=torch.Generator("cpu").manual_seed(4)).images[0]
    pipe.load_textual_inversion(str(trained))
    expected = pipe(prompt, num_inference_steps=20, guidance_scale=7.5, width=16, height=16,
                    generator=torch.Generator("cpu").manual_seed(4)).images[0]
    assert np.array_equal(picture, np.array(expected))
    assert not np.array_equal(np.array(plain), np.array(expected))  # the token means something now


def test_trained_lora_file_in_diffusers_gives_the_graphs_picture(model_dir, sd_registry, sd_models, tmp_path):
    pytest.importorskip("peft")  # diffusers' load_lora_weights needs it
    result, picture, trained = _run("train_lora", Executor(sd_registry, Cache(), sd_models), tmp_path, model=str(model_dir),
                                    train_steps=3, learning_rate=0.05, seed=6, rank=2, **{"train.train_text_encoder": True})
    pipe = _pipeline(model_dir)
    call = {"num_inference_steps": 20, "guidance_scale": 1.5, "width": 16, "height": 16}
    plain = pipe("a handwritten plus", generator=torch.Generator("cpu").manual_seed(6), **call).images[0]
    pipe.load_lora_weights(str(trained))
    pipe.fuse_lora()  # W + alpha/rank * up @ down, as nodeflow merges
    expected = pipe("a handwritten plus", generator=torch.Generator("cpu").manual_seed(6), **call).images[0]
    assert np.array_equal(picture, np.array(expected))
    assert not np.array_equal(np.array(plain), np.array(expected))


def test_workflow_files_are_pretty_printed_json():
    for name in ("train_textual_inversion", "train_lora"):
        text = (WORKFLOWS / f"{name}.json").read_text()
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
