"""Cancellation inside one long model call: checks between the blocks of a torch module.

A denoise loop checks its cancel token between steps (``ctx.progress``), but one UNet
call on a large picture can last minutes. :func:`watch` puts a forward pre-hook on the
blocks of a module (every element of its ``ModuleList``\\s: a UNet's down, mid and up
blocks and the resnets, attentions and samplers inside them; a VAE's encoder and decoder
blocks), once per module object. Each hook calls the cancel check of the run whose node
is executing *on this thread*, set by the executor with :func:`cancel_scope` (a context
variable, so runs on other threads, and calls made outside any run, are unaffected).
When the run was cancelled the hook raises :class:`~nodeflow.errors.Cancelled` and the
call stops before its next block.

A hook returns nothing and never touches the tensors, so a call that is not cancelled
computes exactly what it computed without hooks (same kernels, same order). The price is
one context-variable read per block call (about a hundred per SD UNet call).
Granularity is one block: a single convolution or attention that itself takes minutes
cannot be interrupted (torch has no way to stop a running kernel).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_current: ContextVar[Callable[[], None] | None] = ContextVar("nodeflow_cancel_check", default=None)
_install_lock = threading.Lock()
_MARK = "_nodeflow_cancel_hook"
_WATCHED = "_nodeflow_cancel_watched"


@contextmanager
def cancel_scope(check: Callable[[], None] | None) -> Iterator[None]:
    """Within the block, hooked modules called on this thread run ``check`` before each block (it raises to stop)."""
    token = _current.set(check)
    try:
        yield
    finally:
        _current.reset(token)


def check_cancelled() -> None:
    """Run the current cancel check (raises :class:`~nodeflow.errors.Cancelled` if this thread's run was cancelled)."""
    check = _current.get()
    if check is not None:
        check()


def cancel_requested() -> bool:
    """Whether the run executing on this thread has been cancelled (False outside a run)."""
    from .errors import Cancelled

    try:
        check_cancelled()
    except Cancelled:
        return True
    return False


def _pre_hook(module: Any, args: Any) -> None:
    """The forward pre-hook: a module-level function, so deep and shallow copies of a module keep it working."""
    check = _current.get()
    if check is not None:
        check()


def watch(model: Any) -> Any:
    """Install the block hooks on ``model`` (a ``torch.nn.Module``; anything else is returned as is); idempotent.

    Hooks go on each element of every ``ModuleList`` and on every ``mid_block``, once per
    module object (a copy made by :func:`copy.copy` or :func:`copy.deepcopy` keeps them).
    """
    import torch

    if not isinstance(model, torch.nn.Module) or getattr(model, _WATCHED, False):
        return model
    with _install_lock:
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.ModuleList):
                for child in module:
                    _hook(child)
            elif name.rsplit(".", 1)[-1] == "mid_block":
                _hook(module)
        object.__setattr__(model, _WATCHED, True)
    return model


def _hook(module: Any) -> None:
    if not getattr(module, _MARK, False):
        module.register_forward_pre_hook(_pre_hook)
        object.__setattr__(module, _MARK, True)


__all__ = ["cancel_requested", "cancel_scope", "check_cancelled", "watch"]
