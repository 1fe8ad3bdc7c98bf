"""Textual inversion: new tokens whose input embeddings come from a file.

:func:`read_embedding` accepts the common file layouts:

* A1111 ``.pt``/``.bin`` (pickle; opt-in): ``{"string_to_param": {"*": [n, D]}, "name": ...}``
* A1111-converted ``.safetensors``: ``{"emb_params": [n, D]}`` (or ``"string_to_param.*"``)
* diffusers ``learned_embeds.safetensors``: ``{"<token>": [D] or [n, D]}``
* SDXL (A1111 / ComfyUI / kohya): ``{"clip_l": [n, 768], "clip_g": [n, 1280]}``, one
  vector set per text encoder; :func:`read_embeddings` reads it (and the one-encoder
  layouts above) as ``{slot: Embedding}`` and :func:`add_embeddings` adds each to its
  own tokenizer/encoder pair (``clip_l`` to ``text_encoder``, ``clip_g`` to
  ``text_encoder_2``), as diffusers' SDXL pipelines do with two ``load_textual_inversion`` calls.

:func:`add_embedding` returns a NEW tokenizer and a NEW text encoder; the base ones,
shared through the model store, are untouched. The tokenizer is a deep copy with the
token(s) added; the text encoder is a :func:`~.derive.shared_copy` whose token-embedding
matrix alone is new (base rows + the file's vectors), so the transformer weights are not
duplicated.

A multi-vector embedding (``n > 1``) becomes the tokens ``tok``, ``tok_1`` ... ``tok_{n-1}``,
as diffusers names them; the ``sd.tokenize`` node expands ``tok`` in a prompt into all
``n`` of them the way diffusers' pipelines do, so prompts name the token once.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from ..values import Embedding
from .derive import shared_copy
from .single_file import read_state_dict


class EmbeddingError(ValueError):
    """An embedding file or token that cannot be used; the message names the file."""


def read_embedding(path: str | Path, token: str = "", allow_pickle: bool = False) -> Embedding:
    """The embedding in ``path`` bound to ``token``.

    An empty ``token`` takes the file's own: the key of a diffusers file, else the file
    name without its suffix (A1111's convention: ``cat-toy.pt`` is triggered by ``cat-toy``).
    """
    path = Path(path)
    return _embedding(read_state_dict(path, allow_pickle=allow_pickle), path, token)


def _embedding(data: dict[str, Any], path: Path, token: str) -> Embedding:
    file_token, vectors = _vectors(data, path)
    if vectors.ndim == 1:
        vectors = vectors[None]
    if vectors.ndim != 2 or vectors.shape[0] == 0 or not vectors.is_floating_point():
        raise EmbeddingError(f"{path}: expected float vectors [n, D], got {tuple(vectors.shape)} {vectors.dtype}")
    chosen = token.strip() or file_token or path.stem
    return Embedding(token=chosen, vectors=vectors)


def _vectors(data: dict[str, Any], path: Path) -> tuple[str | None, torch.Tensor]:
    nested = data.get("string_to_param")
    if isinstance(nested, dict) and len(nested) == 1:
        return None, next(iter(nested.values()))
    for key in ("emb_params", "string_to_param.*"):
        if isinstance(data.get(key), torch.Tensor):
            return None, data[key]
    if "clip_l" in data or "clip_g" in data:
        raise EmbeddingError(f"{path}: an SDXL embedding (clip_l/clip_g), for a model with two text encoders; read it with read_embeddings")
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if len(tensors) == 1:
        return next(iter(tensors.items()))
    raise EmbeddingError(f"{path}: no embedding found (keys: {', '.join(sorted(map(str, data))[:6])})")


#: SDXL embedding files' keys -> the text-encoder slot each vector set belongs to.
SDXL_KEYS = {"clip_l": "text_encoder", "clip_g": "text_encoder_2"}


def read_embeddings(path: str | Path, token: str = "", allow_pickle: bool = False) -> dict[str, Embedding]:
    """The embedding(s) in ``path`` by text-encoder slot, all bound to one token.

    An SDXL file (``clip_l`` / ``clip_g``) gives ``{"text_encoder": ..., "text_encoder_2": ...}``
    (either may be absent from a file); any other layout gives ``{"text_encoder": ...}``
    as :func:`read_embedding` reads it. An empty ``token`` takes the file name without
    its suffix for SDXL files (they carry no token).
    """
    path = Path(path)
    data: dict[str, Any] = read_state_dict(path, allow_pickle=allow_pickle)
    if not any(key in data for key in SDXL_KEYS):
        return {"text_encoder": _embedding(data, path, token)}
    chosen = token.strip() or path.stem
    found = {}
    for key, slot in SDXL_KEYS.items():
        vectors = data.get(key)
        if vectors is None:
            continue
        if not isinstance(vectors, torch.Tensor) or vectors.ndim != 2 or not vectors.is_floating_point():
            raise EmbeddingError(f"{path}: '{key}' must be float vectors [n, D]")
        found[slot] = Embedding(token=chosen, vectors=vectors)
    if len({e.vectors.shape[0] for e in found.values()}) > 1:
        raise EmbeddingError(f"{path}: clip_l and clip_g hold different numbers of vectors")
    return found


def add_embeddings(pairs: dict[str, tuple[Any, Any]], embeddings: dict[str, Embedding]) -> dict[str, tuple[Any, Any]]:
    """New ``(tokenizer, text encoder)`` pairs, by slot, each knowing its slot's embedding; inputs unchanged.

    ``pairs`` holds the model's pairs (SD 1.x/2.x: ``text_encoder``; SDXL:
    ``text_encoder`` and ``text_encoder_2``; the SDXL refiner: ``text_encoder_2``).
    A pair without an embedding for its slot is an :class:`EmbeddingError` (an SD 1.x
    embedding cannot teach SDXL's second encoder the token).
    """
    missing = [slot for slot in pairs if slot not in embeddings]
    if missing:
        raise EmbeddingError(
            f"the embedding has no vectors for {', '.join(missing)} "
            f"(it has {', '.join(sorted(embeddings)) or 'none'}; SDXL needs clip_l and clip_g)"
        )
    return {slot: add_embedding(tokenizer, encoder, embeddings[slot]) for slot, (tokenizer, encoder) in pairs.items()}


def token_names(token: str, count: int) -> list[str]:
    """The vocabulary entries for a ``count``-vector embedding: ``tok``, ``tok_1``, ..."""
    return [token] + [f"{token}_{i}" for i in range(1, count)]


def add_embedding(tokenizer: Any, text_encoder: Any, embedding: Embedding) -> tuple[Any, Any]:
    """A new (tokenizer, text encoder) pair that knows ``embedding.token``; the inputs are unchanged.

    Raises :class:`EmbeddingError` when the token already exists or the vector width
    differs from the encoder's (an SD 2.x embedding on an SD 1.x model, say).
    """
    names = token_names(embedding.token, embedding.vectors.shape[0])
    old = text_encoder.get_input_embeddings()
    if embedding.vectors.shape[1] != old.embedding_dim:
        raise EmbeddingError(
            f"embedding {embedding.token!r} has {embedding.vectors.shape[1]}-wide vectors, "
            f"the text encoder expects {old.embedding_dim}"
        )
    taken = [n for n in names if n in tokenizer.get_vocab()]
    if taken:
        raise EmbeddingError(f"token {taken[0]!r} is already in the tokenizer's vocabulary; choose another token")

    new_tokenizer = copy.deepcopy(tokenizer)
    new_tokenizer.add_tokens(names)
    ids = new_tokenizer.convert_tokens_to_ids(names)

    rows = max(max(ids) + 1, old.num_embeddings)
    weight = torch.zeros(rows, old.embedding_dim, dtype=old.weight.dtype, device=old.weight.device)
    weight[: old.num_embeddings] = old.weight.detach()
    weight[ids] = embedding.vectors.to(dtype=old.weight.dtype, device=old.weight.device)
    new_encoder = shared_copy(text_encoder)
    new_encoder.set_input_embeddings(torch.nn.Embedding.from_pretrained(weight, freeze=True, padding_idx=old.padding_idx))
    if hasattr(new_encoder, "config"):
        new_encoder.config.vocab_size = rows  # a copy: shared_copy deep-copies configs
    return new_tokenizer, new_encoder


__all__ = ["SDXL_KEYS", "EmbeddingError", "add_embedding", "add_embeddings", "read_embedding", "read_embeddings", "token_names"]
