"""Training as nodes on the embedded model: how long, and does the model learn the new symbol?

For each shipped training workflow (``workflows/train_textual_inversion.json``,
``workflows/train_lora.json``), as shipped unless ``--set`` says otherwise:

1. run it once on a fresh executor (model load, training and one picture), timing the
   training node and the whole run;
2. draw ``--seeds`` pictures with the workflow's prompt (which names the new token) and
   as many with the same prompt without the token, changing only the picture's noise
   seed (the trained result is served from the executor's cache);
3. judge every picture with a classifier trained here: an RBF SVC over 11 classes, the
   ten digits of scikit-learn's data set (the model's own training data) and plus signs
   freshly drawn by ``tools.demo.make_dataset.draw_plus`` with other seeds than the
   shipped dataset's, on 8x8 box-averaged grey pixels (as ``tools.demo.digits`` does).
   A picture "shows the concept" when the judge says plus. The judge's own held-out
   accuracy, and how often it calls the untrained model's digits a plus, are reported
   beside the figures so they can be read with its errors in mind.

Acceptance (issue 17): textual inversion trains in at most 5 minutes and LoRA in at most
10 on 2 CPU cores; with the token >= 80% of the pictures show the concept, without it
<= 10%. Run: ``python bench/training.py [--which ti lora] [--seeds 20] [--ti NAME=VALUE] [--lora NAME=VALUE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nodeflow.cache import Cache  # noqa: E402
from nodeflow.executor import Executor  # noqa: E402
from nodeflow.graph import load_graph  # noqa: E402
from nodeflow.models import ModelStore  # noqa: E402
from nodeflow.registry import build_registry  # noqa: E402
from tools.demo.digits import _to_digit_features, digit_prompt  # noqa: E402
from tools.demo.make_dataset import draw_plus  # noqa: E402

WORKFLOWS = {"ti": REPO / "workflows" / "train_textual_inversion.json", "lora": REPO / "workflows" / "train_lora.json"}
PLUS = 10  # the judge's label for a plus sign (0-9 are the digits)


@dataclass
class Judge:
    """Says whether a picture shows a plus sign: the SVC must say plus, and the picture must be as close to a
    known plus as the VAE's own copies of unseen plus signs are (so a broken picture with a bar in it is not a plus).
    """

    svc: Any
    pluses: np.ndarray  # features of the plus signs the SVC was fitted on
    threshold: float  # largest accepted distance to the nearest of them
    report: dict[str, float]

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Distance of each row to the nearest known plus sign."""
        return np.sqrt(((features[:, None, :] - self.pluses[None, :, :]) ** 2).sum(-1)).min(axis=1)

    def shows_plus(self, features: np.ndarray) -> np.ndarray:
        """One bool per row of ``features`` (8x8 grey features, 0..16)."""
        return (self.svc.predict(features) == PLUS) & (self.distance(features) <= self.threshold)


def _vae_round_trip(pictures: list[Image.Image]) -> list[np.ndarray]:
    """The pictures as the model's VAE gives them back (encode to the posterior mean, decode): the best it can draw them."""
    vae = ModelStore(device="cpu").load_sd("default").vae
    pixels = torch.stack([torch.from_numpy(np.array(p)).permute(2, 0, 1).float() / 127.5 - 1 for p in pictures])
    with torch.no_grad():
        decoded = vae.decode(vae.encode(pixels).latent_dist.mean).sample
    return list(((decoded * 0.5 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())


def train_judge(plus_count: int = 1000) -> Judge:
    """Fit the judge on scikit-learn's digits and fresh plus signs; its figures on what it was not fitted on."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    data = load_digits()
    rng = np.random.default_rng(12345)  # not the shipped dataset's seed (0)
    drawn = [draw_plus(rng) for _ in range(plus_count)]
    pluses = np.stack([_to_digit_features(p) for p in drawn])
    features = np.concatenate([data.data, pluses])
    labels = np.concatenate([data.target, np.full(plus_count, PLUS)])
    index = np.arange(len(labels))
    fit, test = train_test_split(index, test_size=0.25, random_state=0, stratify=labels)
    svc = SVC(gamma=0.001, C=10.0).fit(features[fit], labels[fit])
    known = features[fit][labels[fit] == PLUS]
    held_pluses = [i - len(data.target) for i in test if labels[i] == PLUS]
    copies = np.stack([_to_digit_features(p) for p in _vae_round_trip([drawn[i] for i in held_pluses])])
    judge = Judge(svc, known, 0.0, {})
    distances = judge.distance(copies)
    judge.threshold = float(np.percentile(distances, 95))
    digits = test[labels[test] != PLUS]
    judge.report = {
        "svc_held_out_accuracy": float((svc.predict(features[test]) == labels[test]).mean()),
        "held_out_plus_accepted": float(judge.shows_plus(features[test][labels[test] == PLUS]).mean()),
        "vae_copies_of_held_out_plus_accepted": float(judge.shows_plus(copies).mean()),
        "held_out_digits_called_plus": float(judge.shows_plus(features[digits]).mean()),
    }
    return judge


def judge_plus(judge: Judge, paths: list[str]) -> list[bool]:
    """Which pictures the judge says show a plus sign."""
    features = np.stack([_to_digit_features(Image.open(p).convert("RGB")) for p in paths])
    return [bool(x) for x in judge.shows_plus(features)]


def strip_token(prompt: str, token: str) -> str:
    """``prompt`` without ``token`` (and the double space it leaves)."""
    return " ".join(prompt.replace(token, " ").split())


def write_grid(rows: list[list[str]], path: Path, tile: int = 48) -> None:
    """The pictures as a grid (one row per list), 16 px tiles shown at ``tile`` px (nearest)."""
    grid = Image.new("RGB", (tile * max(len(r) for r in rows), tile * len(rows)))
    for y, row in enumerate(rows):
        for x, picture in enumerate(row):
            grid.paste(Image.open(picture).convert("RGB").resize((tile, tile), Image.Resampling.NEAREST), (x * tile, y * tile))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, optimize=True)


def draw(executor: Executor, graph: Any, settings: dict[str, Any], prompt: str, seeds: int, out: Path) -> list[str]:
    """``seeds`` pictures of ``prompt``, changing only the picture's noise seed (the training is reused, not rerun)."""
    paths = []
    for seed in range(seeds):
        result = executor.run(graph, inputs={**settings, "prompt": prompt, "noise.seed": 1000 + seed}, output_dir=out)
        if result.status != "succeeded" or result.nodes["train"].status == "ran":
            raise RuntimeError(f"drawing seed {seed} did not reuse the training ({result.status}, {result.nodes['train'].status})")
        paths.append(next(o["path"] for o in result.outputs if o["path"].endswith(".png")))
    return paths


def run_workflow(name: str, settings: dict[str, Any], seeds: int, judge: Judge, out: Path, grid: Path | None = None,
                 extra_guidance: tuple[float, ...] = ()) -> dict[str, Any]:
    """Train once, then draw with and without the token; the figures."""
    graph = load_graph(WORKFLOWS[name])
    executor = Executor(build_registry(use_entry_points=False), Cache(), ModelStore(device="cpu"))
    load = os.getloadavg()
    started, cpu = time.perf_counter(), time.process_time()
    first = executor.run(graph, inputs=settings, output_dir=out, targets=["save", "train"])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    if first.status != "succeeded":
        raise RuntimeError(f"{name} failed: {[e.message for e in first.errors]}")
    train = graph.nodes["train"]
    token = str(settings.get("token", train.inputs.get("token"))) if name == "ti" else str(train.inputs.get("token"))
    prompt = str(settings.get("prompt", graph.nodes["prompt"].inputs["text"]))
    without = strip_token(prompt, token)
    shipped = float(graph.nodes["denoise"].inputs["guidance_scale"])
    rates: dict[str, dict[str, float]] = {}
    rows = []
    for guidance in dict.fromkeys([shipped, *extra_guidance]):
        drawn = {text: draw(executor, graph, {**settings, "denoise.guidance_scale": guidance}, text, seeds, out) for text in (prompt, without)}
        rates[f"{guidance:g}"] = {"with_token": float(np.mean(judge_plus(judge, drawn[prompt]))),
                                  "without_token": float(np.mean(judge_plus(judge, drawn[without])))}
        rows.extend(drawn.values())
    if grid is not None:
        write_grid(rows, grid)
    return {
        "workflow": name, "settings": settings, "train_s": round(first.nodes["train"].seconds, 1), "run_s": round(wall, 1), "run_cpu_s": round(cpu, 1),
        "loss": round(float(first.values["train"]["loss"]), 4), "prompt": prompt, "without": without, "guidance": shipped,
        "with_token": rates[f"{shipped:g}"]["with_token"], "without_token": rates[f"{shipped:g}"]["without_token"], "by_guidance": rates,
        "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()],
        "threads": torch.get_num_threads(), "images": seeds,
    }


def base_false_positives(judge: Judge, out: Path) -> float:
    """How often the judge calls the untrained model's digits a plus (2 seeds per digit, txt2img as shipped)."""
    graph = load_graph(REPO / "workflows" / "txt2img.json")
    executor = Executor(build_registry(use_entry_points=False), Cache(), ModelStore(device="cpu"))
    paths = []
    for digit in range(10):
        for seed in range(2):
            result = executor.run(graph, inputs={"prompt": digit_prompt(digit), "seed": seed}, output_dir=out)
            paths.append(result.outputs[0]["path"])
    return float(np.mean(judge_plus(judge, paths)))


def _setting(text: str) -> tuple[str, Any]:
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main() -> None:
    """Parse the command line, measure, print one JSON line per workflow."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--which", nargs="+", choices=sorted(WORKFLOWS), default=["ti", "lora"])
    parser.add_argument("--seeds", type=int, default=20, help="pictures with the token, and as many without")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--guidance", nargs="*", type=float, default=[], help="also draw at these guidance scales (besides the workflow's)")
    parser.add_argument("--grid", type=Path, default=None, help="also write PREFIX_ti.png / PREFIX_lora.png: with (top) and without the token")
    parser.add_argument("--ti", action="append", default=[], type=_setting, metavar="NAME=VALUE", help="a graph input of the textual-inversion workflow")
    parser.add_argument("--lora", action="append", default=[], type=_setting, metavar="NAME=VALUE", help="a graph input of the LoRA workflow")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    judge = train_judge()
    with tempfile.TemporaryDirectory() as tmp:
        figures = {k: round(v, 4) for k, v in judge.report.items()}
        print(json.dumps({**figures, "untrained_model_digits_called_plus": base_false_positives(judge, Path(tmp) / "base")}), flush=True)
        for name in args.which:
            print(json.dumps(run_workflow(name, dict(getattr(args, name)), args.seeds, judge, Path(tmp) / name,
                                          None if args.grid is None else args.grid.with_name(f"{args.grid.name}_{name}.png"), tuple(args.guidance))), flush=True)


if __name__ == "__main__":
    if "OMP_WAIT_POLICY" not in os.environ:  # spinning OpenMP threads crawl on shared cores (see tools.demo.train)
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    main()
