"""The image-tool workflows against their diffusers pipelines (time, peak RSS), and the tiled VAE's memory.

    python bench/image_tools_vs_diffusers.py [--sd15] [--repeats 5] [--sd15-repeats 3] [--threads 1]
                                             [--only inpaint,outpaint,controlnet,hires_fix] [--vae-sizes 512,1024] [--no-rss]

For each workflow (inpaint, outpaint, controlnet, hires_fix) the graph and the pipeline
run on the same loaded modules in one process, alternating after one warm-up each, a
fresh cache per graph run; medians, their ratio and the median of paired ratios are
printed, and the two PNGs are compared (they must be identical). Peak RSS: each side
once in a fresh subprocess (``VmHWM``). Models: the test suite's tiny model at 64 px,
and with ``--sd15`` an SD 1.5-shaped random-weight model built from the shipped
``configs/sd1`` at 256 px (hires fix: 128 -> 256). The ControlNet is the demo kind (the
model's UNet encoder, zero layers filled with seeded noise), built the same way on both
sides. The outpaint pipeline is given the padded picture made beforehand (padding is not timed).

``--vae-sizes`` measures the peak RSS of decoding one latent of each size with VAE
Decode and VAE Decode (Tiled) (512 px tiles), each in a fresh subprocess that loads
only the SD 1.5-shaped VAE; ``--vae-tiled-sizes`` decodes tiled only (for sizes a whole
decode cannot fit).
"""

from __future__ import annotations

import argparse
import json
import os
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
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from sd_vs_diffusers import build_random_sd, peak_rss_kib  # noqa: E402

WORKFLOWS = REPO / "workflows"
PROMPT, NEGATIVE, SEED, HIRES_SEED, GUIDANCE, SCHEDULER = "a lighthouse at dusk", "blurry", 42, 7, 7.5, "DDIMScheduler"
NAMES = ("inpaint", "outpaint", "controlnet", "hires_fix")


# ------------------------------------------------------------------------------ setup
def make_inputs(work: Path, size: int, model: str, factor: int) -> dict[str, Any]:
    """Pictures, mask and demo ControlNet folder for one model size."""
    rng = np.random.default_rng(1)
    work.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(work / "picture.png")
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4 : 3 * size // 4, size // 8 : size // 2] = 255
    Image.fromarray(mask, "L").save(work / "mask.png")
    pad = size // 4
    padded = np.full((size, size + 2 * pad, 3), 128, np.uint8)
    padded[:, pad : pad + size] = np.array(Image.open(work / "picture.png"))
    Image.fromarray(padded).save(work / "padded.png")
    border = np.full((size, size + 2 * pad), 255, np.uint8)
    border[:, pad : pad + size] = 0
    Image.fromarray(border, "L").save(work / "border.png")
    hint = [16, 32, 64] if factor == 4 else [16, 32, 96, 256]
    (work / "controlnet").mkdir(exist_ok=True)
    (work / "controlnet" / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel",
                                                                 "nodeflow_demo": {"base": model, "seed": 5, "hint_channels": hint}}))
    return {"work": work, "size": size, "pad": pad, "hint": hint}


def graph_settings(name: str, model: str, steps: int, setup: dict[str, Any]) -> dict[str, Any]:
    """The workflow's graph inputs for this comparison."""
    work, size = setup["work"], setup["size"]
    common = {"model": model, "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": steps,
              "guidance_scale": GUIDANCE, "scheduler": SCHEDULER}
    if name == "inpaint":
        return {**common, "image": str(work / "picture.png"), "mask": str(work / "mask.png"), "strength": 1.0}
    if name == "outpaint":
        pad = setup["pad"]
        return {**common, "image": str(work / "picture.png"), "strength": 1.0, "left": pad, "right": pad, "top": 0, "bottom": 0}
    if name == "controlnet":
        return {**common, "controlnet": str(work / "controlnet"), "control_image": str(work / "picture.png"), "width": size,
                "height": size, "controlnet_scale": 0.8}
    return {**common, "width": size // 2, "height": size // 2, "scale": 2.0, "upscale": "latent", "hires_steps": steps,
            "strength": 0.5, "hires.seed": HIRES_SEED}


# --------------------------------------------------------------------------- pipelines
def make_pipeline(name: str, parts: Any, setup: dict[str, Any]) -> Any:
    """diffusers' pipeline(s) for ``name`` over already-loaded components."""
    import diffusers

    components = {"vae": parts.vae, "text_encoder": parts.text_encoder, "tokenizer": parts.tokenizer, "unet": parts.unet,
                  "scheduler": getattr(diffusers, SCHEDULER).from_config(parts.scheduler_config), "safety_checker": None,
                  "feature_extractor": None, "requires_safety_checker": False}
    if name in ("inpaint", "outpaint"):
        pipes = [diffusers.StableDiffusionInpaintPipeline(**components)]
    elif name == "controlnet":
        from nodeflow.models.controlnet import demo_controlnet

        net = demo_controlnet(parts.unet, 5, tuple(setup["hint"])).eval()
        pipes = [diffusers.StableDiffusionControlNetPipeline(**components, controlnet=net)]
    else:
        pipes = [diffusers.StableDiffusionPipeline(**components), diffusers.StableDiffusionImg2ImgPipeline(**components)]
    for pipe in pipes:
        pipe.set_progress_bar_config(disable=True)
    return pipes


def run_pipeline(name: str, pipes: Any, steps: int, setup: dict[str, Any], out: Path) -> np.ndarray:
    """One generation with the pipeline(s), saved as a PNG; returns its pixels."""
    work, size = setup["work"], setup["size"]
    generator = torch.Generator("cpu").manual_seed(SEED)
    common = {"negative_prompt": NEGATIVE, "num_inference_steps": steps, "guidance_scale": GUIDANCE, "generator": generator}
    if name == "inpaint":
        with Image.open(work / "picture.png") as image, Image.open(work / "mask.png") as mask:
            result = pipes[0](PROMPT, image=image, mask_image=mask, height=size, width=size, strength=1.0, **common).images[0]
    elif name == "outpaint":
        with Image.open(work / "padded.png") as image, Image.open(work / "border.png") as mask:
            result = pipes[0](PROMPT, image=image, mask_image=mask, height=image.height, width=image.width, strength=1.0,
                              **common).images[0]
    elif name == "controlnet":
        with Image.open(work / "picture.png") as image:
            result = pipes[0](PROMPT, image=image, width=size, height=size, controlnet_conditioning_scale=0.8, **common).images[0]
    else:
        base = pipes[0](PROMPT, width=size // 2, height=size // 2, output_type="latent", **common).images
        up = torch.nn.functional.interpolate(base, scale_factor=2.0, mode="bicubic", align_corners=False)
        common["generator"] = torch.Generator("cpu").manual_seed(HIRES_SEED)
        result = pipes[1](PROMPT, image=up, strength=0.5, **common).images[0]
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "diffusers.png")
    return np.array(result)


def run_graph(executor: Any, name: str, settings: dict[str, Any], out: Path) -> np.ndarray:
    """One run of workflows/NAME.json with a fresh cache; returns the PNG's pixels."""
    from nodeflow.cache import Cache
    from nodeflow.graph import load_graph

    executor.cache = Cache()
    result = executor.run(load_graph(WORKFLOWS / f"{name}.json"), inputs=settings, output_dir=out)
    if result.status != "succeeded":
        raise RuntimeError(f"{name}: graph run failed: {result.errors}")
    with Image.open(result.outputs[-1]["path"]) as png:
        return np.array(png.convert("RGB"))


# ------------------------------------------------------------------------- comparisons
def compare_time(name: str, model: str, steps: int, setup: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Alternate graph and pipeline runs in this process; medians and ratios."""
    from nodeflow.executor import Executor
    from nodeflow.models import ModelStore
    from nodeflow.registry import build_registry

    store = ModelStore(device="cpu")
    executor = Executor(build_registry(use_entry_points=False), None, store)
    settings = graph_settings(name, model, steps, setup)
    work = Path(tempfile.mkdtemp(prefix=f"bench_{name}_"))
    graph_pixels = run_graph(executor, name, settings, work / "warm")
    pipes = make_pipeline(name, store.load_sd(model), setup)
    pipe_pixels = run_pipeline(name, pipes, steps, setup, work / "warm")
    graph_times, pipe_times = [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        run_graph(executor, name, settings, work / f"g{i}")
        t1 = time.perf_counter()
        run_pipeline(name, pipes, steps, setup, work / f"p{i}")
        t2 = time.perf_counter()
        graph_times.append(t1 - t0)
        pipe_times.append(t2 - t1)
    graph_s, pipe_s = statistics.median(graph_times), statistics.median(pipe_times)
    paired = statistics.median(g / p for g, p in zip(graph_times, pipe_times, strict=True))
    return {"graph_s": graph_s, "diffusers_s": pipe_s, "ratio": graph_s / pipe_s, "paired_ratio": paired,
            "identical": bool(np.array_equal(graph_pixels, pipe_pixels))}


def child(args: argparse.Namespace) -> None:
    """Subprocess entry: one side (or one VAE decode) once; prints peak RSS as JSON."""
    started = time.perf_counter()
    if args.child == "vae":
        vae_child(args.model, args.size, args.tiled)
    else:
        setup = json.loads(args.setup)
        setup["work"] = Path(setup["work"])
        out = Path(tempfile.mkdtemp(prefix=f"bench_{args.child}_"))
        if args.child == "graph":
            from nodeflow.executor import Executor
            from nodeflow.models import ModelStore
            from nodeflow.registry import build_registry

            executor = Executor(build_registry(use_entry_points=False), None, ModelStore(device="cpu"))
            run_graph(executor, args.name, graph_settings(args.name, args.model, args.steps, setup), out)
        else:
            from nodeflow.models.folder import load_folder

            parts = load_folder(Path(args.model), dtype="fp32", device="cpu")
            run_pipeline(args.name, make_pipeline(args.name, parts, setup), args.steps, setup, out)
    print(json.dumps({"seconds": time.perf_counter() - started, "peak_rss_mib": peak_rss_kib() / 1024}))


def vae_child(model: str, size: int, tiled: bool) -> None:
    """Decode one random latent of ``size`` px with VAE Decode or VAE Decode (Tiled)."""
    from diffusers import AutoencoderKL
    from nodeflow_nodes.sd.vae import VAEDecode, VAEDecodeTiled

    from nodeflow.context import Context
    from nodeflow.values import Latents

    # The VAE alone (fp32, as the model store loads it on the CPU): the figure is the decode's, not the model's.
    vae = AutoencoderKL.from_pretrained(model, subfolder="vae", local_files_only=True, torch_dtype=torch.float32).eval()
    latents = Latents(torch.randn(1, 4, size // 8, size // 8), float(vae.config.scaling_factor))
    ctx = Context("decode", "sd.vae_decode")
    image = VAEDecodeTiled().run(ctx, vae, latents, 512, 0.25) if tiled else VAEDecode().run(ctx, vae, latents)
    assert image.pixels.shape[-1] == size


def subprocess_rss(extra: list[str], threads: int) -> dict[str, Any]:
    """Run this script as a child with ``extra`` arguments; its JSON line."""
    cmd = [sys.executable, __file__, "--threads", str(threads), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def compare_rss(name: str, model: str, steps: int, setup: dict[str, Any], threads: int) -> dict[str, float]:
    """Peak RSS of each side in its own fresh subprocess."""
    shown = json.dumps({**setup, "work": str(setup["work"])})
    found = {side: subprocess_rss(["--child", side, "--name", name, "--model", model, "--steps", str(steps), "--setup", shown], threads)
             for side in ("graph", "diffusers")}
    g, d = found["graph"]["peak_rss_mib"], found["diffusers"]["peak_rss_mib"]
    return {"graph_mib": g, "diffusers_mib": d, "ratio": g / d}


def bench_model(label: str, model: str, size: int, factor: int, steps: int, args: argparse.Namespace, repeats: int) -> None:
    """Every selected workflow on one model."""
    setup = make_inputs(Path(tempfile.mkdtemp(prefix="bench_inputs_")), size, model, factor)
    for name in args.only.split(","):
        timing = compare_time(name, model, steps, setup, repeats)
        rss = None if args.no_rss else compare_rss(name, model, steps, setup, args.threads)
        line = (f"{label} | {name} | {steps} | {timing['graph_s']:.3f} s | {timing['diffusers_s']:.3f} s | {timing['ratio']:.3f} | "
                f"{timing['paired_ratio']:.3f} | {timing['identical']}")
        if rss is not None:
            line += f" | {rss['graph_mib']:,.0f} / {rss['diffusers_mib']:,.0f} MiB | {rss['ratio']:.3f}"
        print(line, flush=True)


def main() -> None:
    """Parse arguments and run the comparisons."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", default=",".join(NAMES))
    parser.add_argument("--sd15", action="store_true", help="also the SD 1.5-shaped random model at 256 px")
    parser.add_argument("--sd15-steps", type=int, default=3)
    parser.add_argument("--sd15-repeats", type=int, default=3)
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--vae-sizes", default="", help="comma-separated pixel sizes for the VAE decode memory check (SD 1.5 VAE)")
    parser.add_argument("--vae-tiled-sizes", default="", help="sizes decoded tiled only")
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--child", choices=["graph", "diffusers", "vae"], help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tiled", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args)
        return
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    print("model | workflow | steps | graph | diffusers | ratio | paired | identical | peak RSS graph / diffusers | RSS ratio")
    if not args.skip_tiny and args.only:
        tiny = build_random_sd(Path(tempfile.mkdtemp(prefix="bench_tiny_")) / "model", sd15=False)
        bench_model("tiny, 64 px", str(tiny), 64, 4, args.steps, args, args.repeats)
    if args.sd15 or args.vae_sizes or args.vae_tiled_sizes:
        sd15 = build_random_sd(Path(tempfile.mkdtemp(prefix="bench_sd15_")) / "model", sd15=True)
        if args.sd15:
            bench_model("SD 1.5-shaped, 256 px", str(sd15), 256, 8, args.sd15_steps, args, args.sd15_repeats)
        runs = [(int(s), t) for s in args.vae_sizes.split(",") if s for t in (False, True)]
        runs += [(int(s), True) for s in args.vae_tiled_sizes.split(",") if s]
        for size, tiled in runs:
            found = subprocess_rss(["--child", "vae", "--model", str(sd15), "--size", str(size)] + (["--tiled"] if tiled else []),
                                   args.threads)
            print(f"VAE decode {size}x{size} {'tiled (512 px tiles)' if tiled else 'whole'}: peak RSS "
                  f"{found['peak_rss_mib']:,.0f} MiB, {found['seconds']:.1f} s (load, decode)", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
