"""Load test of ``nodeflow serve`` (issue 15): a long queue, many listeners, one huge graph, one stalled client.

Starts the server in a subprocess (``run_server`` with its default registry, on a fresh
data dir) and, from this process:

* opens ``--listeners`` websocket clients that read every message;
* opens one websocket client that never reads its socket (a tiny receive buffer);
* polls ``GET /api/system`` every 20 ms for the whole test from a separate process (so the
  listeners' work in this process does not delay the clock), timing each answer;
* queues ``--runs`` runs of a trivial core-only graph (``core.int -> core.show``, each with
  its own value, so each really runs) from 20 concurrent submitters;
* half-way through, posts one graph of ``--big-nodes`` nodes (``core.int -> core.show``
  pairs). With the default limits it is refused (413); ``--raise-limits`` starts the
  server with limits that accept it, so it is parsed, validated, stored and run;
* waits until every accepted run is final, then compares the server's RSS with its RSS
  after start-up and one warm-up run.

Prints one JSON object: /api/system latency percentiles while the load lasted, run
outcomes, what the listeners saw, the big graph's answer, RSS (start, drained, after
``POST /api/cache/clear``), the machine's load average and core count.

Run: ``python bench/server_load.py [--runs 1000] [--listeners 50] [--big-nodes 50000] [--raise-limits]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

FINAL = ("succeeded", "failed", "cancelled")


def trivial_graph(value: int) -> dict[str, Any]:
    return {"nodes": {"n": {"type": "core.int", "inputs": {"value": value}},
                      "show": {"type": "core.show", "inputs": {"value": {"node": "n", "output": "out"}}}}}


def big_graph(nodes: int) -> dict[str, Any]:
    graph: dict[str, Any] = {}
    for i in range(nodes // 2):
        graph[f"i{i}"] = {"type": "core.int", "inputs": {"value": 1_000_000 + i}, "ui": {"pos": [i % 100 * 200, i // 100 * 80]}}
        graph[f"s{i}"] = {"type": "core.show", "inputs": {"value": {"node": f"i{i}", "output": "out"}}}
    return {"nodes": graph}


def start_server(data_dir: Path, options: dict[str, Any]) -> tuple[subprocess.Popen, str]:
    """``run_server`` in a subprocess; returns it and its URL once it listens."""
    script = (
        "from nodeflow.server import run_server\n"
        f"run_server(port=0, data_dir={str(data_dir)!r}, **{options!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if proc.poll() is not None:
                raise RuntimeError("the server died while starting") from None
            continue
        found = re.search(r"nodeflow server on (http://\S+)", line)
        if found:
            return proc, found.group(1)
    raise RuntimeError("the server did not start within 180 s")


def rss_mib(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Load:
    """Shared state of one load test."""

    def __init__(self, session: aiohttp.ClientSession, url: str):
        self.session = session
        self.url = url
        self.done = asyncio.Event()
        self.accepted: list[str] = []
        self.refused: list[int] = []
        self.listener_finished: list[set[str]] = []
        self.listener_messages: list[int] = []
        self.listener_closes: list[str] = []

    async def listen(self, index: int) -> None:
        finished: set[str] = set()
        self.listener_finished.append(finished)
        self.listener_messages.append(0)
        async with self.session.ws_connect("/api/ws", heartbeat=20) as ws:
            while not self.done.is_set():
                try:
                    msg = await ws.receive(timeout=1.0)
                except asyncio.TimeoutError:
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    self.listener_closes.append(f"{msg.type.name} {ws.close_code} {msg.extra or ''}".strip())
                    return
                self.listener_messages[index] += 1
                message = json.loads(msg.data)
                if message["type"] in ("run_succeeded", "run_failed", "run_cancelled"):
                    finished.add(message["run"])

    async def submit(self, values: list[int]) -> None:
        while values:
            value = values.pop()
            async with self.session.post("/api/runs", json={"graph": trivial_graph(value)}) as resp:
                body = await resp.json()
            if resp.status == 202:
                self.accepted.append(body["id"])
            else:
                self.refused.append(resp.status)

    async def post_big(self, nodes: int) -> dict[str, Any]:
        body = json.dumps({"graph": big_graph(nodes)}).encode()
        started = time.perf_counter()
        async with self.session.post("/api/runs", data=body, headers={"Content-Type": "application/json"}) as resp:
            answer = await resp.json()
        result = {"nodes": nodes, "bytes": len(body), "status": resp.status, "seconds": round(time.perf_counter() - started, 3),
                  "code": answer.get("code")}
        if resp.status == 202:
            self.accepted.append(answer["id"])
            result["id"] = answer["id"]
        return result

    async def drained(self) -> None:
        while True:
            counts = []
            for status in ("queued", "running"):
                async with self.session.get("/api/runs", params={"status": status, "limit": "1"}) as resp:
                    counts.append((await resp.json())["total"])
            if counts == [0, 0]:
                return
            await asyncio.sleep(0.5)


def stalled_websocket(url: str) -> socket.socket:
    """A websocket handshake on a socket whose owner never reads again."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall((f"GET /api/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    return sock


def poll_system(url: str, stop_file: Path, out_file: Path, interval: float = 0.02) -> None:
    """The poller process: time ``GET /api/system`` every ``interval`` s until ``stop_file`` exists.

    Writes ``[[sent, seconds], ...]``; ``sent`` is ``time.monotonic()`` (system-wide on Linux,
    so comparable with the parent's clock).
    """
    import http.client

    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    samples = []
    while not stop_file.exists():
        sent = time.monotonic()
        conn.request("GET", "/api/system")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        samples.append([sent, time.monotonic() - sent])
        time.sleep(interval)
    out_file.write_text(json.dumps(samples))


def start_poller(url: str, folder: Path, interval: float = 0.02) -> tuple[subprocess.Popen, Path, Path]:
    """Start :func:`poll_system` in its own process; returns it, its stop file and its output file."""
    stop_file, out_file = folder / "stop-polling", folder / "latencies.json"
    proc = subprocess.Popen([sys.executable, __file__, "--poll", url, str(stop_file), str(out_file), str(interval)])
    return proc, stop_file, out_file


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run_load(args: argparse.Namespace, url: str, pid: int) -> dict[str, Any]:
    async with aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(limit=200)) as session:
        load = Load(session, url)
        async with session.post("/api/runs", json={"graph": trivial_graph(-1)}) as resp:  # warm-up
            warm = (await resp.json())["id"]
        while True:
            async with session.get(f"/api/runs/{warm}") as resp:
                if (await resp.json())["status"] in FINAL:
                    break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        rss_start = rss_mib(pid)
        listeners = [asyncio.create_task(load.listen(i)) for i in range(args.listeners)]
        stalled = stalled_websocket(url)
        poller, stop_file, out_file = start_poller(url, Path(args.data_dir).parent)
        await asyncio.sleep(1.0)
        started = time.perf_counter()
        first_half = list(range(args.runs // 2))
        second_half = list(range(args.runs // 2, args.runs))
        await asyncio.gather(*(load.submit(first_half) for _ in range(20)))
        big_task = asyncio.create_task(load.post_big(args.big_nodes))
        await asyncio.gather(*(load.submit(second_half) for _ in range(20)))
        big = await big_task
        submitted = time.perf_counter() - started
        await load.drained()
        drained = time.perf_counter() - started
        await asyncio.sleep(2.0)  # let the listeners take the last messages
        load.done.set()
        stop_file.touch()
        await asyncio.to_thread(poller.wait, 60)
        await asyncio.gather(*listeners, return_exceptions=True)
        statuses: dict[str, int] = {}
        for offset in range(0, len(load.accepted) + 1, 200):
            async with session.get("/api/runs", params={"limit": "200", "offset": str(offset)}) as resp:
                for run in (await resp.json())["runs"]:
                    if run["id"] in load.accepted:
                        statuses[run["status"]] = statuses.get(run["status"], 0) + 1
        await asyncio.sleep(2.0)
        rss_drained = rss_mib(pid)
        async with session.post("/api/cache/clear") as resp:
            await resp.read()
        await asyncio.sleep(1.0)
        rss_cleared = rss_mib(pid)
        stalled.close()
    lat = [seconds for _, seconds in json.loads(out_file.read_text())]
    accepted = set(load.accepted)
    return {
        "runs_submitted": args.runs, "runs_accepted": len(accepted) - (1 if big.get("id") else 0),
        "runs_refused_statuses": sorted(set(load.refused)), "final_statuses": statuses,
        "all_final": sum(statuses.values()) == len(accepted),
        "seconds_to_submit": round(submitted, 2), "seconds_to_drain": round(drained, 2),
        "big_graph": big,
        "system_requests": len(lat),
        "system_ms": {"p50": round(statistics.median(lat) * 1000, 1), "p99": round(percentile(lat, 0.99) * 1000, 1),
                      "max": round(max(lat) * 1000, 1)},
        "listeners": args.listeners,
        "listeners_that_saw_every_run_end": sum(1 for f in load.listener_finished if accepted <= f),
        "listener_messages_median": statistics.median(load.listener_messages) if load.listener_messages else 0,
        "listeners_closed_by_server": sorted(set(load.listener_closes)), "listeners_closed": len(load.listener_closes),
        "rss_mib": {"start": round(rss_start, 1), "drained": round(rss_drained, 1), "after_cache_clear": round(rss_cleared, 1),
                    "drained_vs_start": round(rss_drained / rss_start, 3), "cleared_vs_start": round(rss_cleared / rss_start, 3)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--listeners", type=int, default=50)
    parser.add_argument("--big-nodes", type=int, default=50_000)
    parser.add_argument("--raise-limits", action="store_true", help="let the server accept the big graph")
    parser.add_argument("--poll", nargs=4, help=argparse.SUPPRESS)  # internal: the poller process
    args = parser.parse_args()
    if args.poll:
        poll_system(args.poll[0], Path(args.poll[1]), Path(args.poll[2]), float(args.poll[3]))
        return
    options: dict[str, Any] = {}
    if args.raise_limits:
        options = {"max_graph_nodes": args.big_nodes, "max_json_bytes": 64 << 20}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        args.data_dir = Path(tmp) / "data"
        proc, url = start_server(args.data_dir, options)
        try:
            result = asyncio.run(run_load(args, url, proc.pid))
            stop = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            result["seconds_to_stop"] = round(time.perf_counter() - stop, 2)
        finally:
            if proc.poll() is None:
                proc.kill()
    result.update(limits="raised" if args.raise_limits else "default", cores=os.cpu_count(),
                  load_average_before=[round(x, 2) for x in load_before],
                  load_average_after=[round(x, 2) for x in os.getloadavg()])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
