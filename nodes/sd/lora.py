"""Apply a LoRA to the UNet and text encoder (``sd.lora``): from a file, or trained in the same graph.

The merge itself lives in :mod:`nodeflow.models.lora`; this node finds the file, keeps
the merged modules in the model store (keyed by base module, file stamp and strength,
so a second run does not merge again) and never touches the base modules. A LoRA
linked into ``trained`` (from ``sd.train_lora``) is merged the same way; the executor's
cache keeps that result, so it is not stored in the model store.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nodeflow.errors import ErrorInfo
from nodeflow.files import stamp
from nodeflow.models import lora as lora_models
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import Lora, TextEncoders


@node("sd.lora", display_name="LoRA", category="sd/loaders", version="1.2.0")
class ApplyLora:
    """Merge a LoRA (a .safetensors file, kohya or diffusers/peft layout, or a trained one) into new UNet and text-encoder modules.

    Each merged weight is ``W + strength * alpha / rank * up @ down``; a strength of 0
    passes that component through unchanged. Chain several nodes for several LoRAs.
    For SDXL link the model's ``clip``: its first text encoder takes the LoRA's
    ``text_encoder`` (kohya ``lora_te1_``) layers, its second the ``text_encoder_2``
    (``lora_te2_``) ones, both at ``strength_text``.
    """

    unet = Input("UNET")
    text_encoder = Input("TEXT_ENCODER", optional=True, description="SD 1.x/2.x's text encoder (or SDXL's first)")
    clip = Input("CLIP", optional=True, description="an SDXL model's text encoders: the LoRA's text layers go to both")
    lora = Input("STRING", default="", widget="file", file="lora",
                 description="LoRA file: absolute, or relative to the graph's folder, the LoRA folders or the working dir")
    trained = Input("LORA", optional=True, description="a LoRA from Train LoRA, instead of a file")
    strength_unet = Input("FLOAT", default=1.0, min=-10.0, max=10.0, step=0.05, description="weight of the LoRA in the UNet")
    strength_text = Input("FLOAT", default=1.0, min=-10.0, max=10.0, step=0.05, description="weight of the LoRA in the text encoder")
    lora_unet = Output("UNET", display_name="unet")
    lora_text_encoder = Output("TEXT_ENCODER", display_name="text_encoder")
    lora_clip = Output("CLIP", display_name="clip", description="the clip with both text encoders merged (when one is linked)")

    def validate_inputs(self, check: ValidationContext, lora: str | None = None, **other: Any) -> ErrorInfo | None:
        return _one_source(check, "lora", lora, "a LoRA file")

    def run(self, ctx: Context, unet: Any, lora: str, strength_unet: float, strength_text: float, text_encoder: Any = None,
            clip: TextEncoders | None = None, trained: Lora | None = None) -> dict[str, Any]:
        if trained is not None:
            def merge_trained(base: Any, part: str, strength: float) -> Any:
                return lora_models.merge_lora(base, getattr(trained, part), strength, trained.source)

            return _outputs(merge_trained, unet, text_encoder, clip, strength_unet, strength_text)
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

        return _outputs(merged, unet, text_encoder, clip, strength_unet, strength_text)


def _outputs(merged: Any, unet: Any, text_encoder: Any, clip: TextEncoders | None, strength_unet: float,
             strength_text: float) -> dict[str, Any]:
    """The node's outputs: ``merged(base, part, strength)`` applied to each component given (absent ones stay None)."""
    def text(base: Any, part: str) -> Any:
        return None if base is None else merged(base, part, strength_text)

    new_clip = None
    if clip is not None:
        new_clip = dataclasses.replace(clip, text_encoder=text(clip.text_encoder, "text_encoder"),
                                       text_encoder_2=text(clip.text_encoder_2, "text_encoder_2"))
    return {"lora_unet": merged(unet, "unet", strength_unet), "lora_text_encoder": text(text_encoder, "text_encoder"),
            "lora_clip": new_clip}


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
