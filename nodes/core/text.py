"""Text helpers and a value display sink."""

from nodeflow.node import Input, Output, node


@node("core.join_text", display_name="Join Text", category="text")
class JoinText:
    """Join two texts with a separator (e.g. a style suffix after a prompt)."""

    a = Input("STRING", default="", multiline=True)
    b = Input("STRING", default="", multiline=True)
    separator = Input("STRING", default=", ")
    text = Output("STRING")

    def run(self, ctx, a, b, separator):
        return separator.join(part for part in (a, b) if part)


@node("core.show", display_name="Show Value", category="utils", output_node=True)
class ShowValue:
    """Show any value in the run's results (a sink: it makes the graph compute its input)."""

    value = Input("*")
    text = Output("STRING")

    def run(self, ctx, value):
        return repr(value)
