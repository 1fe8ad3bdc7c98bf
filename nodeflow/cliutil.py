"""What the ``nodeflow`` commands share: graph lookup, ``--set``, model and common options.

:mod:`nodeflow.cli` and :mod:`nodeflow.sweep` both import this module and never each
other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import threads
from .errors import UsageError
from .files import MODELS_DIR_ENV, PathResolver, kind_folders
from .resources import shipped_workflow, workflows_dir

_DTYPE_HELP = ("weight precision for load nodes left at 'auto' (a node's own dtype wins over this flag; "
               "without it: fp16 on CUDA, fp32 on the CPU)")


_COMPILE_HELP = ("torch.compile the UNet and VAE decoder of load nodes left at compile=auto (a node's own choice wins): faster"
                 " steps after a one-off compile per image size, images within rounding of the default path (docs/performance.md)")


def add_sets(p: argparse.ArgumentParser) -> None:
    """``--set NAME=VALUE`` (repeatable)."""
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="set a graph input (or NODE_ID.INPUT); VALUE is JSON if it parses, else a string")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """``--device``, ``--dtype``, ``--threads``, ``--allow-pickle`` (run, serve, sweep)."""
    p.add_argument("--device", help="device for models: cpu, cuda, cuda:N, mps (default: CUDA when present)")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help=_DTYPE_HELP)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the cores this process may use,"
                   " split between workers)")
    p.add_argument("--allow-pickle", action="store_true", help="allow .ckpt/.bin/.pt model files (read with weights_only)")
    p.add_argument("--compile", action="store_true", help=_COMPILE_HELP)
    p.add_argument("--compile-mode", choices=["default", "reduce-overhead", "max-autotune"],
                   help="torch.compile mode for --compile (implies it): reduce-overhead adds CUDA graphs (default: default)")


def add_model_folders(p: argparse.ArgumentParser) -> None:
    """``--models-dir`` (repeatable) and ``--comfy-paths`` (run, validate, serve, import-comfy)."""
    p.add_argument("--models-dir", action="append", metavar="DIR",
                   help="a folder in ComfyUI's models/ layout (checkpoints/, loras/, embeddings/, vae/, controlnet/,"
                        f" upscale_models/); repeatable; default: ${MODELS_DIR_ENV} ({os.pathsep}-separated)")
    p.add_argument("--comfy-paths", metavar="FILE", help="ComfyUI's extra_model_paths.yaml: use an existing install's model folders")


def model_folders(args: argparse.Namespace) -> dict[str, tuple[Path, ...]]:
    """The model folders by kind that ``--models-dir``/``$NODEFLOW_MODELS_DIR`` and ``--comfy-paths`` name."""
    from .comfy.paths import ComfyPathsError, read_extra_model_paths

    dirs = getattr(args, "models_dir", None) or [d for d in os.environ.get(MODELS_DIR_ENV, "").split(os.pathsep) if d]
    for folder in dirs:
        if not Path(folder).expanduser().is_dir():
            raise UsageError(f"--models-dir {folder}: no such folder")
    extra: dict[str, list[Path]] = {}
    comfy_paths = getattr(args, "comfy_paths", None)
    if comfy_paths:
        try:
            found = read_extra_model_paths(comfy_paths)
        except ComfyPathsError as exc:
            raise UsageError(f"--comfy-paths: {exc}") from None
        if found.skipped:
            print(f"nodeflow: note: --comfy-paths: not used by nodeflow: {', '.join(found.skipped)}", file=sys.stderr)
        extra = found.kinds
    return kind_folders(dirs, extra)


def add_budget_options(p: argparse.ArgumentParser, default_pixels: int | None) -> None:
    """``--max-pixels`` and ``--max-memory`` (run, serve): the run budget (:mod:`nodeflow.budget`)."""
    shown = f"{default_pixels:,}" if default_pixels else "no limit"
    p.add_argument("--max-pixels", type=int, default=default_pixels, metavar="N",
                   help=f"refuse a graph where a node makes more than N pixels x batch (default: {shown}; 0: no limit)")
    p.add_argument("--max-memory", type=parse_bytes, metavar="SIZE",
                   help="refuse a graph whose estimated peak memory (model known) is over SIZE, e.g. 24G (default: not checked)")


def parse_bytes(text: str) -> int:
    """``"24G"``, ``"512M"``, ``"1000000"`` -> bytes (K, M, G, T are powers of 1024)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = units.get(text[-1:], 1)
    try:
        value = float(text[:-1] if text[-1:] in units else text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 24G or 512M") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("a size must be positive")
    return int(value * scale)


def budget_of(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """``(max_pixels, max_memory)`` from the flags; 0 pixels means no limit."""
    return (args.max_pixels or None), args.max_memory


def add_worker_options(p: argparse.ArgumentParser, what: str) -> None:
    """``--workers`` and ``--gpus-per-worker`` (serve, sweep): how many jobs run at once, and where."""
    p.add_argument("--workers", type=int, help=f"{what}: local threads sharing the cores (default 1), or Ray worker"
                   " actors (default: one per GPU the cluster reports, else one per CPU)")
    p.add_argument("--gpus-per-worker", type=float, metavar="G",
                   help="with --backend ray on GPUs: each worker's share of a GPU (default 1; 0.5 puts two workers with"
                        " small models on one GPU)")


def add_common(p: argparse.ArgumentParser) -> None:
    """``--plugins`` and ``--debug``."""
    p.add_argument("--plugins", action="append", default=[], metavar="DIR", help="extra plugin folder (repeatable)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def resolve_graph_path(name: str) -> Path:
    """A graph file path, or the named workflow shipped with nodeflow."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_workflow(name)
    if shipped is not None:
        return shipped
    raise UsageError(f"no graph file '{name}' (and no shipped workflow of that name in {workflows_dir()})")


def graph_paths(graph: Path, kinds: Mapping[str, Sequence[Path]] | None = None) -> PathResolver:
    """How file names in ``graph`` resolve for a local run: its folder, the model folders of their kind
    (:func:`model_folders`), the working dir, the shipped workflows."""
    fallback = [d for d in (workflows_dir(),) if d is not None]
    return PathResolver.create([Path.cwd()], kinds=kinds, base=graph.resolve().parent, fallback=fallback)


def read_graph(path: Path, registry: Any, paths: PathResolver) -> tuple[Any, dict[str, Any] | None]:
    """A graph file's contents for a run: its bytes (a nodeflow graph, parsed by the run), or the
    document a ComfyUI workflow, prompt or PNG translates to and its ``meta``.

    A ComfyUI file that does not translate raises :class:`~nodeflow.errors.GraphInvalid` with every problem.
    """
    from .comfy import import_comfy, sniff
    from .errors import GraphInvalid

    data = path.read_bytes()
    if sniff(data) is None:
        return data, None
    imported = import_comfy(data, registry, paths, name=path.stem)
    if imported.doc is None:
        raise GraphInvalid(imported.errors)
    imported.doc._folder = path.resolve().parent
    return imported.doc, imported.doc.meta


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs; VALUE is JSON when it parses, else the raw string."""
    values: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--set expects NAME=VALUE, got '{item}'")
        try:
            values[name] = json.loads(raw)
        except ValueError:
            values[name] = raw
    return values


def model_store(args: argparse.Namespace) -> Any:
    """The model store the options ask for; a usage error (before anything loads) for a bad device."""
    from .models import ModelStore

    try:
        return ModelStore(device=args.device, dtype=args.dtype, allow_pickle=args.allow_pickle, compile=compile_mode(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def compile_mode(args: argparse.Namespace) -> str | None:
    """The ``torch.compile`` mode ``--compile``/``--compile-mode`` ask for (None: the eager default path)."""
    mode = getattr(args, "compile_mode", None)
    if mode is not None:
        return str(mode)
    return "default" if getattr(args, "compile", False) else None


def load_registry(args: argparse.Namespace) -> Any:
    """The registry with ``--plugins``; pack problems are printed as warnings."""
    from .registry import build_registry

    registry = build_registry(args.plugins)
    for err in registry.errors:
        print(f"nodeflow: warning: {err.message}", file=sys.stderr)
    return registry




def apply_threads(args: argparse.Namespace, workers: int = 1) -> int:
    """Set torch's threads from ``--threads`` (or the cores split between ``workers``); a usage error if invalid."""
    try:
        count = threads.share(workers, args.threads)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    threads.apply(count)
    return count


__all__ = ["add_common", "add_model_folders", "add_model_options", "add_sets", "add_worker_options", "apply_threads",
           "compile_mode", "graph_paths", "load_registry", "model_folders", "model_store", "parse_sets", "read_graph", "resolve_graph_path"]
