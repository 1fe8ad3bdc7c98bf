"""Small test nodes for the engine tests, written with the public node API only.

Each class counts its calls in ``CALLS`` (keyed by node id) so tests can assert
exactly which nodes ran.
"""

from __future__ import annotations

import threading
from collections import Counter

import torch

from nodeflow.node import Input, Output, node
from nodeflow.registry import Registry
from nodeflow.values import Latents

CALLS: Counter[str] = Counter()


@node("test.number", category="test")
class Number:
    """A number literal."""

    value = Input("FLOAT", default=0.0, min=-1000, max=1000)
    out = Output("FLOAT")

    def run(self, ctx, value):
        CALLS[ctx.node_id] += 1
        return value


@node("test.count", category="test")
class Count:
    """An integer literal."""

    value = Input("INT", default=1, min=0, max=100)
    out = Output("INT")

    def run(self, ctx, value):
        CALLS[ctx.node_id] += 1
        return value


@node("test.add", category="test")
class Add:
    """a + b."""

    a = Input("FLOAT")
    b = Input("FLOAT", default=0.0)
    out = Output("FLOAT")

    def run(self, ctx, a, b):
        CALLS[ctx.node_id] += 1
        return a + b


@node("test.tensor", category="test")
class MakeTensor:
    """A latents value filled with ``value``."""

    value = Input("FLOAT", default=1.0)
    size = Input("INT", default=4, min=1, max=64)
    latents = Output("LATENTS")

    def run(self, ctx, value, size):
        CALLS[ctx.node_id] += 1
        return Latents(torch.full((1, 4, size, size), float(value)), scaling_factor=0.5)


@node("test.scale", category="test")
class Scale:
    """Latents times a factor (a new tensor)."""

    latents = Input("LATENTS")
    factor = Input("FLOAT", default=2.0)
    out = Output("LATENTS")

    def run(self, ctx, latents, factor):
        CALLS[ctx.node_id] += 1
        return Latents(latents.samples * factor, latents.scaling_factor)


@node("test.bad_scale", category="test")
class BadScale:
    """Wrongly scales its input in place."""

    latents = Input("LATENTS")
    out = Output("LATENTS")

    def run(self, ctx, latents):
        CALLS[ctx.node_id] += 1
        latents.samples.mul_(2)
        return latents


@node("test.sum", category="test", output_node=True)
class Sum:
    """Sum of a latents tensor, as a float (a sink)."""

    latents = Input("LATENTS")
    total = Output("FLOAT")

    def run(self, ctx, latents):
        CALLS[ctx.node_id] += 1
        return float(latents.samples.sum())


@node("test.fail", category="test")
class Fail:
    """Always raises."""

    value = Input("FLOAT", default=0.0)
    out = Output("FLOAT")

    def run(self, ctx, value):
        CALLS[ctx.node_id] += 1
        raise RuntimeError("boom")


@node("test.slow", category="test")
class Slow:
    """Reports progress for ``steps`` steps, waiting on ``gate`` between them if set."""

    steps = Input("INT", default=5, min=1, max=1000)
    value = Input("FLOAT", default=0.0)
    out = Output("FLOAT")

    gate: threading.Event | None = None

    def run(self, ctx, steps, value):
        CALLS[ctx.node_id] += 1
        for i in range(steps):
            ctx.progress(i + 1, steps)
        return value


@node("test.write", category="test", output_node=True)
class Write:
    """Writes a text file into the output folder and reports it."""

    value = Input("FLOAT")
    path = Output("STRING")

    def run(self, ctx, value):
        CALLS[ctx.node_id] += 1
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        path = ctx.output_dir / f"value_{ctx.node_id}.txt"
        path.write_text(repr(value))
        ctx.add_output(path, kind="text")
        return str(path)


@node("test.read", category="test")
class ReadText:
    """The text of a file named by a ``file=`` input (its stamp keys the cache; a missing one fails validation)."""

    path = Input("STRING", file="file")
    text = Output("STRING")

    def run(self, ctx, path):
        CALLS[ctx.node_id] += 1
        return ctx.paths.resolve(path, "file").read_text()


@node("test.checked", category="test")
class Checked:
    """Checks its literals with a validate_inputs hook: ``low`` <= ``high``, and ``low`` against its upstream count."""

    low = Input("FLOAT", default=0.0)
    high = Input("FLOAT", default=1.0)
    count = Input("INT", optional=True)
    out = Output("FLOAT")

    def validate_inputs(self, check, low=None, high=None, count=None):
        problems = []
        if low is not None and high is not None and low > high:
            problems.append(f"low {low} is above high {high}")
        upstream = check.upstream("count")
        if upstream is not None and low is not None and upstream.get("value", 0) < low:
            problems.append(f"the linked count {upstream['value']} is below low {low}")
        return problems

    def run(self, ctx, low, high, count=None):
        CALLS[ctx.node_id] += 1
        return high - low


@node("test.renamed", category="test", version="2.0.0")
class Renamed:
    """A node whose input and output were renamed (``old_in`` -> ``value``, ``old_out`` -> ``out``)."""

    value = Input("FLOAT", default=0.0, aliases=("old_in",))
    out = Output("FLOAT", aliases=("old_out",))

    def run(self, ctx, value):
        CALLS[ctx.node_id] += 1
        return value


@node("test.nested", category="test")
class Nested:
    """Returns latents inside a dict inside a list (for the mutation guard)."""

    value = Input("FLOAT", default=1.0)
    out = Output("*")

    def run(self, ctx, value):
        CALLS[ctx.node_id] += 1
        return [{"inner": Latents(torch.full((2,), float(value)))}]


@node("test.mutate_nested", category="test")
class MutateNested:
    """Wrongly changes a tensor deep inside its input."""

    value = Input("*")
    out = Output("FLOAT")

    def run(self, ctx, value):
        CALLS[ctx.node_id] += 1
        value[0]["inner"].samples.add_(1)
        return 0.0


@node("test.interrupt", category="test")
class Interrupt:
    """Raises KeyboardInterrupt, as Ctrl-C does in the middle of a node."""

    value = Input("FLOAT", default=0.0)
    out = Output("FLOAT")

    def run(self, ctx, value):
        raise KeyboardInterrupt


NODES = [Number, Count, Add, MakeTensor, Scale, BadScale, Sum, Fail, Slow, Write, ReadText, Checked, Renamed, Nested,
         MutateNested, Interrupt]


def make_registry() -> Registry:
    """A registry with the built-in packs plus these test nodes."""
    registry = Registry()
    registry.load_builtin()
    for cls in NODES:
        registry.add(cls, "test")
    return registry


def link(node_id: str, output: str = "out") -> dict[str, str]:
    """A link to ``output`` of ``node_id``."""
    return {"node": node_id, "output": output}
