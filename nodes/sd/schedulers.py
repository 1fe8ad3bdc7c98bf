"""The scheduler node: a diffusers scheduler, fresh per run, as explicit SCHEDULER state.

One place for scheduler names. ``name`` picks the class: a friendly name
(:data:`FRIENDLY`; ComfyUI's sampler names are among them), ``default`` (the model's
own) or a diffusers class name. ``schedule`` picks how the timesteps (sigmas) are
spaced, with ComfyUI's scheduler names mapped onto diffusers' options
(:data:`SCHEDULES`); a class that lacks the option a schedule needs is refused by name.
``denoise`` < 1 keeps only the last ``steps`` of a ``int(steps / denoise)``-step
schedule, as ComfyUI's KSampler does; ``start_step`` skips that many of them
(KSamplerAdvanced's ``start_at_step``).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import inspect
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
    # ComfyUI's sampler names (euler, heun, lms, ddim, ddpm and dpmpp_2m are above, with the same meaning).
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpm_2": ("KDPM2DiscreteScheduler", {}),
    "dpm_2_ancestral": ("KDPM2AncestralDiscreteScheduler", {}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_sde_gpu": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "dpmpp_sde": ("DPMSolverSDEScheduler", {}),
    "uni_pc": ("UniPCMultistepScheduler", {"solver_type": "bh1"}),
    "uni_pc_bh2": ("UniPCMultistepScheduler", {"solver_type": "bh2"}),
    "lcm": ("LCMScheduler", {}),
}

#: Timestep spacings: name -> config overrides. ``default`` keeps the model's config; the
#: others are ComfyUI's scheduler names (see docs/comfyui.md for how close each one is).
SCHEDULES: dict[str, dict[str, Any]] = {
    "default": {},
    "normal": {"timestep_spacing": "linspace"},
    "karras": {"timestep_spacing": "linspace", "use_karras_sigmas": True},
    "exponential": {"timestep_spacing": "linspace", "use_exponential_sigmas": True},
    "beta": {"timestep_spacing": "linspace", "use_beta_sigmas": True},
    "simple": {"timestep_spacing": "trailing"},
    "sgm_uniform": {"timestep_spacing": "trailing"},
    "ddim_uniform": {"timestep_spacing": "leading", "steps_offset": 1},
}

#: Schedules known by name that no diffusers option expresses.
REFUSED_SCHEDULES: dict[str, str] = {
    "linear_quadratic": "diffusers has no linear-quadratic sigma schedule",
    "kl_optimal": "diffusers has no KL-optimal sigma schedule",
    "AYS SD1": "diffusers schedulers take no custom sigma list here",
}

#: Scheduler classes that need a package nodeflow does not depend on.
_REQUIRES = {"DPMSolverSDEScheduler": "torchsde"}


def scheduler_name_problem(name: str) -> str | None:
    """Why ``name`` names no scheduler (``None`` when it does); imports diffusers only for class names."""
    key = name.strip()
    if key.lower() in FRIENDLY:
        return _missing_requirement(FRIENDLY[key.lower()][0])
    if key.lower() in ("", "default"):
        return None
    if key.endswith("Scheduler"):
        import diffusers

        cls = getattr(diffusers, key, None)
        if isinstance(cls, type) and hasattr(cls, "from_config"):
            return _missing_requirement(key)
    known = ", ".join(sorted(FRIENDLY))
    return f"unknown scheduler '{name}': use one of {known}, 'default', or a diffusers scheduler class name"


def _missing_requirement(class_name: str) -> str | None:
    needed = _REQUIRES.get(class_name)
    if needed is None or importlib.util.find_spec(needed) is not None:
        return None
    return f"diffusers' {class_name} needs the '{needed}' package, which is not installed (pip install {needed})"


def class_name_for(config: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """The diffusers class name and config overrides ``name`` stands for (no check that it exists)."""
    key = name.strip()
    if key.lower() in FRIENDLY:
        class_name, overrides = FRIENDLY[key.lower()]
        return class_name, dict(overrides)
    if key.lower() in ("", "default"):
        return str(config.get("_class_name", "")), {}
    return key, {}


def schedule_problem(class_name: str, schedule: str) -> str | None:
    """Why ``class_name`` cannot space its timesteps as ``schedule`` (``None`` when it can)."""
    if schedule in REFUSED_SCHEDULES:
        return f"schedule '{schedule}' is not supported: {REFUSED_SCHEDULES[schedule]}"
    if schedule not in SCHEDULES:
        return f"unknown schedule '{schedule}': use one of {', '.join(SCHEDULES)}"
    if not SCHEDULES[schedule]:
        return None  # the model's own spacing: every class has it (and validation need not import diffusers, seconds)
    import diffusers

    cls = getattr(diffusers, class_name, None)
    if not isinstance(cls, type) or class_name in _REQUIRES and _missing_requirement(class_name):
        return None  # the name itself is reported (or the class is a stand-in for a missing package)
    accepted = _config_options(cls)
    lacking = [option for option in SCHEDULES[schedule] if option not in accepted]
    if lacking:
        return f"{class_name} cannot use the '{schedule}' schedule: diffusers gives it no {' or '.join(lacking)} option"
    return None


def _config_options(cls: type) -> frozenset[str]:
    """The config keys a scheduler class takes (its constructor's parameters)."""
    return frozenset(inspect.signature(cls.__init__).parameters)  # type: ignore[misc]


def make_scheduler(config: dict[str, Any], name: str, schedule: str = "default") -> Any:
    """A new diffusers scheduler from a model's scheduler ``config``.

    ``name`` is a friendly name (:data:`FRIENDLY`), a diffusers scheduler class name
    (``EulerAncestralDiscreteScheduler``), or ``default`` for the config's own class;
    ``schedule`` a timestep spacing (:data:`SCHEDULES`).
    """
    import diffusers  # lazy: importing diffusers takes seconds, listing nodes should not

    class_name, overrides = class_name_for(config, name)
    cls = getattr(diffusers, class_name, None)
    if not (isinstance(cls, type) and class_name.endswith("Scheduler") and hasattr(cls, "from_config")):
        known = ", ".join(sorted(FRIENDLY))
        raise ValueError(f"unknown scheduler '{name}': use one of {known}, 'default', or a diffusers scheduler class name")
    problem = _missing_requirement(class_name) or schedule_problem(class_name, schedule)
    if problem:
        raise ValueError(problem)
    overrides.update(SCHEDULES[schedule])
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
    name = Input("STRING", default="ddim", description="ddim, pndm, euler, euler_a, dpmpp_2m, lms, unipc, heun, ddpm, ComfyUI's"
                 " sampler names (euler_ancestral, dpm_2, dpmpp_2m_sde, uni_pc...), default, or a diffusers class name")
    steps = Input("INT", default=20, min=1, max=1000)
    eta = Input("FLOAT", default=0.0, min=0.0, max=1.0, description="DDIM's eta (0: deterministic); ignored by other schedulers")
    unet = Input("UNET", optional=True, description="timesteps are placed on this UNet's device")
    schedule = Input("STRING", default="default", choices=list(SCHEDULES),
                     description="timestep spacing: the model's (default) or ComfyUI's scheduler names")
    denoise = Input("FLOAT", default=1.0, min=0.0, max=1.0, step=0.01,
                    description="< 1: run the last `steps` steps of a int(steps / denoise)-step schedule (ComfyUI's denoise)")
    start_step = Input("INT", default=0, min=0, max=10000, description="skip this many of the steps (ComfyUI's start_at_step)")
    denoising_end = Input("FLOAT", default=1.0, min=0.0, max=1.0, step=0.05,
                          description="< 1: stop when this fraction of the noise is removed, leaving the rest to a refiner"
                                      " (diffusers' denoising_end)")
    scheduler = Output("SCHEDULER", aliases=("timesteps",))

    def validate_inputs(self, check: ValidationContext, name: str | None = None, schedule: str | None = None,
                        denoise: float | None = None, steps: int | None = None, start_step: int | None = None,
                        denoising_end: float | None = None, **other: Any) -> list[ErrorInfo]:
        problems = [*_name_problems(name, schedule), *_range_problems(denoise, steps, start_step)]
        if denoising_end is not None and denoising_end <= 0:
            problems.append(ErrorInfo("invalid_value", f"denoising_end {denoising_end} runs no step (use a value above 0)",
                                      input="denoising_end"))
        return problems

    def run(self, ctx: Context, config: dict[str, Any], name: str, steps: int, eta: float, unet: Any = None,
            schedule: str = "default", denoise: float = 1.0, start_step: int = 0, denoising_end: float = 1.0) -> SchedulerState:
        sched = make_scheduler(config, name, schedule)
        if denoise <= 0 or start_step >= steps:
            raise ValueError(f"denoise {denoise} with start_step {start_step} of {steps} steps leaves no step to run")
        total = steps if denoise >= 1.0 else int(steps / denoise)
        sched.set_timesteps(total, device=_common.placement(unet)[0] if unet is not None else "cpu")
        # ComfyUI's denoise keeps the last `steps` steps; skipped steps are behind the state's index.
        begin = (total - steps + start_step) * sched.order
        if begin and hasattr(sched, "set_begin_index"):
            sched.set_begin_index(begin)
        end = end_index(sched, denoising_end)
        if end is not None and end <= begin:
            raise ValueError(f"denoising_end {denoising_end} stops before the first step to run")
        return SchedulerState(sched, index=begin, steps=total, name=type(sched).__name__, eta=eta, end=end)


def _cutoff(sched: Any, fraction: float) -> int:
    """The discrete timestep a denoising fraction cuts the schedule at, as diffusers' SDXL pipelines compute it."""
    train = sched.config.num_train_timesteps
    return int(round(train - fraction * train))


def end_index(sched: Any, denoising_end: float) -> int | None:
    """Where ``denoising_end`` stops a run (``StableDiffusionXLPipeline``: the timesteps >= the cutoff are run); None for 1."""
    if not 0 < denoising_end < 1:
        return None
    cutoff = _cutoff(sched, denoising_end)
    return int(sum(1 for t in sched.timesteps if t >= cutoff))


def start_index(sched: Any, denoising_start: float) -> int:
    """Where ``denoising_start`` begins a run (``StableDiffusionXLImg2ImgPipeline.get_timesteps``)."""
    cutoff = _cutoff(sched, denoising_start)
    count = int((sched.timesteps < cutoff).sum().item())
    if sched.order == 2 and count % 2 == 0:
        count += 1  # a second-order step is never cut between its two evaluations
    return len(sched.timesteps) - count


def _name_problems(name: str | None, schedule: str | None) -> list[ErrorInfo]:
    if name is None:
        return []
    problem = scheduler_name_problem(name)
    if problem:
        return [ErrorInfo("invalid_value", problem, input="name")]
    # "default" names the model's own class, known only once the model is loaded (run checks it then)
    if schedule is None or name.strip().lower() in ("", "default"):
        return []
    problem = schedule_problem(class_name_for({}, name)[0], schedule)
    return [ErrorInfo("invalid_value", problem, input="schedule")] if problem else []


def _range_problems(denoise: float | None, steps: int | None, start_step: int | None) -> list[ErrorInfo]:
    problems = []
    if denoise is not None and denoise <= 0:
        problems.append(ErrorInfo("invalid_value", f"denoise {denoise} runs no step (use a value above 0)", input="denoise"))
    if steps is not None and start_step is not None and start_step >= steps:
        problems.append(ErrorInfo("invalid_value", f"start_step {start_step} skips all {steps} steps", input="start_step"))
    return problems


NODES = [Scheduler]
