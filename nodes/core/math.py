"""Arithmetic on numbers."""

from nodeflow.node import Input, Output, node


@node("core.add", display_name="Add", category="math")
class Add:
    """Add two numbers."""

    a = Input("FLOAT", default=0.0)
    b = Input("FLOAT", default=0.0)
    total = Output("FLOAT")

    def run(self, ctx, a, b):
        return a + b


@node("core.multiply", display_name="Multiply", category="math")
class Multiply:
    """Multiply two numbers."""

    a = Input("FLOAT", default=1.0)
    b = Input("FLOAT", default=1.0)
    product = Output("FLOAT")

    def run(self, ctx, a, b):
        return a * b
