"""Test-only node pack for the sweep and Ray backend tests: cheap images, slow steps, failures.

Loaded through ``plugin_dirs`` like any third-party pack (Ray workers load it from
this folder too), so these tests need neither the SD pack nor a model.
"""

import os
import time

import numpy as np
from PIL import Image

from nodeflow.node import Input, Output, node


@node("sweeptest.paint", category="testing", output_node=True)
class Paint:
    """Write a ``size`` x ``size`` PNG filled with grey level ``value % 256``, after ``steps`` steps of ``delay`` seconds.

    Raises when ``value`` equals ``fail_on``; reports progress once per step.
    """

    value = Input("INT", default=0)
    label = Input("STRING", default="")
    size = Input("INT", default=4, min=1, max=256)
    steps = Input("INT", default=1, min=1, max=1000)
    delay = Input("FLOAT", default=0.0, min=0.0, max=10.0)
    fail_on = Input("INT", default=-1)
    grey = Output("INT")

    def run(self, ctx, value, label, size, steps, delay, fail_on):
        for step in range(steps):
            time.sleep(delay)
            ctx.progress(step + 1, steps)
        if value == fail_on:
            raise ValueError(f"value {value} is the one that fails")
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        path = ctx.output_dir / f"paint_{ctx.node_id}.png"
        Image.fromarray(np.full((size, size), value % 256, dtype=np.uint8)).save(path)
        ctx.add_output(path, kind="image")
        return value % 256


@node("sweeptest.die", category="testing", output_node=True)
class Die:
    """End the worker process at once, as a crash or an out-of-memory kill would."""

    value = Input("INT", default=0)
    out = Output("INT")

    def run(self, ctx, value):
        os._exit(3)
