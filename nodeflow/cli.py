"""The ``nodeflow`` command: ``run``, ``validate``, ``nodes``, ``serve``, ``sweep``, ``import-comfy``.

Exit codes: 0 ok, 1 invalid graph or failed run, 2 usage error, 130 interrupted
(Ctrl-C). A user error never prints a raw traceback; ``--debug`` shows it.

A graph is a file path or the name of a shipped workflow (``txt2img``). File names
inside it resolve against the graph file's own folder first, then the working
directory, then the shipped workflows (:class:`nodeflow.files.PathResolver`). ``run`` and
``validate`` also take ComfyUI files (UI workflow, API prompt, PNG): they are translated
first (:mod:`nodeflow.comfy`) and problems are told with ComfyUI's node ids.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Models load from local paths only; make any accidental hub lookup fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from . import threads  # noqa: E402
from .budget import DEFAULT_MAX_PIXELS  # noqa: E402
from .cliutil import (  # noqa: E402
    add_budget_options,
    add_common,
    add_model_folders,
    add_model_options,
    add_sets,
    add_worker_options,
    apply_threads,
    budget_of,
    graph_paths,
    load_registry,
    model_folders,
    model_store,
    parse_sets,
    read_graph,
    resolve_graph_path,
)
from .errors import ErrorInfo, GraphInvalid, UsageError  # noqa: E402

threads.prepare_process()  # before anything imports torch


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except GraphInvalid as exc:
        _print_errors(exc.errors, getattr(args, "json", False))
        return 1
    except UsageError as exc:
        print(f"nodeflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nodeflow: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a raw traceback for a user, unless asked
        if getattr(args, "debug", False):
            traceback.print_exc()
        else:
            print(f"nodeflow: error: {type(exc).__name__}: {exc} (use --debug for the traceback)", file=sys.stderr)
        return 1


def _add_serve(sub: Any) -> None:
    """The ``serve`` command's flags."""
    serve = sub.add_parser("serve", help="start the editor and API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8188)
    serve.add_argument("--token", default=os.environ.get("NODEFLOW_TOKEN"))
    serve.add_argument("--data-dir", default=str(Path.home() / ".nodeflow"))
    serve.add_argument("--backend", default="local", choices=["local", "ray"])
    serve.add_argument("--address", help="Ray cluster address (with --backend ray)")
    add_worker_options(serve, "runs at once")
    serve.add_argument("--allow-read", action="append", default=[], metavar="DIR",
                       help="a folder whose files graphs may name, besides the uploads (repeatable); nothing else is readable")
    serve.add_argument("--max-graph-nodes", type=int, default=10_000, help="most nodes in one graph (default 10000)")
    serve.add_argument("--max-json-bytes", type=int, default=2 << 20, help="largest JSON body (default 2 MiB)")
    add_budget_options(serve, DEFAULT_MAX_PIXELS)
    add_model_options(serve)
    add_model_folders(serve)
    add_common(serve)
    serve.set_defaults(func=cmd_serve)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nodeflow", description="Stable Diffusion as a graph of typed nodes.")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run a graph headless", description="Run a graph headless and print the files it wrote.")
    run.add_argument("graph", help="graph JSON file, or the name of a shipped workflow (txt2img, img2img...)")
    add_sets(run)
    run.add_argument("--out", default="outputs", help="folder for image outputs (default ./outputs)")
    run.add_argument("--cache-dir", help="disk cache folder, reused by later processes")
    run.add_argument("--cache-budget-mb", type=int, help="in-memory cache budget (default: a quarter of free RAM)")
    run.add_argument("--json", action="store_true", help="print one JSON report on stdout")
    add_budget_options(run, None)
    add_model_options(run)
    add_model_folders(run)
    add_common(run)
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check a graph without running it")
    val.add_argument("graph")
    add_sets(val)
    val.add_argument("--json", action="store_true")
    add_model_folders(val)
    add_common(val)
    val.set_defaults(func=cmd_validate)

    nodes = sub.add_parser("nodes", help="list installed nodes")
    nodes.add_argument("--json", action="store_true", help="schemas and the type compatibility table as JSON")
    add_common(nodes)
    nodes.set_defaults(func=cmd_nodes)

    _add_serve(sub)

    comfy = sub.add_parser("import-comfy", help="translate a ComfyUI workflow, prompt or PNG into a nodeflow graph",
                           description="Translate a ComfyUI UI workflow, API prompt or PNG into a nodeflow graph document.")
    comfy.add_argument("source", help="ComfyUI .json (UI workflow or API prompt) or .png")
    comfy.add_argument("-o", "--output", help="where to write the graph (default: stdout)")
    comfy.add_argument("--json", action="store_true", help="problems as JSON")
    add_model_folders(comfy)
    add_common(comfy)
    comfy.set_defaults(func=cmd_import_comfy)

    from .sweep import add_parser as add_sweep

    add_sweep(sub)
    return parser





def cmd_run(args: argparse.Namespace) -> int:
    """``nodeflow run``: validate, run with progress bars, write outputs, report."""
    from .budget import Budget
    from .cache import Cache
    from .executor import Executor
    from .progress import ProgressPrinter

    path = resolve_graph_path(args.graph)
    values = parse_sets(args.sets)
    models = model_store(args)
    apply_threads(args)
    registry = load_registry(args)
    paths = graph_paths(path, model_folders(args))
    graph, comfy_meta = read_graph(path, registry, paths)  # nodeflow parse errors become a failed run report
    budget = args.cache_budget_mb * (1 << 20) if args.cache_budget_mb else None
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else None
    max_pixels, max_memory = budget_of(args)
    limits = None
    if max_pixels or max_memory:
        limits = Budget(max_pixels, max_memory, models.default_dtype() if models is not None else "fp32")
    executor = Executor(registry, Cache(budget, cache_dir), models, paths, limits)
    with ProgressPrinter(enabled=sys.stderr.isatty()) as progress:
        result = executor.run(graph, inputs=values, output_dir=args.out, on_event=progress)
    if comfy_meta is not None:
        from .comfy import comfy_errors

        result.errors = comfy_errors(result.errors, comfy_meta)
    if args.debug and result.traceback:
        print(result.traceback, file=sys.stderr)
    if args.json:
        # Weight loading apart from the run's other work: it is paid once per process (the store keeps the model).
        print(json.dumps({**result.to_dict(), "load_seconds": round(models.load_seconds, 4)}, indent=2))
    else:
        _print_result(result)
    return 0 if result.status == "succeeded" else 1


def _print_result(result: Any) -> None:
    """Files written and values shown on stdout; errors and a one-line summary on stderr."""
    for out in result.outputs:
        print(out["path"])
    for node_id, outputs in result.shown_values().items():
        for name, value in outputs.items():
            label = node_id if len(outputs) == 1 else f"{node_id}.{name}"
            print(f"{label}: {value}")
    if result.errors:
        _print_errors(result.errors, False)
    counts: dict[str, int] = {}
    for report in result.nodes.values():
        counts[report.status.value] = counts.get(report.status.value, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{result.status.value} in {result.seconds:.2f}s ({summary})", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    """``nodeflow validate``: exit 0 when valid, 1 with every error when not."""
    from .comfy import comfy_errors
    from .graph import apply_inputs, parse_graph
    from .validate import check

    path = resolve_graph_path(args.graph)
    registry = load_registry(args)
    paths = graph_paths(path, model_folders(args))
    meta: dict[str, Any] | None = None
    try:
        graph, meta = read_graph(path, registry, paths)
        doc = graph if meta is not None else parse_graph(_utf8(graph))
        errors = check(apply_inputs(doc, parse_sets(args.sets)), registry, paths).errors
    except GraphInvalid as exc:  # parse errors come back as errors too
        errors = exc.errors
    if meta is not None:
        errors = comfy_errors(errors, meta)
    if args.json:
        print(json.dumps({"valid": not errors, "errors": [e.to_dict() for e in errors]}, indent=2))
    elif errors:
        _print_errors(errors, False)
    else:
        print("valid")
    return 1 if errors else 0


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GraphInvalid(ErrorInfo("invalid_json", f"the graph file is not UTF-8 text: {exc}")) from None


def cmd_import_comfy(args: argparse.Namespace) -> int:
    """``nodeflow import-comfy``: write the nodeflow graph a ComfyUI file translates to; exit 1 with every problem."""
    from .comfy import load_comfy
    from .graph import dump_graph

    source = Path(args.source)
    if not source.is_file():
        raise UsageError(f"no file '{args.source}'")
    imported = load_comfy(source, load_registry(args), graph_paths(source, model_folders(args)))
    if imported.doc is None:
        raise GraphInvalid(imported.errors)
    text = dump_graph(imported.doc)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(imported.doc.nodes)} nodes from a ComfyUI {imported.source} file)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    """``nodeflow nodes``: the catalogue, as text or JSON."""
    registry = load_registry(args)
    catalogue = registry.catalogue()
    if args.json:
        print(json.dumps(catalogue, indent=2, default=str))
        return 0
    by_category: dict[str, list[str]] = {}
    for type_id, schema in catalogue["nodes"].items():
        ins = ", ".join(f"{i['name']}:{i['type']}" for i in schema["inputs"])
        outs = ", ".join(f"{o['name']}:{o['type']}" for o in schema["outputs"])
        line = f"  {type_id:<28} {schema['display_name']} ({ins}) -> ({outs})  [{schema['pack']} v{schema['version']}]"
        by_category.setdefault(schema["category"], []).append(line)
    for category in sorted(by_category):
        print(f"{category}:")
        print("\n".join(by_category[category]))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``nodeflow serve``: the editor and API server."""
    from .server import ServerConfigError, run_server

    models = model_store(args)
    kinds = model_folders(args)
    try:
        run_server(host=args.host, port=args.port, token=args.token, data_dir=args.data_dir, plugin_dirs=args.plugins,
                   backend=args.backend, address=args.address, models=models, threads=args.threads,
                   workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                   allow_read=[Path(d) for d in args.allow_read], max_graph_nodes=args.max_graph_nodes,
                   max_json_bytes=args.max_json_bytes, model_kinds=kinds, max_pixels=budget_of(args)[0],
                   max_memory=budget_of(args)[1])
    except ServerConfigError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _print_errors(errors: list[ErrorInfo], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"valid": False, "errors": [e.to_dict() for e in errors]}, indent=2))
        return
    for err in errors:
        print(f"error: {err}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
