"""LoRA training: low-rank adapters on the attention projections of copies of the UNet and text encoder.

As diffusers' ``examples/dreambooth/train_dreambooth_lora.py`` sets them up with peft
(``LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian")``): every targeted
``nn.Linear`` becomes ``base(x) + up(down(x)) * (alpha / rank)`` (peft's order of
operations), ``down`` starts as N(0, 1/rank) and ``up`` as zeros, so training starts
from the model's own outputs. The targets are diffusers' attention projections
(``to_q``, ``to_k``, ``to_v``, ``to_out.0``) in the UNet and CLIP's (``q_proj``,
``k_proj``, ``v_proj``, ``out_proj``) in the text encoder. The ``down`` weights are
drawn from the training run's generator, module by module in ``named_modules`` order,
so a seed fixes them.

The result is a :class:`~nodeflow.values.Lora` (what ``sd.lora`` merges) and a file in
kohya's key layout (``lora_unet_<module>.lora_down.weight``, ``.lora_up.weight``,
``.alpha``; ``lora_te_text_model_<module>...`` for the text encoder), which nodeflow,
diffusers' ``load_lora_weights``, A1111 and ComfyUI read with the same scale.
"""

from __future__ import annotations

from typing import Any

import torch

from ..values import Lora, LoraLayer
from . import frozen_copy

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


class LoraLinear(torch.nn.Module):
    """``base(x) + up(down(x)) * scale``: a frozen linear layer with a trainable low-rank update."""

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.base = base
        self.down = torch.nn.Linear(base.in_features, rank, bias=False, device=base.weight.device, dtype=torch.float32)
        self.up = torch.nn.Linear(rank, base.out_features, bias=False, device=base.weight.device, dtype=torch.float32)
        with torch.no_grad():
            self.down.weight.copy_(torch.randn(self.down.weight.shape, generator=generator) / rank)
            self.up.weight.zero_()
        self.scale = alpha / rank
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # peft's order, base first: autograd then sums the input's gradients in the same order too.
        result = self.base(x)
        update = self.up(self.down(x.to(self.down.weight.dtype))) * self.scale
        return result + update.to(result.dtype)

    def layer(self) -> LoraLayer:
        """The factors now, as a :class:`~nodeflow.values.LoraLayer` (copies, float32, on the CPU)."""
        return LoraLayer(self.down.weight.detach().clone().cpu(), self.up.weight.detach().clone().cpu(), self.alpha)


def targets(module: torch.nn.Module, suffixes: tuple[str, ...]) -> list[str]:
    """Names of the ``nn.Linear`` submodules whose names end with one of ``suffixes``."""
    return [name for name, sub in module.named_modules()
            if isinstance(sub, torch.nn.Linear) and any(name == s or name.endswith(f".{s}") for s in suffixes)]


def with_lora(module: torch.nn.Module, suffixes: tuple[str, ...], rank: int, alpha: float,
              generator: torch.Generator) -> tuple[torch.nn.Module, dict[str, LoraLinear]]:
    """A frozen copy of ``module`` with :class:`LoraLinear` s on the targeted layers; ``module`` is untouched."""
    copy = frozen_copy(module)
    adapters: dict[str, LoraLinear] = {}
    for name in targets(copy, suffixes):
        owner_name, _, attr = name.rpartition(".")
        owner = copy.get_submodule(owner_name) if owner_name else copy
        adapters[name] = LoraLinear(getattr(owner, attr), rank, alpha, generator)
        setattr(owner, attr, adapters[name])
    if not adapters:
        raise ValueError(f"no layer of the {type(module).__name__} is named like {', '.join(suffixes)}: nothing to train")
    return copy.train(), adapters


class LoraTraining:
    """LoRA adapters on copies of a UNet (and optionally a text encoder), and what they become."""

    def __init__(self, unet: Any, text_encoder: Any, rank: int, alpha: float, train_text_encoder: bool,
                 generator: torch.Generator):
        self.rank, self.alpha = rank, alpha
        self.unet, self.unet_layers = with_lora(unet, UNET_TARGETS, rank, alpha, generator)
        self.text_encoder, self.text_layers = text_encoder, {}
        if train_text_encoder:
            self.text_encoder, self.text_layers = with_lora(text_encoder, TEXT_TARGETS, rank, alpha, generator)

    def parameters(self) -> list[torch.nn.Parameter]:
        """What trains, UNet layers first (the order diffusers' script hands its optimizer)."""
        return [p for layers in (self.unet_layers, self.text_layers) for layer in layers.values()
                for p in (layer.down.weight, layer.up.weight)]

    def value(self, source: str = "trained") -> Lora:
        """The adapters now, as a :class:`~nodeflow.values.Lora`."""
        return Lora(unet={k: v.layer() for k, v in self.unet_layers.items()},
                    text_encoder={k: v.layer() for k, v in self.text_layers.items()}, source=source)

    def file_tensors(self) -> dict[str, torch.Tensor]:
        """kohya's layout (see the module docstring)."""
        tensors: dict[str, torch.Tensor] = {}
        for prefix, layers in (("lora_unet_", self.unet_layers), ("lora_te_", self.text_layers)):
            for name, adapter in layers.items():
                if prefix == "lora_te_" and not name.startswith("text_model."):
                    name = f"text_model.{name}"  # transformers >= 5.6 dropped the level kohya names keep
                key = prefix + name.replace(".", "_")
                tensors[f"{key}.lora_down.weight"] = adapter.down.weight
                tensors[f"{key}.lora_up.weight"] = adapter.up.weight
                tensors[f"{key}.alpha"] = torch.tensor(float(self.alpha))
        return tensors


__all__ = ["TEXT_TARGETS", "UNET_TARGETS", "LoraLinear", "LoraTraining", "targets", "with_lora"]
