"""Training images as a DATASET value: a folder (``sd.dataset``), or pictures made in the graph (``sd.images_to_dataset``).

The reading lives in :mod:`nodeflow.training.dataset`. The folder is a ``file="dataset"``
input, so the planner keys the cache on a digest of its images and caption files
(:func:`nodeflow.files.stamp`): adding, removing or editing one re-runs the node and
what trains on it; a re-run with nothing changed is served from the cache.
"""

from __future__ import annotations

from typing import Any

import torch

from nodeflow.errors import ErrorInfo
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.training import dataset as datasets
from nodeflow.values import Dataset, Image

_RESOLUTION = Input("INT", default=0, min=0, max=4096, step=8, description="side of the training images; 0: the model's own size")
_FLIP = Input("BOOL", default=False, description="flip images left-right at random while training")
_DATASET = Output("DATASET")
_COUNT = Output("INT", description="how many images")


@node("sd.dataset", display_name="Image Dataset", category="sd/training", version="1.0.0")
class ImageDataset:
    """Training images from a folder, with a caption per image (a .txt file beside it, or the template).

    Images are cropped to their centred square and resized to the model's size by the
    trainer. A caption may hold several lines (one is drawn at random per use);
    ``{token}`` in it stands for the trainer's token.
    """

    folder = Input("STRING", file="dataset",
                   description="a folder of images (.png, .jpg, .webp...), optionally with a .txt caption beside each")
    caption = Input("STRING", default=datasets.TOKEN, multiline=True,
                    description="caption of the images without a .txt file; {token} = the trainer's token; one line per alternative")
    resolution = _RESOLUTION
    flip = _FLIP
    dataset = _DATASET
    count = _COUNT

    def validate_inputs(self, check: ValidationContext, folder: str | None = None, caption: str | None = None,
                        **other: Any) -> list[ErrorInfo]:
        if folder is None or caption is None or check.paths is None:
            return []
        try:
            path = check.paths.resolve(folder, "dataset")
        except (OSError, ValueError):
            return []  # the validator reports the missing folder itself
        return [ErrorInfo("invalid_value", problem, input="folder") for problem in datasets.problems(datasets.scan(path), caption)]

    def run(self, ctx: Context, folder: str, caption: str, resolution: int, flip: bool) -> dict[str, Any]:
        data: Dataset = datasets.load(ctx.paths.resolve(folder, "dataset"), caption, resolution, flip)
        return {"dataset": data, "count": len(data)}


@node("sd.images_to_dataset", display_name="Images to Dataset", category="sd/training", version="1.0.0")
class ImagesToDataset:
    """Pictures made in the graph as a DATASET: e.g. class images a model draws for DreamBooth's prior preservation.

    diffusers' DreamBooth script generates missing class images with the base model
    before training; in a graph, draw them (a batch of a class prompt) and wire them in
    here. Each image is rounded to 8 bits, as a PNG written and read back would be.
    """

    images = Input("IMAGE", description="the pictures, a batch")
    caption = Input("STRING", default=datasets.TOKEN, multiline=True,
                    description="caption of every picture; {token} = the trainer's token; one line per alternative")
    resolution = _RESOLUTION
    flip = _FLIP
    dataset = _DATASET
    count = _COUNT

    def validate_inputs(self, check: ValidationContext, caption: str | None = None, **other: Any) -> list[ErrorInfo]:
        if caption is not None and not datasets.alternatives(caption):
            return [ErrorInfo("invalid_value", "the caption is empty: give the pictures a caption", input="caption")]
        return []

    def run(self, ctx: Context, images: Image, caption: str, resolution: int, flip: bool) -> dict[str, Any]:
        pixels = (images.pixels.clamp(0, 1) * 255).round().to(torch.uint8)
        count = pixels.shape[0]
        data = Dataset(tuple(p.contiguous() for p in pixels), (caption,) * count, tuple(f"image_{i:04d}" for i in range(count)),
                       resolution, flip, source="the graph")
        return {"dataset": data, "count": count}


NODES = [ImageDataset, ImagesToDataset]
