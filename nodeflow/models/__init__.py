"""Loading and holding model components, offline, from local paths only.

:class:`ModelStore` is the one object that owns loaded weights; nodes get it as
``ctx.models`` and never copy modules into the cache. :class:`ModelFamily` names what a
loaded model is (SD 1.x, SD 2.x, SDXL base or refiner).
"""

from .families import ModelFamily
from .store import DEFAULT_MODEL, ModelStore, SDComponents

__all__ = ["DEFAULT_MODEL", "ModelFamily", "ModelStore", "SDComponents"]
