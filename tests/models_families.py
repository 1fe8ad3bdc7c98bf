"""Tiny SD 2.x and SDXL (base, refiner) models, as diffusers folders and in their original single-file layouts.

The models keep each family's topology and every config field that tensor shapes
cannot tell (activations, 64-wide UNet attention heads, the text encoders' head counts,
the special tokens), at toy widths that no other test uses, so they build in a second
and load through the shipped skeletons (``configs/sd2-*``, ``configs/sdxl*``).

The single-file writers are the inverse of diffusers' conversions: LDM/SGM UNet and VAE
names (``tests/models_tiny.py``), transformers-layout CLIP-L under
``conditioner.embedders.0.transformer.`` and OpenCLIP-layout encoders (fused ``in_proj``
attention, ``resblocks``, ``ln_final``, ``text_projection`` stored as [width, dim]) under
``cond_stage_model.model.`` / ``conditioner.embedders.N.model.``, with what the original
files also hold: ``logit_scale``, CLIP's saved ``position_ids``, and SD 2.x's last
OpenCLIP block, which SD 2.x never runs (it conditions on the penultimate layer).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from models_tiny import unet_to_ldm, vae_to_ldm
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from nodeflow.models.single_file import CONFIGS_DIR, TOKENIZER_DIR

SD2_TEXT = 80  # 16 heads (the SD 2.x skeleton's) of 5
XL_TEXT_L = 36  # 12 heads (CLIP-L's) of 3
XL_TEXT_G = 40  # 20 heads (bigG's) of 2
XL_POOLED = 32  # bigG's projection width
XL_TIME = 8  # addition_time_embed_dim


def _clip_config(hidden: int, heads: int, act: str, projection: int) -> CLIPTextConfig:
    # bos 0 / eos 2 / pad 1 as the published configs: eos 2 makes CLIP pool at argmax(ids).
    return CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=heads,
        max_position_embeddings=77, hidden_act=act, projection_dim=projection, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )


def _vae(channels: tuple[int, ...], scaling: float, **extra: Any) -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=channels, down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels), latent_channels=4, layers_per_block=1, norm_num_groups=32,
        scaling_factor=scaling, sample_size=32, **extra,
    ).eval()


def tiny_sd2(seed: int = 0) -> dict[str, torch.nn.Module]:
    """SD 2.x: linear-projection UNet 64/192 (64-wide heads), OpenCLIP-style 80-wide text encoder, VAE 32/96."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(64, 192), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=SD2_TEXT, attention_head_dim=(1, 3), use_linear_projection=True, norm_num_groups=32,
    ).eval()
    text_encoder = CLIPTextModel(_clip_config(SD2_TEXT, 16, "gelu", 48)).eval()
    return {"unet": unet, "vae": _vae((32, 96), 0.18215), "text_encoder": text_encoder}


def tiny_sdxl(seed: int = 0) -> dict[str, torch.nn.Module]:
    """SDXL base: UNet 64/64/128 (no attention at level 0, then 1 and 2 transformer blocks), CLIP-L 36 + bigG 40."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(64, 64, 128), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2), attention_head_dim=(1, 1, 2), use_linear_projection=True,
        cross_attention_dim=XL_TEXT_L + XL_TEXT_G, addition_embed_type="text_time", addition_time_embed_dim=XL_TIME,
        projection_class_embeddings_input_dim=XL_POOLED + 6 * XL_TIME, norm_num_groups=32,
    ).eval()
    return {
        "unet": unet,
        "vae": _vae((32, 64), 0.13025, force_upcast=True),
        "text_encoder": CLIPTextModel(_clip_config(XL_TEXT_L, 12, "quick_gelu", XL_TEXT_L)).eval(),
        "text_encoder_2": CLIPTextModelWithProjection(_clip_config(XL_TEXT_G, 20, "gelu", XL_POOLED)).eval(),
    }


def tiny_refiner(seed: int = 0) -> dict[str, torch.nn.Module]:
    """SDXL refiner: UNet 128/192 with 2 transformer blocks everywhere, bigG 40 alone, aesthetic-score time ids."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(128, 192), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=2, attention_head_dim=(2, 3), use_linear_projection=True,
        cross_attention_dim=XL_TEXT_G, addition_embed_type="text_time", addition_time_embed_dim=XL_TIME,
        projection_class_embeddings_input_dim=XL_POOLED + 5 * XL_TIME, norm_num_groups=32,
    ).eval()
    return {
        "unet": unet,
        "vae": _vae((32, 64), 0.13025, force_upcast=True),
        "text_encoder_2": CLIPTextModelWithProjection(_clip_config(XL_TEXT_G, 20, "gelu", XL_POOLED)).eval(),
    }


# --------------------------------------------------------------------------------------
# diffusers folders
# --------------------------------------------------------------------------------------
def tokenizer(pad: str = "<|endoftext|>") -> CLIPTokenizer:
    """The CLIP BPE tokenizer; OpenCLIP's (SD 2.x, SDXL's second) pads with "!"."""
    return CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True, pad_token=pad)


def _published_tokenizer(folder: Path, skeleton: str, slot: str) -> None:
    # Published folders hold the BPE files and these two JSONs (transformers 5 would write tokenizer.json).
    shutil.rmtree(folder / slot, ignore_errors=True)
    (folder / slot).mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(TOKENIZER_DIR / name, folder / slot / name)
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        shutil.copyfile(CONFIGS_DIR / skeleton / slot / name, folder / slot / name)


def _published_scheduler(folder: Path, skeleton: str, **changes: Any) -> None:
    config = json.loads((CONFIGS_DIR / skeleton / "scheduler" / "scheduler_config.json").read_text())
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({**config, **changes}, indent=2))


def save_sd2(parts: dict[str, torch.nn.Module], out: Path, prediction_type: str = "v_prediction") -> Path:
    """An SD 2.x ``StableDiffusionPipeline`` folder (DDIM as SD 2.1's; ``prediction_type`` as given)."""
    scheduler = DDIMScheduler.from_config(json.loads((CONFIGS_DIR / "sd2-768-v" / "scheduler" / "scheduler_config.json").read_text()))
    pipe = StableDiffusionPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=tokenizer("!"), unet=parts["unet"], scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    _published_tokenizer(out, "sd2-768-v", "tokenizer")
    _published_scheduler(out, "sd2-768-v", prediction_type=prediction_type)
    return out


def save_sdxl(parts: dict[str, torch.nn.Module], out: Path) -> Path:
    """An SDXL base ``StableDiffusionXLPipeline`` folder (Euler, ``force_zeros_for_empty_prompt``)."""
    scheduler = EulerDiscreteScheduler.from_config(json.loads((CONFIGS_DIR / "sdxl" / "scheduler" / "scheduler_config.json").read_text()))
    pipe = StableDiffusionXLPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], text_encoder_2=parts["text_encoder_2"], tokenizer=tokenizer(),
        tokenizer_2=tokenizer("!"), unet=parts["unet"], scheduler=scheduler, force_zeros_for_empty_prompt=True, add_watermarker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    _published_tokenizer(out, "sdxl", "tokenizer")
    _published_tokenizer(out, "sdxl", "tokenizer_2")
    _published_scheduler(out, "sdxl")
    return out


def save_refiner(parts: dict[str, torch.nn.Module], out: Path) -> Path:
    """An SDXL refiner ``StableDiffusionXLImg2ImgPipeline`` folder (no first text encoder, aesthetic score)."""
    scheduler = EulerDiscreteScheduler.from_config(json.loads((CONFIGS_DIR / "sdxl-refiner" / "scheduler" / "scheduler_config.json").read_text()))
    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=parts["vae"], text_encoder=None, text_encoder_2=parts["text_encoder_2"], tokenizer=None, tokenizer_2=tokenizer("!"),
        unet=parts["unet"], scheduler=scheduler, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False, add_watermarker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    _published_tokenizer(out, "sdxl-refiner", "tokenizer_2")
    _published_scheduler(out, "sdxl-refiner")
    return out


# --------------------------------------------------------------------------------------
# diffusers -> original single-file layouts
# --------------------------------------------------------------------------------------
def _like(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.empty_like(t) if t.is_meta else torch.randn(t.shape, generator=gen, dtype=t.dtype)


def open_clip_to_original(encoder: torch.nn.Module, prefix: str, unused_last_block: bool = False) -> dict[str, torch.Tensor]:
    """A transformers CLIP text model under OpenCLIP's names at ``prefix`` (``...model.``).

    ``unused_last_block`` appends one more random residual block (and a random
    ``text_projection`` when the model has none), as SD 2.x files hold ViT-H's 24th
    block and projection, which SD 2.x never uses.
    """
    sd = {k.removeprefix("text_model."): v for k, v in encoder.state_dict().items()}
    out = {
        "token_embedding.weight": sd["embeddings.token_embedding.weight"],
        "positional_embedding": sd["embeddings.position_embedding.weight"],
        "ln_final.weight": sd["final_layer_norm.weight"],
        "ln_final.bias": sd["final_layer_norm.bias"],
    }
    layers = encoder.config.num_hidden_layers
    for i in range(layers):
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat([sd[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for old, new in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                             ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[f"{dst}{new}.{kind}"] = sd[f"{src}{old}.{kind}"]
    gen = torch.Generator().manual_seed(1234)
    if "text_projection.weight" in sd:
        out["text_projection"] = sd["text_projection.weight"].T
    if unused_last_block:
        block = {k.replace(".0.", f".{layers}.", 1): _like(v, gen) for k, v in out.items() if k.startswith("transformer.resblocks.0.")}
        out |= block
        out.setdefault("text_projection", _like(torch.empty(sd["final_layer_norm.weight"].shape[0], 48, device=sd["final_layer_norm.weight"].device), gen))
    out["logit_scale"] = torch.tensor(4.6052, device=sd["final_layer_norm.weight"].device)
    return {prefix + k: v.contiguous().clone() for k, v in out.items()}


def clip_to_original(encoder: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """A transformers CLIP text model under ``<prefix>text_model.*`` (with the saved ``position_ids``)."""
    out = {prefix + "text_model." + k.removeprefix("text_model."): v.clone() for k, v in encoder.state_dict().items()}
    out[prefix + "text_model.embeddings.position_ids"] = torch.arange(77, device=next(encoder.parameters()).device)[None]
    return out


def sd2_checkpoint(parts: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """An SD 2.x single file: LDM UNet/VAE and OpenCLIP-H at ``cond_stage_model.model.``."""
    text = open_clip_to_original(parts["text_encoder"], "cond_stage_model.model.", unused_last_block=True)
    return {**unet_to_ldm(parts["unet"]), **vae_to_ldm(parts["vae"]), **text}


def sdxl_checkpoint(parts: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """An SDXL base single file (SGM layout): CLIP-L at embedders.0, OpenCLIP-bigG at embedders.1."""
    return {
        **unet_to_ldm(parts["unet"]), **vae_to_ldm(parts["vae"]),
        **clip_to_original(parts["text_encoder"], "conditioner.embedders.0.transformer."),
        **open_clip_to_original(parts["text_encoder_2"], "conditioner.embedders.1.model."),
    }


def refiner_checkpoint(parts: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """An SDXL refiner single file (SGM layout): OpenCLIP-bigG alone at embedders.0."""
    return {
        **unet_to_ldm(parts["unet"]), **vae_to_ldm(parts["vae"]),
        **open_clip_to_original(parts["text_encoder_2"], "conditioner.embedders.0.model."),
    }
