"""LoRA: low-rank weight deltas merged into new copies of the UNet and text encoder(s).

For every targeted layer with weight ``W`` the merged weight is::

    W' = W + (strength * (alpha / rank)) * (up @ down)

computed in float32 and cast back to ``W``'s dtype (``alpha`` defaults to ``rank`` when
the file has none, i.e. a scale of 1). Convolution LoRAs multiply the flattened factors
and reshape to ``W``'s shape. Merging happens once, into a :func:`~.derive.shared_copy`
of the base, so inference costs nothing extra and the shared base is never modified.

Formats read (``.safetensors``; pickle files only with the store's opt-in):

* kohya / A1111: ``lora_unet_<module_path_with_underscores>.lora_down.weight``,
  ``.lora_up.weight``, ``.alpha``; ``lora_te_...`` for the text encoder, and for SDXL
  ``lora_te1_...`` (CLIP-L, ``text_encoder``) and ``lora_te2_...`` (OpenCLIP-bigG,
  ``text_encoder_2``). kohya trains SDXL on the original SGM UNet, so SDXL files name
  UNet layers the SGM way (``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``);
  those names are mapped to diffusers' modules with diffusers' own LoRA conversion
  (``_maybe_map_sgm_blocks_to_diffusers`` and ``_convert_unet_lora_key``).
* diffusers / peft: ``unet.<module.path>.lora_A.weight`` and ``.lora_B.weight``
  (``text_encoder.`` / ``text_encoder_2.`` for the text encoders), also the older
  ``.lora.down.weight``, ``.lora_linear_layer.down.weight`` and attention-processor
  ``.processor.to_q_lora.down.weight``.

Anything else (LoHa, LoKr, DoRA) is refused with the offending keys named rather than
half-applied.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..values import Lora, LoraLayer
from .derive import replace_parameter, shared_copy
from .single_file import read_state_dict

_PARTS = (
    (".lora_down.weight", "down"), (".lora_up.weight", "up"),
    (".lora_A.weight", "down"), (".lora_B.weight", "up"),
    (".lora.down.weight", "down"), (".lora.up.weight", "up"),
    (".lora_linear_layer.down.weight", "down"), (".lora_linear_layer.up.weight", "up"),
    (".alpha", "alpha"),
)
_PREFIXES = (
    ("lora_unet_", "unet"), ("lora_te_", "text_encoder"), ("lora_te1_", "text_encoder"), ("lora_te2_", "text_encoder_2"),
    ("unet.", "unet"), ("text_encoder.", "text_encoder"), ("text_encoder_2.", "text_encoder_2"),
)
_PROCESSOR = re.compile(r"\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
#: kohya names of the SGM UNet's layers (SDXL), as opposed to diffusers' (SD 1.x kohya files).
_SGM = re.compile(r"^(input_blocks|middle_block|output_blocks|time_embed|label_emb)_\d|^out_2$")


class LoraError(ValueError):
    """A LoRA file that cannot be applied; the message names the file and the keys at fault."""


def read_lora(path: str | Path, allow_pickle: bool = False) -> Lora:
    """Read and parse a LoRA file (see the module docstring for the formats)."""
    return parse_lora(read_state_dict(path, allow_pickle=allow_pickle), str(path))


def parse_lora(state_dict: dict[str, torch.Tensor], source: str = "LoRA") -> Lora:
    """Group a LoRA state dict into :class:`LoraLayer` s per component; :class:`LoraError` on unknown keys."""
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        target, rest = next(((t, key[len(p):]) for p, t in _PREFIXES if key.startswith(p)), (None, key))
        rest = _processor_to_module(rest)
        part = next(((rest[: -len(s)], kind) for s, kind in _PARTS if rest.endswith(s)), None)
        if target is None or part is None:
            unknown.append(key)
            continue
        parts.setdefault((target, part[0]), {})[part[1]] = tensor
    if unknown:
        raise LoraError(
            f"{source}: {len(unknown)} keys are not a supported LoRA layout (e.g. {', '.join(unknown[:4])}); "
            "supported: kohya lora_unet_/lora_te_/lora_te1_/lora_te2_ and diffusers/peft unet./text_encoder./text_encoder_2. lora_A/lora_B"
        )
    lora = Lora(source=source)
    for (target, module), found in parts.items():
        if "down" not in found or "up" not in found:
            raise LoraError(f"{source}: layer {module} has no {'up' if 'down' in found else 'down'} weight")
        alpha = float(found["alpha"].item()) if "alpha" in found else None
        getattr(lora, target)[module] = LoraLayer(found["down"], found["up"], alpha)
    return lora


def merge_lora(module: torch.nn.Module, layers: dict[str, LoraLayer], strength: float, source: str = "LoRA") -> torch.nn.Module:
    """A new module with ``layers`` merged at ``strength``; ``module`` itself is left untouched.

    Returns ``module`` itself when there is nothing to merge (no layers or strength 0).
    """
    if not layers or strength == 0:
        return module
    index = _module_index(module)
    index |= _sgm_index([k for k in layers if k not in index and _SGM.match(k)], module, source)
    merged = shared_copy(module)
    for key, layer in layers.items():
        name = index.get(key)
        if name is None:
            raise LoraError(f"{source}: layer {key} matches no layer of the {type(module).__name__}")
        weight: torch.Tensor = module.get_submodule(name).weight  # type: ignore[assignment]
        if layer.up.shape[0] * layer.down[0].numel() != weight.numel():
            raise LoraError(
                f"{source}: layer {key} has shape {tuple(layer.up.shape[:1]) + tuple(layer.down.shape[1:])} "
                f"but the model's weight is {tuple(weight.shape)} (a LoRA for another model?)"
            )
        new = weight.float() + (strength * layer.scale) * layer.delta(weight.shape, weight.device)
        replace_parameter(merged, f"{name}.weight", new.to(weight.dtype))
    return merged


def _module_index(module: torch.nn.Module) -> dict[str, str]:
    """LoRA layer name -> module name: dotted and underscore forms, with and without ``text_model.``.

    transformers >= 5.6 dropped CLIPTextModel's ``text_model`` wrapper, while LoRA files
    keep naming it, so both spellings resolve.
    """
    index: dict[str, str] = {}
    for name, sub in module.named_modules():
        if not isinstance(getattr(sub, "weight", None), torch.Tensor) or not name:
            continue
        for alias in (name, f"text_model.{name}"):
            index[alias] = name
            index[alias.replace(".", "_")] = name
    return index


def _sgm_index(keys: list[str], unet: torch.nn.Module, source: str) -> dict[str, str]:
    """kohya SGM layer names (SDXL) -> the diffusers UNet's module names, by diffusers' own mapping.

    The block renumbering depends on the UNet's ``layers_per_block``, so it is done
    against the model being merged into.
    """
    if not keys:
        return {}
    config = getattr(unet, "config", None)
    if config is None or not hasattr(config, "layers_per_block"):
        raise LoraError(f"{source}: layers named the SGM way ({keys[0]}) need a UNet, not a {type(unet).__name__}")
    from diffusers.loaders.lora_conversion_utils import _convert_unet_lora_key, _maybe_map_sgm_blocks_to_diffusers

    # diffusers renames whole keys: give it kohya keys whose values remember the short name.
    renamed = _maybe_map_sgm_blocks_to_diffusers({f"lora_unet_{k}.lora_down.weight": k for k in keys}, config)
    modules = {name for name, _ in unet.named_modules()}
    index = {}
    for new_key, original in renamed.items():
        name = _processor_to_module(_convert_unet_lora_key(new_key)).removesuffix(".lora.down.weight")
        if name in modules:  # else the merge reports the layer as matching nothing
            index[original] = name
    return index


def _processor_to_module(key: str) -> str:
    """Old attention-processor keys (``attn1.processor.to_q_lora.down.weight``) as module keys (``attn1.to_q.lora.down.weight``)."""
    return _PROCESSOR.sub(lambda m: f".{'to_out.0' if m[1] == 'to_out' else m[1]}.lora.{m[2]}.weight", key)


__all__ = ["Lora", "LoraError", "LoraLayer", "merge_lora", "parse_lora", "read_lora"]
