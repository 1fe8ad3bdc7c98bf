"""Loading and holding model components, offline, from local paths only.

:class:`ModelStore` is the one object that owns loaded weights; nodes get it as
``ctx.models`` and never copy modules into the cache.
"""

from .store import DEFAULT_MODEL, ModelStore, SDComponents

__all__ = ["DEFAULT_MODEL", "ModelStore", "SDComponents"]
