"""SDXL txt2img through a nodeflow graph and through diffusers' StableDiffusionXLPipeline: time and peak RSS.

    python bench/sdxl.py [--size 512] [--steps 2] [--repeats 3] [--threads N] [--model DIR] [--dtype fp32|bf16|fp16]
                         [--device cpu|cuda] [--no-rss]

On a GPU, issue 13's figure: ``python bench/sdxl.py --device cuda --dtype fp16 --size 1024 --steps 20``
(the report names the GPU; memory is then the peak GPU memory torch allocated, per side).

The model is SDXL-shaped with random weights: every component is built from the shipped
skeleton configs (``nodeflow/models/configs/sdxl``: the real SDXL base UNet, VAE, CLIP-L
and OpenCLIP-bigG), seeded, stored in fp16 in a temporary folder (in its own subprocess)
and loaded back in ``--dtype`` (fp32 by default; fp32 SDXL needs about 15 GB, load
transients included, so ``bf16`` halves it) by both sides. Nothing is downloaded.
``--model`` takes an SDXL diffusers folder (your own, or one an earlier run built) instead.

Time: one process, one set of loaded modules (the store's; the pipeline is built from
them). Runs alternate pipeline / graph (``workflows/sdxl_txt2img.json``, fresh cache)
and the medians are compared; the first graph run also loads the model, so it is
reported apart and left out (a run takes a minute: no other warm-up). Both sides'
pixels are compared too.

Memory: each side runs once in a fresh subprocess (load, generate, exit) and reports
its own peak RSS (``VmHWM``) and, on CUDA, its peak allocated GPU memory.
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
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sd_vs_diffusers import peak_rss_kib, run_workflow  # noqa: E402

WORKFLOW = REPO / "workflows" / "sdxl_txt2img.json"
SKELETON = REPO / "nodeflow" / "models" / "configs" / "sdxl"
PROMPT, SEED, GUIDANCE, SCHEDULER = "a photo of a red fox in the snow", 42, 5.0, "EulerDiscreteScheduler"


# ----------------------------------------------------------------------------- the model
def build(out: Path) -> Path:
    """A random-weight SDXL base folder from the shipped skeleton, weights made here in fp16."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from nodeflow import testing

    def config(part: str) -> dict[str, Any]:
        return json.loads((SKELETON / part / "config.json").read_text())

    torch.manual_seed(0)
    torch.set_default_dtype(torch.float16)  # built in fp16 directly: the fp32 UNet alone would take 10 GB
    try:
        parts = {
            "unet": UNet2DConditionModel.from_config(config("unet")),
            "vae": AutoencoderKL.from_config(config("vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(str(SKELETON / "text_encoder"), local_files_only=True)),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(SKELETON / "text_encoder_2"),
                                                                                          local_files_only=True)),
        }
    finally:
        torch.set_default_dtype(torch.float32)
    scheduler = EulerDiscreteScheduler.from_config(json.loads((SKELETON / "scheduler" / "scheduler_config.json").read_text()))
    pipe = StableDiffusionXLPipeline(**parts, tokenizer=testing.clip_tokenizer(), tokenizer_2=testing.clip_tokenizer("!"),
                                     scheduler=scheduler, force_zeros_for_empty_prompt=True, add_watermarker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    for slot in ("tokenizer", "tokenizer_2"):
        testing.publish_tokenizer(out, slot, "sdxl")
    return out


# ----------------------------------------------------------------------------- one side
DTYPE = "fp32"  # set by --dtype
DEVICE = "cpu"  # set by --device


def graph_inputs(model: str, steps: int, size: int) -> dict[str, Any]:
    """The sdxl_txt2img workflow's graph inputs (an empty negative prompt: zeros, as the pipeline without one)."""
    return {"model": model, "prompt": PROMPT, "negative_prompt": "", "seed": SEED, "steps": steps, "guidance_scale": GUIDANCE,
            "width": size, "height": size, "scheduler": SCHEDULER, "load.dtype": DTYPE, "load.device": DEVICE}


def make_pipeline(parts: Any) -> Any:
    """StableDiffusionXLPipeline over already-loaded components."""
    import diffusers

    pipe = diffusers.StableDiffusionXLPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, text_encoder_2=parts.text_encoder_2, tokenizer=parts.tokenizer,
        tokenizer_2=parts.tokenizer_2, unet=parts.unet, scheduler=getattr(diffusers, SCHEDULER).from_config(parts.scheduler_config),
        force_zeros_for_empty_prompt=True, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_pipeline(pipe: Any, steps: int, size: int) -> np.ndarray:
    """One pipeline generation; its uint8 pixels."""
    image = pipe(PROMPT, num_inference_steps=steps, guidance_scale=GUIDANCE, width=size, height=size,
                 generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    return np.array(image)


def run_graph(executor: Any, model: str, steps: int, size: int, out: Path) -> np.ndarray:
    """One run of workflows/sdxl_txt2img.json with a fresh cache; the PNG's pixels."""
    return run_workflow(executor, WORKFLOW, graph_inputs(model, steps, size), out)


def peak_gpu_mib() -> float | None:
    """Peak GPU memory torch allocated in this process, in MiB (None off CUDA)."""
    return torch.cuda.max_memory_allocated() / 2**20 if DEVICE == "cuda" else None


def child(side: str, model: str, steps: int, size: int) -> None:
    """Subprocess entry: load, generate once; print seconds and peak RSS as JSON."""
    from nodeflow.executor import Executor
    from nodeflow.models import ModelStore
    from nodeflow.registry import build_registry

    started = time.perf_counter()
    if side == "graph":
        run_graph(Executor(build_registry(use_entry_points=False), None, ModelStore(device=DEVICE)), model, steps, size,
                  Path(tempfile.mkdtemp(prefix="bench_sdxl_")))
    else:
        import diffusers

        from nodeflow.models.store import DTYPES

        pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(model, local_files_only=True, torch_dtype=DTYPES[DTYPE],
                                                                   low_cpu_mem_usage=False, add_watermarker=False).to(DEVICE)
        pipe.scheduler = getattr(diffusers, SCHEDULER).from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        run_pipeline(pipe, steps, size)
    print(json.dumps({"side": side, "seconds": time.perf_counter() - started, "peak_rss_mib": peak_rss_kib() / 1024,
                      "peak_gpu_mib": peak_gpu_mib()}))


# ----------------------------------------------------------------------------- comparisons
def compare_time(model: str, steps: int, size: int, repeats: int) -> dict[str, Any]:
    """Alternate graph and pipeline runs over the same loaded modules; medians."""
    from nodeflow.executor import Executor
    from nodeflow.models import ModelStore
    from nodeflow.registry import build_registry

    store = ModelStore(device=DEVICE)
    executor = Executor(build_registry(use_entry_points=False), None, store)
    work = Path(tempfile.mkdtemp(prefix="bench_sdxl_"))
    t0 = time.perf_counter()
    graph_pixels = run_graph(executor, model, steps, size, work / "first")  # loads the model too
    first = time.perf_counter() - t0
    pipe = make_pipeline(store.load_sd(model, dtype=DTYPE, device=DEVICE))
    graph_times, pipe_times, pipe_pixels = [], [], None
    for i in range(repeats):
        t0 = time.perf_counter()
        pipe_pixels = run_pipeline(pipe, steps, size)
        t1 = time.perf_counter()
        run_graph(executor, model, steps, size, work / f"g{i}")
        t2 = time.perf_counter()
        pipe_times.append(t1 - t0)
        graph_times.append(t2 - t1)
    graph_s, pipe_s = statistics.median(graph_times), statistics.median(pipe_times)
    return {"first_graph_s": first, "graph_s": graph_s, "diffusers_s": pipe_s, "ratio": graph_s / pipe_s,
            "identical": bool(np.array_equal(graph_pixels, pipe_pixels)), "graph_all": graph_times, "diffusers_all": pipe_times}


def compare_rss(model: str, steps: int, size: int, threads: int) -> dict[str, Any]:
    """Each side once in its own subprocess: peak RSS and wall time (load included)."""
    found = {}
    for side in ("graph", "diffusers"):
        cmd = [sys.executable, __file__, "--child", side, "--model", model, "--steps", str(steps), "--size", str(size),
               "--threads", str(threads), "--dtype", DTYPE, "--device", DEVICE]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        found[side] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def main() -> None:
    """Parse arguments, build the model when none is given, run the comparisons and print them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="an SDXL diffusers folder (default: build a random one from the skeleton)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="both sides' weight precision")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where both sides run")
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--child", choices=["graph", "diffusers"], help=argparse.SUPPRESS)
    parser.add_argument("--build", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global DTYPE, DEVICE
    DTYPE, DEVICE = args.dtype, args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.model, args.steps, args.size)
        return
    if args.build:
        build(Path(args.build))
        return
    gpu = f", GPU {torch.cuda.get_device_name()}" if DEVICE == "cuda" else ""
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs{gpu}, torch {torch.__version__}, {args.threads} thread(s),"
          f" load average {os.getloadavg()[0]:.1f}", flush=True)
    model = args.model
    if model is None:
        model = str(Path(tempfile.mkdtemp(prefix="bench_sdxl_model_")) / "model")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--build", model], check=True)  # its own process: its memory is returned
        print(f"built the random SDXL folder in {time.perf_counter() - t0:.0f} s", flush=True)
    timing = compare_time(model, args.steps, args.size, args.repeats)
    print(f"\n== SDXL txt2img {args.size}x{args.size}, {args.steps} steps, {SCHEDULER}, {DTYPE} on {DEVICE}")
    print(f"first graph run (model load included): {timing['first_graph_s']:.1f} s")
    print(f"time: graph {timing['graph_s']:.2f} s, diffusers {timing['diffusers_s']:.2f} s (medians of {args.repeats}), "
          f"ratio {timing['ratio']:.3f}; pixels identical: {timing['identical']}")
    print("  graph runs:     " + ", ".join(f"{t:.2f}" for t in timing["graph_all"]) + " s")
    print("  diffusers runs: " + ", ".join(f"{t:.2f}" for t in timing["diffusers_all"]) + " s", flush=True)
    if not args.no_rss:
        rss = compare_rss(model, args.steps, args.size, args.threads)
        g, d = rss["graph"], rss["diffusers"]
        print(f"peak RSS: graph {g['peak_rss_mib']:.0f} MiB, diffusers {d['peak_rss_mib']:.0f} MiB, ratio "
              f"{g['peak_rss_mib'] / d['peak_rss_mib']:.3f}; load + one run: graph {g['seconds']:.0f} s, diffusers {d['seconds']:.0f} s")
        if g["peak_gpu_mib"] is not None:
            print(f"peak GPU memory: graph {g['peak_gpu_mib']:.0f} MiB, diffusers {d['peak_gpu_mib']:.0f} MiB, ratio "
                  f"{g['peak_gpu_mib'] / d['peak_gpu_mib']:.3f}")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
