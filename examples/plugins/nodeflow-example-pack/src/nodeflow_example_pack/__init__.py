"""nodeflow example pack: three small nodes written with the public node API only.

nodeflow registers the classes listed in ``NODES`` (without it, every ``@node`` class
defined in this package). The distribution's ``nodeflow.nodes`` entry point names this
module, so ``pip install`` is all it takes for ``nodeflow nodes`` to list them.
"""

from .image import Grayscale
from .prompt import PromptTemplate
from .remap import Remap

NODES = [PromptTemplate, Remap, Grayscale]

__all__ = ["Grayscale", "PromptTemplate", "Remap", "NODES"]
