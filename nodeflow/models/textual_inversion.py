"""Textual inversion: new tokens whose input embeddings come from a file.

:func:`read_embedding` accepts the common file layouts:

* A1111 ``.pt``/``.bin`` (pickle; opt-in): ``{"string_to_param": {"*": [n, D]}, "name": ...}``
* A1111-converted ``.safetensors``: ``{"emb_params": [n, D]}`` (or ``"string_to_param.*"``)
* diffusers ``learned_embeds.safetensors``: ``{"<token>": [D] or [n, D]}``

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
    data: dict[str, Any] = read_state_dict(path, allow_pickle=allow_pickle)
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
        raise EmbeddingError(f"{path}: an SDXL embedding (clip_l/clip_g); SD 1.x needs one [n, 768] vector set")
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if len(tensors) == 1:
        return next(iter(tensors.items()))
    raise EmbeddingError(f"{path}: no embedding found (keys: {', '.join(sorted(map(str, data))[:6])})")


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


__all__ = ["EmbeddingError", "add_embedding", "read_embedding", "token_names"]
