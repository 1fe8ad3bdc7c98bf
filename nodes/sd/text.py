"""Prompt text -> token ids -> CLIP embeddings, with weights, embeddings and long prompts.

A plain prompt of up to 75 tokens goes through exactly diffusers' ``encode_prompt``
(same ids, same single encoder call, same embeddings). The prompt syntax
(:mod:`.prompt_syntax`: ``(word:1.3)``, ``[word]``, ``embedding:name``, ``BREAK``) and
longer prompts are encoded as ComfyUI encodes them:

* the tokens are cut into chunks of 75, each wrapped in start/end tokens and padded
  to 77; the chunks are encoded in one batch and laid side by side ([B, 77 * n, D]);
* a weighted token's output vector becomes ``z_empty + w * (z - z_empty)``, where
  ``z_empty`` is the encoding of the empty prompt at the same position in its chunk;
* ``embedding:name`` inserts the vectors of that embedding file where it stands.

A positive and a negative prompt of different chunk counts give embeddings of
different lengths; :func:`nodeflow.values.match_lengths` makes them equal for a batched
UNet call (see ``docs/prompts.md``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from nodeflow.errors import ErrorInfo
from nodeflow.files import glob_stamp, stamp_text
from nodeflow.models import textual_inversion as ti
from nodeflow.models.derive import shared_copy
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import Conditioning, Tokens

from . import _common
from .prompt_syntax import Segment, embedding_names, parse_prompt

#: File suffixes tried after the bare name for ``embedding:name``.
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")

_Token = tuple[int, float]  # (id, weight); a negative id -1-e is inserted vector e


@node("sd.tokenize", display_name="Tokenize", category="sd/conditioning", version="1.1.0", pure=False)
class Tokenize:
    """Turn a prompt into CLIP token ids in 77-token chunks, with per-token weights.

    Understands ``(word)``, ``((word))``, ``[word]``, ``(word:1.3)``, ``\\(`` escapes,
    ``embedding:name`` (an embedding file from the embedding folders) and ``BREAK``
    (docs/prompts.md). Prompts over 75 tokens become several chunks unless ``truncate``
    is on, which cuts them at 77 tokens like diffusers. Multi-vector textual-inversion
    tokens (``<tok>`` with ``<tok>_1``... in the tokenizer) are expanded first, as
    diffusers' pipelines do.
    """

    tokenizer = Input("TOKENIZER")
    text = Input("STRING", default="", multiline=True, description="the prompt (or negative prompt)")
    truncate = Input("BOOL", default=False, description="cut the prompt at 77 tokens like diffusers, instead of encoding 75-token chunks")
    tokens = Output("TOKENS")

    def validate_inputs(self, check: ValidationContext, text: str | None = None, **other: Any) -> list[ErrorInfo]:
        return embedding_problems(check, {"text": text})

    def fingerprint(self, ctx: Context, text: str | None = None, **other: Any) -> str:
        return embedding_stamps(ctx, [text])

    def run(self, ctx: Context, tokenizer: Any, text: str, truncate: bool = False) -> Tokens:
        return tokenize(tokenizer, text, lambda name: _load_embedding(ctx, name), truncate)


def tokenize(tokenizer: Any, text: str, load: Any, truncate: bool = False, chunks_at_least: int = 1) -> Tokens:
    """``text`` as :class:`Tokens` for ``tokenizer``: weights, BREAK, 75-token chunks (see :class:`Tokenize`).

    ``load(name)`` gives the vectors [n, D] of ``embedding:name``. ``chunks_at_least``
    pads with empty-prompt chunks (SDXL's two encoders need as many chunks each).
    """
    vectors: list[torch.Tensor] = []
    tokens = [_segment_tokens(segment, tokenizer, load, vectors) for segment in parse_prompt(text)]
    chunks = _chunks(tokens, tokenizer.model_max_length - 2)
    removed = ""
    if truncate and len(chunks) > 1:
        dropped = [i for chunk in chunks[1:] for i, _ in chunk if i >= 0]
        removed = tokenizer.decode(dropped)
        chunks = chunks[:1]
    chunks += [[] for _ in range(chunks_at_least - len(chunks))]
    return _tokens(chunks, tokenizer, vectors, removed)


def _segment_tokens(segment: Segment, tokenizer: Any, load: Any, vectors: list[torch.Tensor]) -> list[_Token] | None:
    """The (id, weight) tokens of one segment; ``None`` for a BREAK. Embedding vectors go to ``vectors``."""
    if segment.kind == "break":
        return None
    if segment.kind == "embedding":
        rows = load(segment.text)
        first = sum(v.shape[0] for v in vectors)
        vectors.append(rows)
        return [(-1 - (first + i), segment.weight) for i in range(rows.shape[0])]
    text = _expand_multi_vector_tokens(segment.text, tokenizer)
    ids = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids
    return [(i, segment.weight) for i in ids]


def _chunks(pieces: list[list[_Token] | None], size: int) -> list[list[_Token]]:
    """The tokens in chunks of at most ``size``; a ``None`` piece (BREAK) starts a new chunk."""
    chunks: list[list[_Token]] = [[]]
    for piece in pieces:
        if piece is None:
            if chunks[-1]:
                chunks.append([])
            continue
        for token in piece:
            if len(chunks[-1]) == size:
                chunks.append([])
            chunks[-1].append(token)
    if len(chunks) > 1 and not chunks[-1]:
        chunks.pop()  # a BREAK at the very end
    return chunks


def _tokens(chunks: list[list[_Token]], tokenizer: Any, vectors: list[torch.Tensor], removed: str) -> Tokens:
    """Wrap each chunk in start/end tokens, pad it to the tokenizer's length, and lay the chunks side by side."""
    length = tokenizer.model_max_length
    start, end, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    ids: list[int] = []
    mask: list[int] = []
    weights: list[float] = []
    for chunk in chunks:
        free = length - 2 - len(chunk)
        ids += [start, *(i for i, _ in chunk), end] + [pad] * free
        mask += [1] * (len(chunk) + 2) + [0] * free
        weights += [1.0, *(w for _, w in chunk), 1.0] + [1.0] * free
    bad = [w for w in weights if not math.isfinite(w)]
    if bad:
        raise ValueError(f"text: a prompt weight is {bad[0]} (too deeply nested brackets?); weights must be finite numbers")
    weighted = any(w != 1.0 for w in weights)
    return Tokens(
        ids=torch.tensor([ids], dtype=torch.long),
        attention_mask=torch.tensor([mask], dtype=torch.long),
        truncated=(removed,),
        chunks=len(chunks),
        weights=torch.tensor([weights], dtype=torch.float32) if weighted else None,
        empty=torch.tensor([[start, end] + [pad] * (length - 2)], dtype=torch.long) if weighted else None,
        vectors=torch.cat(vectors).to(torch.float32) if vectors else None,
    )


def _expand_multi_vector_tokens(text: str, tokenizer: Any) -> str:
    """diffusers' ``TextualInversionLoaderMixin._maybe_convert_prompt``, for one prompt."""
    added = tokenizer.added_tokens_encoder
    # Only a token with a ``_1`` companion changes the text; without one, skip the
    # tokenize call (it warns about indexing errors for prompts over 77 tokens).
    if not any(f"{token}_1" in added for token in added):
        return text
    for token in set(tokenizer.tokenize(text)):
        if token in added:
            replacement, i = token, 1
            while f"{token}_{i}" in added:
                replacement += f" {token}_{i}"
                i += 1
            text = text.replace(token, replacement)
    return text


def embedding_problems(check: ValidationContext, prompts: dict[str, str | None]) -> list[ErrorInfo]:
    """A missing-file error for each ``embedding:name`` in the prompts (by input name) that names no file."""
    if check.paths is None:
        return []
    problems = []
    for field_name, text in prompts.items():
        for name in embedding_names(text or ""):
            try:
                find_embedding(check.paths, name)
            except FileNotFoundError as exc:
                problems.append(ErrorInfo("missing_file", str(exc).strip("'\""), check.node_id, field_name))
    return problems


def embedding_stamps(ctx: Context, prompts: list[str | None]) -> str:
    """The stamps of the embedding files the prompts name, for a cache key (the files are read at run time).

    A prompt of ``None`` comes from another node and may name any embedding file: then
    every file in the embedding folders counts.
    """
    if any(text is None for text in prompts):
        folders = ctx.paths.folders("embedding")
        return ";".join(glob_stamp(folder, f"*{suffix}") for folder in folders for suffix in EMBEDDING_SUFFIXES)
    stamps = []
    for name in dict.fromkeys(n for text in prompts for n in embedding_names(text or "")):
        try:
            stamps.append(stamp_text(find_embedding(ctx.paths, name)))
        except (OSError, ValueError):
            stamps.append(f"missing:{name}")
    return ";".join(stamps)


def find_embedding(paths: Any, name: str) -> Path:
    """The embedding file ``name`` stands for: as given, else with a known suffix added."""
    try:
        return paths.resolve(name, "embedding")  # type: ignore[no-any-return]
    except FileNotFoundError as first:
        for suffix in EMBEDDING_SUFFIXES:
            try:
                return paths.resolve(name + suffix, "embedding")  # type: ignore[no-any-return]
            except FileNotFoundError:
                continue
        raise FileNotFoundError(f"embedding:{name}: {first} (also tried {', '.join(EMBEDDING_SUFFIXES)})") from None


def _load_embedding(ctx: Context, name: str) -> torch.Tensor:
    allow_pickle = ctx.model_store.allow_pickle if ctx.model_store is not None else False
    try:
        return ti.read_embedding(find_embedding(ctx.paths, name), allow_pickle=allow_pickle).vectors
    except ti.EmbeddingError as exc:
        raise ValueError(f"text: embedding:{name}: {exc}") from exc


@node("sd.text_encode", display_name="Text Encode", category="sd/conditioning", version="1.1.0")
class TextEncode:
    """Encode token ids with the CLIP text encoder into the embeddings the UNet attends to.

    Each 77-token chunk is encoded on its own (in one batch) and the results laid side
    by side; weighted tokens are pulled away from (w > 1) or towards (w < 1) the empty
    prompt's encoding; embedding vectors from the prompt replace their placeholders.
    ``clip_skip`` 1 uses the last layer (diffusers' default); 2 the one before it
    (through the final layer norm, as diffusers' ``clip_skip=1``), and so on.
    """

    text_encoder = Input("TEXT_ENCODER")
    tokens = Input("TOKENS")
    clip_skip = Input("INT", default=1, min=1, max=24, description="1 = last layer; 2 = penultimate (A1111 'clip skip 2')")
    conditioning = Output("CONDITIONING")

    def run(self, ctx: Context, text_encoder: Any, tokens: Tokens, clip_skip: int) -> Conditioning:
        device, dtype = _common.placement(text_encoder)
        rows, length = tokens.ids.shape
        encoder, ids = chunked_ids(text_encoder, tokens)
        chunk = ids.shape[1]
        mask = tokens.attention_mask.reshape(ids.shape)
        embeddings = _encode(encoder, ids, mask, clip_skip)
        embeddings = embeddings.reshape(rows, length, embeddings.shape[-1])
        if tokens.weights is not None:
            if tokens.empty is None:
                raise ValueError("tokens: weighted tokens need the empty prompt's ids (Tokens.empty)")
            empty_mask = (torch.arange(chunk) < 2).long()[None]  # start and end token
            z_empty = _encode(encoder, tokens.empty, empty_mask, clip_skip)
            embeddings = apply_weights(embeddings, z_empty, tokens.weights.to(embeddings.device))
        return Conditioning(embeddings.to(dtype=dtype, device=device))


def _encode(text_encoder: Any, ids: torch.Tensor, mask: torch.Tensor, clip_skip: int) -> torch.Tensor:
    """The encoder's output for ``ids`` [N, 77]: the last layer, or ``clip_skip`` layers back."""
    device, _ = _common.placement(text_encoder)
    attention = mask.to(device) if getattr(text_encoder.config, "use_attention_mask", False) else None
    ids = ids.to(device)
    with torch.no_grad():
        if clip_skip == 1:
            return text_encoder(ids, attention_mask=attention)[0]  # type: ignore[no-any-return]
        layers = text_encoder.config.num_hidden_layers
        if clip_skip > layers:
            raise ValueError(f"clip_skip {clip_skip} is more than the text encoder's {layers} layers")
        hidden = text_encoder(ids, attention_mask=attention, output_hidden_states=True)[-1][-clip_skip]
        # transformers 5 flattened CLIPTextModel (no .text_model); 4.x nests it.
        return getattr(text_encoder, "text_model", text_encoder).final_layer_norm(hidden)  # type: ignore[no-any-return]


def apply_weights(z: torch.Tensor, z_empty: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """ComfyUI's token weighting: ``(z - z_empty) * w + z_empty`` where ``w != 1``, ``z`` unchanged elsewhere.

    ``z`` [B, 77 * n, D]; ``z_empty`` [1, 77, D], the empty prompt's encoding, compared
    position by position within each chunk; ``weights`` [B, 77 * n].
    """
    chunks = z.shape[1] // z_empty.shape[1]
    reference = z_empty.repeat(1, chunks, 1).to(torch.float32)
    w = weights[..., None].to(torch.float32)
    weighted = (z.to(torch.float32) - reference) * w + reference
    return torch.where(weights[..., None] != 1.0, weighted.to(z.dtype), z)


class _SplicedEmbedding(torch.nn.Module):
    """A token-embedding lookup where an id ``n + e`` past the vocabulary (of ``n``) gives row ``e`` of ``vectors``."""

    vectors: torch.Tensor

    def __init__(self, base: torch.nn.Embedding, vectors: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("vectors", vectors.to(dtype=base.weight.dtype, device=base.weight.device))

    @property
    def weight(self) -> torch.Tensor:
        """The base vocabulary's matrix (what code inspecting the lookup expects)."""
        return self.base.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        size = self.base.num_embeddings
        inserted = ids >= size
        out = self.base(ids.clamp(max=size - 1))
        if inserted.any():
            out = torch.where(inserted[..., None], self.vectors[(ids - size).clamp(min=0)], out)
        return out


def chunked_ids(text_encoder: Any, tokens: Tokens) -> tuple[Any, torch.Tensor]:
    """The encoder that reads ``tokens`` (the prompt's inserted embedding vectors spliced in) and their ids, one row per chunk."""
    rows, length = tokens.ids.shape
    if tokens.chunks < 1 or length % tokens.chunks:
        raise ValueError(f"tokens: {length} ids cannot be {tokens.chunks} equal chunks")
    ids = tokens.ids.reshape(rows * tokens.chunks, length // tokens.chunks)
    if tokens.vectors is None:
        return text_encoder, ids
    return with_vectors(text_encoder, tokens.vectors, ids)


def with_vectors(text_encoder: Any, vectors: torch.Tensor, ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """A copy of ``text_encoder`` (weights shared) whose lookup also knows the prompt's inserted vectors, and the ids for it.

    Each placeholder ``-1 - e`` in ``ids`` becomes ``n + e``, past the vocabulary of ``n``,
    where diffusers' ``load_textual_inversion`` puts added tokens: a CLIP config with
    ``eos_token_id`` 2 (SDXL's, SD 2.x's) pools at the highest id, so the pooled output comes
    from the same position as in diffusers.
    """
    base = text_encoder.get_input_embeddings()
    if vectors.shape[1] != base.embedding_dim:
        raise ValueError(
            f"tokens: the prompt's embedding vectors are {vectors.shape[1]} wide, this text encoder's are "
            f"{base.embedding_dim} (an embedding made for another model family?)"
        )
    encoder = shared_copy(text_encoder)
    encoder.set_input_embeddings(_SplicedEmbedding(base, vectors))
    return encoder, torch.where(ids < 0, base.num_embeddings - 1 - ids, ids)


NODES = [Tokenize, TextEncode]
