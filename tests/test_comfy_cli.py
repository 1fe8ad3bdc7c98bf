"""Acceptance: ComfyUI files run with ``nodeflow run``, models come from ComfyUI's folders.

The ComfyUI frontend's default workflow, saved in UI format, runs given a checkpoint of
its name in ``--models-dir``, and its API-format twin gives the same pixels. A KSampler
on the diffusers scheduler it maps to gives diffusers' own pixels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from comfy_support import CKPT, default_workflow, make_models_dir
from PIL import Image

from nodeflow.cli import main

pytestmark = pytest.mark.usefixtures("sd_one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_models_dir(tmp_path_factory.mktemp("comfy_cli"))


def _write(folder: Path, name: str, data: dict[str, Any]) -> Path:
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main([*args, "--json", "--device", "cpu"])
    return code, json.loads(capsys.readouterr().out)


def _pixels(path: str | Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.array(picture.convert("RGB"))


def test_the_default_ui_workflow_runs_and_its_api_twin_gives_the_same_pixels(models, tmp_path, capsys):
    ui = _write(tmp_path, "default_ui.json", default_workflow("ui"))
    api = _write(tmp_path, "default_api.json", default_workflow("api"))
    code, report = _run(["run", str(ui), "--models-dir", str(models), "--out", str(tmp_path / "ui")], capsys)
    assert code == 0, report["errors"]
    code, twin = _run(["run", str(api), "--models-dir", str(models), "--out", str(tmp_path / "api")], capsys)
    assert code == 0, twin["errors"]
    (first,), (second,) = report["outputs"], twin["outputs"]
    assert _pixels(first).shape == (32, 32, 3)
    assert np.array_equal(_pixels(first), _pixels(second))


def test_the_models_dir_can_come_from_the_environment(models, tmp_path, capsys, monkeypatch):
    ui = _write(tmp_path, "w.json", default_workflow("ui"))
    monkeypatch.setenv("NODEFLOW_MODELS_DIR", str(models))
    assert main(["validate", str(ui)]) == 0
    capsys.readouterr()
    monkeypatch.delenv("NODEFLOW_MODELS_DIR")
    code = main(["validate", str(ui), "--json"])
    problems = json.loads(capsys.readouterr().out)["errors"]
    assert code == 1 and [(p["code"], p["node"], p["input"]) for p in problems] == [("missing_file", "4", "ckpt_name")]


def test_a_missing_checkpoint_names_the_folders_searched(models, tmp_path, capsys):
    workflow = default_workflow("api")
    workflow["4"]["inputs"]["ckpt_name"] = "sd_xl_base_1.0.safetensors"
    code = main(["validate", str(_write(tmp_path, "w.json", workflow)), "--models-dir", str(models), "--json"])
    (problem,) = json.loads(capsys.readouterr().out)["errors"]
    assert code == 1 and str(models / "checkpoints") in problem["message"]


def test_comfyuis_extra_model_paths_yaml_points_at_an_installs_folders(models, tmp_path, capsys):
    (tmp_path / "extra_model_paths.yaml").write_text(
        f"comfyui:\n  base_path: {models.parent}\n  checkpoints: models/checkpoints/\n  clip: models/clip/\n"
        "a111:\n  base_path: /nonexistent/webui\n  loras: |\n    models/Lora\n    models/LyCORIS\n")
    ui = _write(tmp_path, "w.json", default_workflow("ui"))
    assert main(["validate", str(ui), "--comfy-paths", str(tmp_path / "extra_model_paths.yaml")]) == 0
    assert "comfyui.clip" in capsys.readouterr().err  # the kinds nodeflow does not use are named


def test_import_comfy_writes_a_graph_that_runs_like_the_workflow(models, tmp_path, capsys):
    ui = _write(tmp_path, "default_ui.json", default_workflow("ui"))
    out = tmp_path / "graph.json"
    assert main(["import-comfy", str(ui), "-o", str(out)]) == 0
    graph = json.loads(out.read_text())
    assert graph["format"] == "nodeflow/graph" and graph["nodes"]["4"]["inputs"]["model"] == CKPT
    code, from_graph = _run(["run", str(out), "--models-dir", str(models), "--out", str(tmp_path / "g")], capsys)
    code_ui, from_ui = _run(["run", str(ui), "--models-dir", str(models), "--out", str(tmp_path / "u")], capsys)
    assert code == code_ui == 0
    assert np.array_equal(_pixels(from_graph["outputs"][0]), _pixels(from_ui["outputs"][0]))


def test_validate_and_run_report_unsupported_nodes_with_their_comfyui_ids(tmp_path, capsys):
    workflow = default_workflow("api")
    workflow["30"] = {"class_type": "CR Prompt Text", "inputs": {"prompt": "x"}}
    path = _write(tmp_path, "w.json", workflow)
    assert main(["validate", str(path), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["errors"]
    assert [(p["code"], p["node"]) for p in problems] == [("unsupported_comfy_node", "30")]
    assert main(["run", str(path)]) == 1
    assert "unsupported_comfy_node" in capsys.readouterr().err


@pytest.mark.parametrize("sampler, scheduler, diffusers_class, options", [
    ("euler", "normal", "EulerDiscreteScheduler", {"timestep_spacing": "linspace"}),
    ("dpmpp_2m", "karras", "DPMSolverMultistepScheduler",
     {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True, "timestep_spacing": "linspace"}),
    ("ddim", "ddim_uniform", "DDIMScheduler", {"timestep_spacing": "leading", "steps_offset": 1}),
])
def test_a_comfyui_ksampler_gives_the_pixels_of_diffusers_pipeline_with_the_mapped_scheduler(
        sampler, scheduler, diffusers_class, options, tiny_sd_dir, tmp_path, capsys):
    import diffusers
    from diffusers import StableDiffusionPipeline

    models = tmp_path / "models"
    shutil.copytree(tiny_sd_dir, models / "checkpoints" / "tiny")  # a diffusers folder is a checkpoint name too
    prompt = default_workflow("api", size=64, steps=4)
    prompt["4"]["inputs"]["ckpt_name"] = "tiny"
    prompt["3"]["inputs"].update(sampler_name=sampler, scheduler=scheduler, seed=77, cfg=6.5)
    code, report = _run(["run", str(_write(tmp_path, "p.json", prompt)), "--models-dir", str(models), "--out", str(tmp_path / "o")],
                        capsys)
    assert code == 0, report["errors"]

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False, low_cpu_mem_usage=False)
    pipe.scheduler = getattr(diffusers, diffusers_class).from_config(pipe.scheduler.config, **options)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(prompt["6"]["inputs"]["text"], negative_prompt=prompt["7"]["inputs"]["text"], num_inference_steps=4,
                    guidance_scale=6.5, width=64, height=64, generator=torch.Generator("cpu").manual_seed(77)).images[0]
    assert np.array_equal(_pixels(report["outputs"][0]), np.array(expected))
