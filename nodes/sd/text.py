"""Prompt text -> token ids -> CLIP embeddings, the way diffusers' ``encode_prompt`` does it."""

from __future__ import annotations

from typing import Any

import torch

from nodeflow.node import Context, Input, Output, node
from nodeflow.values import Conditioning, Tokens

from . import _common


@node("sd.tokenize", display_name="Tokenize", category="sd/conditioning")
class Tokenize:
    """Turn a prompt into CLIP token ids (padded to 77), reporting any text cut off by the limit.

    Multi-vector textual-inversion tokens (``<tok>`` with ``<tok>_1``... in the tokenizer)
    are expanded first, as diffusers' pipelines do.
    """

    tokenizer = Input("TOKENIZER")
    text = Input("STRING", default="", multiline=True, description="the prompt (or negative prompt)")
    tokens = Output("TOKENS")

    def run(self, ctx: Context, tokenizer: Any, text: str) -> Tokens:
        text = _expand_multi_vector_tokens(text, tokenizer)
        max_length = tokenizer.model_max_length
        encoded = tokenizer(text, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
        untruncated = tokenizer(text, padding="longest", return_tensors="pt").input_ids
        removed = ""
        if untruncated.shape[-1] >= encoded.input_ids.shape[-1] and not torch.equal(encoded.input_ids, untruncated):
            removed = tokenizer.batch_decode(untruncated[:, max_length - 1 : -1])[0]
        return Tokens(encoded.input_ids, encoded.attention_mask, (removed,))


def _expand_multi_vector_tokens(text: str, tokenizer: Any) -> str:
    """diffusers' ``TextualInversionLoaderMixin._maybe_convert_prompt``, for one prompt."""
    added = tokenizer.added_tokens_encoder
    if not added:
        return text
    for token in set(tokenizer.tokenize(text)):
        if token in added:
            replacement, i = token, 1
            while f"{token}_{i}" in added:
                replacement += f" {token}_{i}"
                i += 1
            text = text.replace(token, replacement)
    return text


@node("sd.text_encode", display_name="Text Encode", category="sd/conditioning")
class TextEncode:
    """Encode token ids with the CLIP text encoder into the embeddings the UNet attends to.

    ``clip_skip`` 1 uses the last layer (diffusers' default); 2 the one before it
    (through the final layer norm, as diffusers' ``clip_skip=1``), and so on.
    """

    text_encoder = Input("TEXT_ENCODER")
    tokens = Input("TOKENS")
    clip_skip = Input("INT", default=1, min=1, max=24, description="1 = last layer; 2 = penultimate (A1111 'clip skip 2')")
    conditioning = Output("CONDITIONING")

    def run(self, ctx: Context, text_encoder: Any, tokens: Tokens, clip_skip: int) -> Conditioning:
        device, dtype = _common.placement(text_encoder)
        mask = tokens.attention_mask.to(device) if getattr(text_encoder.config, "use_attention_mask", False) else None
        ids = tokens.ids.to(device)
        with torch.no_grad():
            if clip_skip == 1:
                embeddings = text_encoder(ids, attention_mask=mask)[0]
            else:
                layers = text_encoder.config.num_hidden_layers
                if clip_skip > layers:
                    raise ValueError(f"clip_skip {clip_skip} is more than the text encoder's {layers} layers")
                hidden = text_encoder(ids, attention_mask=mask, output_hidden_states=True)[-1][-clip_skip]
                # transformers 5 flattened CLIPTextModel (no .text_model); 4.x nests it.
                embeddings = getattr(text_encoder, "text_model", text_encoder).final_layer_norm(hidden)
        return Conditioning(embeddings.to(dtype=dtype, device=device))


NODES = [Tokenize, TextEncode]
