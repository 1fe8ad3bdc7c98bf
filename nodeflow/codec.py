"""Values as bytes and sizes: what the cache needs to know about socket values.

* :func:`value_nbytes`: bytes held by the tensors inside a value (for the cache budget);
* :func:`tensors_in`: every tensor inside a value, at any depth (for the executor's
  mutation guard);
* :func:`encode_value` / :func:`decode_value`: a value as JSON-able metadata plus a
  dict of tensors, which the cache's disk tier writes as one safetensors file.

Only primitives, tensors, lists/tuples/dicts of those and registered value classes
(:data:`VALUE_CLASSES`; :mod:`nodeflow.values`' classes are registered, plugins add
theirs with :func:`register_value_class`) can be encoded; anything else (a loaded
model, a scheduler object) raises :class:`NotSerializable` and stays in memory.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from . import values

#: Value classes the disk tier may rebuild, by class name.
VALUE_CLASSES: dict[str, type] = {}


def register_value_class(cls: type) -> type:
    """Let the disk cache store and rebuild instances of dataclass ``cls`` (usable as a decorator)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    VALUE_CLASSES[cls.__name__] = cls
    return cls


for _cls in (values.Tokens, values.Conditioning, values.NoiseMask, values.Latents, values.Image, values.Mask, values.NoisePred, values.Embedding,
             values.LoraLayer, values.Lora, values.Dataset):
    register_value_class(_cls)


def _children(value: Any) -> list[Any]:
    """The values directly inside a container or dataclass instance (none for a leaf)."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, dict):
        return list(value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [getattr(value, f.name) for f in dataclasses.fields(value)]
    return []


def tensors_in(value: Any) -> list[torch.Tensor]:
    """Every tensor inside ``value``: in lists, tuples, dicts and dataclasses, at any depth.

    Iterative, and each object is visited once (shared sub-values, cycles).
    """
    found: list[torch.Tensor] = []
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif not isinstance(item, torch.nn.Module):  # modules belong to the model store
            stack.extend(_children(item))
    return found


def value_nbytes(value: Any) -> int:
    """Bytes held by tensors inside ``value`` (modules count 0: the model store owns them)."""
    return sum(t.element_size() * t.nelement() for t in tensors_in(value))


class NotSerializable(Exception):
    """Raised by :func:`encode_value` for values the disk tier cannot hold (models, objects)."""


def encode_value(value: Any, tensors: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """Encode ``value`` as JSON-able metadata, moving tensors into ``tensors``.

    Raises :class:`NotSerializable` for anything that is not a primitive, a tensor,
    a container of those, or one of :data:`VALUE_CLASSES`.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        name = f"{prefix}{len(tensors)}"
        tensors[name] = value.detach().contiguous().cpu()
        return {"__tensor__": name}
    if isinstance(value, (list, tuple)):
        items = [encode_value(v, tensors, prefix) for v in value]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: encode_value(v, tensors, prefix) for k, v in value.items()}}
    cls_name = type(value).__name__
    if VALUE_CLASSES.get(cls_name) is type(value):
        fields = {f.name: encode_value(getattr(value, f.name), tensors, prefix) for f in dataclasses.fields(value)}
        return {"__value__": cls_name, "fields": fields}
    raise NotSerializable(cls_name)


def decode_value(meta: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode_value`."""
    if isinstance(meta, list):
        return [decode_value(m, tensors) for m in meta]
    if isinstance(meta, dict):
        if "__tensor__" in meta:
            return tensors[meta["__tensor__"]]
        if "__tuple__" in meta:
            return tuple(decode_value(m, tensors) for m in meta["__tuple__"])
        if "__dict__" in meta:
            return {k: decode_value(v, tensors) for k, v in meta["__dict__"].items()}
        if "__value__" in meta:
            cls = VALUE_CLASSES[meta["__value__"]]
            return cls(**{k: decode_value(v, tensors) for k, v in meta["fields"].items()})
    return meta


__all__ = ["VALUE_CLASSES", "NotSerializable", "decode_value", "encode_value", "register_value_class", "tensors_in", "value_nbytes"]
