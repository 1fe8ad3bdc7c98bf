"""nodeflow: Stable Diffusion as a graph of typed nodes.

The public API for node authors lives in :mod:`nodeflow.node` (``node``, ``Input``,
``Output``, ``Context``); value classes and socket type names in :mod:`nodeflow.types`.
"""

from .node import Context, Input, Output, node

__version__ = "0.1.0"

__all__ = ["Context", "Input", "Output", "node", "__version__"]
