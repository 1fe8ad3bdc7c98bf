"""A folder of training images and their captions.

The folder's top level holds images (:data:`~nodeflow.files.IMAGE_SUFFIXES`) and,
optionally, a caption file per image: ``cat3.png`` is described by ``cat3.txt``.
Images without a caption file use the caption template. A caption (file or template)
may hold several lines: each is an alternative, one drawn at random each time the
image is used (as diffusers' textual-inversion script draws from its templates), and
``{token}`` in it stands for the trainer's token.

:func:`scan` lists a folder without reading the images, and :func:`problems` says what
is wrong with it (no images, a caption file without its image, images without a caption
and no template), cheap enough for validation; :func:`load` reads everything (an image
that does not decode is an error naming it); :func:`pixels` crops and resizes the
images for a model, the way diffusers' DreamBooth script prepares them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..files import CAPTION_SUFFIX, IMAGE_SUFFIXES
from ..values import Dataset

#: What captions write for the trainer's token.
TOKEN = "{token}"


class DatasetError(ValueError):
    """A dataset folder that cannot be trained on; the message names the folder or file at fault."""


@dataclass(frozen=True)
class Listing:
    """A dataset folder's files: images (sorted by name), caption files by image stem, captions without an image."""

    folder: Path
    images: list[Path] = field(default_factory=list)
    captions: dict[str, Path] = field(default_factory=dict)
    orphans: list[Path] = field(default_factory=list)
    is_folder: bool = True


def scan(folder: str | Path) -> Listing:
    """The images and caption files at the top of ``folder`` (nothing is read)."""
    folder = Path(folder)
    if not folder.is_dir():
        return Listing(folder, is_folder=False)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    stems = {p.stem for p in images}
    texts = [p for p in files if p.suffix.lower() == CAPTION_SUFFIX]
    return Listing(folder, images, {p.stem: p for p in texts if p.stem in stems}, [p for p in texts if p.stem not in stems])


def problems(listing: Listing, template: str) -> list[str]:
    """Why ``listing`` cannot be trained on with caption ``template`` (empty when it can)."""
    where = listing.folder
    if not listing.is_folder:
        return [f"dataset {where} is a file, not a folder of images"]
    if not listing.images:
        return [f"dataset folder {where} holds no images ({', '.join(IMAGE_SUFFIXES)})"]
    found = []
    if listing.orphans:
        names = ", ".join(p.name for p in listing.orphans[:4])
        found.append(f"caption file(s) without an image of the same name in {where}: {names}")
    uncaptioned = [p.name for p in listing.images if p.stem not in listing.captions]
    if uncaptioned and not template.strip():
        if listing.captions:
            found.append(f"{len(uncaptioned)} image(s) in {where} have no caption file and there is no caption template "
                         f"(e.g. {', '.join(uncaptioned[:4])})")
        else:
            found.append(f"no captions for {where}: give a caption template or a .txt file beside each image")
    return found


def alternatives(text: str) -> tuple[str, ...]:
    """The non-empty lines of a caption, stripped: the alternatives drawn from."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def load(folder: str | Path, template: str = TOKEN, resolution: int = 0, flip: bool = False) -> Dataset:
    """Read a dataset folder (see the module docstring); :class:`DatasetError` for any problem."""
    listing = scan(folder)
    found = problems(listing, template)
    if found:
        raise DatasetError("; ".join(found))
    images, captions = [], []
    for path in listing.images:
        images.append(_read_image(path))
        caption_file = listing.captions.get(path.stem)
        text = _read_caption(caption_file) if caption_file is not None else template
        if not alternatives(text):
            raise DatasetError(f"caption of {path.name} is empty")
        captions.append(text)
    return Dataset(tuple(images), tuple(captions), tuple(p.name for p in listing.images), resolution, flip, str(listing.folder))


def _read_image(path: Path) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            array = np.array(picture.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _read_caption(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read caption file {path}: {exc}") from exc


def captions(dataset: Dataset, token: str) -> list[tuple[str, ...]]:
    """Each image's caption alternatives with ``{token}`` replaced by ``token``.

    A caption that needs a token when ``token`` is empty is a :class:`DatasetError`.
    """
    out = []
    for name, text in zip(dataset.names, dataset.captions, strict=True):
        if TOKEN in text and not token:
            raise DatasetError(f"the caption of {name} uses {TOKEN} but the trainer has no token")
        out.append(alternatives(text.replace(TOKEN, token)))
    return out


def pixels(dataset: Dataset, native: int) -> torch.Tensor:
    """The images as float32 [N, 3, S, S] in [-1, 1]: the largest centred square, resized to S.

    ``S`` is the dataset's ``resolution``, or ``native`` (the model's size) when that is 0.
    Resizing uses PIL's Lanczos filter on the 8-bit pixels (as diffusers' image
    processor does); images already S x S are used as they are.
    """
    from PIL import Image

    size = dataset.resolution or native
    out = []
    for image in dataset.images:
        height, width = image.shape[-2:]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = image[:, top : top + side, left : left + side]
        if side != size:
            picture = Image.fromarray(square.permute(1, 2, 0).numpy()).resize((size, size), Image.Resampling.LANCZOS)
            square = torch.from_numpy(np.array(picture)).permute(2, 0, 1)
        out.append(square)
    return torch.stack(out).float() / 127.5 - 1.0


__all__ = ["TOKEN", "DatasetError", "Listing", "alternatives", "captions", "load", "pixels", "problems", "scan"]
