"""SDXL prompts (``sd.sdxl_text_encode``): both text encoders, the pooled embedding and the size conditioning.

What diffusers' ``StableDiffusionXLPipeline.encode_prompt`` and ``_get_add_time_ids``
(and ``StableDiffusionXLImg2ImgPipeline``'s, for the refiner) compute, as a positive
and a negative :class:`~nodeflow.values.Conditioning` whose ``added`` inputs are
``text_embeds`` (the pooled embedding) and ``time_ids``; the one denoise loop passes
them to the UNet as ``added_cond_kwargs``.

* Each text encoder's penultimate hidden states (no final layer norm), concatenated
  along the width: CLIP-L (``prompt``) then OpenCLIP-bigG (``prompt_2``, defaulting to
  ``prompt``); the refiner has bigG alone, which reads ``prompt``. The pooled embedding
  is bigG's projected output.
* The negative: an empty negative prompt gives zeros (embeddings and pooled) when the
  model's ``force_zeros_for_empty_prompt`` says so (base SDXL: yes; the refiner: no),
  as the pipelines do when no ``negative_prompt`` is passed.
* Time ids: ``original size + crop top-left + target size`` (base), or ``original size +
  crop top-left + aesthetic score`` for a model whose pipeline ``requires_aesthetics_score``
  (the refiner). Sizes default to the image's (``width``/``height``, or the size of the
  linked ``latents``); negative sizes default to the positive ones.

The prompt syntax works per encoder as in ComfyUI (weights against the empty prompt's
encoding, BREAK, prompts longer than 75 tokens in chunks; the pooled embedding is the
first chunk's); a plain prompt of up to 75 tokens is exactly diffusers' encoding.
``embedding:name`` inserts an SDXL embedding file's ``clip_l`` vectors into CLIP-L's
prompt and its ``clip_g`` vectors into bigG's, as ComfyUI does (Textual Inversion with
the ``clip`` linked adds the token to both tokenizers instead, as diffusers does).

``clip_skip`` counts layers from the end as A1111 and ComfyUI's CLIPSetLastLayer do:
2, the default, is the penultimate layer SDXL was trained on; 3 is diffusers'
``clip_skip=1``. SDXL takes hidden states without the final layer norm, at any depth.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from nodeflow.errors import ErrorInfo
from nodeflow.models import textual_inversion as ti
from nodeflow.models.families import ModelFamily
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import Conditioning, Latents, TextEncoders, Tokens

from . import _common
from ._families import clip_problems
from .text import apply_weights, chunked_ids, embedding_problems, embedding_stamps, find_embedding, tokenize

SDXL_FAMILIES = (ModelFamily.SDXL, ModelFamily.SDXL_REFINER)

_SIZE = {"default": 0, "min": 0, "max": 8192, "step": 8}


EmbeddingLoader = Callable[[str, str], torch.Tensor]
"""``load(slot, name)``: the vectors [n, D] of ``embedding:name`` for the encoder in ``slot``."""


def _no_embeddings(slot: str, name: str) -> torch.Tensor:
    raise ValueError(f"prompt: embedding:{name}: no embedding loader given (SDXL Text Encode reads them from the embedding folders)")


def _pairs(clip: TextEncoders) -> list[tuple[str, Any, Any]]:
    """(slot, tokenizer, encoder) per text encoder, in the order the pipelines concatenate them."""
    pairs = [("text_encoder", clip.tokenizer, clip.text_encoder), ("text_encoder_2", clip.tokenizer_2, clip.text_encoder_2)]
    return [(s, t, e) for s, t, e in pairs if t is not None and e is not None]


def _hidden(encoder: Any, ids: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The hidden states [N, 77, D] of ``ids`` ``layer`` layers from the end, and the pooled output when the encoder projects one."""
    device, _ = _common.placement(encoder)
    with torch.no_grad():
        out = encoder(ids.to(device), output_hidden_states=True)
    pooled = out[0] if out[0].ndim == 2 else None  # diffusers: only the final encoder's projected output pools
    if layer >= len(out.hidden_states):
        raise ValueError(f"clip_skip {layer} is more than the text encoder's {len(out.hidden_states) - 1} layers")
    return out.hidden_states[-layer], pooled


def _encode_one(encoder: Any, tokens: Tokens, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One encoder's embeddings [1, 77 * n, D] (weights applied) and pooled [1, P] (the first chunk's) of one prompt."""
    rows, length = tokens.ids.shape
    spliced, ids = chunked_ids(encoder, tokens)
    hidden, pooled = _hidden(spliced, ids, layer)
    hidden = hidden.reshape(rows, length, hidden.shape[-1])
    if tokens.weights is not None and tokens.empty is not None:
        z_empty, _ = _hidden(encoder, tokens.empty, layer)
        hidden = apply_weights(hidden, z_empty, tokens.weights.to(hidden.device))
    if pooled is not None:
        pooled = pooled.reshape(rows, tokens.chunks, pooled.shape[-1])[:, 0]
    return hidden, pooled


def encode_prompts(clip: TextEncoders, prompt: str, prompt_2: str, load: EmbeddingLoader = _no_embeddings,
                   layer: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """``(embeddings [1, 77 * n, D_l + D_g], pooled [1, P])`` for a prompt pair, as ``encode_prompt`` makes them.

    ``layer``: the hidden states taken, counted from the end (2: the penultimate, SDXL's own).
    """
    pairs = _pairs(clip)
    texts = [prompt, prompt_2 or prompt] if len(pairs) == 2 else [prompt]  # the refiner's bigG reads `prompt`

    def tokens_of(chunks: int = 1) -> list[Tokens]:
        return [tokenize(tok, text, functools.partial(load, slot), chunks_at_least=chunks)
                for (slot, tok, _), text in zip(pairs, texts, strict=True)]

    tokens = tokens_of()
    chunks = max(t.chunks for t in tokens)
    if any(t.chunks != chunks for t in tokens):  # both encoders' outputs lie side by side: as many chunks each
        tokens = tokens_of(chunks)
    hidden: list[torch.Tensor] = []
    pooled: torch.Tensor | None = None
    for (_, _, encoder), one in zip(pairs, tokens, strict=True):
        states, pooled_here = _encode_one(encoder, one, layer)
        hidden.append(states)
        pooled = pooled_here if pooled_here is not None else pooled
    if pooled is None:
        raise ValueError("clip: no text encoder with a projection (OpenCLIP-bigG) to give SDXL's pooled embedding")
    return torch.cat(hidden, dim=-1), pooled


def _zeros_for_empty(clip: TextEncoders, choice: str) -> bool:
    if choice == "auto":
        return bool(clip.pipeline_config.get("force_zeros_for_empty_prompt", clip.family == ModelFamily.SDXL.value))
    return choice == "yes"


def _image_size(width: int, height: int, latents: Latents | None) -> tuple[int, int]:
    """(height, width) of the image being made: given, else the linked latents' size in pixels."""
    if width and height:
        return height, width
    if latents is None:
        raise ValueError("width/height: give the image size, or link the latents being denoised into 'latents'")
    _, _, h, w = latents.samples.shape
    return height or h * latents.vae_factor, width or w * latents.vae_factor


def time_ids(sizes: dict[str, Any], image: tuple[int, int], aesthetic: bool) -> tuple[list[float], list[float]]:
    """Positive and negative time ids, as ``_get_add_time_ids`` of the SDXL pipelines lists them.

    ``sizes`` holds the node's size inputs (0: the default: the image size, or for the
    negative ones the positive's); a negative crop of -1 is the positive crop.
    """
    def pick(value: int, default: int) -> int:
        return value if value > 0 else default

    original = (pick(sizes["original_height"], image[0]), pick(sizes["original_width"], image[1]))
    crop = (sizes["crop_top"], sizes["crop_left"])
    target = (pick(sizes["target_height"], image[0]), pick(sizes["target_width"], image[1]))
    negative_original = (pick(sizes["negative_original_height"], original[0]), pick(sizes["negative_original_width"], original[1]))
    negative_crop = tuple(c if n < 0 else n for c, n in zip(crop, (sizes["negative_crop_top"], sizes["negative_crop_left"]), strict=True))
    negative_target = (pick(sizes["negative_target_height"], target[0]), pick(sizes["negative_target_width"], target[1]))
    if aesthetic:
        return ([*original, *crop, sizes["aesthetic_score"]], [*negative_original, *negative_crop, sizes["negative_aesthetic_score"]])
    return [*original, *crop, *target], [*negative_original, *negative_crop, *negative_target]


def _size_input(description: str) -> Input:
    return Input("INT", **_SIZE, description=description)


@node("sd.sdxl_text_encode", display_name="SDXL Text Encode", category="sd/conditioning", version="1.1.0", pure=False)
class SDXLTextEncode:
    """Encode a prompt and a negative prompt for SDXL (base or refiner) with both text encoders and size conditioning.

    The positive and negative conditioning ``StableDiffusionXLPipeline`` (and, for the
    refiner, ``StableDiffusionXLImg2ImgPipeline``) compute: penultimate hidden states of
    both encoders side by side, the pooled embedding, and the time ids (sizes, crop,
    and the refiner's aesthetic score). Sizes of 0 mean the image's (see the module docs).
    """

    clip = Input("CLIP", description="the SDXL model's text encoders (Load Model's clip)")
    prompt = Input("STRING", default="", multiline=True, description="what to draw (CLIP-L's prompt; the refiner's only)")
    prompt_2 = Input("STRING", default="", multiline=True, description="OpenCLIP-bigG's prompt; empty: the same as prompt")
    negative_prompt = Input("STRING", default="", multiline=True, description="what to steer away from")
    negative_prompt_2 = Input("STRING", default="", multiline=True, description="bigG's negative prompt; empty: negative_prompt")
    zero_negative = Input("STRING", default="auto", choices=["auto", "yes", "no"],
                          description="an empty negative prompt as zeros; auto: the model's force_zeros_for_empty_prompt")
    latents = Input("LATENTS", optional=True, description="the latents to denoise: their size is the image size when width/height are 0")
    width = _size_input("image width (0: the latents' width)")
    height = _size_input("image height (0: the latents' height)")
    original_width = _size_input("size conditioning: the original width (0: the image width)")
    original_height = _size_input("size conditioning: the original height (0: the image height)")
    crop_left = Input("INT", default=0, min=0, max=8192, description="size conditioning: crop coordinate left")
    crop_top = Input("INT", default=0, min=0, max=8192, description="size conditioning: crop coordinate top")
    target_width = _size_input("size conditioning: the target width (0: the image width; not used by the refiner)")
    target_height = _size_input("size conditioning: the target height (0: the image height; not used by the refiner)")
    negative_original_width = _size_input("negative size conditioning (0: original_width)")
    negative_original_height = _size_input("negative size conditioning (0: original_height)")
    negative_crop_left = Input("INT", default=-1, min=-1, max=8192, description="negative crop (-1: crop_left)")
    negative_crop_top = Input("INT", default=-1, min=-1, max=8192, description="negative crop (-1: crop_top)")
    negative_target_width = _size_input("negative size conditioning (0: target_width)")
    negative_target_height = _size_input("negative size conditioning (0: target_height)")
    clip_skip = Input("INT", default=2, min=1, max=24,
                      description="layer counted from the end: 2 = penultimate (SDXL's own), 3 = diffusers' clip_skip=1")
    aesthetic_score = Input("FLOAT", default=6.0, min=0.0, max=10.0, step=0.5, description="refiner only: the aesthetic score asked for")
    negative_aesthetic_score = Input("FLOAT", default=2.5, min=0.0, max=10.0, step=0.5, description="refiner only: the negative's")
    positive = Output("CONDITIONING")
    negative = Output("CONDITIONING")

    def validate_inputs(self, check: ValidationContext, **literals: Any) -> list[ErrorInfo]:
        prompts = {name: literals.get(name) for name in _PROMPTS}
        return clip_problems(check, SDXL_FAMILIES, "SDXL Text Encode") + embedding_problems(check, prompts)

    def fingerprint(self, ctx: Context, **inputs: Any) -> str:
        # The embedding files the prompts name are read here, so their stamps join the key.
        return embedding_stamps(ctx, [inputs.get(name) for name in _PROMPTS])

    def run(self, ctx: Context, clip: TextEncoders, prompt: str, prompt_2: str, negative_prompt: str, negative_prompt_2: str,
            zero_negative: str, latents: Latents | None = None, clip_skip: int = 2, **sizes: Any) -> dict[str, Conditioning]:
        if clip.family not in {f.value for f in SDXL_FAMILIES}:
            raise ValueError(f"clip: SDXL Text Encode needs an SDXL model's text encoders, this is an {ModelFamily(clip.family).label} "
                             "model's (use Tokenize + Text Encode)")
        load = functools.partial(_load_embedding, ctx, {})  # each file read once, for both encoders and both prompts
        embeddings, pooled = encode_prompts(clip, prompt, prompt_2, load, clip_skip)
        if not (negative_prompt or negative_prompt_2) and _zeros_for_empty(clip, zero_negative):
            negative, negative_pooled = torch.zeros_like(embeddings), torch.zeros_like(pooled)
        else:
            negative, negative_pooled = encode_prompts(clip, negative_prompt, negative_prompt_2 or negative_prompt, load, clip_skip)
        aesthetic = bool(clip.pipeline_config.get("requires_aesthetics_score", clip.family == ModelFamily.SDXL_REFINER.value))
        ids, negative_ids = time_ids(sizes, _image_size(sizes.pop("width"), sizes.pop("height"), latents), aesthetic)
        device, dtype = _common.placement(clip.text_encoder_2)
        # encode_prompt casts to the last encoder's dtype; the time ids take the embeddings' dtype.
        return {
            "positive": _conditioning(embeddings, pooled, ids, clip.family, device, dtype),
            "negative": _conditioning(negative, negative_pooled, negative_ids, clip.family, device, dtype),
        }


_PROMPTS = ("prompt", "prompt_2", "negative_prompt", "negative_prompt_2")


def _load_embedding(ctx: Context, read: dict[str, dict[str, Any]], slot: str, name: str) -> torch.Tensor:
    """The vectors of ``embedding:name`` for the encoder in ``slot``: an SDXL file's clip_l (text_encoder) or clip_g half.

    ``read`` keeps the files read so far in this run, by name.
    """
    if name not in read:
        try:
            read[name] = ti.read_embeddings(find_embedding(ctx.paths, name), allow_pickle=ctx.models.allow_pickle)
        except ti.EmbeddingError as exc:
            raise ValueError(f"prompt: embedding:{name}: {exc}") from exc
    found = read[name]
    if slot not in found:
        key = next(k for k, v in ti.SDXL_KEYS.items() if v == slot)
        raise ValueError(f"prompt: embedding:{name} has no {key} vectors for this model's {slot} (an SD 1.x/2.x embedding?); "
                         "SDXL embeddings hold clip_l and clip_g")
    return found[slot].vectors


def _conditioning(embeddings: torch.Tensor, pooled: torch.Tensor, ids: list[float], family: str, device: Any,
                  dtype: torch.dtype) -> Conditioning:
    added = {"text_embeds": pooled.to(device=device, dtype=dtype), "time_ids": torch.tensor([ids], dtype=dtype, device=device)}
    return Conditioning(embeddings.to(device=device, dtype=dtype), added=added, family=family)


NODES = [SDXLTextEncode]
