"""Single-file SD 1.x checkpoints (original LDM/CompVis key layout), loaded offline.

A single ``.safetensors`` checkpoint carries weights but no diffusers configs. We ship
weight-free config skeletons (``configs/sd1``, ``configs/sd1-inpaint``) and build each
component from them, so nothing is ever fetched from a model hub.

How a checkpoint becomes :class:`~nodeflow.models.store.SDComponents`:

1. :func:`read_state_dict` reads the file. Pickle formats (``.ckpt``, ``.bin``, ``.pt``,
   ``.pth``) can run code when unpickled, so they are refused unless the caller opts in,
   and even then they are read with ``torch.load(weights_only=True)``.
2. :func:`detect_variant` tells SD 1.x from SD 1.x-inpaint by the UNet's first conv
   (9 input channels for inpainting) and refuses other families with a clear message.
3. :func:`fit_configs` reads the shape-determined config fields (channels, layers,
   vocabulary, cross-attention width ...) from the tensors. For a real SD 1.5 they equal
   the skeleton; for fine-tunes with other widths (and for the tiny test models) they
   make the skeleton fit. Fields that shapes cannot tell (attention heads, activation,
   VAE scaling factor, scheduler) come from the skeleton.
4. diffusers' own LDM -> diffusers key conversions (``convert_ldm_unet_checkpoint``,
   ``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint``) rename the keys and
   each component is loaded with ``strict=True``: a checkpoint missing a tensor is an
   error, never a silently random-initialised layer. (diffusers' ``from_single_file``
   loads with ``strict=False`` when accelerate is absent, which is why we do not call it.)

A caller may pass its own diffusers-layout config folder as ``config=``; it is then used
as it is, without fitting.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from ..resources import CONFIGS_DIR  # the shipped config skeletons, one folder per variant
from .store import DTYPES, SDComponents, pipeline_scheduler_config

#: The CLIP tokenizer files shared by every SD 1.x variant.
TOKENIZER_DIR = CONFIGS_DIR / "sd1" / "tokenizer"

SAFETENSORS_SUFFIXES = frozenset({".safetensors"})
#: Suffixes of pickle-based files: unpickling can run arbitrary code.
PICKLE_SUFFIXES = frozenset({".ckpt", ".bin", ".pt", ".pth"})

_UNET = "model.diffusion_model."
_VAE = "first_stage_model."
_CLIP = "cond_stage_model.transformer."


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded; the message names the file and why."""


class PickleRefused(CheckpointError):
    """A pickle checkpoint was given without the ``allow_pickle`` opt-in."""


def is_checkpoint_file(path: str | Path) -> bool:
    """Whether ``path`` names a single-file checkpoint (by suffix), safe or pickle."""
    suffix = Path(path).suffix.lower()
    return suffix in SAFETENSORS_SUFFIXES or suffix in PICKLE_SUFFIXES


def read_state_dict(path: str | Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` dict from a ``.safetensors`` or (opt-in) pickle file, on the CPU.

    Pickle files raise :class:`PickleRefused` unless ``allow_pickle`` is true; with it they
    load with ``weights_only=True`` (tensors and plain containers only, no code). A
    Lightning-style ``{"state_dict": {...}}`` wrapper is unwrapped.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types; name the file
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if suffix not in PICKLE_SUFFIXES:
        raise CheckpointError(f"{path}: unknown checkpoint format '{suffix}' (expected .safetensors)")
    if not allow_pickle:
        raise PickleRefused(
            f"{path}: refusing to load a pickle file ('{suffix}'): unpickling can run arbitrary code. "
            "Convert it to .safetensors, or opt in with ModelStore(allow_pickle=True) "
            "(`--allow-pickle` on the command line); it is then read with torch.load(weights_only=True)."
        )
    try:
        data: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True): {_unpickler_reason(exc)}."
                              " nodeflow never unpickles arbitrary objects; convert the file to .safetensors") from exc
    while isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a {type(data).__name__}, not a dict of tensors")
    return data


def _unpickler_reason(exc: Exception) -> str:
    """The reason in torch's weights-only error, without its advice to load with weights_only=False.

    That advice is torch's, for its own API; nodeflow does not offer the option, so
    repeating it would only mislead.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"WeightsUnpickler error: ([^\n]*?)(?: Please use `torch| was not an allowed|$)", text, re.M)
    if found:
        return found.group(1).strip()
    return text.splitlines()[0].strip() if text.strip() else type(exc).__name__


def detect_variant(checkpoint: dict[str, torch.Tensor], name: str = "checkpoint") -> str:
    """``"sd1"`` or ``"sd1-inpaint"`` for an SD 1.x LDM checkpoint; :class:`CheckpointError` otherwise.

    Inpainting UNets take latents + mask + masked-image latents, so their first conv
    has 9 input channels instead of 4.
    """
    if any(k.startswith("conditioner.embedders.") for k in checkpoint):
        raise CheckpointError(f"{name}: an SDXL checkpoint; only SD 1.x single files are supported")
    if any(k.startswith("cond_stage_model.model.") for k in checkpoint):
        raise CheckpointError(f"{name}: an SD 2.x (OpenCLIP) checkpoint; only SD 1.x single files are supported")
    first_conv = checkpoint.get(_UNET + "input_blocks.0.0.weight")
    if first_conv is None or not any(k.startswith(_CLIP) for k in checkpoint):
        raise CheckpointError(
            f"{name}: not an SD 1.x checkpoint in the original LDM layout "
            f"(no '{_UNET}input_blocks.0.0.weight' or '{_CLIP}*' keys)"
        )
    return "sd1-inpaint" if first_conv.shape[1] == 9 else "sd1"


def fit_configs(checkpoint: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    """Config fields read from tensor shapes: ``{"unet": {...}, "vae": {...}, "text_encoder": {...}}``.

    These override the skeleton so SD 1.x-architecture checkpoints of other widths load.
    """
    return {"unet": _fit_unet(checkpoint), "vae": _fit_vae(checkpoint), "text_encoder": _fit_clip(checkpoint)}


def _fit_unet(ckpt: dict[str, torch.Tensor]) -> dict[str, Any]:
    channels: list[int] = []
    attention: list[bool] = []
    resnets_in_level = 0
    layers_per_block = 0
    n = 1
    # input_blocks.n walks level by level: `layers_per_block` resnet(+attention) blocks,
    # then a downsampler (`.0.op`) except after the last level.
    while any(k.startswith(f"{_UNET}input_blocks.{n}.") for k in ckpt):
        if f"{_UNET}input_blocks.{n}.0.op.weight" in ckpt:
            layers_per_block = layers_per_block or resnets_in_level
            resnets_in_level = 0
        else:
            if resnets_in_level == 0:
                channels.append(int(ckpt[f"{_UNET}input_blocks.{n}.0.out_layers.3.weight"].shape[0]))
                attention.append(f"{_UNET}input_blocks.{n}.1.proj_in.weight" in ckpt)
            resnets_in_level += 1
        n += 1
    layers_per_block = layers_per_block or resnets_in_level
    down = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention]
    up = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)]
    fitted: dict[str, Any] = {
        "in_channels": int(ckpt[_UNET + "input_blocks.0.0.weight"].shape[1]),
        "out_channels": int(ckpt[_UNET + "out.2.weight"].shape[0]),
        "block_out_channels": channels,
        "layers_per_block": layers_per_block,
        "down_block_types": down,
        "up_block_types": up,
    }
    # A UNet without attention keeps the skeleton's values; the strict load then tells.
    attn2_k = next((v for k, v in ckpt.items() if k.startswith(_UNET) and k.endswith("attn2.to_k.weight")), None)
    proj_in = next((v for k, v in ckpt.items() if k.startswith(_UNET) and k.endswith(".proj_in.weight")), None)
    if attn2_k is not None:
        fitted["cross_attention_dim"] = int(attn2_k.shape[1])
    if proj_in is not None:
        fitted["use_linear_projection"] = proj_in.ndim == 2  # SD 1.x: 1x1 convs; 2.x-style fine-tunes: linear
    return fitted


def _fit_vae(ckpt: dict[str, torch.Tensor]) -> dict[str, Any]:
    levels = sorted({int(m.group(1)) for k in ckpt if (m := re.match(rf"{_VAE}encoder\.down\.(\d+)\.", k))})
    blocks = {int(m.group(1)) for k in ckpt if (m := re.match(rf"{_VAE}encoder\.down\.0\.block\.(\d+)\.", k))}
    return {
        "in_channels": int(ckpt[_VAE + "encoder.conv_in.weight"].shape[1]),
        "out_channels": int(ckpt[_VAE + "decoder.conv_out.weight"].shape[0]),
        "block_out_channels": [int(ckpt[f"{_VAE}encoder.down.{i}.block.0.conv1.weight"].shape[0]) for i in levels],
        "layers_per_block": len(blocks),
        "latent_channels": int(ckpt[_VAE + "decoder.conv_in.weight"].shape[1]),
        "down_block_types": ["DownEncoderBlock2D"] * len(levels),
        "up_block_types": ["UpDecoderBlock2D"] * len(levels),
    }


def _fit_clip(ckpt: dict[str, torch.Tensor]) -> dict[str, Any]:
    sd = _clip_state_dict(ckpt)
    tokens = sd["embeddings.token_embedding.weight"]
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    return {
        "vocab_size": int(tokens.shape[0]),
        "hidden_size": int(tokens.shape[1]),
        "max_position_embeddings": int(sd["embeddings.position_embedding.weight"].shape[0]),
        "num_hidden_layers": len(layers),
        "intermediate_size": int(sd["encoder.layers.0.mlp.fc1.weight"].shape[0]),
    }


def _clip_state_dict(ckpt: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP text weights under ``CLIPTextModel``'s own names (transformers >= 5.6 has no ``text_model.``)."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint

    sd = convert_ldm_clip_checkpoint(ckpt)
    # position_ids is a buffer that old checkpoints saved; the model rebuilds it.
    return {k.removeprefix("text_model."): v for k, v in sd.items() if not k.endswith("position_ids")}


def load_single_file(
    path: str | Path,
    dtype: torch.dtype | str = torch.float32,
    device: torch.device | str = "cpu",
    config: str | Path | None = None,
    allow_pickle: bool = False,
) -> SDComponents:
    """Load an SD 1.x single-file checkpoint (LDM key layout) offline.

    ``config`` is a diffusers-layout folder with ``unet/``, ``vae/``, ``text_encoder/``,
    ``scheduler/`` configs (and optionally ``tokenizer/``); by default the shipped
    skeleton for the detected variant is used and fitted to the tensor shapes.
    ``dtype`` is a torch dtype or ``"fp32"``/``"fp16"``/``"bf16"``. Raises
    :class:`CheckpointError` (or :class:`PickleRefused`) with the file's name.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    path = Path(path)
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    checkpoint = read_state_dict(path, allow_pickle=allow_pickle)
    variant = detect_variant(checkpoint, str(path))
    if config is None:
        folder = CONFIGS_DIR / variant
        fitted = fit_configs(checkpoint)
    else:
        folder = Path(config)
        fitted = {"unet": {}, "vae": {}, "text_encoder": {}}
        if not (folder / "unet" / "config.json").is_file():
            raise CheckpointError(f"{folder}: not a diffusers config folder (no unet/config.json)")

    # Cast the tensors before loading rather than the modules after: diffusers warns on
    # module.to(dtype), and a half-precision model never holds a full-precision copy.
    # Only the three components' keys are kept: EMA copies and optimizer leftovers are dropped.
    checkpoint = {
        k: _aligned(v.to(torch_dtype) if v.is_floating_point() else v)
        for k, v in checkpoint.items()
        if k.startswith((_UNET, _VAE, "cond_stage_model."))
    }

    unet_config = {**_read_json(folder / "unet" / "config.json"), **fitted["unet"]}
    unet = _build(UNet2DConditionModel, unet_config, convert_ldm_unet_checkpoint(checkpoint, unet_config), path, "UNet")

    vae_config = {**_read_json(folder / "vae" / "config.json"), **fitted["vae"]}
    vae = _build(AutoencoderKL, vae_config, convert_ldm_vae_checkpoint(checkpoint, vae_config), path, "VAE")

    clip_config = CLIPTextConfig.from_pretrained(str(folder / "text_encoder"), local_files_only=True, **fitted["text_encoder"])
    text_encoder: torch.nn.Module = CLIPTextModel(clip_config)
    text_encoder.to(torch_dtype)
    _load_strict(text_encoder, _clip_state_dict(checkpoint), path, "text encoder")
    text_encoder.eval()

    tokenizer_dir = folder / "tokenizer" if (folder / "tokenizer").is_dir() else TOKENIZER_DIR
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    # Normalised as the SD pipeline does, so a single file and a folder step alike.
    scheduler_config = pipeline_scheduler_config(_read_json(folder / "scheduler" / "scheduler_config.json"))

    modules: list[torch.nn.Module] = [unet, vae, text_encoder]
    for module in modules:
        module.to(device)
        module.requires_grad_(False)
    return SDComponents(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        vae=vae,
        scheduler_config=scheduler_config,
        source=str(path),
        info={"format": "single_file", "variant": variant, "config": str(folder), "device": str(device),
              "dtype": next((name for name, t in DTYPES.items() if t == torch_dtype), str(torch_dtype)), "scheduler": scheduler_config.get("_class_name")},
    )


def _aligned(tensor: torch.Tensor, alignment: int = 64) -> torch.Tensor:
    """``tensor``, copied when its storage does not start on an ``alignment``-byte boundary.

    safetensors hands out views into one file buffer, at whatever offset the header
    left. CPU kernels pick other (vectorised) code paths for unaligned weights and sum
    in another order, so a model assigned those views predicts ~1e-6 away from the
    same weights in freshly allocated memory (a folder load, a diffusers pipeline).
    """
    if tensor.data_ptr() % alignment == 0:
        return tensor
    return tensor.clone()


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _build(cls: Any, config: dict[str, Any], state_dict: dict[str, torch.Tensor], path: Path, what: str) -> Any:
    # Built on the meta device and filled with assign=True: an SD 1.5 UNet would
    # otherwise spend seconds on random initialisation that the weights overwrite.
    with torch.device("meta"):
        model = cls.from_config(config)
    _load_strict(model, state_dict, path, what, assign=True)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise CheckpointError(f"{path}: {what} tensors not in the checkpoint: {', '.join(leftover[:5])}")
    return model.eval()


def _load_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], path: Path, what: str, assign: bool = False) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise CheckpointError(f"{path}: the {what} weights do not fit its config: {'; '.join(parts)}")
    model.load_state_dict(state_dict, strict=True, assign=assign)


__all__ = [
    "CONFIGS_DIR",
    "PICKLE_SUFFIXES",
    "SAFETENSORS_SUFFIXES",
    "TOKENIZER_DIR",
    "CheckpointError",
    "PickleRefused",
    "detect_variant",
    "fit_configs",
    "is_checkpoint_file",
    "load_single_file",
    "read_state_dict",
]
