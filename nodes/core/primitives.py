"""Primitive value nodes: one typed-in value that several nodes can share through links."""

import secrets

from nodeflow.node import Input, Output, node


@node("core.int", display_name="Integer", category="primitives")
class Int:
    """An integer value."""

    value = Input("INT", default=0)
    out = Output("INT")

    def run(self, ctx, value):
        return value


@node("core.float", display_name="Float", category="primitives")
class Float:
    """A real number."""

    value = Input("FLOAT", default=0.0)
    out = Output("FLOAT")

    def run(self, ctx, value):
        return value


@node("core.string", display_name="Text", category="primitives")
class String:
    """A piece of text (multi-line)."""

    value = Input("STRING", default="", multiline=True)
    out = Output("STRING")

    def run(self, ctx, value):
        return value


@node("core.bool", display_name="Boolean", category="primitives")
class Bool:
    """True or false."""

    value = Input("BOOL", default=False)
    out = Output("BOOL")

    def run(self, ctx, value):
        return value


@node("core.random_seed", display_name="Random Seed", category="primitives", pure=False)
class RandomSeed:
    """A fresh random seed on every run (impure: its fingerprint changes each run)."""

    seed = Output("INT")

    def fingerprint(self, ctx):
        return secrets.token_hex(8)  # never equal twice, so the cache never serves an old seed

    def run(self, ctx):
        return secrets.randbelow(2**32)
