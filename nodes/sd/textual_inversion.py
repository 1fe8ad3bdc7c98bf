"""Add a textual-inversion embedding to the tokenizer and text encoder (``sd.textual_inversion``).

The work lives in :mod:`nodeflow.models.textual_inversion`; this node finds the file and
keeps the extended pair in the model store (keyed by the base modules, the file stamp
and the token), so a second run reuses it. The base tokenizer and encoder stay as they were.
"""

from __future__ import annotations

from typing import Any

from nodeflow.files import stamp
from nodeflow.models import textual_inversion as ti
from nodeflow.node import Context, Input, Output, node


@node("sd.textual_inversion", display_name="Textual Inversion", category="sd/loaders", version="1.0.0")
class TextualInversion:
    """Teach the prompt a new token from an embedding file (.safetensors; A1111 or diffusers layout).

    The token then works in any prompt tokenized and encoded with this node's outputs.
    Multi-vector embeddings add ``tok``, ``tok_1``...; the tokenize node expands ``tok``.
    """

    tokenizer = Input("TOKENIZER")
    text_encoder = Input("TEXT_ENCODER")
    embedding = Input("STRING", widget="file", file="embedding",
                      description="embedding file: absolute, or relative to the graph's folder, the embedding folders or the working dir")
    token = Input("STRING", default="", description="the word that triggers it; empty: the file's own token, else its file name")
    ti_tokenizer = Output("TOKENIZER", display_name="tokenizer")
    ti_text_encoder = Output("TEXT_ENCODER", display_name="text_encoder")

    def run(self, ctx: Context, tokenizer: Any, text_encoder: Any, embedding: str, token: str) -> dict[str, Any]:
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
