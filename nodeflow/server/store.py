"""The queue and the history: one SQLite table of runs under the data dir.

A run is a row from the moment it is accepted until it is deleted; its ``status``
moves ``queued -> running -> succeeded | failed | cancelled`` (or ``queued ->
cancelled``). The queue is simply the ``queued`` rows in acceptance order, so it
survives a restart with nothing extra to save. Rows are read back as the API's own
models (:class:`~nodeflow.server.schemas.RunSummary`, :class:`~nodeflow.server.schemas.RunDetail`):
a run's fields are defined once, in :mod:`nodeflow.server.schemas`. Listings read
neither the graph nor the per-node map, only their counts (``node_total``,
``node_counts``), so a page costs the same whatever the graphs' sizes.

Crash policy (see :meth:`RunStore.recover`): a row still ``running`` when the
server starts was interrupted by a crash. It goes back to the queue, at its old
place, unless it has already been started ``max_attempts`` times, in which case it
is marked ``failed`` with code ``interrupted`` (so a graph that kills the process
cannot crash-loop the server). Nodes are pure and their results cached, so running
again is safe.

Full disk: an outcome (:meth:`RunStore.finish`) or a deletion (:meth:`RunStore.delete`)
that cannot be written is kept in memory, shown by every read as if written, and
written by :meth:`RunStore.flush` once there is room (the worker calls it between
runs). If the process stops before that, the crash policy applies to the run.

Two connections: writes share one under a lock (SQLite serialises writers anyway);
reads use a second one under their own lock, so a read never waits for a write (the
database is in WAL mode: readers see the last committed state). The queue's state (how
many queued, which one runs) is counted after every write, by the writer, and kept in
memory: :meth:`RunStore.queue_state` costs nothing, so status answers never wait.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ErrorInfo
from ..events import RunStatus
from .schemas import RunCreated, RunDetail, RunSummary
from .storage import is_disk_full, loads

log = logging.getLogger("nodeflow.server")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    created     REAL NOT NULL,
    started     REAL,
    finished    REAL,
    seconds     REAL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    workflow    TEXT,
    inputs      TEXT NOT NULL DEFAULT '{}',
    graph       TEXT NOT NULL,
    nodes       TEXT NOT NULL DEFAULT '{}',
    outputs     TEXT NOT NULL DEFAULT '[]',
    errors      TEXT NOT NULL DEFAULT '[]',
    node_total  INTEGER NOT NULL DEFAULT 0,
    node_counts TEXT NOT NULL DEFAULT '{}',
    name        TEXT,
    "values"    TEXT NOT NULL DEFAULT '{}',
    worker      TEXT
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, seq);
"""

#: The summary's columns; ``position`` is counted for queued rows only.
_SUMMARY = (
    "id, seq, status, created, started, finished, seconds, attempts, workflow, name, inputs, node_total, node_counts, outputs,"
    " errors, worker,"
    " CASE WHEN status = 'queued' THEN (SELECT COUNT(*) FROM runs AS q WHERE q.status = 'queued' AND q.seq < runs.seq) END"
)
_SUMMARY_NAMES = ("id", "number", "status", "created", "started", "finished", "seconds", "attempts", "workflow", "name", "inputs",
                  "node_total", "node_counts", "outputs", "errors", "worker", "position")
_JSON_COLUMNS = frozenset({"inputs", "node_counts", "outputs", "errors", "nodes", "graph", "values"})


def dumps(value: Any) -> str:
    """Compact JSON, the form every JSON column is stored in."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def count_statuses(nodes: dict[str, dict[str, Any]]) -> dict[str, int]:
    """How many nodes are in each status (``{"ran": 3, "cached": 1}``)."""
    return dict(Counter(str(state.get("status")) for state in nodes.values()))


def first_sentence(errors: list[dict[str, Any]]) -> str | None:
    """The first error as one sentence, as runs report it in ``error``."""
    if not errors:
        return None
    e = errors[0]
    return str(ErrorInfo(str(e.get("code")), str(e.get("message")), e.get("node"), e.get("input")))


class RunStore:
    """The runs table. Thread-safe; every method is one short transaction (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: autocommit, with explicit BEGIN where two statements must agree.
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        _add_count_columns(self._db)
        _add_name_and_values_columns(self._db)
        self._read_lock = threading.Lock()
        self._reader = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._pending_lock = threading.Lock()
        #: run id -> the columns of an outcome not written yet, or None for a deletion not written yet
        self._pending: dict[str, dict[str, Any] | None] = {}
        with self._lock:
            self._refresh_queue()

    def close(self) -> None:
        """Close both database connections."""
        with self._lock, self._read_lock:
            self._db.close()
            self._reader.close()

    # -- queue --------------------------------------------------------------------
    def add(self, graph: dict[str, Any] | str, *, workflow: str | None = None, inputs: dict[str, Any] | None = None,
            node_total: int | None = None, name: str | None = None, run_id: str | None = None) -> RunCreated:
        """Queue a new run of ``graph`` (a document, or its JSON text; inputs already applied).

        ``run_id`` (32 hex digits) is the caller's choice of id (ComfyUI clients may choose theirs);
        ``sqlite3.IntegrityError`` if it is taken. By default a new one is made.

        ``name`` (the graph's ``meta.name``) is read from a document; pass it with JSON text.
        """
        if not isinstance(graph, str):
            node_total = len(graph.get("nodes", {})) if node_total is None else node_total
            name = graph_name(graph) if name is None else name
            graph = dumps(graph)
        run_id = run_id or uuid.uuid4().hex
        self._write(
            "INSERT INTO runs (id, status, created, workflow, name, inputs, graph, node_total) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?)",
            (run_id, time.time(), workflow, name, dumps(inputs or {}), graph, node_total or 0),
        )
        return RunCreated(id=run_id, status=RunStatus.QUEUED, position=self.position(run_id))

    def claim_next(self) -> RunDetail | None:
        """Mark the oldest queued run ``running`` and return it, or ``None`` when the queue is empty."""
        skip, args = self._excluded(deleted=True)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    f"SELECT id FROM runs WHERE status = 'queued' {skip} ORDER BY seq LIMIT 1", args
                ).fetchone()
                if row is not None:
                    self._db.execute(
                        "UPDATE runs SET status = 'running', started = ?, attempts = attempts + 1 WHERE id = ?",
                        (time.time(), row[0]),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._refresh_queue()
        return None if row is None else self.get(row[0])

    def finish(self, run_id: str, status: str, *, seconds: float | None, nodes: dict[str, dict[str, Any]],
               outputs: list[dict[str, Any]], errors: list[dict[str, Any]], values: dict[str, Any] | None = None,
               worker: str | None = None) -> bool:
        """Record the outcome of a run that was ``running``; False when the disk is full and it is kept in memory.

        ``values`` are the readable results of the run's target nodes (``RunResult.shown_values()``);
        ``worker`` names the backend worker that ran it (its last attempt).
        """
        columns = {"status": status, "finished": time.time(), "seconds": seconds, "nodes": nodes,
                   "node_counts": count_statuses(nodes), "outputs": outputs, "errors": errors, "values": values or {},
                   "worker": worker}
        try:
            self._write_outcome(run_id, columns)
            return True
        except sqlite3.Error as exc:
            if not is_disk_full(exc):
                raise
            with self._pending_lock:
                self._pending[run_id] = columns
            with self._lock:
                self._refresh_queue()
            log.warning("run %s: the disk is full; its outcome is kept in memory until it can be written", run_id)
            return False

    def requeue(self, run_id: str) -> None:
        """Put a running run back at its place in the queue (a graceful stop interrupted it)."""
        self._write(
            "UPDATE runs SET status = 'queued', started = NULL, attempts = MAX(attempts - 1, 0) WHERE id = ? AND status = 'running'",
            (run_id,),
        )

    def cancel_queued(self, run_id: str) -> bool:
        """Cancel a run that has not started; False when it is not queued (any more)."""
        error = {"code": "cancelled", "message": "the run was cancelled before it started", "node": None, "input": None}
        return self._write(
            "UPDATE runs SET status = 'cancelled', finished = ?, errors = ? WHERE id = ? AND status = 'queued'",
            (time.time(), dumps([error]), run_id),
        ) == 1

    def delete(self, run_id: str) -> bool:
        """Delete a run that is not running; False when it is running or unknown.

        On a full disk the deletion is kept in memory (the run is gone for every reader)
        and written by :meth:`flush`.
        """
        with self._pending_lock:
            if run_id in self._pending and self._pending[run_id] is None:
                return False
            finished_in_memory = run_id in self._pending  # 'running' in the table, finished in fact
        try:
            # the status condition, not an earlier read, decides: the worker may claim a queued run meanwhile
            deleted = self._write("DELETE FROM runs WHERE id = ? AND (status != 'running' OR ?)",
                                  (run_id, finished_in_memory))
        except sqlite3.Error as exc:
            if not is_disk_full(exc):
                raise
            record = self.get(run_id)
            if record is None or record.status == RunStatus.RUNNING:
                return False
            with self._pending_lock:
                self._pending[run_id] = None
            with self._lock:
                self._refresh_queue()
            log.warning("run %s: the disk is full; its deletion is kept in memory until it can be written", run_id)
            return True
        with self._pending_lock:
            self._pending.pop(run_id, None)
        return deleted == 1

    def flush(self) -> bool:
        """Write what a full disk kept in memory; True when nothing is left pending."""
        with self._pending_lock:
            pending = list(self._pending.items())
        for run_id, columns in pending:
            try:
                if columns is None:
                    self._write("DELETE FROM runs WHERE id = ?", (run_id,))
                else:
                    self._write_outcome(run_id, columns)
            except sqlite3.Error as exc:
                if is_disk_full(exc):
                    return False
                raise
            with self._pending_lock:
                if self._pending.get(run_id, 0) is columns:
                    del self._pending[run_id]
            log.info("run %s: the %s kept in memory is written", run_id, "deletion" if columns is None else "outcome")
        return True

    def recover(self, max_attempts: int) -> tuple[list[str], list[str]]:
        """Apply the crash policy to rows left ``running``; returns (requeued ids, failed ids)."""
        with self._lock:
            rows = self._db.execute("SELECT id, attempts FROM runs WHERE status = 'running'").fetchall()
            requeued = [r[0] for r in rows if r[1] < max_attempts]
            failed = [r[0] for r in rows if r[1] >= max_attempts]
            error = {
                "code": "interrupted",
                "message": f"the server stopped during this run {max_attempts} times; it was not started again",
                "node": None,
                "input": None,
            }
            for run_id in requeued:
                self._db.execute("UPDATE runs SET status = 'queued', started = NULL WHERE id = ?", (run_id,))
            for run_id in failed:
                self._db.execute(
                    "UPDATE runs SET status = 'failed', finished = ?, errors = ? WHERE id = ?",
                    (time.time(), dumps([error]), run_id),
                )
            self._refresh_queue()
        return requeued, failed

    # -- reading ------------------------------------------------------------------
    def get(self, run_id: str) -> RunDetail | None:
        """The run with this id, with its nodes and graph, or ``None``."""
        with self._pending_lock:
            if run_id in self._pending and self._pending[run_id] is None:
                return None
        with self._read_lock:
            row = self._reader.execute(f'SELECT {_SUMMARY}, nodes, graph, "values" FROM runs WHERE id = ?', (run_id,)).fetchone()
        return None if row is None else RunDetail.model_validate(self._decode(row, (*_SUMMARY_NAMES, "nodes", "graph", "values")))

    def history(self, *, limit: int, offset: int, status: str | None = None) -> tuple[list[RunSummary], int]:
        """A page of runs, newest first, and the total count (optionally of one status)."""
        where, args = self._where(status)
        with self._read_lock:
            rows = self._reader.execute(
                f"SELECT {_SUMMARY} FROM runs {where} ORDER BY seq DESC LIMIT ? OFFSET ?", (*args, limit, offset)
            ).fetchall()
            total = self._reader.execute(f"SELECT COUNT(*) FROM runs {where}", args).fetchone()[0]
        return [RunSummary.model_validate(self._decode(r, _SUMMARY_NAMES)) for r in rows], total

    def queue_state(self) -> tuple[int, list[str]]:
        """How many runs are queued, and the ids of the running ones (oldest first), as of the last write."""
        return self._queue

    def position(self, run_id: str) -> int:
        """How many queued runs are ahead of run ``run_id``."""
        deleted, args = self._excluded(deleted=True)
        with self._read_lock:
            return self._reader.execute(
                f"SELECT COUNT(*) FROM runs WHERE status = 'queued' {deleted}"
                " AND seq < (SELECT seq FROM runs WHERE id = ?)", (*args, run_id)
            ).fetchone()[0]

    # -- helpers ------------------------------------------------------------------------
    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._lock:
            count = self._db.execute(sql, args).rowcount
            self._refresh_queue()
        return count

    def _refresh_queue(self) -> None:
        """Count the queue again (with the write lock held, so no write slips in between)."""
        deleted, deleted_args = self._excluded(deleted=True)
        finished, finished_args = self._excluded(deleted=False)
        queued = self._db.execute(f"SELECT COUNT(*) FROM runs WHERE status = 'queued' {deleted}", deleted_args).fetchone()[0]
        running = self._db.execute(f"SELECT id FROM runs WHERE status = 'running' {finished} ORDER BY seq", finished_args)
        self._queue: tuple[int, list[str]] = (queued, [row[0] for row in running.fetchall()])

    def _write_outcome(self, run_id: str, columns: dict[str, Any]) -> None:
        names = list(columns)
        values = [dumps(columns[n]) if n in _JSON_COLUMNS else columns[n] for n in names]
        assignments = ", ".join('"' + n + '" = ?' for n in names)  # quoted: "values" is an SQL keyword
        self._write(f"UPDATE runs SET {assignments} WHERE id = ?", (*values, run_id))

    def _excluded(self, *, deleted: bool) -> tuple[str, tuple[str, ...]]:
        """``AND id NOT IN (...)`` for runs whose deletion (or outcome) is pending, and its arguments."""
        with self._pending_lock:
            ids = tuple(k for k, v in self._pending.items() if (v is None) == deleted)
        return (f"AND id NOT IN ({', '.join('?' * len(ids))})", ids) if ids else ("", ())

    def _where(self, status: str | None) -> tuple[str, tuple[Any, ...]]:
        """The WHERE clause of a listing: pending deletions left out, pending outcomes counted under their new status."""
        with self._pending_lock:
            deleted = tuple(k for k, v in self._pending.items() if v is None)
            finished = {k: v["status"] for k, v in self._pending.items() if v is not None}
        clauses, args = [], []
        if deleted:
            clauses.append(f"id NOT IN ({', '.join('?' * len(deleted))})")
            args += deleted
        if status is not None:
            moved_out = tuple(k for k, s in finished.items() if s != status)
            moved_in = tuple(k for k, s in finished.items() if s == status)
            clause = "(status = ?" + (f" AND id NOT IN ({', '.join('?' * len(moved_out))})" if moved_out else "") + ")"
            if moved_in:
                clause = f"({clause} OR id IN ({', '.join('?' * len(moved_in))}))"
            clauses.append(clause)
            args += [status, *moved_out, *moved_in]
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)

    def _decode(self, row: Iterable[Any], names: tuple[str, ...]) -> dict[str, Any]:
        """A row as the fields of the API's models, with any outcome still kept in memory applied."""
        fields = {n: loads(v) if n in _JSON_COLUMNS else v for n, v in zip(names, row, strict=True)}
        with self._pending_lock:
            pending = self._pending.get(fields["id"])
        if pending:
            fields.update({k: v for k, v in pending.items() if k in names})
        fields["error"] = first_sentence(fields["errors"])
        return fields


def graph_name(graph: dict[str, Any]) -> str | None:
    """The graph's ``meta.name``, for history rows, if it has one."""
    meta = graph.get("meta")
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) and name else None


def _add_name_and_values_columns(db: sqlite3.Connection) -> None:
    """Databases written before runs recorded their graph's name, values and worker: add those columns."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    if "name" not in columns:
        db.execute("ALTER TABLE runs ADD COLUMN name TEXT")
    if "values" not in columns:
        db.execute("ALTER TABLE runs ADD COLUMN \"values\" TEXT NOT NULL DEFAULT '{}'")
    if "worker" not in columns:
        db.execute("ALTER TABLE runs ADD COLUMN worker TEXT")


def _add_count_columns(db: sqlite3.Connection) -> None:
    """Databases written before listings carried counts: add ``node_total``/``node_counts`` and fill them once."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    if "node_counts" in columns:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE runs ADD COLUMN node_total INTEGER NOT NULL DEFAULT 0")
        db.execute("ALTER TABLE runs ADD COLUMN node_counts TEXT NOT NULL DEFAULT '{}'")
        for run_id, graph, nodes in db.execute("SELECT id, graph, nodes FROM runs").fetchall():
            total = len(json.loads(graph).get("nodes", {}))
            db.execute("UPDATE runs SET node_total = ?, node_counts = ? WHERE id = ?",
                       (total, dumps(count_statuses(json.loads(nodes))), run_id))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
