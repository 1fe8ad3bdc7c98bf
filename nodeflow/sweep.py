"""``nodeflow sweep``: run one graph over a grid of graph-input values, on any backend.

::

    nodeflow sweep txt2img --set seed=0..15 --set prompt=@prompts.txt --out sweep/
    nodeflow sweep txt2img --set seed=[1,2,3] --backend ray --address head:6379

**Values.** ``--set NAME=VALUES`` (``NAME`` is an exposed graph input or ``NODE.INPUT``):

* ``[1, 2, 3]`` -- a JSON list: one job per element;
* ``A..B`` -- the integers from ``A`` to ``B``, **both included** (``0..15`` is 16 values);
* ``@FILE`` -- one value per non-blank line of ``FILE`` (line ends removed);
* anything else -- one value, read as ``nodeflow run --set`` reads it.

Text is kept as text for ``STRING`` inputs (``prompt=42`` is the prompt "42"); for
other inputs it is JSON when it parses (``steps=4`` is the number 4). A literal value
starting with ``@`` or shaped like ``A..B`` is written as a JSON string:
``prompt='"@home"'``. Several ``--set`` form the cartesian product, the first one
varying slowest; jobs are numbered in that order.

**Results.** Each job's files are moved into ``--out`` and named by the parameters
that vary across the sweep, ``seed=3_prompt=a-cat.png`` (values reduced to
``[A-Za-z0-9.+-]``, 40 characters at most; when no parameter varies, all of them).
A job writing several images gets ``_image=0``, ``_image=1``... A name two jobs
would share gets ``_job=N``. ``sweep.json`` beside them lists every job: index,
parameters, status, seconds (the executor's time for the job's last attempt),
attempts, worker, output files and errors. Previews are not kept.

**Seed batches.** ``--batch-seeds N`` runs up to ``N`` consecutive jobs that differ only
in a Noise Latents seed (rising by one) as one batched job, which a GPU runs several
times faster per image; see :mod:`nodeflow.batching` for which jobs qualify and how close
the images are to one-by-one runs. Their manifest entries say ``"batch"`` (the job
indices that ran together) and share that job's seconds.

Every job is validated before any runs; a failed job does not stop the others.
Exit status: 0 when every job succeeded, 1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, as_completed
from pathlib import Path
from typing import Any

from .backends.base import Backend, JobResult
from .batching import batched_inputs, seed_groups, split_outputs
from .cliutil import (
    add_common,
    add_model_options,
    add_worker_options,
    graph_paths,
    load_registry,
    model_store,
    resolve_graph_path,
)
from .context import CancelToken
from .errors import ErrorInfo, GraphInvalid, UsageError
from .events import RunStatus
from .files import PathResolver
from .graph import GraphDoc, apply_inputs, parse_graph, resolve_input
from .registry import Registry
from .types import STRING
from .validate import check

MANIFEST = "sweep.json"
_RANGE_RE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9.+-]+")
_MAX_VALUE_CHARS = 40
_WORK_DIR = ".jobs"


class SweepUsageError(ValueError):
    """A ``--set`` that cannot be read (bad range, missing file, empty list)."""


# -- values ------------------------------------------------------------------------------------------
def parse_values(raw: str, *, text: bool = False, base_dir: Path | None = None) -> list[Any]:
    """The list of values ``raw`` stands for (see the module docstring).

    ``text``: the input is a ``STRING``, so plain text and file lines stay text.
    ``base_dir`` resolves relative ``@FILE`` paths (default: the working directory).
    """
    if raw.startswith("@"):
        path = Path(raw[1:]).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SweepUsageError(f"cannot read the values file {path}: {exc}") from None
        values = [_scalar(line, text) for line in lines if line.strip()]
        if not values:
            raise SweepUsageError(f"the values file {path} has no non-blank line")
        return values
    match = _RANGE_RE.match(raw)
    if match:
        start, stop = int(match.group(1)), int(match.group(2))
        if stop < start:
            raise SweepUsageError(f"range {raw!r} is empty: write it low..high (both ends are included)")
        return list(range(start, stop + 1))
    if raw.lstrip().startswith("["):
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise SweepUsageError(f"{raw!r} looks like a JSON list but is not one: {exc}") from None
        if not parsed:
            raise SweepUsageError("an empty list gives no jobs")
        return list(parsed)
    return [_scalar(raw, text)]


def _scalar(raw: str, text: bool) -> Any:
    if text:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def input_type(doc: GraphDoc, registry: Registry, name: str) -> str | None:
    """The socket type of graph input ``name`` (exposed, or ``NODE.INPUT``), if it can be found."""
    try:
        node_id, input_name = resolve_input(doc, name)
    except GraphInvalid:
        return None
    node = doc.nodes.get(node_id)
    schema = registry.schema(node.type) if node is not None else None
    spec = schema.input(input_name) if schema is not None else None
    return spec.type if spec is not None else None


def parse_sets(items: Sequence[str], doc: GraphDoc, registry: Registry) -> dict[str, list[Any]]:
    """``NAME=VALUES`` options to ``{name: values}``, in the order given (a repeated name: the last wins)."""
    sets: dict[str, list[Any]] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SweepUsageError(f"--set expects NAME=VALUES, got {item!r}")
        sets.pop(name, None)
        sets[name] = parse_values(raw, text=input_type(doc, registry, name) == STRING)
    return sets


def expand(sets: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``sets`` as one ``{name: value}`` per job; the first name varies slowest."""
    names = list(sets)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(sets[n] for n in names))]


# -- names ---------------------------------------------------------------------------------------------
def safe_part(value: Any) -> str:
    """``value`` reduced to a file-name piece: ``[A-Za-z0-9.+-]``, at most 40 characters, never empty."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    text = _UNSAFE_RE.sub("-", text).strip("-.")[:_MAX_VALUE_CHARS].strip("-.")
    return text or "empty"


def job_stems(jobs: Sequence[dict[str, Any]]) -> list[str]:
    """A distinct file stem per job, from the parameters that vary (all of them when none does)."""
    names = list(jobs[0]) if jobs else []
    varying = [n for n in names if len({json.dumps(j[n], sort_keys=True) for j in jobs}) > 1] or names
    stems: list[str] = []
    seen: set[str] = set()
    for index, job in enumerate(jobs):
        stem = "_".join(f"{safe_part(n)}={safe_part(job[n])}" for n in varying) or "job"
        if stem in seen:
            stem = f"{stem}_job={index}"
        seen.add(stem)
        stems.append(stem)
    return stems


# -- running -------------------------------------------------------------------------------------------
def validate_jobs(doc: GraphDoc, jobs: Sequence[dict[str, Any]], registry: Registry,
                  paths: PathResolver | None = None) -> list[tuple[int, ErrorInfo]]:
    """Every problem of every job, as ``(job index, error)``; nothing should run if there is one."""
    problems: list[tuple[int, ErrorInfo]] = []
    for index, job in enumerate(jobs):
        try:
            errors = check(apply_inputs(doc, job), registry, paths).errors
        except Exception as exc:  # GraphInvalid for unknown inputs; anything else is still this job's problem
            errors = getattr(exc, "errors", None) or [ErrorInfo("invalid_value", str(exc))]
        problems.extend((index, e) for e in errors)
    return problems


def run_sweep(
    graph: GraphDoc,
    jobs: Sequence[dict[str, Any]],
    backend: Backend,
    out_dir: Path,
    *,
    progress: bool = True,
    on_job: Callable[[dict[str, Any]], None] | None = None,
    info: dict[str, Any] | None = None,
    paths: PathResolver | None = None,
    batch_seeds: int = 1,
) -> dict[str, Any]:
    """Run ``jobs`` on ``backend``, move their files into ``out_dir``, write and return the manifest.

    ``on_job`` is called on this thread with each job's manifest entry as it finishes
    (tests use it to act mid-sweep). ``info`` joins the manifest's top level. ``paths``
    resolves the file names in the graph. ``batch_seeds`` > 1 runs up to that many
    jobs differing only in their seed as one batch (:mod:`nodeflow.batching`).
    Ctrl-C cancels the jobs not finished; the manifest is written either way.
    """
    started = time.perf_counter()
    sweep = _Sweep(list(jobs), Path(out_dir), seed_groups(graph, jobs, batch_seeds))
    futures = sweep.submit(graph, backend, paths)
    interrupted = False
    bar = _bar(len(jobs), progress)
    try:
        for future in as_completed(futures):
            finished = sweep.finish(futures[future], _outcome(future))
            failed = sum(1 for e in sweep.entries if e["status"] not in ("queued", "succeeded"))
            bar.update(len(finished))
            if failed:
                bar.set_postfix_str(f"{failed} failed")
            for entry in finished if on_job is not None else ():
                on_job(entry)
    except KeyboardInterrupt:
        interrupted = True
        sweep.cancel(futures)
    finally:
        bar.close()
        shutil.rmtree(sweep.work, ignore_errors=True)
    manifest = sweep.manifest(backend, interrupted, time.perf_counter() - started, info or {})
    (sweep.out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return manifest


class _Sweep:
    """One sweep's bookkeeping: its jobs' manifest entries, their file stems and where their files went."""

    def __init__(self, jobs: list[dict[str, Any]], out_dir: Path, groups: list[list[int]] | None = None):
        self.jobs = jobs
        self.groups = groups if groups is not None else [[i] for i in range(len(jobs))]
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.work = out_dir / _WORK_DIR
        shutil.rmtree(self.work, ignore_errors=True)  # ours: left over only by an interrupted sweep
        self.stems = job_stems(jobs)
        self.tokens = [CancelToken() for _ in self.groups]
        self.moved: dict[str, Path] = {}
        self.entries: list[dict[str, Any]] = [
            {"index": i, "parameters": job, "status": "queued", "seconds": None, "attempts": 0, "worker": None, "outputs": [],
             "errors": []}
            for i, job in enumerate(jobs)
        ]

    def submit(self, graph: GraphDoc, backend: Backend, paths: PathResolver | None) -> dict[Future[JobResult], int]:
        """Queue every group of jobs (one job each unless batched); the futures, by group number."""
        data = graph.model_dump(mode="json")  # dumped once, not per job
        return {backend.submit(data, batched_inputs(graph, self.jobs, group), self.work / f"{g:05d}", None, self.tokens[g], paths): g
                for g, group in enumerate(self.groups)}

    def finish(self, number: int, result: JobResult) -> list[dict[str, Any]]:
        """Record group ``number``'s outcome and move its files into the output folder; its jobs' manifest entries."""
        group = self.groups[number]
        job_dir = self.work / f"{number:05d}"
        shares = split_outputs([o for o in result.outputs if o.get("kind") != "preview"], len(group))
        entries = []
        for index, outputs in zip(group, shares, strict=True):
            entry = self.entries[index]
            entry.update(status=str(result.status), seconds=round(result.seconds, 4), attempts=result.attempts, worker=result.worker,
                         errors=[e.to_dict() for e in result.errors],
                         outputs=_collect(outputs, self.out_dir, self.stems[index], job_dir, self.moved))
            if len(group) > 1:
                entry["batch"] = list(group)
            entries.append(entry)
        shutil.rmtree(job_dir, ignore_errors=True)
        return entries

    def cancel(self, futures: dict[Future[JobResult], int]) -> None:
        """Stop running jobs at their next check and drop queued ones."""
        for token in self.tokens:
            token.cancel()
        for future in futures:
            future.cancel()

    def manifest(self, backend: Backend, interrupted: bool, seconds: float, info: dict[str, Any]) -> dict[str, Any]:
        """The ``sweep.json`` document."""
        counts: dict[str, int] = {}
        for entry in self.entries:
            counts[entry["status"]] = counts.get(entry["status"], 0) + 1
        succeeded = counts.get("succeeded", 0) == len(self.jobs)
        return {
            "format": "nodeflow/sweep",
            "version": 1,
            **info,
            "backend": backend.name,
            "workers": backend.capacity,
            "status": "interrupted" if interrupted else ("succeeded" if succeeded else "failed"),
            "seconds": round(seconds, 4),
            "counts": counts,
            "parameters": _parameters(self.jobs),
            "jobs": self.entries,
        }


def _outcome(future: Future[JobResult]) -> JobResult:
    """A finished job's result; a cancelled or crashed future becomes a result too."""
    try:
        return future.result()
    except CancelledError:
        return JobResult(RunStatus.CANCELLED, errors=[ErrorInfo("cancelled", "the job was cancelled before it ran")])
    except Exception as exc:  # a backend bug fails one job, not the sweep
        return JobResult(RunStatus.FAILED, errors=[ErrorInfo("internal_error", f"{type(exc).__name__}: {exc}")])


def _bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="sweep", unit="job", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


def _parameters(jobs: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Each parameter's distinct values, in first-seen order."""
    values: dict[str, list[Any]] = {}
    for job in jobs:
        for name, value in job.items():
            bucket = values.setdefault(name, [])
            if value not in bucket:
                bucket.append(value)
    return values


def _collect(kept: list[dict[str, Any]], out_dir: Path, stem: str, job_dir: Path, moved: dict[str, Path]) -> list[str]:
    """Move a job's kept files (its outputs, previews left out) into ``out_dir`` under names from ``stem``; their names.

    A file already moved for an earlier job (a cached save node on the local backend
    hands back that job's path) is copied from where it went.
    """
    kinds: dict[str, int] = {}
    for output in kept:
        kinds[output.get("kind", "file")] = kinds.get(output.get("kind", "file"), 0) + 1
    names: list[str] = []
    seen: dict[str, int] = {}
    for output in kept:
        source = Path(output["path"])
        kind = str(output.get("kind", "file"))
        number = seen.get(kind, 0)
        seen[kind] = number + 1
        suffix = f"_{safe_part(kind)}={number}" if kinds[kind] > 1 else ("" if kind == "image" else f"_{safe_part(kind)}")
        target = out_dir / f"{stem}{suffix}{source.suffix}"
        if str(source) in moved:
            shutil.copyfile(moved[str(source)], target)
        elif source.is_file() and _inside(source, job_dir):
            source.replace(target)
            moved[str(source)] = target
        elif source.is_file():
            shutil.copyfile(source, target)  # not ours to move (written outside the job's folder)
        else:
            continue
        names.append(target.name)
    return names


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


# -- the command -----------------------------------------------------------------------------------------
def add_parser(subparsers: Any) -> None:
    """Register ``nodeflow sweep`` (called by :mod:`nodeflow.cli`)."""
    sweep = subparsers.add_parser(
        "sweep", help="run a graph over a grid of input values (locally or on Ray)",
        description="Run GRAPH once per combination of --set values; write the images and sweep.json into --out.",
    )
    sweep.add_argument("graph", help="graph JSON file, or the name of a shipped workflow")
    sweep.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUES",
                       help="values of a graph input: JSON list [1,2], inclusive range 0..15, @FILE (one per line), or one value;"
                            " several --set form a product")
    sweep.add_argument("--backend", default="local", choices=["local", "ray"], help="where jobs run (default: local)")
    sweep.add_argument("--address", help="Ray cluster to use (HOST:PORT of its head, or auto); default: a private Ray on 127.0.0.1")
    add_worker_options(sweep, "jobs at a time")
    sweep.add_argument("--out", default="sweep", help="folder for the images and sweep.json (default ./sweep)")
    sweep.add_argument("--json", action="store_true", help="print the manifest on stdout")
    sweep.add_argument("--batch-seeds", type=int, default=1, metavar="N",
                       help="run up to N consecutive jobs that differ only in a Noise Latents seed (seed=0..15) as one batch:"
                            " several times the images per second on a GPU (default 1: one job at a time)")
    add_model_options(sweep)
    add_common(sweep)
    sweep.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    """``nodeflow sweep``: expand, validate every job, run them on the backend, write the manifest."""
    from .backends.ray import RayUnavailable

    try:
        return _sweep(args)
    except (SweepUsageError, RayUnavailable) as exc:
        raise UsageError(str(exc)) from None


def _sweep(args: argparse.Namespace) -> int:
    from .backends import make_backend

    path = resolve_graph_path(args.graph)
    doc = parse_graph(path.read_bytes())  # GraphInvalid -> the CLI prints the errors, exit 1
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    registry = load_registry(args)
    paths = graph_paths(path)
    jobs = expand(parse_sets(args.sets, doc, registry))
    if not 1 <= args.batch_seeds <= 64:
        raise UsageError("--batch-seeds must be from 1 to 64 (Noise Latents' largest batch)")
    problems = validate_jobs(doc, jobs, registry, paths)
    if problems:
        _print_problems(problems, jobs)
        return 1
    models = model_store(args)
    ray_only = {} if args.gpus_per_worker is None else {"gpus_per_worker": args.gpus_per_worker}
    if ray_only and args.backend != "ray":
        raise UsageError("--gpus-per-worker applies to the Ray backend only (--backend ray)")
    backend = make_backend(args.backend, registry=registry, plugin_dirs=args.plugins, address=args.address,
                           workers=args.workers, threads=args.threads, models=models, **ray_only)
    try:
        manifest = run_sweep(doc, jobs, backend, Path(args.out), progress=sys.stderr.isatty(), info={"graph": str(path)},
                             paths=paths, batch_seeds=args.batch_seeds)
    finally:
        backend.close()
    if args.json:
        print(json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
    else:
        _print_manifest(manifest, Path(args.out))
    return 0 if manifest["status"] == "succeeded" else 1


def _print_problems(problems: list[tuple[int, ErrorInfo]], jobs: list[dict[str, Any]]) -> None:
    shown = list(dict.fromkeys(f"job {i} {jobs[i]}: {e}" for i, e in problems))
    for line in shown[:20]:
        print(f"error: {line}", file=sys.stderr)
    if len(shown) > 20:
        print(f"error: ... and {len(shown) - 20} more", file=sys.stderr)
    print(f"nodeflow: {len({i for i, _ in problems})} of {len(jobs)} jobs are invalid; nothing was run", file=sys.stderr)


def _print_manifest(manifest: dict[str, Any], out: Path) -> None:
    for entry in manifest["jobs"]:
        for name in entry["outputs"]:
            print(out / name)
        for error in entry["errors"]:
            print(f"error: job {entry['index']} {entry['parameters']}: {ErrorInfo(**error)}", file=sys.stderr)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(manifest["counts"].items()))
    print(f"{len(manifest['jobs'])} jobs ({counts}) in {manifest['seconds']:.2f}s on {manifest['backend']}"
          f" ({manifest['workers']} worker(s)); manifest: {out / MANIFEST}", file=sys.stderr)


__all__ = [
    "MANIFEST", "SweepUsageError", "add_parser", "cmd_sweep", "expand", "input_type", "job_stems", "parse_sets",
    "parse_values", "run_sweep", "safe_part", "validate_jobs",
]
