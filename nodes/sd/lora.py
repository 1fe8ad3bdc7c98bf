"""Apply a LoRA file to the UNet and text encoder (``sd.lora``).

The merge itself lives in :mod:`nodeflow.models.lora`; this node finds the file, keeps
the merged modules in the model store (keyed by base module, file stamp and strength,
so a second run does not merge again) and never touches the base modules.
"""

from __future__ import annotations

from typing import Any

from nodeflow.files import stamp
from nodeflow.models import lora as lora_models
from nodeflow.node import Context, Input, Output, node


@node("sd.lora", display_name="LoRA", category="sd/loaders", version="1.0.0")
class ApplyLora:
    """Merge a LoRA (.safetensors; kohya or diffusers/peft layout) into new UNet and text-encoder modules.

    Each merged weight is ``W + strength * alpha / rank * up @ down``; a strength of 0
    passes that component through unchanged. Chain several nodes for several LoRAs.
    """

    unet = Input("UNET")
    text_encoder = Input("TEXT_ENCODER")
    lora = Input("STRING", widget="file", file="lora",
                 description="LoRA file: absolute, or relative to the graph's folder, the LoRA folders or the working dir")
    strength_unet = Input("FLOAT", default=1.0, min=-10.0, max=10.0, step=0.05, description="weight of the LoRA in the UNet")
    strength_text = Input("FLOAT", default=1.0, min=-10.0, max=10.0, step=0.05, description="weight of the LoRA in the text encoder")
    lora_unet = Output("UNET", display_name="unet")
    lora_text_encoder = Output("TEXT_ENCODER", display_name="text_encoder")

    def run(self, ctx: Context, unet: Any, text_encoder: Any, lora: str, strength_unet: float, strength_text: float) -> dict[str, Any]:
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


NODES = [ApplyLora]
