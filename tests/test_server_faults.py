"""Server faults: a full disk, a node that ignores cancellation, a stop during such a node."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp
from PIL import Image
from server_support import PLUGINS, int_graph, pairs_graph, serving, text_graph, wait_graph

from nodeflow.server.schemas import RunDetail
from nodeflow.server.store import RunStore


async def _eventually(check, timeout: float = 30.0, what: str = "condition"):
    """Await ``check()`` (a coroutine function) until it returns a truthy value; fail after ``timeout``."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        await asyncio.sleep(0.05)


def _db_status(data: Path, run_id: str) -> str | None:
    """The run's status as written in the database file (a separate, read-only connection)."""
    db = sqlite3.connect(f"file:{data / 'nodeflow.sqlite3'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    finally:
        db.close()
    return None if row is None else row[0]


def _fill_database(store) -> None:
    """Make the store's database full: no free page left, and SQLITE_FULL as soon as it needs one more."""
    with store._lock:
        store._db.execute("CREATE TABLE filler (x BLOB)")
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")
        try:
            while True:  # take up the free pages inside the file too
                store._db.execute("INSERT INTO filler VALUES (zeroblob(512))")
        except sqlite3.OperationalError as exc:
            assert "full" in str(exc)


class _FullDisk:
    """Stands in for the store's SQLite connection: every write fails as on a full disk, reads pass."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def execute(self, sql: str, *args):
        if sql.split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self.db, name)


class _NoSpaceFile(io.RawIOBase):
    """A file object whose writes fail with ENOSPC (the file itself was created: mkstemp needs no data blocks)."""

    def __init__(self, fd: int):
        os.close(fd)

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


# -- disk full --------------------------------------------------------------------------------
async def test_a_run_that_cannot_be_recorded_is_kept_in_memory_and_written_once_space_is_freed(tmp_path):
    release = tmp_path / "release"
    async with serving(tmp_path / "data") as c:
        old = await c.submit(pairs_graph(150, offset=10_000))  # a big row, to delete later
        await c.wait(old)
        stuck = await c.submit(wait_graph(release, pairs=150))
        await c.wait(stuck, until=("running",))
        store = c.app_server.store
        _fill_database(store)
        release.touch()

        async def final():
            record = await c.run(stuck)
            return record if record["status"] != "running" else None

        record = await _eventually(final, what="the run to end")
        async with c.session.post("/api/runs", json={"graph": pairs_graph(150, offset=20_000)}) as refused:
            refused_body = await refused.json()
        async with c.session.get("/api/system") as system:
            queue_state = (await system.json())["queue"]
        assert _db_status(c.data_dir, stuck) == "running"  # not written yet: only in memory
        async with c.session.delete(f"/api/runs/{old}") as deleted:
            assert deleted.status == 200

        async def written():
            return _db_status(c.data_dir, stuck) == "succeeded"

        await _eventually(written, what="the kept record to be written")
        after = await c.wait(await c.submit(int_graph(2)))
    assert record["status"] == "succeeded" and record["nodes"]["wait"]["status"] == "ran"
    assert refused.status == 507 and refused_body["code"] == "disk_full"
    assert queue_state["running"] is None
    assert after["status"] == "succeeded"


async def test_deleting_a_run_on_a_full_disk_frees_its_files_first(tmp_path):
    async with serving(tmp_path / "data") as c:
        run_id = await c.submit(text_graph("x" * 10_000, "big.txt"))
        await c.wait(run_id)
        store = c.app_server.store
        real = store._db
        store._db = _FullDisk(real)
        try:
            async with c.session.delete(f"/api/runs/{run_id}") as resp:
                answer = await resp.json()
            async with c.session.get(f"/api/runs/{run_id}") as gone:
                gone_status = gone.status
            async with c.session.get("/api/runs") as history:
                listed = [r["id"] for r in (await history.json())["runs"]]
        finally:
            store._db = real

        async def forgotten():
            return _db_status(c.data_dir, run_id) is None

        await _eventually(forgotten, what="the deletion to be written")
    assert resp.status == 200 and answer["status"] == "deleted"
    assert not (c.data_dir / "outputs" / run_id).exists()
    assert gone_status == 404 and run_id not in listed


async def test_saving_a_workflow_on_a_full_disk_answers_507_and_leaves_no_temp_file(tmp_path, monkeypatch):
    async with serving(tmp_path / "data") as c:
        monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _NoSpaceFile(fd))
        async with c.session.put("/api/workflows/full", json=int_graph(1)) as resp:
            answer = await resp.json()
        monkeypatch.undo()
    assert resp.status == 507 and answer["code"] == "disk_full"
    assert list((tmp_path / "data" / "workflows").iterdir()) == []


async def test_an_upload_on_a_full_disk_answers_507_and_leaves_no_temp_file(tmp_path, monkeypatch):
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, format="PNG")
    form = aiohttp.FormData()
    form.add_field("file", buf.getvalue(), filename="a.png", content_type="image/png")
    async with serving(tmp_path / "data") as c:
        monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _NoSpaceFile(fd))
        async with c.session.post("/api/uploads", data=form) as resp:
            answer = await resp.json()
        monkeypatch.undo()
    assert resp.status == 507 and answer["code"] == "disk_full"
    assert list((tmp_path / "data" / "inputs").iterdir()) == []


# -- cancellation that a node ignores -----------------------------------------------------------
async def test_a_cancel_accepted_with_202_never_ends_in_succeeded(tmp_path):
    release, started = tmp_path / "release", tmp_path / "started"
    async with serving(tmp_path / "data") as c:
        run_id = await c.submit(wait_graph(release, started=started))
        await until_exists(started)  # the node is inside its step, where the cancel cannot reach
        async with c.session.post(f"/api/runs/{run_id}/cancel") as resp:
            assert resp.status == 202
        release.touch()  # the node never looked at its cancel token, and finishes
        record = await c.wait(run_id)
    assert record["status"] == "cancelled"
    assert record["errors"][0]["code"] == "cancelled"
    assert record["nodes"]["wait"]["status"] == "ran"
    assert [o["path"] for o in record["outputs"]] == [f"{run_id}/done.txt"]  # what it made is kept


async def until_exists(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} was not created within {timeout} s"
        await asyncio.sleep(0.02)


# -- SIGTERM while a node ignores cancellation ---------------------------------------------------
def _start_server_process(tmp_path: Path, grace: float, prelude: str = "", options: str = "",
                          builtin: Path | None = None) -> tuple[subprocess.Popen, str]:
    script = (
        f"{prelude}from nodeflow.server import run_server\n"
        f"run_server(port=0, data_dir={str(tmp_path / 'data')!r}, plugin_dirs=[{str(PLUGINS)!r}],"
        f" shutdown_grace={grace}, web_dir={str(tmp_path / 'web')!r},"
        f" builtin_workflows_dir={str(builtin or tmp_path / 'builtin')!r}{options})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert proc.poll() is None, "the server process died while starting"
            continue
        found = re.search(r"nodeflow server on (http://\S+)", line)
        if found:
            return proc, found.group(1).rstrip(" (")
    raise AssertionError("the server did not start within 120 s")


def _http(method: str, url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def _stop(proc: subprocess.Popen) -> None:
    """Kill the server process if it is still running (a test that failed before it exited)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _stored_run(tmp_path: Path, run_id: str) -> RunDetail | None:
    """The run's record as the stopped server left it in its SQLite store."""
    store = RunStore(tmp_path / "data" / "nodeflow.sqlite3")
    try:
        return store.get(run_id)
    finally:
        store.close()


def test_sigterm_exits_after_the_grace_when_a_node_ignores_cancellation_and_requeues_the_run(tmp_path):
    proc, url = _start_server_process(tmp_path, grace=0.5)
    try:
        run_id = _http("POST", f"{url}/api/runs", {"graph": wait_graph(tmp_path / "never-created")})["id"]
        deadline = time.monotonic() + 60
        while _http("GET", f"{url}/api/runs/{run_id}")["status"] != "running":
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)  # the node would wait 600 s: only honouring the 0.5 s grace ends this
    finally:
        _stop(proc)
    record = _stored_run(tmp_path, run_id)
    assert record is not None and record.status == "queued"


# A model store whose UNet makes a step "long" deterministically: the first block signals the
# test (a file) and returns once the run is cancelled; any block after the cancel would then
# hold the step for 600 s. Only the block hooks (nodeflow.interrupt) can end the step sooner.
_SLOW_UNET_STORE = """
import threading
from pathlib import Path
from nodeflow import interrupt
from nodeflow.models import ModelStore

class SlowUNetStore(ModelStore):
    def load_sd(self, *args, **kwargs):
        parts = super().load_sd(*args, **kwargs)
        if not getattr(parts.unet, "_slow", False):
            parts.unet._slow = True
            never = threading.Event()

            def hold(module, inputs, output):
                inside = Path(INSIDE)
                if not inside.exists():
                    inside.touch()
                    while not interrupt.cancel_requested() and not never.wait(0.01):
                        pass
                elif interrupt.cancel_requested():
                    never.wait(600)

            for block in (*parts.unet.down_blocks, parts.unet.mid_block, *parts.unet.up_blocks):
                block.register_forward_hook(hold)
        return parts
"""


def test_sigterm_during_a_long_unet_step_stops_between_blocks_well_within_the_grace(tmp_path, tiny_sd_dir):
    inside = tmp_path / "inside-the-unet"
    workflows = Path(__file__).resolve().parent.parent / "workflows"
    prelude = f"INSIDE = {str(inside)!r}\n{_SLOW_UNET_STORE}\n"
    options = f", models=SlowUNetStore(device='cpu'), allow_read=[{str(tiny_sd_dir)!r}]"
    proc, url = _start_server_process(tmp_path, grace=600, prelude=prelude, options=options, builtin=workflows)
    try:
        inputs = {"model": str(tiny_sd_dir), "width": 64, "height": 64, "steps": 3}
        run_id = _http("POST", f"{url}/api/runs", {"workflow": "txt2img", "inputs": inputs})["id"]
        deadline = time.monotonic() + 120
        while not inside.exists():  # the first UNet call is between its first and second block
            assert proc.poll() is None and time.monotonic() < deadline, "the run never reached the UNet"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)  # without the block hooks the step would hold the server for the 600 s grace
    finally:
        _stop(proc)
    record = _stored_run(tmp_path, run_id)
    assert record is not None and record.status == "queued"  # back in the queue for the next start
