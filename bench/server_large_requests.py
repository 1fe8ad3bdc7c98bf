"""How long ``GET /api/system`` waits while one large request is processed (issue 15's 100 ms goal).

Starts ``nodeflow serve`` (``run_server``, default limits unless ``--max-graph-nodes`` /
``--max-json-bytes`` raise them) in a subprocess and a poller process timing
``GET /api/system`` every 10 ms. Then, one at a time and ``--repeats`` times each, it
sends the largest requests the limits allow, in the shapes that cost the server most:

* ``graph``: ``POST /api/runs`` of a graph with as many nodes as allowed
  (``core.int -> core.show`` pairs, with editor positions);
* ``containers``: ``POST /api/runs`` of a 2-node graph whose ``meta`` holds the body's
  worth of empty arrays (the most objects per byte JSON allows);
* ``history``: ``GET /api/runs?limit=200`` once the history holds those runs;
* ``record``: ``GET /api/runs/{id}`` of the largest run (its graph and node map).

For each kind it reports the request's median duration and the /api/system answers that
were sent while such a request was in flight: how many, their median and their maximum.

Run: ``python bench/server_large_requests.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from server_load import big_graph, start_poller, start_server, trivial_graph


def request(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def containers_body(max_bytes: int) -> bytes:
    """A run request of about ``max_bytes`` whose meta is one array of empty arrays."""
    graph = trivial_graph(7)
    head = json.dumps({"graph": {**graph, "meta": {"x": []}}})
    count = (max_bytes - len(head) - 64) // 3
    return head.replace('"x": []', '"x": [' + ",".join(["[]"] * count) + "]").encode()


def wait_final(url: str, run_id: str) -> None:
    while json.loads(request(f"{url}/api/runs/{run_id}")[1])["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-graph-nodes", type=int, default=10_000)
    parser.add_argument("--max-json-bytes", type=int, default=2 << 20)
    args = parser.parse_args()
    load_before = os.getloadavg()
    spans: dict[str, list[tuple[float, float]]] = {k: [] for k in ("graph", "containers", "history", "record")}
    with tempfile.TemporaryDirectory() as tmp:
        options = {"max_graph_nodes": args.max_graph_nodes, "max_json_bytes": args.max_json_bytes}
        proc, url = start_server(Path(tmp) / "data", options)
        poller, stop_file, out_file = start_poller(url, Path(tmp), interval=0.01)
        try:
            graph = json.dumps({"graph": big_graph(args.max_graph_nodes)}).encode()
            containers = containers_body(args.max_json_bytes)
            sizes = {"graph": len(graph), "containers": len(containers)}
            time.sleep(1.0)
            biggest = None
            for _ in range(args.repeats):
                for kind, body in (("graph", graph), ("containers", containers)):
                    started = time.monotonic()
                    status, answer = request(f"{url}/api/runs", "POST", body)
                    spans[kind].append((started, time.monotonic()))
                    assert status == 202, (kind, status, answer[:200])
                    if kind == "graph":
                        biggest = json.loads(answer)["id"]
                wait_final(url, biggest)
                for kind, path in (("history", "/api/runs?limit=200"), ("record", f"/api/runs/{biggest}")):
                    started = time.monotonic()
                    status, answer = request(url + path)
                    spans[kind].append((started, time.monotonic()))
                    assert status == 200, (kind, status)
                    sizes[kind] = len(answer)
        finally:
            stop_file.touch()
            poller.wait(60)
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        samples = json.loads(out_file.read_text())
    print(json.dumps(summarise(spans, samples, sizes, args, load_before), indent=2))


def summarise(spans: dict[str, list[tuple[float, float]]], samples: list[list[float]], sizes: dict[str, int],
              args: argparse.Namespace, load_before: tuple[float, float, float]) -> dict[str, Any]:
    result: dict[str, Any] = {"limits": {"max_graph_nodes": args.max_graph_nodes, "max_json_bytes": args.max_json_bytes}}
    for kind, windows in spans.items():
        during = [s for sent, s in samples if any(a <= sent <= b for a, b in windows)]
        result[kind] = {
            "bytes": sizes.get(kind),
            "request_s_median": round(statistics.median(b - a for a, b in windows), 3),
            "system_answers_during": len(during),
            "system_ms_median": round(statistics.median(during) * 1000, 1) if during else None,
            "system_ms_max": round(max(during) * 1000, 1) if during else None,
        }
    result.update(cores=os.cpu_count(), load_average_before=[round(x, 2) for x in load_before],
                  load_average_after=[round(x, 2) for x in os.getloadavg()])
    return result


if __name__ == "__main__":
    main()
