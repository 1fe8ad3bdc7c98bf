"""Images in and out: load a picture file, save PNGs with the graph embedded, preview.

Saved files are named ``{prefix}_{node}_{index:05d}.png``. The index is the first one
whose file is either absent or byte-identical to the new PNG, so a re-run of the same
graph into the same folder reuses its files and a different result never overwrites
an existing one.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nodeflow.budget import BudgetCheck, Pixels
from nodeflow.files import glob_stamp
from nodeflow.node import Context, Input, Output, node
from nodeflow.values import Image

from . import _budget

#: The PNG text chunk holding the graph document that made the image.
GRAPH_CHUNK = "nodeflow_graph"
#: The PNG text chunk holding the image's place in the batch the graph makes (``"0"`` for the first).
BATCH_INDEX_CHUNK = "nodeflow_batch_index"


def pil_to_image(picture: Any) -> Image:
    """A PIL picture as an :class:`Image`, converted exactly as diffusers' ``pil_to_numpy``/``numpy_to_pt`` do."""
    array = np.array(picture.convert("RGB")).astype(np.float32) / 255.0
    # transpose, not permute+contiguous: diffusers hands the VAE these (channels-last) strides.
    return Image(torch.from_numpy(array[None].transpose(0, 3, 1, 2)))


def image_to_uint8(image: Image) -> np.ndarray:
    """[B, H, W, 3] uint8 pixels, rounded exactly as diffusers' ``numpy_to_pil`` does."""
    array = image.pixels.detach().cpu().permute(0, 2, 3, 1).float().numpy()
    return (array * 255).round().astype("uint8")  # type: ignore[no-any-return]


@node("sd.load_image", display_name="Load Image", category="sd/image", version="1.2.0")
class LoadImage:
    """Load a picture file (PNG, JPEG, WebP...) as an RGB image in [0, 1], and its alpha as a mask.

    ``mask`` is 1 where the picture is transparent (repaint there), 0 where opaque; all
    zeros for a picture without alpha.
    """

    path = Input("STRING", widget="image", file="image",
                 description="absolute, or relative to the graph file's folder, the working dir or the server's uploads")
    image = Output("IMAGE")
    width = Output("INT")
    height = Output("INT")
    mask = Output("MASK", description="1 where the picture is transparent")

    def output_pixels(self, check: BudgetCheck, path: Any = None, **other: Any) -> Pixels | None:
        return _budget.picture(check, path)

    def run(self, ctx: Context, path: str) -> dict[str, Any]:
        from PIL import Image as PILImage

        from .masks import mask_from_picture

        with PILImage.open(ctx.paths.resolve(path, "image")) as picture:
            image = pil_to_image(picture)
            mask = mask_from_picture(picture, "alpha")
        return {"image": image, "width": image.pixels.shape[-1], "height": image.pixels.shape[-2], "mask": mask}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "image"


def _png_bytes(pixels: np.ndarray, text: dict[str, str]) -> bytes:
    from PIL import Image as PILImage
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@node("sd.save_image", display_name="Save Image", category="sd/image", output_node=True, pure=False)
class SaveImage:
    """Save images as PNG files in the run's output folder, with the graph JSON embedded.

    The graph (with the run's inputs applied) is in the PNG text chunk
    ``nodeflow_graph``, so any saved image can be loaded back as its workflow; for a
    batch, ``nodeflow_batch_index`` says which of the graph's images this one is.
    """

    images = Input("IMAGE")
    prefix = Input("STRING", default="nodeflow", description="start of the file names")

    def fingerprint(self, ctx: Context, prefix: str | None = None, **linked: Any) -> str:
        # Files this node may reuse: if one is deleted or edited it must write again.
        return glob_stamp(Path(ctx.output_dir), f"{_safe(prefix or '')}_{_safe(ctx.node_id)}_*.png")

    def run(self, ctx: Context, images: Image, prefix: str) -> None:
        folder = Path(ctx.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        text = {"Software": "nodeflow"}
        if ctx.graph is not None:
            text[GRAPH_CHUNK] = json.dumps(ctx.graph, sort_keys=True, separators=(",", ":"))
        stem = f"{_safe(prefix)}_{_safe(ctx.node_id)}"
        index = 0
        for batch_index, pixels in enumerate(image_to_uint8(images)):
            data = _png_bytes(pixels, {**text, BATCH_INDEX_CHUNK: str(batch_index)})
            while True:
                path = folder / f"{stem}_{index:05d}.png"
                if not path.exists():
                    path.write_bytes(data)
                    break
                if path.read_bytes() == data:
                    break  # the same image from an earlier run: reuse it
                index += 1
            index += 1
            ctx.add_output(path, kind="image", width=int(pixels.shape[1]), height=int(pixels.shape[0]), batch_index=batch_index)


@node("sd.preview_image", display_name="Preview Image", category="sd/image", output_node=True, pure=False)
class PreviewImage:
    """Show images without keeping them: written to ``previews/`` in the output folder, overwritten each run."""

    images = Input("IMAGE")

    def fingerprint(self, ctx: Context, **linked: Any) -> str:
        return glob_stamp(Path(ctx.output_dir) / "previews", f"preview_{_safe(ctx.node_id)}_*.png")

    def run(self, ctx: Context, images: Image) -> None:
        folder = Path(ctx.output_dir) / "previews"
        folder.mkdir(parents=True, exist_ok=True)
        for batch_index, pixels in enumerate(image_to_uint8(images)):
            path = folder / f"preview_{_safe(ctx.node_id)}_{batch_index:05d}.png"
            path.write_bytes(_png_bytes(pixels, {"Software": "nodeflow"}))
            ctx.add_output(path, kind="preview", width=int(pixels.shape[1]), height=int(pixels.shape[0]), batch_index=batch_index)


@node("sd.resize_image", display_name="Resize Image", category="sd/image")
class ResizeImage:
    """Resize images (Lanczos on 8-bit pixels, as diffusers' preprocessing does); 0 keeps that side."""

    images = Input("IMAGE")
    width = Input("INT", default=0, min=0, max=8192, description="0: keep the width")
    height = Input("INT", default=0, min=0, max=8192, description="0: keep the height")
    resized = Output("IMAGE", display_name="image")

    def output_pixels(self, check: BudgetCheck, width: Any = None, height: Any = None, **other: Any) -> Pixels | None:
        return _budget.kept_sides(check, "images", width, height)

    def run(self, ctx: Context, images: Image, width: int, height: int) -> Image:
        from PIL import Image as PILImage

        old_h, old_w = images.pixels.shape[-2:]
        size = (width or old_w, height or old_h)
        if size == (old_w, old_h):
            return images
        frames = [np.array(PILImage.fromarray(p).resize(size, resample=PILImage.Resampling.LANCZOS)) for p in image_to_uint8(images)]
        # Stacked channels-last, then transposed, as diffusers' pil_to_numpy/numpy_to_pt: the VAE's kernels follow the strides.
        return Image(torch.from_numpy((np.stack(frames).astype(np.float32) / 255.0).transpose(0, 3, 1, 2)))


NODES = [LoadImage, ResizeImage, SaveImage, PreviewImage]
