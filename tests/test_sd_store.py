"""The model store with diffusers folders: offline loading, sharing, keys, dtypes."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from nodeflow.models import ModelStore
from nodeflow.models.store import ModelLoadError, pipeline_scheduler_config


def test_a_folder_loads_once_and_is_shared_across_calls(tiny_sd_dir):
    store = ModelStore(device="cpu")
    first = store.load_sd(str(tiny_sd_dir))
    second = store.load_sd(tiny_sd_dir)
    assert second is first and store.loads == 1


def test_modules_load_in_eval_mode_without_gradients(tiny_sd_dir):
    parts = ModelStore(device="cpu").load_sd(tiny_sd_dir)
    for module in (parts.text_encoder, parts.unet, parts.vae):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())


def test_each_dtype_is_its_own_entry(tiny_sd_dir):
    store = ModelStore(device="cpu")
    full, half = store.load_sd(tiny_sd_dir), store.load_sd(tiny_sd_dir, dtype="fp16")
    assert full.unet.dtype == torch.float32 and half.unet.dtype == half.vae.dtype == half.text_encoder.dtype == torch.float16
    assert store.loads == 2


def test_a_replaced_weight_file_is_loaded_again(tiny_sd_dir, tmp_path):
    folder = shutil.copytree(tiny_sd_dir, tmp_path / "model")
    store = ModelStore(device="cpu")
    before = store.load_sd(folder)
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))

    assert store.load_sd(folder) is not before and store.loads == 2


def test_fp16_variant_only_folders_load(tiny_sd_dir, tmp_path):
    folder = shutil.copytree(tiny_sd_dir, tmp_path / "model")
    for part in ("unet", "vae"):
        weights = folder / part / "diffusion_pytorch_model.safetensors"
        weights.rename(weights.with_name("diffusion_pytorch_model.fp16.safetensors"))
    parts = ModelStore(device="cpu").load_sd(folder)
    assert parts.unet.dtype == torch.float32


def test_a_missing_path_is_an_error_naming_it(tmp_path):
    with pytest.raises(ModelLoadError, match="nothere.*does not exist"):
        ModelStore().load_sd(tmp_path / "nothere")


def test_a_folder_that_is_not_a_model_is_refused_before_anything_walks_it(tmp_path):
    (tmp_path / "deep" / "er").mkdir(parents=True)
    with pytest.raises(ModelLoadError, match="is a folder but not a model"):
        ModelStore().load_sd(tmp_path)


def test_a_model_folder_missing_a_part_is_an_error_naming_the_missing_part(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="'tokenizer/' is missing"):
        ModelStore().load_sd(tmp_path)


def test_default_names_the_missing_embedded_model(tmp_path, monkeypatch):
    import nodeflow.models.store as store_module

    monkeypatch.setattr(store_module, "DEFAULT_MODEL", tmp_path / "not-installed")
    with pytest.raises(ModelLoadError, match="default model"):
        ModelStore().load_sd("default")


def test_legacy_scheduler_configs_are_fixed_as_the_sd_pipeline_fixes_them():
    from diffusers import DDIMScheduler

    config = pipeline_scheduler_config({"_class_name": "DDIMScheduler", "steps_offset": 0})
    assert config["steps_offset"] == 1 and config["clip_sample"] is False
    assert DDIMScheduler.from_config(config).config.clip_sample is False
