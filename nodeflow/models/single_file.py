"""Single-file checkpoints (original LDM / SGM key layouts) of SD 1.x, SD 2.x and SDXL, loaded offline.

A single ``.safetensors`` checkpoint carries weights but no diffusers configs. We ship
weight-free config skeletons (``configs/<name>``: ``sd1``, ``sd1-inpaint``, ``sd2-512``,
``sd2-768-v``, ``sdxl``, ``sdxl-refiner``) and build each component from them, so
nothing is ever fetched from a model hub.

How a checkpoint becomes :class:`~nodeflow.models.store.SDComponents`:

1. :func:`read_state_dict` reads the file. Pickle formats (``.ckpt``, ``.bin``, ``.pt``,
   ``.pth``) can run code when unpickled, so they are refused unless the caller opts in,
   and even then they are read with ``torch.load(weights_only=True)``.
2. :func:`detect_family` tells the family by the text encoders' key layout
   (:func:`~nodeflow.models.families.checkpoint_family`), and :func:`skeleton_for` picks
   the skeleton: SD 1.x or its inpainting variant (a 9-channel UNet input); SD 2.x
   ``sd2-768-v`` (v-prediction, as diffusers' ``from_single_file`` reads SD 2.x files)
   unless it is an inpainting model, told ``prediction_type="epsilon"`` (then
   ``sd2-512``), or marked v-prediction by a ``v_pred`` key (ComfyUI's marker);
   ``sdxl`` or ``sdxl-refiner``. Tensors cannot tell epsilon from v-prediction, so
   the caller's ``prediction_type`` wins over all of this.
3. :func:`fit_configs` reads the shape-determined config fields (channels, layers,
   transformer depth, vocabulary, cross-attention and added-embedding widths ...) from
   the tensors. For the real models they equal the skeleton; for fine-tunes with other
   widths (and the tiny test models) they make the skeleton fit. Fields that shapes
   cannot tell (activations, the VAE scaling factor, the scheduler) come from the
   skeleton; attention heads too, except SD 2.x/SDXL UNets whose heads are 64 wide
   (``num_head_channels: 64`` in their original configs), so their count follows the width.
4. diffusers' own conversions (``convert_ldm_unet_checkpoint``,
   ``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint``,
   ``convert_open_clip_checkpoint``; see :mod:`~nodeflow.models.single_file_text`)
   rename the keys and each component is loaded with ``strict=True``: a checkpoint
   missing a tensor is an error, never a silently random-initialised layer. (diffusers'
   ``from_single_file`` loads with ``strict=False`` when accelerate is absent, which is
   why we do not call it.)

A caller may pass its own diffusers-layout config folder as ``config=``; it is then used
as it is, without fitting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..resources import CONFIGS_DIR  # the shipped config skeletons, one folder per variant
from .families import ModelFamily, checkpoint_family, pipeline_options
from .single_file_text import LAYOUTS, build_tokenizer, clip_state_dict, fit_text_encoder
from .store import DTYPES, PREDICTION_TYPES, SDComponents, pipeline_scheduler_config

T = TypeVar("T")

#: The CLIP BPE tokenizer files shared by every family (the skeletons reuse them).
TOKENIZER_DIR = CONFIGS_DIR / "sd1" / "tokenizer"

SAFETENSORS_SUFFIXES = frozenset({".safetensors"})
#: Suffixes of pickle-based files: unpickling can run arbitrary code.
PICKLE_SUFFIXES = frozenset({".ckpt", ".bin", ".pt", ".pth"})

_UNET = "model.diffusion_model."
_VAE = "first_stage_model."
_CLIP = "cond_stage_model.transformer."
#: Key prefixes of the components we load; everything else (EMA copies, optimizer state) is dropped.
_KEEP = (_UNET, _VAE, "cond_stage_model.", "conditioner.embedders.")
#: SD 2.x and SDXL UNets use 64-wide attention heads (``num_head_channels: 64``).
_HEAD_WIDTH = 64
#: How many size/crop/score numbers SDXL's time ids hold: base (orig, crop, target) and refiner (orig, crop, score).
_TIME_IDS = {ModelFamily.SDXL: 6, ModelFamily.SDXL_REFINER: 5}


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


def detect_family(checkpoint: dict[str, torch.Tensor], name: str = "checkpoint") -> ModelFamily:
    """The family of an original-layout checkpoint; :class:`CheckpointError` when it is none we load."""
    family = checkpoint_family(checkpoint)
    if family is None or _UNET + "input_blocks.0.0.weight" not in checkpoint:
        raise CheckpointError(
            f"{name}: not an SD 1.x checkpoint in the original LDM layout, nor an SD 2.x or SDXL one "
            f"(no '{_UNET}input_blocks.0.0.weight', or no '{_CLIP}*', 'cond_stage_model.model.*' "
            "or 'conditioner.embedders.*' text-encoder keys)"
        )
    return family


def detect_variant(checkpoint: dict[str, torch.Tensor], name: str = "checkpoint") -> str:
    """``"sd1"`` or ``"sd1-inpaint"`` for an SD 1.x LDM checkpoint; :class:`CheckpointError` otherwise.

    Inpainting UNets take latents + mask + masked-image latents, so their first conv
    has 9 input channels instead of 4. Other families are named in the error; see
    :func:`detect_family` and :func:`skeleton_for` for them.
    """
    if any(k.startswith("conditioner.embedders.") for k in checkpoint):
        raise CheckpointError(f"{name}: an SDXL checkpoint, not SD 1.x")
    if any(k.startswith("cond_stage_model.model.") for k in checkpoint):
        raise CheckpointError(f"{name}: an SD 2.x (OpenCLIP) checkpoint, not SD 1.x")
    detect_family(checkpoint, name)
    return "sd1-inpaint" if _is_inpaint(checkpoint) else "sd1"


def _is_inpaint(checkpoint: dict[str, torch.Tensor]) -> bool:
    return int(checkpoint[_UNET + "input_blocks.0.0.weight"].shape[1]) == 9


def skeleton_for(family: ModelFamily, checkpoint: dict[str, torch.Tensor], prediction_type: str | None = None) -> str:
    """The shipped skeleton (a folder of :data:`CONFIGS_DIR`) for a checkpoint of ``family``.

    SD 2.x: ``sd2-512`` (epsilon) for ``prediction_type="epsilon"`` and inpainting
    models, else ``sd2-768-v`` (v-prediction), as diffusers' ``from_single_file`` does.
    """
    if family is ModelFamily.SD1:
        return "sd1-inpaint" if _is_inpaint(checkpoint) else "sd1"
    if family is ModelFamily.SD2:
        wants_eps = prediction_type == "epsilon" or (prediction_type is None and _is_inpaint(checkpoint) and "v_pred" not in checkpoint)
        return "sd2-512" if wants_eps else "sd2-768-v"
    return "sdxl" if family is ModelFamily.SDXL else "sdxl-refiner"


def fit_configs(checkpoint: dict[str, torch.Tensor], family: ModelFamily | None = None) -> dict[str, dict[str, Any]]:
    """Config fields read from tensor shapes: ``{"unet": {...}, "vae": {...}, "text_encoder": {...}, ...}``.

    One entry per text encoder of the family (``text_encoder`` and/or ``text_encoder_2``).
    These override the skeleton so checkpoints of other widths load.
    """
    family = family or detect_family(checkpoint)
    fitted = {"unet": _fit_unet(checkpoint, family), "vae": _fit_vae(checkpoint)}
    for layout in LAYOUTS[family]:
        fitted[layout.slot] = fit_text_encoder(checkpoint, layout)
    return fitted


def _unet_levels(ckpt: dict[str, torch.Tensor]) -> tuple[list[int], list[int], int]:
    """Per level: output channels and transformer depth (0: no attention); and the resnets per level."""
    channels: list[int] = []
    depths: list[int] = []
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
                depths.append(_depth(ckpt, f"{_UNET}input_blocks.{n}.1."))
            resnets_in_level += 1
        n += 1
    return channels, depths, layers_per_block or resnets_in_level


def _depth(ckpt: dict[str, torch.Tensor], block: str) -> int:
    """How many transformer blocks the spatial transformer at ``block`` holds (0: none)."""
    if block + "proj_in.weight" not in ckpt:
        return 0
    pattern = re.compile(re.escape(block) + r"transformer_blocks\.(\d+)\.")
    return len({m.group(1) for k in ckpt if (m := pattern.match(k))})


def _fit_unet(ckpt: dict[str, torch.Tensor], family: ModelFamily = ModelFamily.SD1) -> dict[str, Any]:
    channels, depths, layers_per_block = _unet_levels(ckpt)
    fitted: dict[str, Any] = {
        "in_channels": int(ckpt[_UNET + "input_blocks.0.0.weight"].shape[1]),
        "out_channels": int(ckpt[_UNET + "out.2.weight"].shape[0]),
        "block_out_channels": channels,
        "layers_per_block": layers_per_block,
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        "up_block_types": ["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depths)],
    }
    fitted.update(_fit_attention(ckpt))
    mid = _depth(ckpt, f"{_UNET}middle_block.1.")
    if any(d > 1 for d in depths) or mid > 1:
        fitted["transformer_layers_per_block"] = _transformer_depths(depths, mid)
    if family is not ModelFamily.SD1:
        fitted["attention_head_dim"] = [max(1, c // _HEAD_WIDTH) for c in channels]
    if family.is_sdxl:
        fitted.update(_fit_added_embedding(ckpt, family))
    return fitted


def _fit_attention(ckpt: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Cross-attention width and projection kind; a UNet without attention keeps the skeleton's (the strict load tells)."""
    attn2_k = next((v for k, v in ckpt.items() if k.startswith(_UNET) and k.endswith("attn2.to_k.weight")), None)
    proj_in = next((v for k, v in ckpt.items() if k.startswith(_UNET) and k.endswith(".proj_in.weight")), None)
    fitted: dict[str, Any] = {}
    if attn2_k is not None:
        fitted["cross_attention_dim"] = int(attn2_k.shape[1])
    if proj_in is not None:
        fitted["use_linear_projection"] = proj_in.ndim == 2  # SD 1.x: 1x1 convs; 2.x-style fine-tunes: linear
    return fitted


def _transformer_depths(depths: list[int], mid: int) -> int | list[int]:
    """diffusers' ``transformer_layers_per_block``: one int when uniform, else one per level.

    Levels without attention get 1 (their value is unused), except the last, whose
    value diffusers also gives the mid block.
    """
    if {d for d in depths if d} <= {mid}:
        return mid
    per_level = [d or 1 for d in depths]
    per_level[-1] = depths[-1] or mid
    return per_level


def _fit_added_embedding(ckpt: dict[str, torch.Tensor], family: ModelFamily) -> dict[str, Any]:
    """SDXL's added conditioning: [pooled text embedding, sinusoidal time ids] -> ``label_emb``."""
    linear = ckpt.get(_UNET + "label_emb.0.0.weight")
    if linear is None:
        return {}
    width = int(linear.shape[1])
    pooled_layout = next(layout for layout in LAYOUTS[family] if layout.slot == "text_encoder_2")
    projection = ckpt.get(pooled_layout.prefix + "text_projection")
    fitted: dict[str, Any] = {"addition_embed_type": "text_time", "projection_class_embeddings_input_dim": width}
    if projection is not None and (width - int(projection.shape[1])) % _TIME_IDS[family] == 0:
        fitted["addition_time_embed_dim"] = (width - int(projection.shape[1])) // _TIME_IDS[family]
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


def load_single_file(
    path: str | Path,
    dtype: torch.dtype | str = torch.float32,
    device: torch.device | str = "cpu",
    config: str | Path | None = None,
    allow_pickle: bool = False,
    prediction_type: str | None = None,
) -> SDComponents:
    """Load an SD 1.x, SD 2.x or SDXL (base or refiner) single-file checkpoint offline.

    ``config`` is a diffusers-layout folder with ``unet/``, ``vae/``, the family's text
    encoder and ``scheduler/`` configs (and optionally tokenizers); by default the
    shipped skeleton for the checkpoint (:func:`skeleton_for`) is used and fitted to the
    tensor shapes. ``prediction_type`` (``"epsilon"``, ``"v_prediction"``, ``"sample"``)
    overrides the inferred one. ``dtype`` is a torch dtype or ``"fp32"``/``"fp16"``/``"bf16"``.
    Raises :class:`CheckpointError` (or :class:`PickleRefused`) with the file's name.
    """
    path = Path(path)
    if prediction_type not in PREDICTION_TYPES:
        raise CheckpointError(f"{path}: prediction_type must be one of {[t for t in PREDICTION_TYPES if t]}, not {prediction_type!r}")
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    checkpoint = read_state_dict(path, allow_pickle=allow_pickle)
    family = detect_family(checkpoint, str(path))
    variant = skeleton_for(family, checkpoint, prediction_type)
    folder = CONFIGS_DIR / variant if config is None else Path(config)
    if not (folder / "unet" / "config.json").is_file():
        raise CheckpointError(f"{folder}: not a diffusers config folder (no unet/config.json)")
    fitted = _converted(fit_configs, checkpoint, family, path=path, what="model") if config is None else {}
    if "v_pred" in checkpoint and prediction_type is None:
        prediction_type = "v_prediction"  # the file says so (the key ComfyUI and A1111 write)
    modules = _build_modules(_kept(checkpoint, torch_dtype, device), family, folder, fitted, path)
    for module in modules.values():
        module.to(device)
        module.requires_grad_(False)
    scheduler_config = _scheduler_config(folder, family, prediction_type)
    tokenizers = {layout.tokenizer_slot: build_tokenizer([folder, CONFIGS_DIR / variant], layout.tokenizer_slot, TOKENIZER_DIR)
                  for layout in LAYOUTS[family]}
    info = {"format": "single_file", "family": family.value, "variant": variant, "config": str(folder), "device": str(device),
            "dtype": next((name for name, t in DTYPES.items() if t == torch_dtype), str(torch_dtype)), "scheduler": scheduler_config.get("_class_name")}
    return SDComponents(
        tokenizer=tokenizers.get("tokenizer"), text_encoder=modules.get("text_encoder"), unet=modules["unet"], vae=modules["vae"],
        scheduler_config=scheduler_config, source=str(path), info=info, family=family,
        tokenizer_2=tokenizers.get("tokenizer_2"), text_encoder_2=modules.get("text_encoder_2"),
        pipeline_config=pipeline_options(family, _read_json(folder / "model_index.json", missing_ok=True)),
    )


def _kept(checkpoint: dict[str, torch.Tensor], dtype: torch.dtype, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The components' tensors only (EMA copies, optimizer leftovers dropped), cast to ``dtype`` on ``device``, aligned.

    Casting (and moving) the tensors before loading rather than the modules after:
    diffusers warns on ``module.to(dtype)``, a half-precision model never holds a
    full-precision copy, and a GPU model never holds a CPU copy (tensor by tensor
    from the memory-mapped file straight to the device).
    """
    return {k: _aligned(v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device))
            for k, v in checkpoint.items() if k.startswith(_KEEP)}


def _scheduler_config(folder: Path, family: ModelFamily, prediction_type: str | None) -> dict[str, Any]:
    """The skeleton's scheduler config normalised as the family's pipeline does, so a single file and a folder step alike."""
    config = pipeline_scheduler_config(_read_json(folder / "scheduler" / "scheduler_config.json"), fix_legacy=not family.is_sdxl)
    if prediction_type is not None:
        config["prediction_type"] = prediction_type
    return config


def _build_modules(
    checkpoint: dict[str, torch.Tensor], family: ModelFamily, folder: Path, fitted: dict[str, dict[str, Any]], path: Path
) -> dict[str, torch.nn.Module]:
    """The UNet, VAE and text encoder(s), each loaded strictly from ``checkpoint``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    unet_config = {**_read_json(folder / "unet" / "config.json"), **fitted.get("unet", {})}
    unet_state = _converted(convert_ldm_unet_checkpoint, checkpoint, unet_config, path=path, what="UNet")
    unet = _build(UNet2DConditionModel, unet_config, unet_state, path, "UNet")
    vae_config = {**_read_json(folder / "vae" / "config.json"), **fitted.get("vae", {})}
    vae = _build(AutoencoderKL, vae_config, _converted(convert_ldm_vae_checkpoint, checkpoint, vae_config, path=path, what="VAE"), path, "VAE")
    modules: dict[str, torch.nn.Module] = {"unet": unet, "vae": vae}
    for layout in LAYOUTS[family]:
        if not (folder / layout.slot / "config.json").is_file():
            raise CheckpointError(f"{folder}: no {layout.slot}/config.json for the {family.label} checkpoint {path.name}")
        clip_config = CLIPTextConfig.from_pretrained(str(folder / layout.slot), local_files_only=True, **fitted.get(layout.slot, {}))
        cls = CLIPTextModelWithProjection if layout.slot == "text_encoder_2" else CLIPTextModel
        # Built on the meta device like the UNet: random initialisation would be thrown away.
        with torch.device("meta"):
            encoder = cls(clip_config)
        state = clip_state_dict(checkpoint, layout, wrapped=hasattr(encoder, "text_model"), model=encoder)
        _load_strict(encoder, state, path, "text encoder" if layout.slot == "text_encoder" else "second text encoder", assign=True)
        _fill_position_ids(encoder, path)
        modules[layout.slot] = encoder.eval()
    return modules


def _converted(convert: Callable[..., T], *args: Any, path: Path, what: str) -> T:
    """``convert(*args)`` (a diffusers conversion, a fit); a tensor it looks up and misses becomes a :class:`CheckpointError`."""
    try:
        state = convert(*args)
    except KeyError as exc:  # diffusers indexes the keys it knows must exist
        raise CheckpointError(f"{path}: the {what} weights are incomplete: no '{exc.args[0]}' in the checkpoint") from exc
    return state


def _fill_position_ids(encoder: torch.nn.Module, path: Path) -> None:
    """Rebuild CLIP's ``position_ids`` (a non-persistent buffer, so never in a state dict) after a meta build."""
    for name, buffer in list(encoder.named_buffers()):
        if not buffer.is_meta:
            continue
        if not name.endswith("position_ids"):
            raise CheckpointError(f"{path}: text encoder buffer {name} is not in the checkpoint")
        owner_name, _, attr = name.rpartition(".")
        owner = encoder.get_submodule(owner_name)
        owner.register_buffer(attr, torch.arange(buffer.shape[-1]).expand(tuple(buffer.shape)), persistent=False)


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


def _read_json(path: Path, missing_ok: bool = False) -> dict[str, Any]:
    if missing_ok and not path.is_file():
        return {}
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
    "detect_family",
    "detect_variant",
    "fit_configs",
    "is_checkpoint_file",
    "load_single_file",
    "read_state_dict",
    "skeleton_for",
]
