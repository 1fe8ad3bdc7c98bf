"""Model folders in ComfyUI's layout: kinds, listing, confinement, extra_model_paths.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeflow.comfy.paths import ComfyPathsError, read_extra_model_paths
from nodeflow.files import PathResolver, kind_folders, list_models


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "checkpoints" / "sd15").mkdir(parents=True)
    (root / "checkpoints" / "sub").mkdir()
    (root / "checkpoints" / "a.safetensors").write_bytes(b"x" * 10)
    (root / "checkpoints" / "sub" / "b.ckpt").write_bytes(b"y" * 3)
    (root / "checkpoints" / "sd15" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (root / "checkpoints" / ".hidden.safetensors").write_bytes(b"z")
    (root / "checkpoints" / "notes.txt").write_text("not a model")
    (root / "loras").mkdir()
    (root / "loras" / "style.safetensors").write_bytes(b"l")
    (root / "loras" / "folder_not_a_lora").mkdir()
    return root


def test_kind_folders_follow_comfyuis_layout_then_the_extra_folders(models, tmp_path):
    kinds = kind_folders([models], {"lora": [tmp_path / "more_loras"]})
    assert kinds["checkpoint"] == (models / "checkpoints",)
    assert kinds["lora"] == (models / "loras", tmp_path / "more_loras")
    assert kinds["upscale_model"] == (models / "upscale_models",)
    with pytest.raises(ValueError, match="unknown kind"):
        kind_folders([], {"clip": [tmp_path]})


def test_the_listing_shows_model_files_and_diffusers_folders_by_name_and_size(models):
    entries = {(e.kind, e.name): e.size for e in list_models(kind_folders([models]))}
    assert entries == {("checkpoint", "a.safetensors"): 10, ("checkpoint", "sd15"): entries[("checkpoint", "sd15")],
                       ("checkpoint", "sub/b.ckpt"): 3, ("lora", "style.safetensors"): 1}


def test_a_symbolic_link_out_of_a_model_folder_is_not_listed(models, tmp_path):
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"secret")
    (models / "loras" / "escape.safetensors").symlink_to(outside)
    names = [e.name for e in list_models(kind_folders([models]))]
    assert "escape.safetensors" not in names


def test_names_resolve_in_the_kinds_folders_a_folder_checkpoint_included(models):
    paths = PathResolver.create([], kinds=kind_folders([models]))
    assert paths.resolve("sub/b.ckpt", "checkpoint") == models / "checkpoints" / "sub" / "b.ckpt"
    assert paths.resolve("sd15", "checkpoint") == models / "checkpoints" / "sd15"
    with pytest.raises(FileNotFoundError, match=str(models / "checkpoints")):
        paths.resolve("missing.safetensors", "checkpoint")


def test_the_servers_confined_resolver_takes_model_names_only_relative_and_tells_no_path(models, tmp_path):
    paths = PathResolver.create([tmp_path / "inputs"], kinds={k: [p.resolve() for p in v] for k, v in kind_folders([models]).items()},
                                confined=True)
    assert paths.resolve("a.safetensors", "checkpoint") == (models / "checkpoints" / "a.safetensors").resolve()
    for name in ("../loras/style.safetensors", str(models / "checkpoints" / "a.safetensors"), "/etc/passwd", "missing.safetensors"):
        with pytest.raises(FileNotFoundError) as caught:
            paths.resolve(name, "checkpoint")
        assert "checkpoints/ model folders" in str(caught.value) and str(tmp_path) not in str(caught.value).replace(name, "")


def test_extra_model_paths_yaml_is_read_relative_to_its_base_path(tmp_path):
    (tmp_path / "extra_model_paths.yaml").write_text(
        "comfyui:\n  base_path: comfy/\n  is_default: true\n  checkpoints: models/checkpoints/\n  clip: models/clip/\n"
        "a111:\n  base_path: /opt/webui\n  loras: |\n    models/Lora\n    models/LyCORIS\n  embeddings: embeddings\n")
    found = read_extra_model_paths(tmp_path / "extra_model_paths.yaml")
    assert found.kinds == {"checkpoint": [tmp_path / "comfy" / "models" / "checkpoints"],
                           "lora": [Path("/opt/webui/models/Lora"), Path("/opt/webui/models/LyCORIS")],
                           "embedding": [Path("/opt/webui/embeddings")]}
    assert found.skipped == ["comfyui.clip"]


@pytest.mark.parametrize("text, message", [("- a\n- b\n", "expected sections"), ("x: [1\n", "not valid YAML"),
                                           ("comfyui:\n  loras: 3\n", "must be a path")])
def test_a_malformed_extra_model_paths_file_names_the_problem(tmp_path, text, message):
    (tmp_path / "e.yaml").write_text(text)
    with pytest.raises(ComfyPathsError, match=message):
        read_extra_model_paths(tmp_path / "e.yaml")
