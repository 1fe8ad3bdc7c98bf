"""ControlNets, loaded offline: a diffusers folder, a single ``.safetensors`` file, or the shipped demo one.

* **Folder** (``config.json`` + ``diffusion_pytorch_model.safetensors``): diffusers'
  ``ControlNetModel.from_pretrained`` with ``local_files_only=True``.
* **Single file**, in diffusers' key layout (``controlnet_cond_embedding.*``) or the
  original one (``input_hint_block.*``, optionally under ``control_model.``; renamed with
  diffusers' ``convert_controlnet_checkpoint``). A single file has no config: it is
  fitted from the tensor shapes (channels, layers, attention, hint-encoder widths), and
  what shapes cannot tell (attention heads, activations) comes from the shipped
  skeleton of the family its cross-attention width names (768: SD 1.x, 1024: SD 2.x,
  2048: SDXL). An SDXL ControlNet's added embedding (``add_embedding.*``: pooled text
  and time ids) is fitted from its input width; the time ids' sinusoidal width has no
  weights and is SDXL's 256. Weights load strictly: a missing tensor is an error.
* **Demo folder**: a folder whose ``config.json`` holds a ``nodeflow_demo`` entry
  (``workflows/controlnets/digits-demo``, a few hundred bytes) is an *untrained*
  ControlNet for the embedded digits model, made in memory by diffusers'
  ``ControlNetModel.from_unet`` from that model's UNet (its encoder weights), with the
  hint encoder's last layer and the zero convolutions filled with seeded noise (the
  entry's ``seed``) so that the control image changes the result. It is random: it
  exists so that ``workflows/controlnet.json`` runs as shipped and shows the wiring,
  not to follow any control image meaningfully. (A real ControlNet for the embedded
  model would be a ~5 MB copy of its UNet's encoder; this costs nothing on disk.)
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import torch

from ..resources import CONFIGS_DIR

#: The config key marking a demo ControlNet folder.
DEMO_KEY = "nodeflow_demo"

_SKELETONS = {768: "sd1", 1024: "sd2-512", 2048: "sdxl"}
_LDM_PREFIX = "control_model."
#: SDXL's ``addition_time_embed_dim`` (every published SDXL ControlNet's): tensor shapes cannot tell it.
_SDXL_TIME_WIDTH = 256


class ControlNetLoadError(ValueError):
    """A ControlNet path that cannot be loaded; the message names the file and why."""


def demo_spec(path: str | Path) -> dict[str, Any] | None:
    """The ``nodeflow_demo`` entry of a demo ControlNet folder (``base``, ``seed``, ``hint_channels``), else None."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    spec = json.loads(config.read_text()).get(DEMO_KEY)
    return spec if isinstance(spec, dict) else None


def load_controlnet(path: str | Path, dtype: torch.dtype, device: str, base_unet: Any = None) -> Any:
    """Load the ControlNet at ``path`` (a folder or a ``.safetensors`` file); a demo folder needs its ``base_unet``."""
    from diffusers import ControlNetModel

    spec = demo_spec(path) if Path(path).is_dir() else None
    if spec is not None:
        if base_unet is None:
            raise ControlNetLoadError(f"{path}: a demo ControlNet needs its base model's UNet")
        model = demo_controlnet(base_unet, int(spec.get("seed", 0)), tuple(spec.get("hint_channels", (16, 32, 96, 256))))
    elif Path(path).is_dir():
        if not (Path(path) / "config.json").is_file():
            raise ControlNetLoadError(f"{path}: not a diffusers ControlNet folder (no config.json)")
        model = ControlNetModel.from_pretrained(str(path), local_files_only=True, low_cpu_mem_usage=False)
    else:
        model = _from_single_file(Path(path))
    # diffusers' ModelMixin.to warns about fp32-kept modules on every cast, even when it has none:
    # cast only when the precision really changes.
    if model.dtype != dtype:
        model = model.to(dtype=dtype)
    return model.to(device=device).eval().requires_grad_(False)


def demo_controlnet(unet: Any, seed: int, hint_channels: tuple[int, ...]) -> Any:
    """An untrained ControlNet from ``unet`` whose zero layers hold seeded noise (see the module docstring)."""
    from diffusers import ControlNetModel

    model = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=hint_channels)
    generator = torch.Generator("cpu").manual_seed(seed)
    embedding = model.controlnet_cond_embedding
    # Every layer from_unet does not copy from the UNet: the hint encoder (else torch's global
    # random state would make each build differ) and the zero layers (else it would add zeros).
    with torch.no_grad():
        for layer in [embedding.conv_in, *embedding.blocks]:
            fan_in = layer.weight[0].numel()
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / fan_in**0.5)
            layer.bias.zero_()
        for layer in [embedding.conv_out, *model.controlnet_down_blocks, model.controlnet_mid_block]:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.05)
            layer.bias.zero_()
    return model


def _from_single_file(path: Path) -> Any:
    from diffusers import ControlNetModel
    from safetensors.torch import load_file

    if path.suffix != ".safetensors":
        raise ControlNetLoadError(f"{path}: ControlNet files load from .safetensors only (pickle files can run code)")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ControlNetLoadError(f"{path}: not a readable .safetensors file ({exc})") from exc
    if "controlnet_cond_embedding.conv_in.weight" not in state:
        state = _convert_original(state, path)
    config = fit_controlnet_config(state, path)
    with torch.device("meta"):
        model = ControlNetModel.from_config(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ControlNetLoadError(f"{path}: the ControlNet weights do not fit: {len(missing)} missing (e.g. {missing[:2]}),"
                                  f" {len(unexpected)} unexpected (e.g. {unexpected[:2]})")
    model.load_state_dict({k: v.clone() for k, v in state.items()}, assign=True)
    return model


def _convert_original(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Original-layout keys renamed to diffusers' with diffusers' own converter."""
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    bare = {k.removeprefix(_LDM_PREFIX): v for k, v in state.items()}
    if "input_hint_block.0.weight" not in bare:
        raise ControlNetLoadError(f"{path}: not a ControlNet (no controlnet_cond_embedding.* or input_hint_block.* tensors)")
    levels = _ldm_layers_per_block(bare)
    try:
        converted = convert_controlnet_checkpoint(bare, {"layers_per_block": levels})
    except KeyError as exc:
        raise ControlNetLoadError(f"{path}: the ControlNet weights are incomplete: no '{exc.args[0]}'") from exc
    return {k: v for k, v in converted.items() if v is not None}


def _ldm_layers_per_block(state: dict[str, torch.Tensor]) -> int:
    # input_blocks.1.. hold `layers` resnets, then a downsampler (".0.op"), level after level.
    n = 1
    while f"input_blocks.{n}.0.op.weight" not in state and any(k.startswith(f"input_blocks.{n}.") for k in state):
        n += 1
    return n - 1


def fit_controlnet_config(state: dict[str, torch.Tensor], path: Path | str = "controlnet") -> dict[str, Any]:
    """A ``ControlNetModel`` config from diffusers-layout tensors, with the family skeleton for what shapes cannot tell."""
    levels = sorted({int(m.group(1)) for k in state if (m := re.match(r"down_blocks\.(\d+)\.resnets\.0\.conv1\.weight", k))})
    if not levels:
        raise ControlNetLoadError(f"{path}: no down_blocks.*.resnets tensors: not a ControlNet")
    layers = len({m.group(1) for k in state if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", k))})
    attn_k = next((v for k, v in state.items() if k.endswith("attn2.to_k.weight")), None)
    cross = int(attn_k.shape[1]) if attn_k is not None else 768
    skeleton = _skeleton(cross)
    channels = [int(state[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in levels]
    depths = [_depth(state, f"down_blocks.{i}.attentions.0.") for i in levels]
    fitted: dict[str, Any] = {
        "in_channels": int(state["conv_in.weight"].shape[1]),
        "conditioning_channels": int(state["controlnet_cond_embedding.conv_in.weight"].shape[1]),
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        "cross_attention_dim": cross,
        "conditioning_embedding_out_channels": _hint_channels(state),
        "transformer_layers_per_block": [d or 1 for d in depths],
    }
    return {**skeleton, **fitted, **_attention_fields(state, cross, channels)}


def _hint_channels(state: dict[str, torch.Tensor]) -> list[int]:
    """The hint encoder's widths: its first conv, then each stride-2 block (the odd ones)."""
    widths = [int(state["controlnet_cond_embedding.conv_in.weight"].shape[0])]
    k = 1
    while f"controlnet_cond_embedding.blocks.{k}.weight" in state:
        widths.append(int(state[f"controlnet_cond_embedding.blocks.{k}.weight"].shape[0]))
        k += 2
    return widths


def _attention_fields(state: dict[str, torch.Tensor], cross: int, channels: list[int]) -> dict[str, Any]:
    """Projection kind, head counts (SD 2.x and SDXL: 64-wide heads) and the added embedding, from the tensors."""
    fields: dict[str, Any] = {}
    proj_in = next((v for k, v in state.items() if k.endswith(".proj_in.weight")), None)
    if proj_in is not None:
        fields["use_linear_projection"] = proj_in.ndim == 2
    if cross != 768:
        fields["attention_head_dim"] = [max(1, c // 64) for c in channels]
    added = state.get("add_embedding.linear_1.weight")
    if added is None:
        fields.update({"addition_embed_type": None, "addition_time_embed_dim": None, "projection_class_embeddings_input_dim": None})
    else:  # SDXL's [pooled text, sinusoidal time ids] -> add_embedding; the time-id width has no weights: SDXL's 256
        fields.update({"addition_embed_type": "text_time", "projection_class_embeddings_input_dim": int(added.shape[1]),
                       "addition_time_embed_dim": _SDXL_TIME_WIDTH})
    return fields


def _skeleton(cross_attention_dim: int) -> dict[str, Any]:
    """The family skeleton's UNet config, reduced to the fields ``ControlNetModel`` takes."""
    from diffusers import ControlNetModel

    name = _SKELETONS.get(cross_attention_dim, "sd1")
    config = json.loads((CONFIGS_DIR / name / "unet" / "config.json").read_text())
    accepted = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}
    return {k: v for k, v in config.items() if k in accepted}


def _depth(state: dict[str, torch.Tensor], block: str) -> int:
    pattern = re.compile(re.escape(block) + r"transformer_blocks\.(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def width_label(width: int) -> str:
    """A label for the model family a cross-attention (text) width names."""
    return {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}.get(width, f"a {width}-wide text encoder")


def controlnet_family(controlnet: Any) -> str:
    """A label for the model family a ControlNet's cross-attention width names."""
    return width_label(int(controlnet.config.cross_attention_dim))


__all__ = ["DEMO_KEY", "ControlNetLoadError", "controlnet_family", "demo_controlnet", "demo_spec", "fit_controlnet_config",
           "load_controlnet", "width_label"]
