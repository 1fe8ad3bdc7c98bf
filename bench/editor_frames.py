"""The editor with a big graph: load time and frame time while panning, in headless Chromium.

Starts ``nodeflow serve --port 0`` on 127.0.0.1 (a temporary data folder), opens the
editor in ``/usr/bin/chromium`` with Playwright and, for a chain of N ``core.add``
nodes laid out in rows (default 700), reports medians over ``--repeats``:

* load: ``nodeflow.loadGraph(doc)`` (document -> canvas, undo snapshot, draft kept);
* frame: one ``canvas.draw(true, true)`` per pan step (60 steps at zoom 0.6, where
  text is still drawn), with the number of nodes visible;
* frame, zoomed out: the same at zoom 0.3 (litegraph's low-detail boxes).

Software rendering (``--disable-gpu``): figures depend on the CPU and its load, which
is printed with them. Goals (issue 4): load < 2 s, median frame < 40 ms at 700 nodes.
Run: ``python bench/editor_frames.py [--nodes 700] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"

PAN = """([scale]) => {
    const c = nodeflow.canvas;
    c.ds.scale = scale;
    c.ds.offset = [0, 0];
    const frames = [];
    for (let i = 0; i < 60; i++) {  // one pan step per frame, as a drag does
        c.ds.offset[0] -= 40;
        c.ds.offset[1] -= 10;
        const t = performance.now();
        c.draw(true, true);
        frames.push(performance.now() - t);
    }
    frames.sort((a, b) => a - b);
    return {median: frames[30], visible: c.visible_nodes.length};
}"""


def graph(n: int) -> dict:
    nodes = {
        str(k): {
            "type": "core.add",
            "inputs": {"a": {"node": str(k - 1), "output": "total"}} if k else {},
            "ui": {"pos": [(k % 35) * 260, (k // 35) * 140]},
        }
        for k in range(n)
    }
    return {"format": "nodeflow/graph", "version": 1, "nodes": nodes, "inputs": {}, "meta": {}}


def serve(data_dir: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "nodeflow.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", data_dir],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    for line in process.stdout:  # type: ignore[union-attr]
        match = re.search(r"nodeflow server on (http://127\.0\.0\.1:\d+)", line)
        if match:
            return process, match.group(1)
    raise SystemExit("nodeflow serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=700)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; {args.nodes} nodes, {args.repeats} repeats")
    with tempfile.TemporaryDirectory() as data:
        process, url = serve(data)
        try:
            measure(url, graph(args.nodes), args.repeats)
        finally:
            process.terminate()
            process.wait(timeout=15)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


def measure(url: str, doc: dict, repeats: int) -> None:
    loads, frames, far = [], [], []
    visible = visible_far = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(url + "/")
        page.wait_for_function("document.body.dataset.ready === 'true'", timeout=60_000)
        for _ in range(repeats):
            loads.append(page.evaluate("g => { const t = performance.now(); nodeflow.loadGraph(g); return performance.now() - t; }", doc))
            near = page.evaluate(PAN, [0.6])
            frames.append(near["median"])
            visible = near["visible"]
            zoomed_out = page.evaluate(PAN, [0.3])
            far.append(zoomed_out["median"])
            visible_far = zoomed_out["visible"]
        browser.close()
    print(f"load: median {statistics.median(loads):.0f} ms (runs: {', '.join(f'{x:.0f}' for x in loads)})")
    print(f"frame at zoom 0.6: median {statistics.median(frames):.1f} ms ({visible} nodes visible)")
    print(f"frame at zoom 0.3: median {statistics.median(far):.1f} ms ({visible_far} nodes visible)")


if __name__ == "__main__":
    main()
