"""The ``nodeflow`` command: ``run``, ``validate``, ``nodes``, ``serve``.

Exit codes: 0 ok, 1 invalid graph or failed run, 2 usage error. A user error never
prints a raw traceback; ``--debug`` shows it.
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

from .errors import ErrorInfo, GraphInvalid  # noqa: E402

WORKFLOWS_DIR = Path(__file__).resolve().parent.parent / "workflows"


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
        return 1
    except Exception as exc:  # never a raw traceback for a user, unless asked
        if getattr(args, "debug", False):
            traceback.print_exc()
        else:
            print(f"nodeflow: error: {type(exc).__name__}: {exc} (use --debug for the traceback)", file=sys.stderr)
        return 1


class UsageError(Exception):
    """Bad command-line usage that argparse cannot catch (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nodeflow", description="Stable Diffusion as a graph of typed nodes.")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run a graph headless")
    run.add_argument("graph", help="graph JSON file, or the name of a workflow in workflows/")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                     help="set a graph input (or NODE_ID.INPUT); VALUE is JSON if it parses, else a string")
    run.add_argument("--out", default="outputs", help="folder for image outputs (default ./outputs)")
    run.add_argument("--cache-dir", help="disk cache folder, reused by later processes")
    run.add_argument("--cache-budget-mb", type=int, help="in-memory cache budget (default: a quarter of free RAM)")
    run.add_argument("--json", action="store_true", help="print one JSON report on stdout")
    run.add_argument("--device", help="device for models (cpu, cuda; default: cuda when present)")
    run.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="model dtype")
    run.add_argument("--allow-pickle", action="store_true", help="allow .ckpt/.bin/.pt model files (weights_only)")
    _add_common(run)
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check a graph without running it")
    val.add_argument("graph")
    val.add_argument("--json", action="store_true")
    _add_common(val)
    val.set_defaults(func=cmd_validate)

    nodes = sub.add_parser("nodes", help="list installed nodes")
    nodes.add_argument("--json", action="store_true", help="schemas and the type compatibility table as JSON")
    _add_common(nodes)
    nodes.set_defaults(func=cmd_nodes)

    serve = sub.add_parser("serve", help="start the editor and API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8188)
    serve.add_argument("--token", default=os.environ.get("NODEFLOW_TOKEN"))
    serve.add_argument("--data-dir", default=str(Path.home() / ".nodeflow"))
    serve.add_argument("--backend", default="local", choices=["local", "ray"])
    serve.add_argument("--address", help="Ray cluster address (with --backend ray)")
    _add_common(serve)
    serve.set_defaults(func=cmd_serve)

    _add_optional_commands(sub)
    return parser


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugins", action="append", default=[], metavar="DIR", help="extra plugin folder (repeatable)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _add_optional_commands(sub: Any) -> None:
    """Commands that live in optional modules (``sweep`` with the Ray extra)."""
    try:
        from .sweep import add_parser as add_sweep  # type: ignore[import-not-found]
    except ImportError:
        return
    add_sweep(sub, _add_common)


def resolve_graph_path(name: str) -> Path:
    """A graph file path, or the named workflow shipped in ``workflows/``."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = WORKFLOWS_DIR / (name if name.endswith(".json") else f"{name}.json")
    if shipped.is_file():
        return shipped
    raise UsageError(f"no graph file '{name}' (and no workflow of that name in {WORKFLOWS_DIR})")


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


def _registry(args: argparse.Namespace) -> Any:
    from .registry import build_registry

    registry = build_registry(args.plugins)
    for err in registry.errors:
        print(f"nodeflow: warning: {err.message}", file=sys.stderr)
    return registry


def cmd_run(args: argparse.Namespace) -> int:
    """``nodeflow run``: validate, run with progress bars, write outputs, report."""
    from .cache import Cache
    from .executor import Executor
    from .models import ModelStore
    from .progress import ProgressPrinter

    graph = resolve_graph_path(args.graph).read_bytes()  # parse errors become a failed run report
    values = parse_sets(args.sets)
    registry = _registry(args)
    budget = args.cache_budget_mb * (1 << 20) if args.cache_budget_mb else None
    models = ModelStore(device=args.device, dtype=args.dtype, allow_pickle=args.allow_pickle)
    executor = Executor(registry, Cache(budget, args.cache_dir), models)
    with ProgressPrinter(enabled=not args.json or sys.stderr.isatty()) as progress:
        result = executor.run(graph, inputs=values, output_dir=args.out, on_event=progress)
    if args.debug and result.traceback:
        print(result.traceback, file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        for out in result.outputs:
            print(out["path"])
        if result.errors:
            _print_errors(result.errors, False)
        counts: dict[str, int] = {}
        for report in result.nodes.values():
            counts[report.status] = counts.get(report.status, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        print(f"{result.status} in {result.seconds:.2f}s ({summary})", file=sys.stderr)
    return 0 if result.status == "succeeded" else 1


def cmd_validate(args: argparse.Namespace) -> int:
    """``nodeflow validate``: exit 0 when valid, 1 with every error when not."""
    from .validate import validate

    try:
        text = resolve_graph_path(args.graph).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GraphInvalid(ErrorInfo("invalid_json", f"the graph file is not UTF-8 text: {exc}")) from None
    errors = validate(text, _registry(args))  # parse errors come back as errors too
    if args.json:
        print(json.dumps({"valid": not errors, "errors": [e.to_dict() for e in errors]}, indent=2))
    elif errors:
        _print_errors(errors, False)
    else:
        print("valid")
    return 1 if errors else 0


def cmd_nodes(args: argparse.Namespace) -> int:
    """``nodeflow nodes``: the catalogue, as text or JSON."""
    registry = _registry(args)
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

    try:
        _run_server(run_server, args)
    except ServerConfigError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _run_server(run_server: Any, args: argparse.Namespace) -> None:
    run_server(
        host=args.host,
        port=args.port,
        token=args.token,
        data_dir=args.data_dir,
        plugin_dirs=args.plugins,
        backend=args.backend,
        address=args.address,
    )


def _print_errors(errors: list[ErrorInfo], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"valid": False, "errors": [e.to_dict() for e in errors]}, indent=2))
        return
    for err in errors:
        print(f"error: {err}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
