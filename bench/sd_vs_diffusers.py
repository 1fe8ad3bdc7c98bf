"""The same txt2img through a nodeflow graph and through diffusers' pipeline: time and memory.

    python bench/sd_vs_diffusers.py [--model DIR|default|tiny] [--steps 20] [--size 64]
                                    [--repeats 7] [--threads N] [--sd15] [--no-rss]

Time: one process, one set of loaded modules. The pipeline is built from the very
modules the graph's model store loaded, so both run the same weights; the graph runs
``workflows/txt2img.json`` with a fresh cache each time (nothing is reused between
runs but the loaded model, which the pipeline also keeps). Runs alternate graph /
pipeline, after one warm-up each, and the medians are compared. Both write a PNG.

Memory: each side runs once in a fresh subprocess (load the model, generate, save)
and reports its own peak RSS (``VmHWM``), so neither inherits the other's allocations.

``--model tiny`` (the default when the embedded model is not installed) builds a tiny
random SD 1.x folder; ``--sd15`` adds an SD 1.5-shaped random-weight model (the
shipped configs in ``nodeflow/models/configs/sd1``, nothing downloaded) at 256 px for
a few steps. Every comparison also checks that the two images are pixel-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

WORKFLOW = REPO / "workflows" / "txt2img.json"
CONFIGS = REPO / "nodeflow" / "models" / "configs" / "sd1"
PROMPT, NEGATIVE, SEED, GUIDANCE, SCHEDULER = "a handwritten digit seven", "", 42, 7.5, "DDIMScheduler"


# ----------------------------------------------------------------------------- models
def build_random_sd(out: Path, sd15: bool) -> Path:
    """A random-weight SD 1.x diffusers folder: tiny, or SD 1.5-shaped from the shipped configs (stored in fp16)."""
    from nodeflow import testing

    if sd15:
        return testing.random_from_skeleton(out, "sd1", seed=0, dtype=torch.float16)  # both sides load it back as fp32
    parts = {  # the test suite's tiny model (tests/conftest.py)
        "unet": testing.unet((32, 64), (True, False), cross_attention_dim=32, sample_size=16, seed=0),
        "vae": testing.vae((32, 32, 32), sample_size=64),
        "text_encoder": testing.text_encoder(testing.clip_config(32, 4, intermediate=64)),
    }
    return testing.save_sd_folder(out, parts)


# ------------------------------------------------------------------------- one side
def graph_inputs(model: str, steps: int, size: int) -> dict[str, Any]:
    """The txt2img workflow's graph inputs for this comparison."""
    return {"model": model, "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": steps,
            "guidance_scale": GUIDANCE, "width": size, "height": size, "scheduler": SCHEDULER}


def make_pipeline(parts: Any) -> Any:
    """diffusers' pipeline over already-loaded components (the same modules the graph uses)."""
    import diffusers
    from diffusers import StableDiffusionPipeline

    scheduler = getattr(diffusers, SCHEDULER).from_config(parts.scheduler_config)
    pipe = StableDiffusionPipeline(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_pipeline(pipe: Any, steps: int, size: int, out: Path) -> np.ndarray:
    """One pipeline generation saved as a PNG; returns its pixels."""
    image = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=GUIDANCE, width=size, height=size,
                 generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    out.mkdir(parents=True, exist_ok=True)
    image.save(out / "diffusers.png")
    return np.array(image)


def run_graph(executor: Any, model: str, steps: int, size: int, out: Path) -> np.ndarray:
    """One graph run of workflows/txt2img.json with a fresh cache; returns the PNG's pixels."""
    return run_workflow(executor, WORKFLOW, graph_inputs(model, steps, size), out)


def run_workflow(executor: Any, workflow: Path, inputs: dict[str, Any], out: Path) -> np.ndarray:
    """One run of ``workflow`` with a fresh cache (also bench/sdxl.py's); returns its last PNG's pixels."""
    from PIL import Image

    from nodeflow.cache import Cache

    executor.cache = Cache()
    result = executor.run(workflow.read_text(), inputs=inputs, output_dir=out)
    if result.status != "succeeded":
        raise RuntimeError(f"graph run failed: {result.errors}")
    with Image.open(result.outputs[-1]["path"]) as png:
        return np.array(png)


def child(side: str, model: str, steps: int, size: int) -> None:
    """Subprocess entry: load, generate once, save; print seconds and peak RSS as JSON."""
    started = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix=f"bench_{side}_"))
    if side == "graph":
        from nodeflow.executor import Executor
        from nodeflow.models import ModelStore
        from nodeflow.registry import build_registry

        run_graph(Executor(build_registry(use_entry_points=False), None, ModelStore(device="cpu")), model, steps, size, out)
    else:
        import diffusers
        from diffusers import StableDiffusionPipeline

        path = str(REPO / "nodeflow" / "default_model") if model == "default" else model
        pipe = StableDiffusionPipeline.from_pretrained(path, local_files_only=True, torch_dtype=torch.float32, safety_checker=None,
                                                       requires_safety_checker=False, low_cpu_mem_usage=False)
        pipe.scheduler = getattr(diffusers, SCHEDULER).from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        run_pipeline(pipe, steps, size, out)
    print(json.dumps({"side": side, "seconds": time.perf_counter() - started, "peak_rss_mib": peak_rss_kib() / 1024}))


def peak_rss_kib() -> int:
    """This process's own peak RSS in KiB.

    Linux's ``VmHWM`` belongs to the process image; ``ru_maxrss`` is not enough, as it
    survives ``execve`` and so can report the spawning parent's peak instead.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ------------------------------------------------------------------------ comparisons
def compare_time(model: str, steps: int, size: int, repeats: int) -> dict[str, Any]:
    """Alternate graph and pipeline runs in this process; medians and their ratio."""
    from nodeflow.executor import Executor
    from nodeflow.models import ModelStore
    from nodeflow.registry import build_registry

    store = ModelStore(device="cpu")
    executor = Executor(build_registry(use_entry_points=False), None, store)
    work = Path(tempfile.mkdtemp(prefix="bench_sd_"))
    graph_pixels = run_graph(executor, model, steps, size, work / "warm")  # warm-up: loads the model
    pipe = make_pipeline(store.load_sd(model))
    pipe_pixels = run_pipeline(pipe, steps, size, work / "warm")
    graph_times, pipe_times = [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        run_graph(executor, model, steps, size, work / f"g{i}")
        t1 = time.perf_counter()
        run_pipeline(pipe, steps, size, work / f"p{i}")
        t2 = time.perf_counter()
        graph_times.append(t1 - t0)
        pipe_times.append(t2 - t1)
    graph_s, pipe_s = statistics.median(graph_times), statistics.median(pipe_times)
    # Neighbouring runs share the machine's momentary load: their ratio is steadier than the medians'.
    paired = statistics.median(g / p for g, p in zip(graph_times, pipe_times, strict=True))
    return {"graph_s": graph_s, "diffusers_s": pipe_s, "ratio": graph_s / pipe_s, "paired_ratio": paired,
            "identical": bool(np.array_equal(graph_pixels, pipe_pixels)), "graph_all": graph_times, "diffusers_all": pipe_times}


def compare_rss(model: str, steps: int, size: int, threads: int) -> dict[str, Any]:
    """Peak RSS of each side in its own fresh subprocess."""
    found = {}
    for side in ("graph", "diffusers"):
        cmd = [sys.executable, __file__, "--child", side, "--model", model, "--steps", str(steps), "--size", str(size), "--threads", str(threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        found[side] = json.loads(done.stdout.strip().splitlines()[-1])
    g, d = found["graph"]["peak_rss_mib"], found["diffusers"]["peak_rss_mib"]
    return {"graph_mib": g, "diffusers_mib": d, "ratio": g / d}


def report(title: str, timing: dict[str, Any], rss: dict[str, Any] | None) -> None:
    """Print one comparison."""
    print(f"\n== {title}")
    print(f"time: graph {timing['graph_s'] * 1000:.1f} ms, diffusers {timing['diffusers_s'] * 1000:.1f} ms (medians), "
          f"ratio {timing['ratio']:.3f} (goal <= 1.02), median of paired ratios {timing['paired_ratio']:.3f}; "
          f"pixels identical: {timing['identical']}")
    print("  graph runs:     " + ", ".join(f"{t * 1000:.0f}" for t in timing["graph_all"]) + " ms")
    print("  diffusers runs: " + ", ".join(f"{t * 1000:.0f}" for t in timing["diffusers_all"]) + " ms")
    if rss is not None:
        print(f"peak RSS: graph {rss['graph_mib']:.1f} MiB, diffusers {rss['diffusers_mib']:.1f} MiB, ratio {rss['ratio']:.3f} (goal <= 1.10)")


def main() -> None:
    """Parse arguments and run the comparisons."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a diffusers folder, 'default' or 'tiny' (default: 'default' when installed, else 'tiny')")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default: 16 for the default model, 64 otherwise)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--sd15", action="store_true", help="also run an SD 1.5-shaped random model at 256 px")
    parser.add_argument("--sd15-steps", type=int, default=3)
    parser.add_argument("--sd15-repeats", type=int, default=3)
    parser.add_argument("--no-rss", action="store_true", help="skip the subprocess peak-RSS measurements")
    parser.add_argument("--child", choices=["graph", "diffusers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.child:
        child(args.child, args.model, args.steps, args.size)
        return

    installed = (REPO / "nodeflow" / "default_model" / "model_index.json").is_file()
    model = args.model or ("default" if installed else "tiny")
    if model == "tiny":
        model = str(build_random_sd(Path(tempfile.mkdtemp(prefix="bench_tiny_")) / "model", sd15=False))
    size = args.size or (16 if model == "default" else 64)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{args.threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    timing = compare_time(model, args.steps, size, args.repeats)
    rss = None if args.no_rss else compare_rss(model, args.steps, size, args.threads)
    report(f"txt2img {size}x{size}, {args.steps} steps, {SCHEDULER}, model {model}", timing, rss)

    if args.sd15:
        folder = build_random_sd(Path(tempfile.mkdtemp(prefix="bench_sd15_")) / "model", sd15=True)
        timing = compare_time(str(folder), args.sd15_steps, 256, args.sd15_repeats)
        rss = None if args.no_rss else compare_rss(str(folder), args.sd15_steps, 256, args.threads)
        report(f"SD 1.5-shaped random model, 256x256, {args.sd15_steps} steps, {SCHEDULER}", timing, rss)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
