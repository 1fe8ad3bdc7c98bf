"""Textual inversion: learn the input embedding of new tokens, everything else frozen.

As diffusers' ``examples/textual_inversion``: the placeholder token (``n`` vectors:
``tok``, ``tok_1``... as :func:`~nodeflow.models.textual_inversion.token_names` names
them) is added to a copy of the tokenizer, its rows start as the initializer word's
embedding, captions write the token as ``"tok tok_1 ..."``, and AdamW updates those
rows only. Instead of optimising the whole embedding matrix and restoring the other
rows after each step, :class:`TokenRows` keeps the base matrix frozen (shared with the
model, never written) and appends the trainable rows at lookup time; the rows'
gradients and updates are the same numbers.

The result is an :class:`~nodeflow.values.Embedding`, saved in diffusers' layout
(``{token: [n, D]}``, also what A1111 reads from a ``.safetensors`` file).
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from ..models.textual_inversion import EmbeddingError, token_names
from ..resources import CONFIGS_DIR
from ..values import Embedding
from . import frozen_copy


class TokenRows(torch.nn.Module):
    """A token embedding: the frozen base matrix followed by ``rows``, the trainable new tokens' vectors."""

    def __init__(self, base: torch.nn.Embedding, rows: torch.Tensor):
        super().__init__()
        self.register_buffer("base", base.weight.detach(), persistent=False)
        self.rows = torch.nn.Parameter(rows.detach().clone().float())
        self.padding_idx = base.padding_idx
        self.embedding_dim = base.embedding_dim

    @property
    def num_embeddings(self) -> int:
        """Base rows plus new rows."""
        return int(self.base.shape[0] + self.rows.shape[0])

    @property
    def weight(self) -> torch.Tensor:
        """The whole matrix as the lookup sees it (base rows, then the new ones)."""
        return torch.cat([self.base, self.rows.to(self.base.dtype)])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight, self.padding_idx)


@lru_cache(maxsize=1)
def clip_vocabulary() -> frozenset[str]:
    """The CLIP BPE vocabulary every SD family's tokenizers share (from the shipped tokenizer files)."""
    return frozenset(json.loads((CONFIGS_DIR / "sd1" / "tokenizer" / "vocab.json").read_text(encoding="utf-8")))


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be a new token (``None`` when it can): empty, spaced, braced, or already a CLIP word."""
    if not token.strip():
        return "the token is empty"
    if token != token.strip() or any(c.isspace() for c in token):
        return f"token {token!r} contains spaces; use one word such as <my-concept>"
    if "{" in token or "}" in token:
        return f"token {token!r} contains braces"
    vocabulary = clip_vocabulary()
    if token.lower() in vocabulary or f"{token.lower()}</w>" in vocabulary:
        return f"token {token!r} is already in the CLIP vocabulary; choose a new word such as <{token.strip('<>')}-concept>"
    return None


class Inversion:
    """A copy of the tokenizer and text encoder in which ``token``'s ``vectors`` rows train.

    ``initializer`` must be one token for the tokenizer (diffusers' rule); the rows
    start as its embedding. :class:`EmbeddingError` for a token already known or an
    initializer that is several tokens.
    """

    def __init__(self, tokenizer: Any, text_encoder: Any, token: str, initializer: str, vectors: int = 1):
        self.token = token
        self.names = token_names(token, vectors)
        initial = tokenizer.encode(initializer, add_special_tokens=False)
        if len(initial) != 1:
            raise EmbeddingError(f"initializer {initializer!r} is {len(initial)} tokens for this tokenizer; give a word that is one token")
        self.tokenizer = copy.deepcopy(tokenizer)
        if self.tokenizer.add_tokens(self.names) != vectors:
            raise EmbeddingError(f"token {token!r} (or one of {', '.join(self.names)}) is already in the tokenizer; choose another token")
        ids = self.tokenizer.convert_tokens_to_ids(self.names)
        base = text_encoder.get_input_embeddings()
        if ids != list(range(base.num_embeddings, base.num_embeddings + vectors)):
            raise EmbeddingError(f"the tokenizer ({len(tokenizer)} tokens) and the text encoder ({base.num_embeddings} rows) disagree")
        self.text_encoder = frozen_copy(text_encoder)
        self.rows = TokenRows(base, base.weight[initial * vectors])
        self.text_encoder.set_input_embeddings(self.rows)

    @property
    def prompt_token(self) -> str:
        """What a caption writes for the token: all its vector names, as diffusers' script writes them."""
        return " ".join(self.names)

    def parameters(self) -> list[torch.nn.Parameter]:
        """What trains: the new rows."""
        return [self.rows.rows]

    def embedding(self) -> Embedding:
        """The learned vectors now, as an :class:`~nodeflow.values.Embedding` (a copy, in float32)."""
        return Embedding(self.token, self.rows.rows.detach().clone().float().cpu())

    def file_tensors(self) -> dict[str, torch.Tensor]:
        """diffusers' ``learned_embeds.safetensors`` layout: ``{token: [n, D]}``."""
        return {self.token: self.embedding().vectors}


__all__ = ["Inversion", "TokenRows", "clip_vocabulary", "token_problem"]
