"""Test-only node pack for the server tests: a slow loop, a file writer, a failure.

Loaded through ``plugin_dirs`` like any third-party pack, so the server tests do not
depend on the Stable Diffusion pack.
"""

import os
import time
from pathlib import Path

from PIL import Image

from nodeflow.node import Input, Output, node


@node("srvtest.slow", category="testing")
class Slow:
    """Sleep ``delay`` seconds per step for ``steps`` steps, reporting progress (a stand-in for a denoise loop)."""

    steps = Input("INT", default=10, min=1, max=100000)
    delay = Input("FLOAT", default=0.05, min=0.0, max=10.0)
    value = Input("INT", default=0)
    previews = Input("BOOL", default=False)
    out = Output("INT")

    def run(self, ctx, steps, delay, value, previews):
        for step in range(steps):
            time.sleep(delay)
            if previews:
                ctx.preview(Image.new("RGB", (8, 8), (step % 256, 0, 0)))
            ctx.progress(step + 1, steps, loss=1.0 / (step + 1))  # also where cancellation is noticed; a loss like a trainer's
        return value


@node("srvtest.write_text", category="testing", output_node=True)
class WriteText:
    """Write ``text`` to ``name`` in the run's output folder and report it as an output."""

    text = Input("STRING", default="hello")
    name = Input("STRING", default="out.txt")
    path = Output("STRING")

    def run(self, ctx, text, name):
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        target = ctx.output_dir / name
        target.write_text(text, encoding="utf-8")
        ctx.add_output(target, kind="text")
        return str(target)


@node("srvtest.fail", category="testing", output_node=True)
class Fail:
    """Always raise (to see a failed run)."""

    message = Input("STRING", default="boom")
    out = Output("STRING")

    def run(self, ctx, message):
        raise RuntimeError(message)


@node("srvtest.wait_for_file", category="testing", output_node=True)
class WaitForFile:
    """Wait until file ``path`` exists, never checking for cancellation, then write ``done.txt``.

    A stand-in for a node stuck in a long step that cancellation cannot reach (one UNet
    call, say): the test decides when it ends by creating ``path``.
    """

    path = Input("STRING", default="")
    timeout = Input("FLOAT", default=600.0, min=0.0, max=3600.0)
    started = Input("STRING", default="", description="a file created when the node starts (tests wait on it)")
    out = Output("STRING")

    def run(self, ctx, path, timeout, started=""):
        if started:
            Path(started).touch()
        deadline = time.monotonic() + timeout
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)  # deliberately no ctx.progress / ctx.check_cancelled
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        target = ctx.output_dir / "done.txt"
        target.write_text("done", encoding="utf-8")
        ctx.add_output(target, kind="text")
        return str(target)
