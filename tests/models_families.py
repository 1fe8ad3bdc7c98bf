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
from transformers import CLIPTokenizer

from nodeflow import testing
from nodeflow.resources import CONFIGS_DIR

SD2_TEXT = 80  # 16 heads (the SD 2.x skeleton's) of 5
XL_TEXT_L = 36  # 12 heads (CLIP-L's) of 3
XL_TEXT_G = 40  # 20 heads (bigG's) of 2
XL_POOLED = 32  # bigG's projection width
XL_TIME = 8  # addition_time_embed_dim


def _clip(hidden: int, heads: int, act: str, projection: int, with_projection: bool = False) -> Any:
    # bos 0 / eos 2 / pad 1 as the published configs: eos 2 makes CLIP pool at argmax(ids).
    config = testing.clip_config(hidden, heads, act=act, projection=projection, special_ids=(0, 2, 1))
    return testing.text_encoder(config, with_projection=with_projection)


def _vae(channels: tuple[int, ...], scaling: float, **extra: Any) -> AutoencoderKL:
    return testing.vae(channels, scaling_factor=scaling, sample_size=32, **extra)


def _xl_unet(channels: tuple[int, ...], attention: tuple[bool, ...], text: int, time_ids: int, **config: Any) -> UNet2DConditionModel:
    return testing.unet(channels, attention, cross_attention_dim=text, use_linear_projection=True, addition_embed_type="text_time",
                        addition_time_embed_dim=XL_TIME, projection_class_embeddings_input_dim=XL_POOLED + time_ids * XL_TIME,
                        **config)


def tiny_sd2(seed: int = 0) -> dict[str, torch.nn.Module]:
    """SD 2.x: linear-projection UNet 64/192 (64-wide heads), OpenCLIP-style 80-wide text encoder, VAE 32/96."""
    unet = testing.unet((64, 192), (True, False), cross_attention_dim=SD2_TEXT, attention_head_dim=(1, 3),
                        use_linear_projection=True, seed=seed)
    return {"unet": unet, "vae": _vae((32, 96), 0.18215), "text_encoder": _clip(SD2_TEXT, 16, "gelu", 48)}


def tiny_sdxl(seed: int = 0) -> dict[str, torch.nn.Module]:
    """SDXL base: UNet 64/64/128 (no attention at level 0, then 1 and 2 transformer blocks), CLIP-L 36 + bigG 40."""
    testing.seeded(seed)
    unet = _xl_unet((64, 64, 128), (False, True, True), XL_TEXT_L + XL_TEXT_G, 6, transformer_layers_per_block=(1, 1, 2),
                    attention_head_dim=(1, 1, 2))
    return {
        "unet": unet,
        "vae": _vae((32, 64), 0.13025, force_upcast=True),
        "text_encoder": _clip(XL_TEXT_L, 12, "quick_gelu", XL_TEXT_L),
        "text_encoder_2": _clip(XL_TEXT_G, 20, "gelu", XL_POOLED, with_projection=True),
    }


def tiny_refiner(seed: int = 0) -> dict[str, torch.nn.Module]:
    """SDXL refiner: UNet 128/192 with 2 transformer blocks everywhere, bigG 40 alone, aesthetic-score time ids."""
    testing.seeded(seed)
    unet = _xl_unet((128, 192), (False, True), XL_TEXT_G, 5, transformer_layers_per_block=2, attention_head_dim=(2, 3))
    return {
        "unet": unet,
        "vae": _vae((32, 64), 0.13025, force_upcast=True),
        "text_encoder_2": _clip(XL_TEXT_G, 20, "gelu", XL_POOLED, with_projection=True),
    }


# --------------------------------------------------------------------------------------
# diffusers folders
# --------------------------------------------------------------------------------------
def tokenizer(pad: str = "<|endoftext|>") -> CLIPTokenizer:
    """The CLIP BPE tokenizer; OpenCLIP's (SD 2.x, SDXL's second) pads with "!"."""
    return testing.clip_tokenizer(pad)


def _published_tokenizer(folder: Path, skeleton: str, slot: str) -> None:
    testing.publish_tokenizer(folder, slot, skeleton)


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
