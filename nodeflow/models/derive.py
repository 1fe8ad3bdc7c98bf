"""Derived models: new module objects that share the base model's tensors.

The model store shares loaded modules across runs, so an add-on (LoRA, textual
inversion) must never change a base module in place. Copying the whole model would
double its memory; instead :func:`shared_copy` makes a new module tree (new module
objects, new configs) whose parameters and buffers are the base's own tensor objects.
The caller then swaps in new tensors or submodules on the copy only, which leaves the
base untouched and costs memory only for what changed.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch

M = TypeVar("M", bound=torch.nn.Module)


def shared_copy(module: M) -> M:
    """A new module tree equal to ``module`` whose parameters and buffers are shared, not copied.

    Assigning a new ``Parameter`` or submodule on the copy does not affect ``module``;
    writing *into* a shared tensor would, so callers replace tensors, never mutate them.
    """
    # deepcopy consults the memo first: pre-seeding it with every tensor maps each one
    # to itself, so only the Python objects around them (modules, configs) are copied.
    memo: dict[int, object] = {id(t): t for t in (*module.parameters(), *module.buffers())}
    duplicate = copy.deepcopy(module, memo)
    from .fast import recompiled  # a deep copy drops compiled calls: compile the copy again

    recompiled(duplicate)
    return duplicate


def replace_parameter(module: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    """Set the parameter at dotted ``name`` (``"down.0.weight"``) of ``module`` to a new frozen ``value``."""
    owner_name, _, attr = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    setattr(owner, attr, torch.nn.Parameter(value, requires_grad=False))


__all__ = ["shared_copy", "replace_parameter"]
