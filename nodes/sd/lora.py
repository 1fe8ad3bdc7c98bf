"""Apply a LoRA to the UNet and text encoder (``sd.lora``): from a file, or trained in the same graph.

The merge itself lives in :mod:`nodeflow.models.lora`; this node finds the file, keeps
the merged modules in the model store (keyed by base module, file stamp and strength,
so a second run does not merge again) and never touches the base modules. A LoRA
linked into ``trained`` (from ``sd.train_lora``) is merged the same way; the executor's
cache keeps that result, so it is not stored in the model store.
"""

from __future__ import annotations

from typing import Any

from nodeflow.errors import ErrorInfo
from nodeflow.files import stamp
from nodeflow.models import lora as lora_models
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import Lora


@node("sd.lora", display_name="LoRA", category="sd/loaders", version="1.1.0")
class ApplyLora:
    """Merge a LoRA (a .safetensors file, kohya or diffusers/peft layout, or a trained one) into new UNet and text-encoder modules.

    Each merged weight is ``W + strength * alpha / rank * up @ down``; a strength of 0
    passes that component through unchanged. Chain several nodes for several LoRAs.
    """

    unet = Input("UNET")
    text_encoder = Input("TEXT_ENCODER")
    lora = Input("STRING", default="", widget="file", file="lora",
                 description="LoRA file: absolute, or relative to the graph's folder, the LoRA folders or the working dir")
    trained = Input("LORA", optional=True, description="a LoRA from Train LoRA, instead of a file")
    strength_unet = Input("FLOAT", default=1.0, min=-10.0, max=10.0, step=0.05, description="weight of the LoRA in the UNet")
    strength_text = Input("FLOAT", default=1.0, min=-10.0, max=10.0, step=0.05, description="weight of the LoRA in the text encoder")
    lora_unet = Output("UNET", display_name="unet")
    lora_text_encoder = Output("TEXT_ENCODER", display_name="text_encoder")

    def validate_inputs(self, check: ValidationContext, lora: str | None = None, **other: Any) -> ErrorInfo | None:
        return _one_source(check, "lora", lora, "a LoRA file")

    def run(self, ctx: Context, unet: Any, text_encoder: Any, lora: str, strength_unet: float, strength_text: float,
            trained: Lora | None = None) -> dict[str, Any]:
        if trained is not None:
            return {
                "lora_unet": lora_models.merge_lora(unet, trained.unet, strength_unet, trained.source),
                "lora_text_encoder": lora_models.merge_lora(text_encoder, trained.text_encoder, strength_text, trained.source),
            }
        path = ctx.paths.resolve(lora, "lora")
        store = ctx.models
        parsed: list[lora_models.Lora] = []

        def read() -> lora_models.Lora:
            # Read at most once per run, and only when some merge is not cached yet.
            if not parsed:
                parsed.append(lora_models.read_lora(path, allow_pickle=store.allow_pickle))
            return parsed[0]

        def merged(base: Any, part: str, strength: float) -> Any:
            if strength == 0:
                return base

            def build() -> tuple[Any, Any]:
                # The entry keeps `base` alive, so its id() cannot be reused while cached.
                return base, lora_models.merge_lora(base, getattr(read(), part), strength, str(path))

            key = ("lora", part, id(base), stamp(path), float(strength))
            return store.derived(key, build)[1]

        return {
            "lora_unet": merged(unet, "unet", strength_unet),
            "lora_text_encoder": merged(text_encoder, "text_encoder", strength_text),
        }


def _one_source(check: ValidationContext, name: str, value: str | None, what: str) -> ErrorInfo | None:
    """A file name or a linked ``trained`` value, exactly one of them (shared with Textual Inversion)."""
    linked = check.upstream("trained") is not None
    if value is None:  # the name itself is linked: it may be anything
        return None
    if linked and value:
        return ErrorInfo("invalid_value", f"give {what} or link 'trained', not both", input=name)
    if not linked and not value:
        return ErrorInfo("missing_input", f"give {what} or link a trained value into 'trained'", input=name)
    return None


NODES = [ApplyLora]
