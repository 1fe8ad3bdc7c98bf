"""The opt-in fast path: ``torch.compile`` on the UNet and the VAE decoder (``--compile``).

A compiled model is a *derived* model (:meth:`~nodeflow.models.store.ModelStore.derived`):
a :func:`~nodeflow.models.derive.shared_copy` of the loaded one (same weight tensors, new
module objects) whose UNet, and whose VAE's decoder, are compiled in place with
``module.compile(...)``. The store keeps it under the base model's key plus the compile
mode, so every run of a process reuses the same compiled module and torch's own cache of
compiled graphs: a run recompiles only when the shapes (size, batch) change, since
compilation is static (``dynamic=False``: one specialised graph per shape; torch keeps
up to ``torch._dynamo.config.cache_size_limit`` of them, 8 by default, then runs
that module eagerly with a warning). The default path never sees these modules, so it
stays pixel-identical to diffusers; the fast path differs by rounding only (fused
kernels sum in another order).

On CUDA the compiled copy also converts its weights to the channels-last memory format,
which tensor-core convolutions prefer. On the CPU it does not: an SD 1.5-shaped UNet at
64 px ran no faster eagerly with channels-last weights (docs/performance.md).
Channels-last weights are new tensors: on CUDA the fast path holds its own copy of the
convolution weights beside the store's model.

Modes (:data:`MODES`): ``default`` (inductor), ``reduce-overhead`` (adds CUDA graphs:
a step's kernels are replayed as one graph, which saves the per-kernel launch cost when
the GPU waits on Python; only on CUDA, and only where the inputs stay on the device; the
outputs of one replay are overwritten by the next, so the step marks its start with
``torch.compiler.cudagraph_mark_step_begin`` and the UNet's output is cloned).

Attention already runs through PyTorch's fused ``scaled_dot_product_attention``: diffusers'
``AttnProcessor2_0`` is its default processor under torch 2, on both paths.

A LoRA or textual-inversion node applied after a compiled model makes its own
:func:`~nodeflow.models.derive.shared_copy`; a deep copy loses the compiled call, so the
copy is compiled again with the same options (:func:`recompiled`).
"""

from __future__ import annotations

from typing import Any

import torch

#: The compile modes, as ``torch.compile`` names them.
MODES = ("default", "reduce-overhead", "max-autotune")

#: Where a compiled module keeps the keyword arguments it was compiled with.
_OPTIONS = "_nodeflow_compile"


def compile_options(mode: str) -> dict[str, Any]:
    """The ``torch.compile`` keyword arguments of the fast path in ``mode`` (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"compile mode must be one of {', '.join(MODES)}, not {mode!r}")
    return {"mode": mode, "dynamic": False, "fullgraph": False}


def compiled_unet(unet: torch.nn.Module, mode: str) -> torch.nn.Module:
    """A shared copy of ``unet`` compiled in ``mode`` (channels-last weights on CUDA); ``unet`` is left as it is."""
    from .derive import shared_copy

    fast = shared_copy(unet)
    if _on_cuda(fast):
        _channels_last(fast)
    _compile(fast, compile_options(mode))
    return fast


def compiled_vae(vae: torch.nn.Module, mode: str) -> torch.nn.Module:
    """A shared copy of ``vae`` whose decoder is compiled in ``mode`` (encoding stays eager)."""
    from .derive import shared_copy

    fast = shared_copy(vae)
    decoder = fast.decoder
    if _on_cuda(fast):
        _channels_last(decoder)
    # CUDA graphs for a one-off decode buy nothing; the decoder is compiled plainly.
    _compile(decoder, compile_options("default" if mode == "reduce-overhead" else mode))
    return fast


def is_compiled(module: torch.nn.Module) -> bool:
    """Whether ``module`` or one of its submodules went through :func:`compiled_unet`/:func:`compiled_vae`."""
    return any(getattr(m, _OPTIONS, None) is not None for m in module.modules())


def recompiled(copy: torch.nn.Module) -> None:
    """Compile again, in place, every submodule of a fresh deep copy that was compiled in its original.

    A deep copy of a module drops its compiled call (``nn.Module.__getstate__``), so a
    LoRA merged into a compiled UNet would otherwise run eagerly. Called by
    :func:`~nodeflow.models.derive.shared_copy`.
    """
    for module in copy.modules():
        options = getattr(module, _OPTIONS, None)
        if options is not None:
            module._compiled_call_impl = None  # type: ignore[assignment]
            _compile(module, options)


def _compile(module: torch.nn.Module, options: dict[str, Any]) -> None:
    module.compile(**options)
    setattr(module, _OPTIONS, options)
    if options.get("mode") == "reduce-overhead":
        _mark_steps(module)


def _channels_last(module: torch.nn.Module) -> None:
    """Give ``module``'s 4-D weights channels-last copies as new parameters.

    Not ``module.to(memory_format=...)``: that writes the new data into the parameter
    objects, which a shared copy shares with the base model.
    """
    from .derive import replace_parameter

    for name, param in list(module.named_parameters()):
        if param.dim() == 4:
            replace_parameter(module, name, param.detach().contiguous(memory_format=torch.channels_last))


def _on_cuda(module: torch.nn.Module) -> bool:
    first = next(module.parameters(), None)
    return first is not None and first.device.type == "cuda"


def _mark_steps(unet: torch.nn.Module) -> None:
    """CUDA graphs reuse their output buffers: start a new step before each call and clone what comes out."""
    compiled = unet._compiled_call_impl

    def call(*args: Any, **kwargs: Any) -> Any:
        torch.compiler.cudagraph_mark_step_begin()
        out = compiled(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(o.clone() if isinstance(o, torch.Tensor) else o for o in out)
        return out

    unet._compiled_call_impl = call  # type: ignore[assignment]


__all__ = ["MODES", "compile_options", "compiled_unet", "compiled_vae", "is_compiled", "recompiled"]
