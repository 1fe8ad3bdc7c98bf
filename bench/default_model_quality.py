"""What the embedded default model draws through the shipped workflows, with more samples.

Reports (issue 7's acceptance, measured; the suite asserts a smaller version):

* digit accuracy of ``workflows/txt2img.json`` at guidance 7.5 and 1.0 (10 digits x N seeds,
  20 steps, judged by a classifier trained on ``load_digits``);
* how often "a handwritten digit" comes out as a 1, without and with the negative
  prompt "the digit 1";
* img2img from the shipped real "3" toward "the digit 8": fraction of 8s per strength;
* the wall time of the whole default run, ``nodeflow run workflows/txt2img.json`` in a
  fresh process (model load included), median of ``--repeats``.

Run: ``python bench/default_model_quality.py [--seeds 5] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from tools.demo.quality import WorkflowSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per digit for the accuracy figures")
    parser.add_argument("--negative-seeds", type=int, default=40)
    parser.add_argument("--img2img-seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="timed default runs (fresh processes)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    sampler = WorkflowSampler()
    seeds = range(args.seeds)
    for guidance in (7.5, 3.0, 1.0):
        t0 = time.perf_counter()
        acc = sampler.digit_accuracy(guidance, seeds)
        print(f"txt2img accuracy at guidance {guidance}: {acc:.3f} over {10 * args.seeds} images ({time.perf_counter() - t0:.1f} s)")

    neg = range(args.negative_seeds)
    plain = sampler.count_label(1, "txt2img", neg, prompt="a handwritten digit", negative_prompt="")
    steered = sampler.count_label(1, "txt2img", neg, prompt="a handwritten digit", negative_prompt="the digit 1")
    print(f"'a handwritten digit' drawn as a 1: {plain}/{len(neg)} without a negative prompt, {steered}/{len(neg)} with 'the digit 1'")

    i2i = range(args.img2img_seeds)
    curve = []
    for strength in (0.05, 0.1, 0.15, 0.2, 0.3, 0.6, 0.9):
        eights = sampler.count_label(8, "img2img", i2i, prompt="the digit 8", strength=strength)
        curve.append((strength, eights / len(i2i)))
    print("img2img 3 -> 'the digit 8', fraction classified 8 by strength: " + ", ".join(f"{s:.1f}: {f:.2f}" for s, f in curve))

    times = []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "nodeflow.cli", "run", "workflows/txt2img.json", "--out", out, "--json"],
                           check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
    print(f"default run (fresh process, model load included): median {statistics.median(times):.2f} s over {args.repeats} "
          f"(all: {', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
