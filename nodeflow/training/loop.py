"""The training step loop: steps, checkpoints, samples, progress; and atomic checkpoint files.

One loop serves every trainer: :func:`run_steps` calls the trainer's ``step`` and, after
each step, in this order: writes a checkpoint when one is due (every ``save_every``
steps and after the last), offers a sample when one is due (every ``sample_every``
steps and after the last), then reports progress. Reporting is where a cancelled run
stops (the node's ``ctx.progress`` raises), so a cancellation always falls *between*
steps and the checkpoint file holds the state of the last save, never half a write:
:func:`write_checkpoint` writes a temporary file and renames it over the old one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Schedule:
    """How many steps, and how often to save and to sample (0: only after the last step / never)."""

    steps: int
    save_every: int = 0
    sample_every: int = 0

    def save_due(self, step: int) -> bool:
        """Whether a checkpoint is written after ``step`` (1-based)."""
        return step == self.steps or (self.save_every > 0 and step % self.save_every == 0)

    def sample_due(self, step: int) -> bool:
        """Whether a sample is drawn after ``step`` (1-based)."""
        return self.sample_every > 0 and (step % self.sample_every == 0 or step == self.steps)


def run_steps(schedule: Schedule, step: Callable[[int], float], *, save: Callable[[int], None],
              report: Callable[[int, float], None], sample: Callable[[int], None] | None = None) -> list[float]:
    """Run ``schedule.steps`` steps (see the module docstring); the loss of each step."""
    losses = []
    for index in range(1, schedule.steps + 1):
        losses.append(step(index))
        if schedule.save_due(index):
            save(index)
        if sample is not None and schedule.sample_due(index):
            sample(index)
        report(index, losses[-1])
    return losses


def write_checkpoint(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a ``.safetensors`` file atomically: readers see the old file or the new one, never a partial one."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(partial), metadata=metadata)
    os.replace(partial, path)


def recent_mean(losses: list[float], fraction: float = 0.1) -> float:
    """The mean loss over the last ``fraction`` of the steps (at least one): a steadier figure than the last step's."""
    count = max(1, int(len(losses) * fraction))
    tail = losses[-count:]
    return sum(tail) / len(tail) if tail else float("nan")


__all__ = ["Schedule", "recent_mean", "run_steps", "write_checkpoint"]
