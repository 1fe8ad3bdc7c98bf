"""Conditioning arithmetic: concatenate or average two prompts' embeddings (pure tensor operations).

Both follow ComfyUI's nodes of the same name (``nodes.py``: ``ConditioningConcat``,
``ConditioningAverage``): the result keeps everything but the embeddings from
``conditioning_to``. A ``conditioning_from`` holding one prompt is applied to every
prompt of ``conditioning_to``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from nodeflow.node import Context, Input, Output, node
from nodeflow.values import Conditioning


def _batch_to(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``source`` with ``target``'s batch size (a single prompt is repeated); both are [B, L, D]."""
    if source.shape[0] == target.shape[0]:
        return source
    if source.shape[0] == 1:
        return source.expand(target.shape[0], -1, -1)
    raise ValueError(f"conditioning_from holds {source.shape[0]} prompts, conditioning_to {target.shape[0]}: they must match, or from must hold one")


def _check_width(to: torch.Tensor, source: torch.Tensor) -> None:
    if to.shape[-1] != source.shape[-1]:
        raise ValueError(
            f"conditioning_from is {source.shape[-1]} wide and conditioning_to {to.shape[-1]}: "
            "they come from different text encoders (model families)"
        )


@node("sd.conditioning_concat", display_name="Conditioning Concat", category="sd/conditioning")
class ConditioningConcat:
    """Append ``conditioning_from``'s embeddings to ``conditioning_to``'s along the sequence.

    The UNet then attends to both prompts' tokens at once: ``[B, L_to + L_from, D]``,
    as ComfyUI's ConditioningConcat. Unlike one long prompt, each part was encoded on
    its own, so the words of one do not colour the other's.
    """

    conditioning_to = Input("CONDITIONING")
    conditioning_from = Input("CONDITIONING")
    conditioning = Output("CONDITIONING")

    def run(self, ctx: Context, conditioning_to: Conditioning, conditioning_from: Conditioning) -> Conditioning:
        to, source = conditioning_to.embeddings, conditioning_from.embeddings
        _check_width(to, source)
        source = _batch_to(source.to(device=to.device, dtype=to.dtype), to)
        return dataclasses.replace(conditioning_to, embeddings=torch.cat((to, source), dim=1))


@node("sd.conditioning_average", display_name="Conditioning Average", category="sd/conditioning")
class ConditioningAverage:
    """Blend two prompts: ``to * to_strength + from * (1 - to_strength)`` (ComfyUI's ConditioningAverage).

    The result has ``conditioning_to``'s length: a longer ``from`` is cut to it, a
    shorter one is padded with zeros, as ComfyUI does.
    """

    conditioning_to = Input("CONDITIONING")
    conditioning_from = Input("CONDITIONING")
    to_strength = Input("FLOAT", default=1.0, min=0.0, max=1.0, step=0.01, description="1: only conditioning_to; 0: only conditioning_from")
    conditioning = Output("CONDITIONING")

    def run(self, ctx: Context, conditioning_to: Conditioning, conditioning_from: Conditioning, to_strength: float) -> Conditioning:
        to, source = conditioning_to.embeddings, conditioning_from.embeddings
        _check_width(to, source)
        source = _batch_to(source.to(device=to.device, dtype=to.dtype), to)[:, : to.shape[1]]
        if source.shape[1] < to.shape[1]:
            zeros = source.new_zeros(source.shape[0], to.shape[1] - source.shape[1], source.shape[2])
            source = torch.cat([source, zeros], dim=1)
        blended = torch.mul(to, to_strength) + torch.mul(source, 1.0 - to_strength)
        return dataclasses.replace(conditioning_to, embeddings=blended)


NODES: list[Any] = [ConditioningConcat, ConditioningAverage]
