"""Digit captions and a digit classifier for checking what the default model draws.

The default model (see `tools.demo.train`) is trained on scikit-learn's 8x8
handwritten digits. This module is the other half of that contract: the prompt words
the model understands, and `classify`, which maps rendered images of any size back to
the 0-9 label a classifier trained on the same data set sees in them. Tests and benches
use it to measure whether a workflow really produced the digit it asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from sklearn.svm import SVC

DIGIT_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
"""English word for each label, index = digit."""


def digit_prompt(label: int) -> str:
    """Return the recommended prompt for `label` (0-9), e.g. ``"a handwritten digit seven"``."""
    return f"a handwritten digit {DIGIT_WORDS[label]}"


@lru_cache(maxsize=1)
def train_digit_classifier() -> SVC:
    """Fit an RBF support-vector classifier on all of `sklearn.datasets.load_digits`.

    Inputs are flattened 8x8 images with values in 0..16 (the data set's own range).
    The fit takes well under a second and is cached for the life of the process.
    """
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    data = load_digits()
    # gamma/C are the classic settings for this data set (~99% held-out accuracy).
    classifier = SVC(gamma=0.001, C=10.0)
    classifier.fit(data.data, data.target)
    return classifier


def _to_digit_features(image: Any) -> np.ndarray:
    """Turn one image (PIL, or uint8 array HxW / HxWx3 / HxWx4) into 64 values in 0..16."""
    if isinstance(image, Image.Image):
        pil = image.convert("L")
    else:
        array = np.asarray(image)
        if array.dtype != np.uint8:
            raise TypeError(f"expected a uint8 image array, got dtype {array.dtype}")
        if array.ndim == 3:
            # Grey = channel mean; the model draws grey replicated into RGB.
            array = array[..., :3].astype(np.float32).mean(axis=-1).round().astype(np.uint8)
        elif array.ndim != 2:
            raise ValueError(f"expected an HxW or HxWxC image, got shape {array.shape}")
        pil = Image.fromarray(array, mode="L")
    # BOX averages each source block, which undoes the 2x upscale used in training.
    small = pil.resize((8, 8), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64).reshape(64) * (16.0 / 255.0)


def classify(images: Iterable[Any] | np.ndarray) -> list[int]:
    """Return the predicted digit (0-9) for each image.

    `images` is a sequence of PIL images or uint8 arrays (HxW, HxWx3 or HxWx4, any
    size; white strokes on black, as the default model draws them), or one uint8 array
    of shape NxHxWx3. Each is converted to grey, resized to 8x8 and rescaled to 0..16.
    """
    batch = list(images)  # an NxHxWxC array iterates as N images
    if not batch:
        return []
    features = np.stack([_to_digit_features(image) for image in batch])
    return [int(label) for label in train_digit_classifier().predict(features)]
