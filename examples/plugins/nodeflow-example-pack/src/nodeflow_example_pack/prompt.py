"""Build a prompt from a template, so a style can be swapped without retyping the prompt."""

import string

from nodeflow.node import Input, Output, node

_FIELDS = ("subject", "style")


@node("example.prompt_template", display_name="Prompt Template", category="example/text", version="1.0.0")
class PromptTemplate:
    """Fill ``{subject}`` and ``{style}`` in a template (``{{`` and ``}}`` give literal braces)."""

    template = Input("STRING", default="a {style} photo of {subject}", multiline=True)
    subject = Input("STRING", default="")
    style = Input("STRING", default="")
    text = Output("STRING")

    def run(self, ctx, template, subject, style):
        # Check the placeholders first: a typo such as "{subjet}" should fail the node
        # with a sentence naming it, not silently leave braces in the prompt.
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is None:
                continue
            if name not in _FIELDS or spec or conversion:
                raise ValueError(
                    f"unknown placeholder {{{name}}} in the template; use {{subject}} or {{style}}"
                    " (write {{ and }} for literal braces)"
                )
        return template.format(subject=subject, style=style)
