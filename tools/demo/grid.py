"""Draw the docs' 10 digits x 8 seeds grid by running ``workflows/txt2img.json``.

    python -m tools.demo.grid [--out docs/images/digits_grid.png] [--seeds 8]

Each tile is the PNG the workflow's save node wrote for "a handwritten digit {word}"
with that seed (guidance 7.5, 20 DDIM steps, 16x16 px), scaled to 64x64 with nearest
neighbours so the pixels stay visible.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from .digits import digit_prompt
from .quality import WorkflowSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/digits_grid.png"))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--tile", type=int, default=64)
    args = parser.parse_args()
    sampler = WorkflowSampler()
    grid = Image.new("L", (args.tile * args.seeds, args.tile * 10))
    for digit in range(10):
        for seed in range(args.seeds):
            tile = Image.fromarray(sampler.draw("txt2img", prompt=digit_prompt(digit), seed=seed)).convert("L")
            grid.paste(tile.resize((args.tile, args.tile), Image.Resampling.NEAREST), (seed * args.tile, digit * args.tile))
    grid.save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
