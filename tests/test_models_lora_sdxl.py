"""SDXL LoRA: kohya (SGM UNet names, lora_te1_/lora_te2_) and peft files merge as W + s * alpha/r * up@down."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from models_families import tiny_sdxl
from safetensors.torch import save_file

from nodeflow.models.lora import LoraError, merge_lora, read_lora

RANK, ALPHA, STRENGTH = 4, 3.0, 0.8

# kohya's name of each layer (SGM UNet, underscore-joined) and the diffusers module it is.
# The tiny UNet has 1 resnet per level: input_blocks 1 | 2 (down) | 3 | 4 (down) | 5,
# middle_block 0 | 1 | 2, output_blocks 0 1 | 2 3 | 4 5.
KOHYA_UNET = {
    "input_blocks_3_1_transformer_blocks_0_attn1_to_q": "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
    "input_blocks_5_1_transformer_blocks_1_attn2_to_k": "down_blocks.2.attentions.0.transformer_blocks.1.attn2.to_k",
    "input_blocks_3_1_transformer_blocks_0_attn1_to_out_0": "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0",
    "middle_block_1_proj_in": "mid_block.attentions.0.proj_in",
    "output_blocks_1_1_transformer_blocks_0_ff_net_2": "up_blocks.0.attentions.1.transformer_blocks.0.ff.net.2",
    "input_blocks_1_0_in_layers_2": "down_blocks.0.resnets.0.conv1",  # a 3x3 conv (LoCon)
    "output_blocks_4_0_emb_layers_1": "up_blocks.2.resnets.0.time_emb_proj",
    "label_emb_0_0": "add_embedding.linear_1",
}
KOHYA_TE1 = {"text_model_encoder_layers_1_self_attn_q_proj": "encoder.layers.1.self_attn.q_proj"}
KOHYA_TE2 = {
    "text_model_encoder_layers_0_mlp_fc1": "text_model.encoder.layers.0.mlp.fc1",
    "text_projection": "text_projection",
}
# peft's name of each layer and the module it is (CLIPTextModel lost its text_model level in transformers 5.6).
PEFT = {
    "unet": ("down_blocks.2.attentions.0.transformer_blocks.1.attn2.to_v", "down_blocks.2.attentions.0.transformer_blocks.1.attn2.to_v"),
    "text_encoder": ("text_model.encoder.layers.0.self_attn.k_proj", "encoder.layers.0.self_attn.k_proj"),
    "text_encoder_2": ("text_model.encoder.layers.1.self_attn.out_proj", "text_model.encoder.layers.1.self_attn.out_proj"),
}


@pytest.fixture(scope="module")
def sdxl() -> dict[str, torch.nn.Module]:
    return tiny_sdxl(seed=5)


def _factors(weight: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    down = torch.randn(RANK, *weight.shape[1:], generator=gen)  # conv LoRAs: [r, in, kh, kw]
    up = torch.randn(weight.shape[0], RANK, *([1] * (weight.ndim - 2)), generator=gen)
    return down, up


def _expected(weight: torch.Tensor, seed: int, alpha: float) -> torch.Tensor:
    down, up = _factors(weight, seed)
    return weight + (STRENGTH * (alpha / RANK)) * (up.flatten(1) @ down.flatten(1)).reshape(weight.shape)


def _targets(sdxl: dict) -> list[tuple[str, str, str, torch.nn.Module]]:
    """(kohya prefix, kohya name, module name, component) for every layer the kohya file targets."""
    return (
        [("lora_unet_", k, m, sdxl["unet"]) for k, m in KOHYA_UNET.items()]
        + [("lora_te1_", k, m, sdxl["text_encoder"]) for k, m in KOHYA_TE1.items()]
        + [("lora_te2_", k, m, sdxl["text_encoder_2"]) for k, m in KOHYA_TE2.items()]
    )


@pytest.fixture(scope="module")
def kohya_file(tmp_path_factory: pytest.TempPathFactory, sdxl: dict) -> Path:
    tensors = {}
    for seed, (prefix, name, module, component) in enumerate(_targets(sdxl)):
        down, up = _factors(component.get_submodule(module).weight, seed)
        tensors |= {f"{prefix}{name}.lora_down.weight": down, f"{prefix}{name}.lora_up.weight": up, f"{prefix}{name}.alpha": torch.tensor(ALPHA)}
    path = tmp_path_factory.mktemp("lora_sdxl") / "kohya_sdxl.safetensors"
    save_file(tensors, str(path))
    return path


@pytest.fixture(scope="module")
def kohya_merged(sdxl: dict, kohya_file: Path) -> dict[str, torch.nn.Module]:
    lora = read_lora(kohya_file)
    return {slot: merge_lora(sdxl[slot], getattr(lora, slot), STRENGTH, str(kohya_file)) for slot in ("unet", "text_encoder", "text_encoder_2")}


def test_kohya_sdxl_file_splits_into_unet_and_both_text_encoders(kohya_file: Path) -> None:
    lora = read_lora(kohya_file)
    assert (len(lora.unet), len(lora.text_encoder), len(lora.text_encoder_2)) == (len(KOHYA_UNET), len(KOHYA_TE1), len(KOHYA_TE2))


@pytest.mark.parametrize("index", range(len(KOHYA_UNET) + len(KOHYA_TE1) + len(KOHYA_TE2)))
def test_kohya_sdxl_layer_merges_into_its_diffusers_module(sdxl: dict, kohya_merged: dict, index: int) -> None:
    prefix, _name, module, component = _targets(sdxl)[index]
    slot = {"lora_unet_": "unet", "lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2"}[prefix]
    merged = kohya_merged[slot].get_submodule(module).weight
    assert torch.equal(merged, _expected(component.get_submodule(module).weight, index, ALPHA))


def test_kohya_sdxl_merge_shares_untouched_layers_and_leaves_the_base_unchanged(sdxl: dict, kohya_file: Path) -> None:
    lora = read_lora(kohya_file)
    for slot in ("unet", "text_encoder", "text_encoder_2"):
        base = sdxl[slot]
        before = {k: (v.clone(), v._version) for k, v in base.state_dict().items()}
        merged = merge_lora(base, getattr(lora, slot), STRENGTH)
        assert all(torch.equal(v, before[k][0]) and v._version == before[k][1] for k, v in base.state_dict().items())
        params = dict(base.named_parameters())
        shared = [k for k, v in merged.named_parameters() if v is params[k]]
        assert 0 < len(shared) < len(params)  # only the targeted weights are new tensors


@pytest.fixture(scope="module")
def peft_file(tmp_path_factory: pytest.TempPathFactory, sdxl: dict) -> Path:
    tensors = {}
    for seed, (slot, (name, module)) in enumerate(PEFT.items()):
        down, up = _factors(sdxl[slot].get_submodule(module).weight, 100 + seed)
        tensors |= {f"{slot}.{name}.lora_A.weight": down, f"{slot}.{name}.lora_B.weight": up}
    path = tmp_path_factory.mktemp("lora_sdxl") / "peft_sdxl.safetensors"
    save_file(tensors, str(path))
    return path


@pytest.mark.parametrize("slot", list(PEFT))
def test_peft_sdxl_layer_merges_with_scale_one(sdxl: dict, peft_file: Path, slot: str) -> None:
    lora = read_lora(peft_file)
    merged = merge_lora(sdxl[slot], getattr(lora, slot), STRENGTH, str(peft_file))
    module = PEFT[slot][1]
    seed = 100 + list(PEFT).index(slot)
    assert torch.equal(merged.get_submodule(module).weight, _expected(sdxl[slot].get_submodule(module).weight, seed, alpha=RANK))


def test_sgm_layer_outside_the_unet_is_an_error_naming_it(sdxl: dict, tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"lora_unet_input_blocks_9_1_proj_in.lora_down.weight": torch.zeros(RANK, 8),
               "lora_unet_input_blocks_9_1_proj_in.lora_up.weight": torch.zeros(8, RANK)}, str(path))
    with pytest.raises(LoraError, match="input_blocks_9_1_proj_in matches no layer"):
        merge_lora(sdxl["unet"], read_lora(path).unet, 1.0, str(path))


def test_dora_sdxl_lora_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "dora.safetensors"
    save_file({"lora_te2_text_model_encoder_layers_0_mlp_fc1.dora_scale": torch.ones(1, 4)}, str(path))
    with pytest.raises(LoraError, match="dora_scale"):
        read_lora(path)
