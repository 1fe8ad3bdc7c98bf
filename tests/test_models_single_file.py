"""Single-file SD 1.x checkpoints: LDM layout, offline, through the shipped config skeleton."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from models_tiny import ldm_checkpoint, tiny_text_encoder, tiny_unet, tiny_vae
from nodeflow_nodes.sd.load import LoadModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

from nodeflow.models import ModelStore, SDComponents
from nodeflow.models.single_file import (
    CONFIGS_DIR,
    CheckpointError,
    PickleRefused,
    detect_variant,
    fit_configs,
    load_single_file,
    read_state_dict,
)
from nodeflow.node import Context


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny() -> dict[str, torch.nn.Module]:
    return {"unet": tiny_unet(), "vae": tiny_vae(), "text_encoder": tiny_text_encoder()}


@pytest.fixture(scope="module")
def checkpoint(tiny: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    return ldm_checkpoint(tiny["unet"], tiny["vae"], tiny["text_encoder"])


@pytest.fixture(scope="module")
def sd_file(tmp_path_factory: pytest.TempPathFactory, checkpoint: dict[str, torch.Tensor]) -> Path:
    path = tmp_path_factory.mktemp("single") / "tiny-sd1.safetensors"
    save_file(checkpoint, str(path))
    return path


@pytest.fixture(scope="module")
def loaded(sd_file: Path) -> SDComponents:
    return load_single_file(sd_file)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_ldm_checkpoint_has_no_diffusers_keys(checkpoint: dict[str, torch.Tensor]) -> None:
    # Guards the round trip below against testing diffusers -> diffusers by accident.
    prefixes = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.text_model.")
    assert all(k.startswith(prefixes) for k in checkpoint)
    assert "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight" in checkpoint
    assert "first_stage_model.encoder.mid.attn_1.q.weight" in checkpoint
    assert not any("down_blocks" in k or "resnets" in k for k in checkpoint)


def test_single_file_unet_loads_offline_with_the_original_weights(loaded: SDComponents, tiny: dict) -> None:
    assert isinstance(loaded.unet, UNet2DConditionModel)
    assert _same_weights(loaded.unet, tiny["unet"])


def test_single_file_vae_loads_offline_with_the_original_weights(loaded: SDComponents, tiny: dict) -> None:
    assert isinstance(loaded.vae, AutoencoderKL)
    assert _same_weights(loaded.vae, tiny["vae"])


def test_single_file_text_encoder_loads_offline_with_the_original_weights(loaded: SDComponents, tiny: dict) -> None:
    assert _same_weights(loaded.text_encoder, tiny["text_encoder"])


def test_single_file_loaded_unet_predicts_like_the_original(loaded: SDComponents, tiny: dict) -> None:
    sample, text = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 48)
    with torch.no_grad():
        assert torch.equal(loaded.unet(sample, 10, text).sample, tiny["unet"](sample, 10, text).sample)


def test_single_file_takes_tokenizer_scheduler_and_vae_scaling_from_the_skeleton(loaded: SDComponents) -> None:
    assert loaded.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert loaded.scheduler_config["_class_name"] == "PNDMScheduler"
    assert (loaded.scheduler_config["beta_start"], loaded.scheduler_config["beta_end"]) == (0.00085, 0.012)
    assert loaded.vae.config.scaling_factor == 0.18215
    assert loaded.info["variant"] == "sd1"


def test_single_file_loads_in_the_requested_dtype(sd_file: Path) -> None:
    loaded = load_single_file(sd_file, dtype="fp16")
    dtypes = {p.dtype for m in (loaded.unet, loaded.vae, loaded.text_encoder) for p in m.parameters()}
    assert dtypes == {torch.float16}


def test_ldm_unet_with_4_input_channels_is_sd1(checkpoint: dict[str, torch.Tensor]) -> None:
    assert detect_variant(checkpoint) == "sd1"


def test_ldm_unet_with_9_input_channels_is_sd1_inpaint(checkpoint: dict[str, torch.Tensor]) -> None:
    first = "model.diffusion_model.input_blocks.0.0.weight"
    inpaint = {**checkpoint, first: torch.zeros(32, 9, 3, 3)}
    assert detect_variant(inpaint) == "sd1-inpaint"


def test_inpaint_single_file_loads_a_9_channel_unet(tmp_path: Path, tiny: dict) -> None:
    unet = tiny_unet(in_channels=9, seed=1)
    path = tmp_path / "tiny-inpaint.safetensors"
    save_file(ldm_checkpoint(unet, tiny["vae"], tiny["text_encoder"]), str(path))
    loaded = load_single_file(path)
    assert loaded.info["variant"] == "sd1-inpaint"
    assert loaded.unet.config.in_channels == 9
    assert _same_weights(loaded.unet, unet)


def test_sd2_checkpoint_is_refused_as_not_sd1() -> None:
    with pytest.raises(CheckpointError, match="SD 2.x"):
        detect_variant({"cond_stage_model.model.token_embedding.weight": torch.zeros(1)}, "sd2.safetensors")


def test_file_without_ldm_unet_keys_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "lora-not-a-model.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(1, 1)}, str(path))
    with pytest.raises(CheckpointError, match="lora-not-a-model.safetensors.*not an SD 1.x checkpoint"):
        load_single_file(path)


def test_checkpoint_missing_a_tensor_is_an_error_naming_it(tmp_path: Path, checkpoint: dict) -> None:
    gone = "model.diffusion_model.middle_block.1.proj_out.weight"
    path = tmp_path / "broken.safetensors"
    save_file({k: v for k, v in checkpoint.items() if k != gone}, str(path))
    with pytest.raises(CheckpointError, match="broken.safetensors.*UNet.*mid_block.attentions.0.proj_out.weight"):
        load_single_file(path)


def test_sd15_shaped_checkpoint_fits_the_shipped_skeleton_exactly() -> None:
    # An SD 1.5-sized model built on the meta device (no memory, no download): the
    # fields read from its shapes must equal the skeleton's, i.e. the skeleton is SD 1.5.
    sd1 = CONFIGS_DIR / "sd1"
    unet_cfg = json.loads((sd1 / "unet" / "config.json").read_text())
    vae_cfg = json.loads((sd1 / "vae" / "config.json").read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_cfg)
        vae = AutoencoderKL.from_config(vae_cfg)
        clip = CLIPTextModel(CLIPTextConfig.from_pretrained(str(sd1 / "text_encoder"), local_files_only=True))
    fitted = fit_configs(ldm_checkpoint(unet, vae, clip))
    clip_cfg = json.loads((sd1 / "text_encoder" / "config.json").read_text())
    assert all(unet_cfg[k] == v for k, v in fitted["unet"].items() if k != "use_linear_projection")
    assert fitted["unet"]["use_linear_projection"] is False
    assert all(vae_cfg[k] == v for k, v in fitted["vae"].items())
    assert all(clip_cfg[k] == v for k, v in fitted["text_encoder"].items())


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt", ".pth"])
def test_pickle_checkpoint_is_refused_naming_the_file_and_the_opt_in(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    torch.save({"state_dict": {}}, str(path))
    with pytest.raises(PickleRefused) as info:
        load_single_file(path)
    assert str(path) in str(info.value) and "allow_pickle=True" in str(info.value)


def test_model_store_refuses_a_pickle_checkpoint_by_default(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}}, str(path))
    with pytest.raises(ValueError, match="model.ckpt.*pickle.*allow_pickle"):
        ModelStore(device="cpu").load_sd(path)


def test_pickle_checkpoint_loads_with_opt_in(tmp_path: Path, checkpoint: dict, tiny: dict) -> None:
    path = tmp_path / "model.ckpt"
    # The Lightning wrapper real .ckpt files have: {"state_dict": ..., "global_step": ...}
    torch.save({"state_dict": checkpoint, "global_step": 470000}, str(path))
    loaded = ModelStore(device="cpu", allow_pickle=True).load_sd(path)
    assert _same_weights(loaded.unet, tiny["unet"])


class _Payload:
    """Stands for whatever code a malicious pickle would carry."""


def test_opted_in_pickle_is_read_weights_only_so_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Payload()}, str(path))
    with pytest.raises(CheckpointError, match="evil.ckpt.*weights_only=True"):
        read_state_dict(path, allow_pickle=True)


def test_model_store_loads_a_single_file_once_and_shares_it(sd_file: Path) -> None:
    store = ModelStore(device="cpu")
    first, second = store.load_sd(sd_file), store.load_sd(str(sd_file))
    assert first is second and first.info["format"] == "single_file"


def test_load_model_node_loads_a_single_file_through_the_store(sd_file: Path, tiny: dict) -> None:
    store = ModelStore(device="cpu")
    out = LoadModel().run(Context(node_id="1", node_type="sd.load_model", model_store=store), model=str(sd_file), dtype="fp32", device="cpu")
    assert _same_weights(out["unet"], tiny["unet"]) and out["scheduler_config"]["_class_name"] == "PNDMScheduler"


def test_load_model_node_names_a_missing_path() -> None:
    ctx = Context(node_id="1", node_type="sd.load_model", model_store=ModelStore(device="cpu"))
    with pytest.raises(FileNotFoundError, match="/no/such/model.safetensors"):
        LoadModel().run(ctx, model="/no/such/model.safetensors", dtype="fp32", device="cpu")


def test_load_model_fingerprint_changes_when_the_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"a": torch.zeros(1)}, str(path))
    ctx = Context(node_id="1", node_type="sd.load_model", model_store=ModelStore(device="cpu"))
    before = LoadModel().fingerprint(ctx, model=str(path), dtype="fp32", device="cpu")
    save_file({"a": torch.zeros(2)}, str(path))
    assert LoadModel().fingerprint(ctx, model=str(path), dtype="fp32", device="cpu") != before
