"""Training on a model's parts: textual inversion and DreamBooth-style LoRA.

The pieces the training nodes (``sd.dataset``, ``sd.train_textual_inversion``,
``sd.train_lora``) are made of, usable from Python too:

* :mod:`.dataset`: a folder of images and captions -> a :class:`~nodeflow.values.Dataset`,
  its problems (for validation), and its pixels at a model's resolution;
* :mod:`.objective`: diffusers' training loss (noise-prediction MSE under the model's
  own noise schedule) and the random draws of one step, in a documented order;
* :mod:`.textual_inversion`: new token rows that train inside a copy of the text encoder;
* :mod:`.lora`: LoRA layers that train inside copies of the UNet and text encoder;
* :mod:`.loop`: the step loop (progress, checkpoints, samples, cancellation) and atomic
  checkpoint files.

Nothing here changes a module it is given: trainers work on
:func:`~nodeflow.models.derive.shared_copy` s whose frozen weights alias the originals'
storage (see :func:`frozen_copy`), and only their own new parameters train.
"""

from __future__ import annotations

from typing import TypeVar

import torch

from ..models.derive import replace_parameter, shared_copy

M = TypeVar("M", bound=torch.nn.Module)


def frozen_copy(module: M) -> M:
    """A :func:`shared_copy` of ``module`` in train mode whose parameters are new, frozen ``Parameter`` objects.

    Each parameter aliases the original's storage (no memory is copied), but is a
    distinct object with ``requires_grad=False``, so a backward pass through the copy
    never writes a ``.grad`` onto the original's parameters, whatever their flags.
    """
    copy = shared_copy(module)
    for name, parameter in list(copy.named_parameters()):
        replace_parameter(copy, name, parameter.detach())
    return copy.train()


__all__ = ["frozen_copy"]
