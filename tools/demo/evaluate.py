"""Measure what the default model draws, with plain diffusers pipelines on the CPU.

    python -m tools.demo.evaluate [--model DIR] [--seeds N] [--grid PNG]

Reports, using `tools.demo.digits.classify` as the judge:
- accuracy of "a handwritten digit {word}" for each digit x N seeds at guidance 7.5
  and 1.0 (20 DDIM steps, 16x16 px);
- how often "a handwritten digit" comes out as a 1, without and with the negative
  prompt "the digit 1";
- img2img from real 3s toward "the digit 8" at strength 0.6;
- the time to load the pipeline and render one image with the default settings.
With --grid it also writes a 10 digits x 8 seeds grid (16 px tiles shown at 64 px).
These are the figures quoted in docs/default_model.md.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tools.demo.digits import DIGIT_WORDS, classify, digit_prompt
from tools.demo.train import restart_with_passive_openmp

DEFAULT_MODEL = Path("nodeflow/default_model")
"""The committed model folder, relative to the repository root."""

STEPS = 20
"""Inference steps used for every measurement."""


def load_pipeline(model: Path) -> object:
    """Load `model` as a StableDiffusionPipeline in fp32 on the CPU, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(
        str(model), local_files_only=True, safety_checker=None, dtype=torch.float32
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _generate(
    pipeline: object,
    prompts: Sequence[str],
    seeds: Sequence[int],
    guidance: float,
    negative: str | None = None,
) -> list[Image.Image]:
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    result = pipeline(  # type: ignore[operator]
        list(prompts),
        negative_prompt=None if negative is None else [negative] * len(prompts),
        num_inference_steps=STEPS,
        guidance_scale=guidance,
        generator=generators,
    )
    return list(result.images)


def digit_accuracy(pipeline: object, seeds: Sequence[int], guidance: float) -> tuple[float, list[list[int]]]:
    """Return the fraction of (digit, seed) renders classified as the asked digit,
    and the predicted labels per digit."""
    predictions = []
    for digit in range(10):
        images = _generate(pipeline, [digit_prompt(digit)] * len(seeds), seeds, guidance)
        predictions.append(classify(images))
    hits = sum(p == d for d, row in enumerate(predictions) for p in row)
    return hits / (10 * len(seeds)), predictions


def ones_fraction(pipeline: object, seeds: Sequence[int], negative: str | None) -> tuple[float, Counter[int]]:
    """Fraction of "a handwritten digit" renders (guidance 7.5) that classify as 1."""
    counts: Counter[int] = Counter()
    for chunk in range(0, len(seeds), 50):
        part = seeds[chunk : chunk + 50]
        counts.update(classify(_generate(pipeline, ["a handwritten digit"] * len(part), part, 7.5, negative)))
    return counts[1] / len(seeds), counts


def img2img_three_to_eight(pipeline: object, sources: int, seeds: Sequence[int]) -> Counter[int]:
    """Labels of img2img renders from the first `sources` real 3s toward "the digit 8"."""
    from diffusers import StableDiffusionImg2ImgPipeline
    from sklearn.datasets import load_digits

    img2img = StableDiffusionImg2ImgPipeline(**pipeline.components)  # type: ignore[attr-defined]
    img2img.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]
    data = load_digits()
    threes = data.images[data.target == 3][:sources]
    counts: Counter[int] = Counter()
    for three in threes:
        grey = Image.fromarray((three * (255.0 / 16.0)).round().astype(np.uint8), mode="L")
        source = grey.resize((16, 16), Image.Resampling.BILINEAR).convert("RGB")
        result = img2img(  # type: ignore[operator]
            ["the digit 8"] * len(seeds),
            image=source,
            strength=0.6,
            num_inference_steps=STEPS,
            guidance_scale=7.5,
            generator=[torch.Generator().manual_seed(seed) for seed in seeds],
        )
        counts.update(classify(result.images))
    return counts


def write_grid(pipeline: object, path: Path, seeds: Sequence[int], tile: int = 64) -> None:
    """Write a grid: one row per digit 0-9, one column per seed, guidance 7.5."""
    grid = Image.new("L", (tile * len(seeds), tile * 10))
    for digit in range(10):
        images = _generate(pipeline, [digit_prompt(digit)] * len(seeds), seeds, 7.5)
        for column, image in enumerate(images):
            grid.paste(image.convert("L").resize((tile, tile), Image.Resampling.NEAREST), (column * tile, digit * tile))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, optimize=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Run every measurement and print the results."""
    parser = argparse.ArgumentParser(prog="python -m tools.demo.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--seeds", type=int, default=5, help="seeds per digit for the accuracy figures")
    parser.add_argument("--grid", type=Path, default=None, help="also write a 10x8 grid PNG here")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    started = time.perf_counter()
    pipeline = load_pipeline(args.model)
    loaded = time.perf_counter()
    pipeline(digit_prompt(7), num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0))  # type: ignore[operator]
    rendered = time.perf_counter()
    print(f"load {loaded - started:.2f} s + one 16x16 image, {STEPS} steps, guidance 7.5: {rendered - loaded:.2f} s")

    seeds = list(range(args.seeds))
    for guidance in (7.5, 3.0, 1.0):
        accuracy, predictions = digit_accuracy(pipeline, seeds, guidance)
        print(f"guidance {guidance}: {accuracy:.0%} of {10 * len(seeds)} classified as the asked digit")
        for digit, row in enumerate(predictions):
            print(f"  {DIGIT_WORDS[digit]:>5}: {row}")

    negative_seeds = list(range(100, 300))
    for negative in (None, "the digit 1"):
        fraction, counts = ones_fraction(pipeline, negative_seeds, negative)
        print(
            f'"a handwritten digit", negative {negative!r}: {fraction:.1%} of '
            f"{len(negative_seeds)} are 1s; labels {dict(sorted(counts.items()))}"
        )

    counts = img2img_three_to_eight(pipeline, sources=20, seeds=[0, 1])
    total = sum(counts.values())
    print(
        f'img2img real 3 -> "the digit 8", strength 0.6: {counts[8]}/{total} are 8s, '
        f"{counts[3]}/{total} still 3s; labels {dict(sorted(counts.items()))}"
    )

    if args.grid is not None:
        write_grid(pipeline, args.grid, seeds=list(range(8)))
        print(f"wrote {args.grid} ({args.grid.stat().st_size / 1e3:.1f} kB)")


if __name__ == "__main__":
    restart_with_passive_openmp("tools.demo.evaluate")
    main()
