"""Map a number from one range onto another, e.g. a 0..1 slider onto a CFG scale of 4..12."""

from nodeflow.node import Input, Output, node


@node("example.remap", display_name="Remap Number", category="example/math", version="1.0.0")
class Remap:
    """Map ``value`` linearly from [in_min, in_max] to [out_min, out_max], clamping by default.

    Reversed ranges work (``out_min > out_max`` flips the direction); an empty input
    range (``in_min == in_max``) has no meaning and fails the node.
    """

    value = Input("FLOAT", default=0.5)
    in_min = Input("FLOAT", default=0.0)
    in_max = Input("FLOAT", default=1.0)
    out_min = Input("FLOAT", default=0.0)
    out_max = Input("FLOAT", default=1.0)
    clamp = Input("BOOL", default=True, description="keep the result inside [out_min, out_max]")
    result = Output("FLOAT")

    def run(self, ctx, value, in_min, in_max, out_min, out_max, clamp):
        if in_min == in_max:
            raise ValueError(f"the input range is empty (in_min = in_max = {in_min:g})")
        t = (value - in_min) / (in_max - in_min)
        if clamp:
            t = min(max(t, 0.0), 1.0)
        return out_min + t * (out_max - out_min)
