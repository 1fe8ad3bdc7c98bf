"""Add a textual-inversion embedding to the tokenizer and text encoder (``sd.textual_inversion``).

The work lives in :mod:`nodeflow.models.textual_inversion`; this node finds the file and
keeps the extended pair in the model store (keyed by the base modules, the file stamp
and the token), so a second run reuses it. An embedding linked into ``trained`` (from
``sd.train_textual_inversion``) is added the same way, without the store (the
executor's cache keeps the result). The base tokenizer and encoder stay as they were.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nodeflow.errors import ErrorInfo
from nodeflow.files import stamp
from nodeflow.models import textual_inversion as ti
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import Embedding, TextEncoders

from .lora import _one_source


@node("sd.textual_inversion", display_name="Textual Inversion", category="sd/loaders", version="1.2.0")
class TextualInversion:
    """Teach the prompt a new token from an embedding (a .safetensors file, A1111 or diffusers layout, or a trained one).

    The token then works in any prompt tokenized and encoded with this node's outputs.
    Multi-vector embeddings add ``tok``, ``tok_1``...; the tokenize node expands ``tok``.
    For SDXL link the model's ``clip`` instead: an SDXL file's ``clip_l`` vectors go to
    the first tokenizer/encoder, its ``clip_g`` vectors to the second (the refiner's
    only), as diffusers' two ``load_textual_inversion`` calls do.
    """

    tokenizer = Input("TOKENIZER", optional=True, description="SD 1.x/2.x's tokenizer (with text_encoder)")
    text_encoder = Input("TEXT_ENCODER", optional=True, description="SD 1.x/2.x's text encoder (with tokenizer)")
    clip = Input("CLIP", optional=True, description="an SDXL model's text encoders: the token goes to both")
    embedding = Input("STRING", default="", widget="file", file="embedding",
                      description="embedding file: absolute, or relative to the graph's folder, the embedding folders or the working dir")
    trained = Input("EMBEDDING", optional=True, description="an embedding from Train Textual Inversion, instead of a file")
    token = Input("STRING", default="", description="the word that triggers it; empty: the embedding's own token (else the file name)")
    ti_tokenizer = Output("TOKENIZER", display_name="tokenizer")
    ti_text_encoder = Output("TEXT_ENCODER", display_name="text_encoder")
    ti_clip = Output("CLIP", display_name="clip", description="the clip whose tokenizers know the token (when one is linked)")

    def validate_inputs(self, check: ValidationContext, embedding: str | None = None, **other: Any) -> list[ErrorInfo]:
        problems = [_one_source(check, "embedding", embedding, "an embedding file")]
        pair = [name for name in ("tokenizer", "text_encoder") if check.upstream(name) is not None]
        if len(pair) == 1:
            missing = "text_encoder" if pair == ["tokenizer"] else "tokenizer"
            problems.append(ErrorInfo("missing_input", f"link '{missing}' too: the token goes to a tokenizer and its encoder",
                                      input=missing))
        elif not pair and check.upstream("clip") is None:
            problems.append(ErrorInfo("missing_input", "link a tokenizer and text encoder (SD 1.x/2.x), or an SDXL model's clip",
                                      input="tokenizer"))
        return [p for p in problems if p is not None]

    def run(self, ctx: Context, tokenizer: Any = None, text_encoder: Any = None, embedding: str = "", token: str = "",
            clip: TextEncoders | None = None, trained: Embedding | None = None) -> dict[str, Any]:
        path = None if trained is not None else ctx.paths.resolve(embedding, "embedding")
        outputs: dict[str, Any] = {"ti_tokenizer": None, "ti_text_encoder": None, "ti_clip": None}
        if tokenizer is not None and text_encoder is not None:
            pair = _taught(ctx, {"text_encoder": (tokenizer, text_encoder)}, path, token, trained)["text_encoder"]
            outputs.update(ti_tokenizer=pair[0], ti_text_encoder=pair[1])
        if clip is not None:
            outputs["ti_clip"] = _taught_clip(ctx, clip, path, token, trained)
        return outputs


def _taught(ctx: Context, pairs: dict[str, tuple[Any, Any]], path: Path | None, token: str,
            trained: Embedding | None) -> dict[str, tuple[Any, Any]]:
    """New (tokenizer, encoder) pairs by slot that know the token: from ``trained``, else the file (kept in the model store)."""
    if trained is not None:
        return ti.add_embeddings(pairs, {"text_encoder": Embedding(token.strip() or trained.token, trained.vectors)})
    assert path is not None
    store = ctx.models

    def build() -> tuple[Any, dict[str, tuple[Any, Any]]]:
        found = ti.read_embeddings(path, token=token, allow_pickle=store.allow_pickle)
        if list(pairs) == ["text_encoder"] and "text_encoder" not in found:
            raise ti.EmbeddingError(f"{path}: an SDXL embedding (clip_g only): link the SDXL model's clip instead")
        # The entry keeps the bases alive, so their id()s cannot be reused while cached.
        return pairs, ti.add_embeddings(pairs, {slot: found[slot] for slot in pairs if slot in found})

    key = ("textual_inversion", *(id(m) for pair in pairs.values() for m in pair), stamp(path), token)
    return store.derived(key, build)[1]  # type: ignore[no-any-return]


#: The clip's text-encoder slots and the tokenizer that goes with each.
_TOKENIZER_OF = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2"}


def _taught_clip(ctx: Context, clip: TextEncoders, path: Path | None, token: str, trained: Embedding | None) -> TextEncoders:
    """``clip`` with every tokenizer/encoder pair it has taught the token."""
    pairs = {slot: (getattr(clip, tok), getattr(clip, slot)) for slot, tok in _TOKENIZER_OF.items() if getattr(clip, slot) is not None}
    taught = _taught(ctx, pairs, path, token, trained)
    changes = {}
    for slot, (new_tokenizer, new_encoder) in taught.items():
        changes[slot], changes[_TOKENIZER_OF[slot]] = new_encoder, new_tokenizer
    return dataclasses.replace(clip, **changes)


NODES = [TextualInversion]
