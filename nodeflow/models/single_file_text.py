"""Text encoders and tokenizers of single-file checkpoints, in their original key layouts.

Where each family keeps its text encoder(s) in a single file, and what they become:

==============  =====================================  ===============================  ==========================
family          checkpoint prefix                      layout                           diffusers component
==============  =====================================  ===============================  ==========================
SD 1.x          ``cond_stage_model.transformer.``      transformers CLIP (ViT-L/14)     ``text_encoder``
SD 2.x          ``cond_stage_model.model.``            OpenCLIP (ViT-H/14)              ``text_encoder``
SDXL base       ``conditioner.embedders.0.transformer.``  transformers CLIP (ViT-L/14)  ``text_encoder``
SDXL base       ``conditioner.embedders.1.model.``     OpenCLIP (ViT-bigG/14)           ``text_encoder_2``
SDXL refiner    ``conditioner.embedders.0.model.``     OpenCLIP (ViT-bigG/14)           ``text_encoder_2``
==============  =====================================  ===============================  ==========================

OpenCLIP weights are renamed (and the fused ``in_proj`` attention split into q/k/v) by
diffusers' ``convert_open_clip_checkpoint``; transformers-layout ones by
``convert_ldm_clip_checkpoint``. SD 2.x conditions on OpenCLIP's *penultimate* layer:
its original code never runs the last residual block, and diffusers stores the encoder
without it (23 of ViT-H's 24 layers). So the last block of an SD 2.x checkpoint is
dropped and the encoder is built one layer shorter than the file's, whatever its depth.
SDXL keeps every layer (its pipelines pick ``hidden_states[-2]`` themselves) and the
bigG encoder keeps its ``text_projection`` for the pooled embedding.

Tokenizers: every family uses CLIP's BPE vocabulary (``configs/sd1/tokenizer``); the
OpenCLIP ones pad with ``"!"`` (id 0) instead of ``<|endoftext|>``, which the skeletons'
``special_tokens_map.json`` records.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .families import ModelFamily


@dataclass(frozen=True)
class TextLayout:
    """Where one text encoder lives in a checkpoint and how it is stored."""

    slot: str  # "text_encoder" or "text_encoder_2"
    prefix: str  # key prefix in the checkpoint
    open_clip: bool  # OpenCLIP layout (else transformers' CLIP layout)
    penultimate: bool = False  # drop the last residual block (SD 2.x)

    @property
    def tokenizer_slot(self) -> str:
        """``tokenizer`` or ``tokenizer_2``, the tokenizer paired with this encoder."""
        return self.slot.replace("text_encoder", "tokenizer")


LAYOUTS: dict[ModelFamily, tuple[TextLayout, ...]] = {
    ModelFamily.SD1: (TextLayout("text_encoder", "cond_stage_model.transformer.", open_clip=False),),
    ModelFamily.SD2: (TextLayout("text_encoder", "cond_stage_model.model.", open_clip=True, penultimate=True),),
    ModelFamily.SDXL: (
        TextLayout("text_encoder", "conditioner.embedders.0.transformer.", open_clip=False),
        TextLayout("text_encoder_2", "conditioner.embedders.1.model.", open_clip=True),
    ),
    ModelFamily.SDXL_REFINER: (TextLayout("text_encoder_2", "conditioner.embedders.0.model.", open_clip=True),),
}
"""The text encoders of each family, in the order of their slots."""

_BLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.")


def fit_text_encoder(ckpt: dict[str, torch.Tensor], layout: TextLayout) -> dict[str, Any]:
    """CLIPTextConfig fields read from the tensor shapes of one text encoder.

    Attention heads cannot be read from shapes; they come from the skeleton.
    """
    if not layout.open_clip:
        sd = clip_state_dict(ckpt, layout, wrapped=False)
        layers = len({int(m.group(1)) for k in sd if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
        tokens = sd["embeddings.token_embedding.weight"]
        positions = sd["embeddings.position_embedding.weight"]
        fc1 = sd["encoder.layers.0.mlp.fc1.weight"]
    else:
        p = layout.prefix
        layers = len(_open_clip_blocks(ckpt, p)) - (1 if layout.penultimate else 0)
        tokens, positions = ckpt[p + "token_embedding.weight"], ckpt[p + "positional_embedding"]
        fc1 = ckpt[p + "transformer.resblocks.0.mlp.c_fc.weight"]
    fitted = {
        "vocab_size": int(tokens.shape[0]),
        "hidden_size": int(tokens.shape[1]),
        "max_position_embeddings": int(positions.shape[0]),
        "num_hidden_layers": layers,
        "intermediate_size": int(fc1.shape[0]),
    }
    if layout.slot == "text_encoder_2" and layout.prefix + "text_projection" in ckpt:
        fitted["projection_dim"] = int(ckpt[layout.prefix + "text_projection"].shape[1])
    return fitted


def _open_clip_blocks(ckpt: dict[str, torch.Tensor], prefix: str) -> list[int]:
    found = {int(m.group(1)) for k in ckpt if k.startswith(prefix) and (m := _BLOCK.match(k[len(prefix):]))}
    return sorted(found)


def clip_state_dict(ckpt: dict[str, torch.Tensor], layout: TextLayout, wrapped: bool, model: Any = None) -> dict[str, torch.Tensor]:
    """One text encoder's weights under transformers' names.

    ``wrapped``: keep the ``text_model.`` level (``CLIPTextModelWithProjection`` has it;
    ``CLIPTextModel`` lost it in transformers 5.6). ``model`` (OpenCLIP only) gives the
    hidden size when the file has no ``text_projection`` to read it from.
    """
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    if layout.open_clip:
        own = {k: v for k, v in ckpt.items() if k.startswith(layout.prefix)}
        if layout.penultimate:
            last = _open_clip_blocks(own, layout.prefix)[-1:]
            own = {k: v for k, v in own.items() if not k.startswith(f"{layout.prefix}transformer.resblocks.{last[0]}.")} if last else own
        sd = convert_open_clip_checkpoint(model, own, prefix=layout.prefix)
    else:
        own = {k: v for k, v in ckpt.items() if k.startswith(layout.prefix)}
        sd = convert_ldm_clip_checkpoint(own)
    # position_ids is a buffer that old checkpoints saved; the model rebuilds it.
    sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
    if layout.open_clip and not layout.slot.endswith("_2"):
        sd.pop("text_projection.weight", None)  # SD 2.x's CLIPTextModel has no projection
    return sd if wrapped else {k.removeprefix("text_model."): v for k, v in sd.items()}


def build_tokenizer(folders: list[Path], slot: str, bpe_dir: Path) -> Any:
    """The CLIP tokenizer for ``slot`` (``tokenizer``/``tokenizer_2``) from the first folder that has one.

    A folder with ``vocab.json`` is a full tokenizer; one with only
    ``special_tokens_map.json`` (the shipped skeletons) reuses the BPE files in
    ``bpe_dir`` with those special tokens.
    """
    from transformers import CLIPTokenizer

    for folder in folders:
        part = folder / slot
        if (part / "vocab.json").is_file():
            return CLIPTokenizer.from_pretrained(str(part), local_files_only=True)
        special = part / "special_tokens_map.json"
        if special.is_file():
            tokens: dict[str, Any] = {k: v for k, v in json.loads(special.read_text()).items() if isinstance(v, str)}
            return CLIPTokenizer.from_pretrained(str(bpe_dir), local_files_only=True, **tokens)
    return CLIPTokenizer.from_pretrained(str(bpe_dir), local_files_only=True)


__all__ = ["LAYOUTS", "TextLayout", "build_tokenizer", "clip_state_dict", "fit_text_encoder"]
