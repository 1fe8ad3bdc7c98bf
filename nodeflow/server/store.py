"""The queue and the history: one SQLite table of runs under the data dir.

A run is a row from the moment it is accepted until it is deleted; its ``status``
moves ``queued -> running -> succeeded | failed | cancelled`` (or ``queued ->
cancelled``). The queue is simply the ``queued`` rows in acceptance order, so it
survives a restart with nothing extra to save.

Crash policy (see :meth:`RunStore.recover`): a row still ``running`` when the
server starts was interrupted by a crash. It goes back to the queue, at its old
place, unless it has already been started ``max_attempts`` times, in which case it
is marked ``failed`` with code ``interrupted`` (so a graph that kills the process
cannot crash-loop the server). Nodes are pure and their results cached, so running
again is safe.

One connection, shared by the event loop and the worker thread under a lock: every
statement is short, and SQLite serialises writers anyway.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL UNIQUE,
    status   TEXT NOT NULL,
    created  REAL NOT NULL,
    started  REAL,
    finished REAL,
    seconds  REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    workflow TEXT,
    inputs   TEXT NOT NULL DEFAULT '{}',
    graph    TEXT NOT NULL,
    nodes    TEXT NOT NULL DEFAULT '{}',
    outputs  TEXT NOT NULL DEFAULT '[]',
    errors   TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, seq);
"""

_COLUMNS = "seq, id, status, created, started, finished, seconds, attempts, workflow, inputs, graph, nodes, outputs, errors"


@dataclass
class RunRecord:
    """One row of the ``runs`` table, JSON columns decoded."""

    seq: int
    id: str
    status: str
    created: float
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None
    attempts: int = 0
    workflow: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def _from_row(cls, row: tuple[Any, ...]) -> RunRecord:
        seq, id_, status, created, started, finished, seconds, attempts, workflow, inputs, graph, nodes, outputs, errors = row
        return cls(
            seq, id_, status, created, started, finished, seconds, attempts, workflow,
            json.loads(inputs), json.loads(graph), json.loads(nodes), json.loads(outputs), json.loads(errors),
        )


class RunStore:
    """The runs table. Thread-safe; every method is one short transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: autocommit, with explicit BEGIN where two statements must agree.
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    # -- queue --------------------------------------------------------------------
    def add(self, graph: dict[str, Any], *, workflow: str | None = None, inputs: dict[str, Any] | None = None,
            run_id: str | None = None) -> RunRecord:
        """Queue a new run of ``graph`` (inputs already applied); returns its record.

        ``run_id`` (32 hex digits) is the caller's choice of id (ComfyUI clients may choose theirs);
        ``sqlite3.IntegrityError`` if it is taken. By default a new one is made.
        """
        run_id = run_id or uuid.uuid4().hex
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (id, status, created, workflow, inputs, graph) VALUES (?, 'queued', ?, ?, ?, ?)",
                (run_id, time.time(), workflow, json.dumps(inputs or {}), json.dumps(graph)),
            )
        record = self.get(run_id)
        assert record is not None
        return record

    def claim_next(self) -> RunRecord | None:
        """Mark the oldest queued run ``running`` and return it, or ``None`` when the queue is empty."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT id FROM runs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
                if row is not None:
                    self._db.execute(
                        "UPDATE runs SET status = 'running', started = ?, attempts = attempts + 1 WHERE id = ?",
                        (time.time(), row[0]),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return None if row is None else self.get(row[0])

    def finish(
        self,
        run_id: str,
        status: str,
        *,
        seconds: float | None,
        nodes: dict[str, dict[str, Any]],
        outputs: list[dict[str, Any]],
        errors: list[dict[str, Any]],
    ) -> None:
        """Record the outcome of a run that was ``running``."""
        with self._lock:
            self._db.execute(
                "UPDATE runs SET status = ?, finished = ?, seconds = ?, nodes = ?, outputs = ?, errors = ? WHERE id = ?",
                (status, time.time(), seconds, json.dumps(nodes), json.dumps(outputs), json.dumps(errors), run_id),
            )

    def requeue(self, run_id: str) -> None:
        """Put a running run back at its place in the queue (a graceful stop interrupted it)."""
        with self._lock:
            self._db.execute(
                "UPDATE runs SET status = 'queued', started = NULL, attempts = MAX(attempts - 1, 0)"
                " WHERE id = ? AND status = 'running'",
                (run_id,),
            )

    def cancel_queued(self, run_id: str) -> bool:
        """Cancel a run that has not started; False when it is not queued (any more)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE runs SET status = 'cancelled', finished = ?, errors = ? WHERE id = ? AND status = 'queued'",
                (time.time(), json.dumps([_cancelled_error()]), run_id),
            )
            return cur.rowcount == 1

    def delete(self, run_id: str) -> bool:
        """Delete a run that is not running; False when it is running or unknown."""
        with self._lock:
            cur = self._db.execute("DELETE FROM runs WHERE id = ? AND status != 'running'", (run_id,))
            return cur.rowcount == 1

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
                    (time.time(), json.dumps([error]), run_id),
                )
        return requeued, failed

    # -- reading ------------------------------------------------------------------
    def get(self, run_id: str) -> RunRecord | None:
        """The run with this id, or ``None``."""
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else RunRecord._from_row(row)

    def history(self, *, limit: int, offset: int, status: str | None = None) -> tuple[list[RunRecord], int]:
        """A page of runs, newest first, and the total count (optionally of one status)."""
        where, args = ("WHERE status = ?", (status,)) if status else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM runs {where} ORDER BY seq DESC LIMIT ? OFFSET ?", (*args, limit, offset)
            ).fetchall()
            total = self._db.execute(f"SELECT COUNT(*) FROM runs {where}", args).fetchone()[0]
        return [RunRecord._from_row(r) for r in rows], total

    def queue_state(self) -> tuple[int, str | None]:
        """How many runs are queued, and the id of the running one (if any)."""
        with self._lock:
            queued = self._db.execute("SELECT COUNT(*) FROM runs WHERE status = 'queued'").fetchone()[0]
            running = self._db.execute("SELECT id FROM runs WHERE status = 'running' LIMIT 1").fetchone()
        return queued, None if running is None else running[0]

    def position(self, record: RunRecord) -> int:
        """How many queued runs are ahead of ``record``."""
        with self._lock:
            return self._db.execute(
                "SELECT COUNT(*) FROM runs WHERE status = 'queued' AND seq < ?", (record.seq,)
            ).fetchone()[0]


def _cancelled_error() -> dict[str, Any]:
    return {"code": "cancelled", "message": "the run was cancelled before it started", "node": None, "input": None}
