"""ComfyUI prompt text as nodeflow's ``sd.tokenize`` reads it.

nodeflow's prompt syntax (``nodeflow_nodes.sd.prompt_syntax``) is ComfyUI's for what
ComfyUI's CLIPTextEncode understands: ``(word)`` = 1.1, ``(word:1.3)``, nesting,
``\\(`` / ``\\)`` escapes and ``embedding:name``, with ComfyUI's weighting and 75-token
chunks. So a ComfyUI prompt passes through as it is, with two exceptions where nodeflow
reads more than ComfyUI does:

* ``[word]`` is emphasis in nodeflow (1/1.1, as in A1111); ComfyUI reads square
  brackets as text. They are escaped (``\\[``), so the same tokens reach CLIP.
* ``BREAK`` starts a new chunk in nodeflow; ComfyUI encodes it as the word "break".
  It is written in lower case (CLIP's tokenizer lower-cases anyway: the same tokens).
"""

from __future__ import annotations

import re

_BREAK = re.compile(r"\bBREAK\b")


def comfy_prompt(text: str) -> str:
    """``text`` (a ComfyUI prompt) rewritten so that nodeflow's tokenizer reads it as ComfyUI does."""
    return _BREAK.sub("break", text.replace("[", "\\[").replace("]", "\\]"))


__all__ = ["comfy_prompt"]
