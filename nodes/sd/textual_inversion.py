"""Add a textual-inversion embedding to the tokenizer and text encoder (``sd.textual_inversion``).

The work lives in :mod:`nodeflow.models.textual_inversion`; this node finds the file and
keeps the extended pair in the model store (keyed by the base modules, the file stamp
and the token), so a second run reuses it. An embedding linked into ``trained`` (from
``sd.train_textual_inversion``) is added the same way, without the store (the
executor's cache keeps the result). The base tokenizer and encoder stay as they were.
"""

from __future__ import annotations

from typing import Any

from nodeflow.errors import ErrorInfo
from nodeflow.files import stamp
from nodeflow.models import textual_inversion as ti
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import Embedding

from .lora import _one_source


@node("sd.textual_inversion", display_name="Textual Inversion", category="sd/loaders", version="1.1.0")
class TextualInversion:
    """Teach the prompt a new token from an embedding (a .safetensors file, A1111 or diffusers layout, or a trained one).

    The token then works in any prompt tokenized and encoded with this node's outputs.
    Multi-vector embeddings add ``tok``, ``tok_1``...; the tokenize node expands ``tok``.
    """

    tokenizer = Input("TOKENIZER")
    text_encoder = Input("TEXT_ENCODER")
    embedding = Input("STRING", default="", widget="file", file="embedding",
                      description="embedding file: absolute, or relative to the graph's folder, the embedding folders or the working dir")
    trained = Input("EMBEDDING", optional=True, description="an embedding from Train Textual Inversion, instead of a file")
    token = Input("STRING", default="", description="the word that triggers it; empty: the embedding's own token (else the file name)")
    ti_tokenizer = Output("TOKENIZER", display_name="tokenizer")
    ti_text_encoder = Output("TEXT_ENCODER", display_name="text_encoder")

    def validate_inputs(self, check: ValidationContext, embedding: str | None = None, **other: Any) -> ErrorInfo | None:
        return _one_source(check, "embedding", embedding, "an embedding file")

    def run(self, ctx: Context, tokenizer: Any, text_encoder: Any, embedding: str, token: str,
            trained: Embedding | None = None) -> dict[str, Any]:
        if trained is not None:
            chosen = Embedding(token.strip() or trained.token, trained.vectors)
            new_tokenizer, new_encoder = ti.add_embedding(tokenizer, text_encoder, chosen)
            return {"ti_tokenizer": new_tokenizer, "ti_text_encoder": new_encoder}
        path = ctx.paths.resolve(embedding, "embedding")
        store = ctx.models

        def build() -> tuple[Any, Any, Any, Any]:
            vectors = ti.read_embedding(path, token=token, allow_pickle=store.allow_pickle)
            # The entry keeps the bases alive, so their id()s cannot be reused while cached.
            return (tokenizer, text_encoder, *ti.add_embedding(tokenizer, text_encoder, vectors))

        key = ("textual_inversion", id(tokenizer), id(text_encoder), stamp(path), token)
        entry = store.derived(key, build)
        return {"ti_tokenizer": entry[2], "ti_text_encoder": entry[3]}


NODES = [TextualInversion]
