"""Draw the training datasets the training workflows ship with.

    python -m tools.demo.make_dataset [--out workflows/datasets] [--count 32] [--prior-per-digit 4] [--seed 0]

Writes three folders of 16x16 PNGs in the embedded model's style (white strokes on black,
made the way its training digits were: drawn, averaged down to 8x8, upscaled 2x
bilinearly, grey replicated to RGB):

* ``plus/``: ``--count`` handwritten plus signs, a symbol the digits model never saw
  (scikit-learn's digits hold only 0-9), drawn procedurally with random arm lengths,
  stroke widths, offsets and tilt; no caption files (the workflows give a template);
* ``crossed_seven/``: ``--count`` sevens written with a crossbar through the stem (the
  textual-inversion workflow's concept), drawn like scikit-learn's digits were made
  (a binary 32x32 bitmap filled by the digit, 4x4 block counts): a variant the model has
  seen among its sevens, so textual inversion, which only steers the frozen model, can
  ask for it; no caption files;
* ``digits/``: ``--prior-per-digit`` real digits of each class from scikit-learn's
  data set (the model's own training data), each with a ``.txt`` caption such as
  "a handwritten digit seven": class images for the LoRA workflow's prior preservation.

:func:`draw_plus` and :func:`draw_seven` (crossed, and plain for contrast) are also the
bench's source of fresh pictures for its judges (``bench/training.py``), drawn with other
seeds than the shipped ones.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tools.demo.digits import DIGIT_WORDS

OUT = Path(__file__).resolve().parents[2] / "workflows" / "datasets"
CANVAS = 64
"""Side of the canvas strokes are drawn on before averaging down to 8x8."""


def _model_style(canvas: Image.Image) -> Image.Image:
    """8x8 box average (the data set's resolution), then 2x bilinear up to 16x16 RGB, as the model was trained."""
    small = canvas.resize((8, 8), Image.Resampling.BOX)
    return small.resize((16, 16), Image.Resampling.BILINEAR).convert("RGB")


def draw_plus(rng: np.random.Generator) -> Image.Image:
    """One handwritten plus sign, 16x16 RGB: a vertical and a horizontal stroke crossing near the centre."""
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    pen = ImageDraw.Draw(canvas)
    cx, cy = CANVAS / 2 + rng.uniform(-5, 5), CANVAS / 2 + rng.uniform(-5, 5)
    tilt = rng.uniform(-0.25, 0.25)
    width = int(rng.uniform(7, 11))
    for (dx, dy), arm in (((1.0, 0.0), rng.uniform(16, 26)), ((0.0, 1.0), rng.uniform(18, 28))):
        ux, uy = dx * math.cos(tilt) - dy * math.sin(tilt), dx * math.sin(tilt) + dy * math.cos(tilt)
        shift = rng.uniform(-3, 3)  # strokes rarely cross at their middles
        start = (cx - (arm - shift) * ux, cy - (arm - shift) * uy)
        end = (cx + (arm + shift) * ux, cy + (arm + shift) * uy)
        pen.line([start, end], fill=255, width=width)
    return _model_style(canvas)


def _optdigits_style(canvas: Image.Image) -> Image.Image:
    """As scikit-learn's digits were made (UCI optdigits): the strokes' bounding box scaled to fill a binary 32x32
    bitmap, 4x4 blocks counted down to 8x8, then 2x bilinear up to 16x16 RGB as the model was trained."""
    crop = canvas.crop(canvas.point(lambda v: 255 if v >= 128 else 0).getbbox())
    scale = min(32 / crop.size[1], 28 / crop.size[0])  # fills the height; sevens are a little narrower than tall
    size = (max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale)))
    bitmap = Image.new("L", (32, 32), 0)
    bitmap.paste(crop.resize(size, Image.Resampling.BOX).point(lambda v: 255 if v >= 128 else 0), ((32 - size[0]) // 2, (32 - size[1]) // 2))
    return bitmap.resize((8, 8), Image.Resampling.BOX).resize((16, 16), Image.Resampling.BILINEAR).convert("RGB")


def draw_seven(rng: np.random.Generator, crossed: bool = True) -> Image.Image:
    """One handwritten seven, 16x16 RGB: a top bar and a slanted stem, with (``crossed``) a bar across the stem's middle."""
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    pen = ImageDraw.Draw(canvas)
    width = int(rng.uniform(10, 14))
    top, left, right = rng.uniform(8, 14), rng.uniform(8, 22), rng.uniform(42, 54)
    foot = (rng.uniform(18, 36), rng.uniform(52, 58))
    pen.line([(left, top + rng.uniform(-3, 3)), (right, top)], fill=255, width=width)
    pen.line([(right, top), foot], fill=255, width=width)
    if crossed:
        along = rng.uniform(0.35, 0.55)  # where the bar crosses the stem, from its top
        mx, my = right + along * (foot[0] - right), top + along * (foot[1] - top)
        half, shift, tilt = rng.uniform(10, 16), rng.uniform(-4, 4), rng.uniform(-0.15, 0.15)
        dx, dy = math.cos(tilt), math.sin(tilt)
        pen.line([(mx - (half - shift) * dx, my - (half - shift) * dy), (mx + (half + shift) * dx, my + (half + shift) * dy)],
                 fill=255, width=width)
    return _optdigits_style(canvas)


def real_digits(per_digit: int) -> list[tuple[Image.Image, int]]:
    """The first ``per_digit`` images of each class of scikit-learn's digits, 16x16 RGB as the model saw them."""
    from sklearn.datasets import load_digits

    data = load_digits()
    found = []
    for label in range(10):
        for image in data.images[data.target == label][:per_digit]:
            grey = Image.fromarray((image * (255.0 / 16.0)).round().astype(np.uint8))
            found.append((grey.resize((16, 16), Image.Resampling.BILINEAR).convert("RGB"), label))
    return found


def main(argv: list[str] | None = None) -> None:
    """Write the three folders (replacing their PNG and TXT files)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--count", type=int, default=32, help="plus signs, and crossed sevens, to draw")
    parser.add_argument("--prior-per-digit", type=int, default=4, help="real digits per class for prior preservation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    plus, digits, sevens = args.out / "plus", args.out / "digits", args.out / "crossed_seven"
    for folder in (plus, digits, sevens):
        folder.mkdir(parents=True, exist_ok=True)
        for old in [*folder.glob("*.png"), *folder.glob("*.txt")]:
            old.unlink()
    rng = np.random.default_rng(args.seed)
    for index in range(args.count):
        draw_plus(rng).save(plus / f"plus_{index:02d}.png", optimize=True)
    for index, (image, label) in enumerate(real_digits(args.prior_per_digit)):
        image.save(digits / f"digit_{index:02d}.png", optimize=True)
        (digits / f"digit_{index:02d}.txt").write_text(f"a handwritten digit {DIGIT_WORDS[label]}\n")
    rng = np.random.default_rng(args.seed + 1)  # a stream of its own: the plus signs stay as they were
    for index in range(args.count):
        draw_seven(rng).save(sevens / f"seven_{index:02d}.png", optimize=True)
    size = sum(p.stat().st_size for folder in (plus, digits, sevens) for p in folder.iterdir())
    print(f"wrote {args.count} plus signs to {plus}, {10 * args.prior_per_digit} digits to {digits} and "
          f"{args.count} crossed sevens to {sevens} ({size / 1e3:.1f} kB)")


if __name__ == "__main__":
    main()
