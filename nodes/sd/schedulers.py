"""The scheduler node: a diffusers scheduler, fresh per run, as explicit SCHEDULER state."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from nodeflow.errors import ErrorInfo
from nodeflow.node import Context, Input, Output, ValidationContext, node
from nodeflow.values import SchedulerState

from . import _common

#: Friendly names -> (diffusers class name, config overrides).
FRIENDLY: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "lms": ("LMSDiscreteScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
}


def scheduler_name_problem(name: str) -> str | None:
    """Why ``name`` names no scheduler (``None`` when it does); imports diffusers only for class names."""
    key = name.strip()
    if key.lower() in FRIENDLY or key.lower() in ("", "default"):
        return None
    if key.endswith("Scheduler"):
        import diffusers

        cls = getattr(diffusers, key, None)
        if isinstance(cls, type) and hasattr(cls, "from_config"):
            return None
    known = ", ".join(sorted(FRIENDLY))
    return f"unknown scheduler '{name}': use one of {known}, 'default', or a diffusers scheduler class name"


def make_scheduler(config: dict[str, Any], name: str) -> Any:
    """A new diffusers scheduler from a model's scheduler ``config``.

    ``name`` is a friendly name (:data:`FRIENDLY`), a diffusers scheduler class name
    (``EulerAncestralDiscreteScheduler``), or ``default`` for the config's own class.
    """
    import diffusers  # lazy: importing diffusers takes seconds, listing nodes should not

    key = name.strip()
    overrides: dict[str, Any] = {}
    if key.lower() in FRIENDLY:
        class_name, overrides = FRIENDLY[key.lower()]
    elif key.lower() in ("", "default"):
        class_name = str(config.get("_class_name", ""))
    else:
        class_name = key
    cls = getattr(diffusers, class_name, None)
    if not (isinstance(cls, type) and class_name.endswith("Scheduler") and hasattr(cls, "from_config")):
        known = ", ".join(sorted(FRIENDLY))
        raise ValueError(f"unknown scheduler '{name}': use one of {known}, 'default', or a diffusers scheduler class name")
    try:
        key = json.dumps([class_name, config, overrides], sort_keys=True)
    except TypeError:  # a config holding something JSON cannot say: no memo
        return cls.from_config(config, **overrides)
    # A fresh object every time (set_timesteps on a fresh scheduler, as diffusers does),
    # copied from a memoised prototype: from_config costs ~4 ms of signature inspection.
    return copy.deepcopy(_prototype(key))


@functools.lru_cache(maxsize=32)
def _prototype(key: str) -> Any:
    """A never-used scheduler for ``key`` (JSON of class name, config, overrides); only ever deep-copied."""
    import diffusers

    class_name, config, overrides = json.loads(key)
    return getattr(diffusers, class_name).from_config(config, **overrides)


@node("sd.scheduler", display_name="Scheduler", category="sd/sampling")
class Scheduler:
    """Make a fresh scheduler from the model's config and set its timesteps.

    The output state holds the scheduler object with ``steps`` timesteps set; step
    nodes and the denoise node copy it, never change it. Connect ``unet`` so the
    timesteps live on its device, as the diffusers pipeline places them.
    """

    config = Input("SCHEDULER_CONFIG", aliases=("scheduler",), description="the model's scheduler config (from Load Model)")
    name = Input("STRING", default="ddim", description="ddim, pndm, euler, euler_a, dpmpp_2m, lms, unipc, heun, ddpm, default, or a diffusers class name")
    steps = Input("INT", default=20, min=1, max=1000)
    eta = Input("FLOAT", default=0.0, min=0.0, max=1.0, description="DDIM's eta (0: deterministic); ignored by other schedulers")
    unet = Input("UNET", optional=True, description="timesteps are placed on this UNet's device")
    scheduler = Output("SCHEDULER", aliases=("timesteps",))

    def validate_inputs(self, check: ValidationContext, name: str | None = None, **other: Any) -> ErrorInfo | None:
        problem = None if name is None else scheduler_name_problem(name)
        return None if problem is None else ErrorInfo("invalid_value", problem, input="name")

    def run(self, ctx: Context, config: dict[str, Any], name: str, steps: int, eta: float, unet: Any = None) -> SchedulerState:
        sched = make_scheduler(config, name)
        sched.set_timesteps(steps, device=_common.placement(unet)[0] if unet is not None else "cpu")
        return SchedulerState(sched, index=0, steps=steps, name=type(sched).__name__, eta=eta)


NODES = [Scheduler]
