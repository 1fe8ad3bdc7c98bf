"""Training as nodes on the embedded model: how long, and does the model learn the new symbol?

For each shipped training workflow (``workflows/train_textual_inversion.json``,
``workflows/train_lora.json``), as shipped unless ``--set`` says otherwise:

1. run it once on a fresh executor (model load, training and one picture), timing the
   training node and the whole run;
2. draw ``--seeds`` pictures with the workflow's prompt (which names the new token) and
   as many with the same prompt without the token, changing only the picture's noise
   seed (the trained result is served from the executor's cache);
3. judge every picture with a judge trained here for the workflow's concept, on 8x8
   box-averaged grey pixels (as ``tools.demo.digits`` does):

   * LoRA (the plus sign): an RBF SVC over 11 classes, the ten digits of scikit-learn's
     data set (the model's own training data) and plus signs freshly drawn by
     ``tools.demo.make_dataset.draw_plus`` with other seeds than the shipped dataset's; a
     picture shows the concept when the SVC says plus and it is as close to a known plus
     as the VAE's own copies of unseen plus signs are.
   * Textual inversion (a seven with a crossbar): two RBF SVCs. A digit SVC fitted on
     three quarters of scikit-learn's digits must say 7, and a crossbar SVC fitted on
     freshly drawn sevens with and without the bar (``draw_seven``) must say crossed.
     The variant judged follows the dataset the run trains on (``SEVEN_VARIANTS``: a
     folder named ``crossed_seven`` or ``plain_seven``; a plain seven must be called
     not crossed). Most of scikit-learn's own sevens are written with a crossbar, so the
     model already draws crossed sevens when asked for a seven: the bench reports how
     often the judge accepts scikit-learn's sevens and the untrained model's "seven"
     pictures, and what the prompt gives with the initializer word in place of the token
     before training.

   The judges' own held-out accuracies, and how often they accept the untrained model's
   digits, are reported beside the figures so they can be read with their errors in mind,
   and so is what their classifiers call every picture (``*_drawn``: which digit, sevens
   split into crossed and plain), so a miss says what was drawn instead.

``--bound CONCEPT`` (``plus``, ``crossed_seven``, ``plain_seven``) measures instead what ANY
embedding could reach: it fits the whole text state (the text encoder's output, the UNet's
only conditioning) freely on the concept's pictures with textual inversion's loss, then draws
and judges as above at guidance 1, 1.5, 3 and 7.5 (:func:`conditioning_bound`).

Acceptance (issue 17): textual inversion trains in at most 5 minutes and LoRA in at most
10 on 2 CPU cores; with the token >= 80% of the pictures show the concept, without it
<= 10%. Run: ``python bench/training.py [--which ti lora] [--bound CONCEPT ...] [--seeds 20] [--ti NAME=VALUE] [--lora NAME=VALUE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
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
from tools.demo.make_dataset import draw_plus, draw_seven  # noqa: E402

WORKFLOWS = {"ti": REPO / "workflows" / "train_textual_inversion.json", "lora": REPO / "workflows" / "train_lora.json"}
PLUS = 10  # the judge's label for a plus sign (0-9 are the digits)
SEVEN = 7


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

    shows = shows_plus

    def names(self, features: np.ndarray) -> list[str]:
        """What the SVC calls each row: a digit or "plus"."""
        return ["plus" if label == PLUS else str(label) for label in self.svc.predict(features)]


SEVEN_VARIANTS = {"crossed_seven": True, "plain_seven": False}  # dataset folder -> is its seven crossed


@dataclass
class SevenJudge:
    """Says whether a picture shows the workflow's seven: the digit SVC must say 7 and the crossbar SVC must say
    crossed (``crossed``) or not crossed."""

    digits: Any  # SVC over scikit-learn's ten digits
    crossbar: Any  # SVC: drawn sevens without (0) and with (1) the bar
    crossed: bool
    report: dict[str, float]

    @property
    def concept(self) -> str:
        """The variant's name, as its dataset folder is called."""
        return next(name for name, crossed in SEVEN_VARIANTS.items() if crossed == self.crossed)

    def shows(self, features: np.ndarray) -> np.ndarray:
        """One bool per row of ``features`` (8x8 grey features, 0..16)."""
        return (self.digits.predict(features) == SEVEN) & (self.crossbar.predict(features) == int(self.crossed))

    def names(self, features: np.ndarray) -> list[str]:
        """What the SVCs call each row: a digit, sevens split into "7 crossed" and "7 plain"."""
        bars = self.crossbar.predict(features)
        return [f"7 {'crossed' if bar else 'plain'}" if d == SEVEN else str(d) for d, bar in zip(self.digits.predict(features), bars, strict=True)]


def train_seven_judge(crossed: bool, count: int = 1000) -> SevenJudge:
    """Fit both SVCs; their figures on what they were not fitted on, and how often scikit-learn's sevens pass."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    data = load_digits()
    fit, test = train_test_split(np.arange(len(data.target)), test_size=0.25, random_state=0, stratify=data.target)
    digits = SVC(gamma=0.001, C=10.0).fit(data.data[fit], data.target[fit])
    rng = np.random.default_rng(12345)  # not the shipped datasets' seeds (1 and 2)
    sevens = np.stack([_to_digit_features(draw_seven(rng, crossed=bool(i % 2))) for i in range(2 * count)])
    bar = np.arange(2 * count) % 2
    bar_fit, bar_test = train_test_split(np.arange(2 * count), test_size=0.25, random_state=0, stratify=bar)
    crossbar = SVC(gamma=0.001, C=10.0).fit(sevens[bar_fit], bar[bar_fit])
    judge = SevenJudge(digits, crossbar, crossed, {})
    held, name = data.data[test], judge.concept
    judge.report = {
        "digit_svc_held_out_accuracy": float((digits.predict(held) == data.target[test]).mean()),
        "crossbar_svc_held_out_accuracy": float((crossbar.predict(sevens[bar_test]) == bar[bar_test]).mean()),
        "held_out_drawn_crossed_accepted": float(judge.shows(sevens[bar_test][bar[bar_test] == 1]).mean()),
        "held_out_drawn_plain_accepted": float(judge.shows(sevens[bar_test][bar[bar_test] == 0]).mean()),
        f"sklearn_sevens_called_{name}": float(judge.shows(data.data[data.target == SEVEN]).mean()),
        f"held_out_sklearn_other_digits_called_{name}": float(judge.shows(held[data.target[test] != SEVEN]).mean()),
    }
    return judge


def ti_judge(settings: dict[str, Any]) -> SevenJudge:
    """The judge of the textual-inversion workflow's concept, chosen by the dataset folder it trains on."""
    folder = Path(str(settings.get("dataset", load_graph(WORKFLOWS["ti"]).nodes["dataset"].inputs["folder"]))).name
    if folder not in SEVEN_VARIANTS:
        raise SystemExit(f"no judge for the textual-inversion dataset {folder!r} (known: {', '.join(SEVEN_VARIANTS)})")
    return train_seven_judge(SEVEN_VARIANTS[folder])


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


def _features(paths: list[str]) -> np.ndarray:
    return np.stack([_to_digit_features(Image.open(p).convert("RGB")) for p in paths])


def judge_pictures(judge: Judge | SevenJudge, paths: list[str]) -> list[bool]:
    """Which pictures the judge says show its concept."""
    return [bool(x) for x in judge.shows(_features(paths))]


def drawn_names(judge: Judge | SevenJudge, paths: list[str]) -> dict[str, int]:
    """How many of the pictures the judge's classifiers call each thing (what was drawn instead, when it was not the concept)."""
    return dict(sorted(Counter(judge.names(_features(paths))).items()))


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


def run_workflow(name: str, settings: dict[str, Any], seeds: int, judge: Judge | SevenJudge, out: Path, grid: Path | None = None,
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
    rates: dict[str, dict[str, Any]] = {}
    rows = []
    for guidance in dict.fromkeys([shipped, *extra_guidance]):
        drawn = {text: draw(executor, graph, {**settings, "denoise.guidance_scale": guidance}, text, seeds, out) for text in (prompt, without)}
        rates[f"{guidance:g}"] = {"with_token": float(np.mean(judge_pictures(judge, drawn[prompt]))),
                                  "without_token": float(np.mean(judge_pictures(judge, drawn[without]))),
                                  "with_token_drawn": drawn_names(judge, drawn[prompt]), "without_token_drawn": drawn_names(judge, drawn[without])}
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


def _txt2img(prompts: list[tuple[str, int]], out: Path) -> list[str]:
    """The untrained model's pictures of each (prompt, seed), as shipped txt2img draws them (DDIM 20, guidance 7.5)."""
    graph = load_graph(REPO / "workflows" / "txt2img.json")
    executor = Executor(build_registry(use_entry_points=False), Cache(), ModelStore(device="cpu"))
    return [executor.run(graph, inputs={"prompt": prompt, "seed": seed}, output_dir=out).outputs[0]["path"] for prompt, seed in prompts]


def base_false_positives(judge: Judge | SevenJudge, out: Path) -> float:
    """How often the judge accepts the untrained model's digits (2 seeds per digit, txt2img as shipped)."""
    return float(np.mean(judge_pictures(judge, _txt2img([(digit_prompt(d), s) for d in range(10) for s in range(2)], out))))


def base_sevens(judge: SevenJudge, prompts: list[str], seeds: int, out: Path) -> dict[str, float]:
    """How often the untrained model's pictures of each prompt (the noise seeds the bench draws with) pass the judge."""
    return {prompt: float(np.mean(judge_pictures(judge, _txt2img([(prompt, 1000 + s) for s in range(seeds)], out)))) for prompt in prompts}


def _baseline(name: str, judge: Judge | SevenJudge, settings: dict[str, Any], seeds: int, out: Path) -> dict[str, Any]:
    """The judge's figures and what the untrained model gives it: its digits, and for textual inversion its sevens and
    the workflow's prompt with the initializer word in place of the token (what training starts from)."""
    figures: dict[str, Any] = {"judge": name, **{k: round(v, 4) for k, v in judge.report.items()},
                               "untrained_model_digits_accepted": base_false_positives(judge, out)}
    if isinstance(judge, SevenJudge):
        nodes = load_graph(WORKFLOWS[name]).nodes
        token = str(settings.get("token", nodes["train"].inputs["token"]))
        initializer = str(settings.get("initializer", nodes["train"].inputs["initializer"]))
        prompt = str(settings.get("prompt", nodes["prompt"].inputs["text"]))
        figures["untrained_model_accepted"] = base_sevens(judge, [digit_prompt(SEVEN), prompt.replace(token, initializer)], seeds, out)
    return figures


BOUND_STEPS = 1500


def _bound_dataset(concept: str, out: Path) -> Path:
    """The pictures the bound is fitted on: a shipped dataset folder, or 32 plain sevens drawn here."""
    if concept != "plain_seven":
        return REPO / "workflows" / "datasets" / concept
    folder = out / "plain_seven"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for index in range(32):
        draw_seven(rng, crossed=False).save(folder / f"seven_{index:02d}.png")
    return folder


def conditioning_bound(concept: str, seeds: int, out: Path, steps: int = BOUND_STEPS, start: str = "a handwritten four",
                       guidance: tuple[float, ...] = (1.0, 1.5, 3.0, 7.5)) -> dict[str, Any]:
    """The most any prompt can get out of the frozen model for ``concept``: the whole text state (77 x D, the
    UNet's only conditioning) fitted freely with textual inversion's loss, batch and learning rate. Every textual-
    inversion embedding gives one such text state, so what this one cannot draw, no token can."""
    from diffusers import StableDiffusionPipeline

    from nodeflow.training import dataset as data
    from nodeflow.training.objective import Objective

    pipe = StableDiffusionPipeline.from_pretrained(REPO / "nodeflow" / "default_model", local_files_only=True,
                                                   safety_checker=None, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
    pixels = data.pixels(data.load(_bound_dataset(concept, out), "x"), 16)
    objective, generator = Objective(pipe.unet, pipe.vae, pipe.scheduler.config), torch.Generator().manual_seed(0)
    states = pipe.encode_prompt(start, "cpu", 1, False)[0].detach().clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([states], lr=0.01)
    started, losses = time.perf_counter(), []
    for _ in range(steps):
        index = torch.randint(0, len(pixels), (8,), generator=generator)
        loss = objective.loss(objective.latents(pixels[index], generator), states.expand(8, -1, -1), generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    judge = train_judge() if concept == "plus" else train_seven_judge(SEVEN_VARIANTS[concept])
    rates = {}
    for scale in guidance:
        pictures = [pipe(prompt_embeds=states.detach(), num_inference_steps=20, guidance_scale=scale,
                         generator=torch.Generator().manual_seed(1000 + s)).images[0] for s in range(seeds)]
        features = np.stack([_to_digit_features(p) for p in pictures])
        rates[f"{scale:g}"] = {"shows": float(judge.shows(features).mean()), "drawn": dict(sorted(Counter(judge.names(features)).items()))}
    return {"bound": concept, "start": start, "steps": steps, "fit_s": round(time.perf_counter() - started, 1),
            "loss_last_10pct": round(float(np.mean(losses[-steps // 10:])), 4), "images": seeds, "by_guidance": rates}


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
    parser.add_argument("--bound", nargs="+", default=[], choices=["plus", *SEVEN_VARIANTS],
                        help="instead: fit the whole text state freely on this concept (the limit of any embedding) and judge it")
    parser.add_argument("--lora", action="append", default=[], type=_setting, metavar="NAME=VALUE", help="a graph input of the LoRA workflow")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.bound:
        with tempfile.TemporaryDirectory() as tmp:
            for concept in args.bound:
                print(json.dumps(conditioning_bound(concept, args.seeds, Path(tmp))), flush=True)
        return
    judges = {"ti": ti_judge, "lora": lambda _settings: train_judge()}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.which:
            settings = dict(getattr(args, name))
            judge = judges[name](settings)
            print(json.dumps(_baseline(name, judge, settings, args.seeds, Path(tmp) / f"base_{name}")), flush=True)
            print(json.dumps(run_workflow(name, settings, args.seeds, judge, Path(tmp) / name,
                                          None if args.grid is None else args.grid.with_name(f"{args.grid.name}_{name}.png"), tuple(args.guidance))), flush=True)


if __name__ == "__main__":
    if "OMP_WAIT_POLICY" not in os.environ:  # spinning OpenMP threads crawl on shared cores (see tools.demo.train)
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    main()
