"""Tiny SD 1.x components for the model tests, and their original LDM single-file layout.

The components keep SD 1.5's topology and every config field that tensor shapes cannot
tell (attention heads, groups, activations), with small widths, so a checkpoint made
from them loads through the shipped ``configs/sd1`` skeleton. :func:`to_ldm_state_dict`
is the inverse of diffusers' LDM -> diffusers conversion, written from the original
``convert_diffusers_to_original_stable_diffusion.py`` tables and generalised to any
number of levels and layers per block.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from nodeflow import testing

TEXT_HIDDEN = 48  # divisible by the skeleton's 12 heads


def tiny_unet(in_channels: int = 4, seed: int = 0) -> UNet2DConditionModel:
    """A UNet2DConditionModel with SD 1.5's block layout, 32/32/64/64 channels."""
    return testing.unet((32, 32, 64, 64), (True, True, True, False), cross_attention_dim=TEXT_HIDDEN, layers_per_block=2,
                        in_channels=in_channels, seed=seed)


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    """An AutoencoderKL with SD's four levels, 32/32/64/64 channels."""
    return testing.vae((32, 32, 64, 64), layers_per_block=2, scaling_factor=0.18215, seed=seed)


def tiny_text_encoder(seed: int = 0) -> CLIPTextModel:
    """A 2-layer CLIP text model with the real 49,408-token vocabulary and 77 positions."""
    return testing.text_encoder(testing.clip_config(TEXT_HIDDEN, 12, intermediate=96, special_ids=(0, 2, 1)), seed=seed)


def clip_tokenizer() -> CLIPTokenizer:
    """The CLIP BPE tokenizer shipped with the config skeleton."""
    return testing.clip_tokenizer()


# --------------------------------------------------------------------------------------
# diffusers -> original LDM key layout
# --------------------------------------------------------------------------------------
_RESNET = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"),
           ("out_layers.3", "conv2"), ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut")]


def _unet_prefixes(config: Any) -> list[tuple[str, str]]:
    """(ldm prefix, diffusers prefix) pairs for every block of the UNet."""
    n_levels, layers = len(config.block_out_channels), config.layers_per_block
    has_attn = ["CrossAttn" in t for t in config.down_block_types]
    up_attn = ["CrossAttn" in t for t in config.up_block_types]
    pairs = [("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
             ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."), ("out.2.", "conv_out."),
             ("middle_block.1.", "mid_block.attentions.0."),
             ("middle_block.0.", "mid_block.resnets.0."), ("middle_block.2.", "mid_block.resnets.1."),
             # SDXL's added conditioning (pooled text + time ids); absent from SD 1.x/2.x UNets.
             ("label_emb.0.0.", "add_embedding.linear_1."), ("label_emb.0.2.", "add_embedding.linear_2.")]
    for i in range(n_levels):
        for j in range(layers):
            n = 1 + i * (layers + 1) + j
            pairs.append((f"input_blocks.{n}.0.", f"down_blocks.{i}.resnets.{j}."))
            if has_attn[i]:
                pairs.append((f"input_blocks.{n}.1.", f"down_blocks.{i}.attentions.{j}."))
        if i < n_levels - 1:
            pairs.append((f"input_blocks.{(i + 1) * (layers + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
        for j in range(layers + 1):
            n = i * (layers + 1) + j
            pairs.append((f"output_blocks.{n}.0.", f"up_blocks.{i}.resnets.{j}."))
            if up_attn[i]:
                pairs.append((f"output_blocks.{n}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < n_levels - 1:
            n = i * (layers + 1) + layers
            pairs.append((f"output_blocks.{n}.{2 if up_attn[i] else 1}.", f"up_blocks.{i}.upsamplers.0."))
    return pairs


def _rename(key: str, pairs: list[tuple[str, str]]) -> str:
    # The longest matching diffusers prefix wins ("down_blocks.0.resnets.1." before "down_blocks.0.").
    ldm, hf = max(((a, b) for a, b in pairs if key.startswith(b)), key=lambda p: len(p[1]))
    return ldm + key[len(hf):]


def unet_to_ldm(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """The UNet's weights under ``model.diffusion_model.*`` LDM names."""
    pairs = _unet_prefixes(unet.config)
    out = {}
    for key, value in unet.state_dict().items():
        ldm = _rename(key, pairs)
        if ".resnets." in key or "mid_block.resnets" in key:
            for old, new in _RESNET:
                ldm = ldm.replace(f".{new}.", f".{old}.")
        out["model.diffusion_model." + ldm] = value.clone()
    return out


def vae_to_ldm(vae: AutoencoderKL) -> dict[str, torch.Tensor]:
    """The VAE's weights under ``first_stage_model.*`` LDM names (attention as 1x1 convs)."""
    n = len(vae.config.block_out_channels)
    pairs = [("encoder.conv_in.", "encoder.conv_in."), ("encoder.conv_out.", "encoder.conv_out."),
             ("encoder.norm_out.", "encoder.conv_norm_out."), ("decoder.conv_in.", "decoder.conv_in."),
             ("decoder.conv_out.", "decoder.conv_out."), ("decoder.norm_out.", "decoder.conv_norm_out."),
             ("quant_conv.", "quant_conv."), ("post_quant_conv.", "post_quant_conv.")]
    for part in ("encoder", "decoder"):
        pairs += [(f"{part}.mid.attn_1.", f"{part}.mid_block.attentions.0."),
                  (f"{part}.mid.block_1.", f"{part}.mid_block.resnets.0."),
                  (f"{part}.mid.block_2.", f"{part}.mid_block.resnets.1.")]
    for i in range(n):
        for j in range(vae.config.layers_per_block):
            pairs.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
        for j in range(vae.config.layers_per_block + 1):
            pairs.append((f"decoder.up.{n - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}."))
        if i < n - 1:
            pairs.append((f"encoder.down.{i}.downsample.", f"encoder.down_blocks.{i}.downsamplers.0."))
            pairs.append((f"decoder.up.{n - 1 - i}.upsample.", f"decoder.up_blocks.{i}.upsamplers.0."))
    attn = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]
    out = {}
    for key, value in vae.state_dict().items():
        ldm = _rename(key, pairs).replace(".conv_shortcut.", ".nin_shortcut.")
        if ".mid.attn_1." in ldm:
            head, tail = ldm.split(".mid.attn_1.")
            for old, new in attn:
                if tail.startswith(new):
                    tail = old + tail[len(new):]
            ldm = f"{head}.mid.attn_1.{tail}"
            if value.ndim == 2:  # LDM keeps attention projections as 1x1 convolutions
                value = value[:, :, None, None]
        out["first_stage_model." + ldm] = value.clone()
    return out


def clip_to_ldm(text_encoder: CLIPTextModel) -> dict[str, torch.Tensor]:
    """The text encoder's weights under ``cond_stage_model.transformer.text_model.*``."""
    return {
        "cond_stage_model.transformer.text_model." + k.removeprefix("text_model."): v.clone()
        for k, v in text_encoder.state_dict().items()
    }


def ldm_checkpoint(unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel) -> dict[str, torch.Tensor]:
    """One flat LDM-layout state dict, as a single-file SD 1.x checkpoint stores it."""
    return {**unet_to_ldm(unet), **vae_to_ldm(vae), **clip_to_ldm(text_encoder)}
