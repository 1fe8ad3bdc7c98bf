"""GPU speed (issue 16): diffusers eager, the graph's default path, ``--compile``, seed batches, memory, PSNR.

    python bench/gpu.py                                   # SD 1.5-shaped, 512 px, 20 DPM++ steps, fp16 and bf16, CUDA
    python bench/gpu.py --device cpu --size 64 --steps 2 --dtypes fp32 --model tiny   # a smoke test anywhere

The model is SD 1.5-shaped with random weights, built from the shipped configs
(``nodeflow/models/configs/sd1``; nothing is downloaded) and saved in fp16 once per run
of this script. Per dtype, in one process and one model store (so every side runs the very
same loaded weights):

* **diffusers eager**: ``StableDiffusionPipeline`` over the store's modules,
  ``DPMSolverMultistepScheduler`` (DPM++ 2M), one image;
* **graph default**: ``workflows/txt2img.json`` with the same scheduler, seed and settings
  (a fresh cache each run: only the loaded model is reused, as the pipeline reuses it);
  its image is compared with the pipeline's (pixel-identical is the goal);
* **graph --compile**: the same graph with Load Model's ``compile`` on (the UNet and VAE
  decoder through ``torch.compile``); the first run's extra time is reported as compile
  time, and the image's PSNR against the default path's;
* **seed sweep**: ``run_sweep`` over 8 seeds on the local backend, one by one and with
  ``batch_seeds=8`` (images per second, PNGs written in both);
* **peak GPU memory** of each side (``torch.cuda.max_memory_allocated`` after a reset;
  the loaded weights are included in every figure);
* **host syncs per run** on CUDA (``torch.cuda.set_sync_debug_mode("warn")``): the graph's
  whole run against the pipeline's call.

Each timed side runs once to warm up and then ``--repeats`` times; the table gives the
median. Run it on an otherwise idle GPU; it aims to finish in under 5 minutes on one
(most of that is the two cold compiles).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

WORKFLOW = REPO / "workflows" / "txt2img.json"
PROMPT, NEGATIVE, SEED, GUIDANCE = "a photo of a red cube on a wooden table", "blurry", 42, 7.5
SCHEDULER = "DPMSolverMultistepScheduler"  # DPM++ 2M with SD 1.5's config, on both sides
SWEEP = 8


# ----------------------------------------------------------------------------- setup
def build_model(kind: str, out: Path) -> Path:
    """The SD 1.5-shaped random model (``sd15``) or the test suite's tiny one (``tiny``), saved at ``out``."""
    from nodeflow import testing

    if kind == "sd15":
        return testing.random_from_skeleton(out, "sd1", seed=0, dtype=torch.float16)
    parts = {
        "unet": testing.unet((32, 64), (True, False), cross_attention_dim=32, sample_size=16, seed=0),
        "vae": testing.vae((32, 32, 32), sample_size=64),
        "text_encoder": testing.text_encoder(testing.clip_config(32, 4, intermediate=64)),
    }
    return testing.save_sd_folder(out, parts)


def machine(device: str) -> dict[str, Any]:
    """What the figures were measured on."""
    import diffusers

    info: dict[str, Any] = {"torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
                            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                            "load_avg": os.getloadavg()}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            info["driver"] = "unknown (no nvidia-smi)"
    return info


# ------------------------------------------------------------------------- measuring
def sync(device: str) -> None:
    """Wait for the device, so a timer reads finished work."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: str, repeats: int) -> dict[str, Any]:
    """One warm-up call, then ``repeats`` timed ones: first and median seconds, peak GPU memory, the last result."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    result = fn()
    sync(device)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.startswith("cuda") else None
    return {"first_s": first, "median_s": statistics.median(times), "all_s": times, "peak_mib": peak, "result": result}


def syncs_during(fn: Callable[[], Any], device: str) -> int | None:
    """How many synchronising CUDA calls ``fn`` makes (torch's sync debug mode); None off CUDA."""
    if not device.startswith("cuda"):
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
            sync(device)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum(1 for w in caught if "synchroniz" in str(w.message))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 images in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# --------------------------------------------------------------------------- the sides
def inputs(model: Path, size: int, steps: int, **extra: Any) -> dict[str, Any]:
    """The txt2img graph inputs of this bench."""
    return {"model": str(model), "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": steps,
            "guidance_scale": GUIDANCE, "width": size, "height": size, "scheduler": SCHEDULER, **extra}


def graph_runner(executor: Any, values: dict[str, Any], out: Path) -> Callable[[], np.ndarray]:
    """A call that runs the workflow once with a fresh cache and returns its PNG's pixels."""
    from PIL import Image

    from nodeflow.cache import Cache

    def run() -> np.ndarray:
        executor.cache = Cache()
        result = executor.run(WORKFLOW.read_text(), inputs=values, output_dir=out)
        if result.status != "succeeded":
            raise RuntimeError(f"graph run failed: {result.errors}")
        with Image.open(result.outputs[-1]["path"]) as png:
            return np.array(png.convert("RGB"))

    return run


def pipeline_runner(parts: Any, size: int, steps: int) -> Callable[[], np.ndarray]:
    """A call that draws one image with diffusers' pipeline over the store's modules."""
    import diffusers
    from diffusers import StableDiffusionPipeline

    scheduler = getattr(diffusers, SCHEDULER).from_config(parts.scheduler_config)
    pipe = StableDiffusionPipeline(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def run() -> np.ndarray:
        image = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=GUIDANCE, width=size, height=size,
                     generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
        return np.array(image)

    return run


def sweep_runner(registry: Any, store: Any, values: dict[str, Any], batch: int, out: Path) -> Callable[[], int]:
    """A call that sweeps seeds SEED..SEED+7 (one by one, or ``batch`` at a time); returns the images written."""
    from nodeflow.backends import LocalBackend
    from nodeflow.cache import Cache
    from nodeflow.graph import load_graph
    from nodeflow.sweep import run_sweep

    graph = load_graph(WORKFLOW)
    jobs = [{**values, "seed": SEED + i} for i in range(SWEEP)]
    runs = iter(range(1 << 30))

    def run() -> int:
        # A fresh cache each sweep (only the loaded model is reused), and a fresh folder.
        backend = LocalBackend(registry, Cache(), models=store, threads=torch.get_num_threads())
        try:
            manifest = run_sweep(graph, jobs, backend, out / str(next(runs)), progress=False, batch_seeds=batch)
        finally:
            backend.close()
        if manifest["status"] != "succeeded":
            raise RuntimeError(f"sweep failed: {manifest['jobs']}")
        return sum(len(job["outputs"]) for job in manifest["jobs"])

    return run


def bench_dtype(model: Path, dtype: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every side for one dtype; the rows of the table and the checks."""
    from nodeflow.executor import Executor
    from nodeflow.models import ModelStore
    from nodeflow.registry import build_registry

    registry = build_registry(use_entry_points=False)
    store = ModelStore(device=args.device, dtype=dtype)
    t0 = time.perf_counter()
    parts = store.load_sd(model)
    sync(args.device)
    found: dict[str, Any] = {"dtype": dtype, "load_s": time.perf_counter() - t0}
    executor = Executor(registry, None, store)
    values = inputs(model, args.size, args.steps)
    found["diffusers"] = timed(pipeline_runner(parts, args.size, args.steps), args.device, args.repeats)
    found["graph"] = timed(graph_runner(executor, values, work / dtype / "graph"), args.device, args.repeats)
    found["identical"] = bool(np.array_equal(found["graph"]["result"], found["diffusers"]["result"]))
    found["syncs"] = {"graph": syncs_during(graph_runner(executor, values, work / dtype / "s"), args.device),
                      "diffusers": syncs_during(pipeline_runner(parts, args.size, args.steps), args.device)}
    found["sweep_1"] = timed(sweep_runner(registry, store, values, 1, work / dtype / "sweep1"), args.device, args.sweep_repeats)
    found[f"sweep_{SWEEP}"] = timed(sweep_runner(registry, store, values, SWEEP, work / dtype / "sweep8"), args.device,
                                    args.sweep_repeats)
    if not args.no_compile:
        fast = {**values, "load.compile": args.compile_mode}
        found["compile"] = timed(graph_runner(executor, fast, work / dtype / "fast"), args.device, args.repeats)
        found["psnr"] = psnr(found["compile"]["result"], found["graph"]["result"])
    print(f"[{dtype} done at {time.perf_counter() - STARTED:.0f} s]", file=sys.stderr)
    return found


# ---------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]]) -> str:
    """The one table: a row per dtype and side."""
    lines = ["| dtype | path | s / image (median) | images / s | first run s | peak GPU MiB | notes |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in results:
        base = r["diffusers"]["median_s"]
        for key, label in (("diffusers", "diffusers eager"), ("graph", "graph default"), ("compile", "graph --compile")):
            if key not in r:
                continue
            side = r[key]
            notes = _notes(r, key, base)
            lines.append(f"| {r['dtype']} | {label} | {side['median_s']:.3f} | {1 / side['median_s']:.2f} | {side['first_s']:.2f} | "
                         f"{_mib(side['peak_mib'])} | {notes} |")
        for key, label in (("sweep_1", f"sweep {SWEEP} seeds one by one"), (f"sweep_{SWEEP}", f"sweep {SWEEP} seeds, batch {SWEEP}")):
            side = r[key]
            per_image = side["median_s"] / side["result"]
            notes = "" if key == "sweep_1" else f"{r['sweep_1']['median_s'] / side['median_s']:.2f}x one-by-one throughput"
            lines.append(f"| {r['dtype']} | {label} | {per_image:.3f} | {1 / per_image:.2f} | {side['first_s']:.2f} | "
                         f"{_mib(side['peak_mib'])} | {notes} |")
    return "\n".join(lines)


def _notes(r: dict[str, Any], key: str, base: float) -> str:
    if key == "diffusers":
        return f"model load {r['load_s']:.1f} s; host syncs per run {r['syncs']['diffusers']}"
    if key == "graph":
        return (f"{base / r['graph']['median_s']:.2f}x diffusers; pixels identical to diffusers: {r['identical']}; "
                f"host syncs per run {r['syncs']['graph']}")
    compile_s = r["compile"]["first_s"] - r["compile"]["median_s"]
    return f"{base / r['compile']['median_s']:.2f}x diffusers; compile ~{compile_s:.0f} s (first run - median); PSNR vs default {r['psnr']:.1f} dB"


def _mib(value: float | None) -> str:
    return "n/a (CPU)" if value is None else f"{value:.0f}"


STARTED = time.perf_counter()


def main() -> None:
    """Parse the options, build the model, run every dtype, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtypes", default="fp16,bf16", help="comma-separated: fp16, bf16, fp32")
    parser.add_argument("--model", default="sd15", choices=["sd15", "tiny"], help="SD 1.5-shaped random weights, or the tests' tiny model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep-repeats", type=int, default=1)
    parser.add_argument("--compile-mode", default="on", choices=["on", "reduce-overhead", "max-autotune"])
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    model = build_model(args.model, work / "model")
    print(f"[model built at {time.perf_counter() - STARTED:.0f} s]", file=sys.stderr)
    results = [bench_dtype(model, dtype, args, work) for dtype in args.dtypes.split(",")]
    info = machine(args.device)
    print(f"\n{args.model} model, {args.size} px, {args.steps} steps ({SCHEDULER}), device {args.device}; "
          + ", ".join(f"{k} {v}" for k, v in info.items()) + f"; medians of {args.repeats} runs after a warm-up\n")
    print(table(results))
    print(f"\ntotal {time.perf_counter() - STARTED:.0f} s")
    if args.json:
        plain = [{k: ({kk: vv for kk, vv in v.items() if kk != "result"} if isinstance(v, dict) else v) for k, v in r.items()}
                 for r in results]
        Path(args.json).write_text(json.dumps({"machine": info, "args": vars(args), "results": plain}, indent=2, default=str))


if __name__ == "__main__":
    main()
