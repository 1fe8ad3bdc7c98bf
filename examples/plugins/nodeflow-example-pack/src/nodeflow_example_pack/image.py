"""Desaturate images; shows how an IMAGE node reads and returns :class:`nodeflow.values.Image`."""

import torch

from nodeflow.node import Input, Output, node
from nodeflow.values import Image

# ITU-R BT.601 luma weights: the ones PIL uses for convert("L"), so results match it.
_LUMA = torch.tensor([0.299, 0.587, 0.114])


@node("example.grayscale", display_name="Grayscale", category="example/image", version="1.0.0")
class Grayscale:
    """Blend images towards their luma; ``strength`` 1 is fully gray, 0 leaves them as they are."""

    image = Input(Image)
    strength = Input("FLOAT", default=1.0, min=0.0, max=1.0, step=0.05)
    result = Output(Image)

    def run(self, ctx, image, strength):
        pixels = image.pixels  # float32 [B, 3, H, W] in [0, 1]
        weights = _LUMA.to(dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        luma = (pixels * weights).sum(dim=1, keepdim=True).expand_as(pixels)
        # Out-of-place ops only: the input tensor is shared through the cache.
        return Image(torch.lerp(pixels, luma, strength).clamp(0.0, 1.0))
