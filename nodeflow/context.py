"""What a running node may use: its narrow, typed :class:`Context`.

InvokeAI's lesson: a node gets a small set of typed services, built in one place
(the executor), and never reaches into the server, the executor or the environment.

* ``ctx.models``: the model store (:class:`ModelStoreAPI`): load a model, build a
  derived one once (a LoRA merge), the default precision, the pickle opt-in;
* ``ctx.paths``: where the file names in the graph point (:class:`~nodeflow.files.PathResolver`);
* ``ctx.progress`` / ``ctx.preview`` / ``ctx.check_cancelled``: long-node reporting;
* ``ctx.add_output``: files the node wrote; ``ctx.graph``: the graph being run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from .errors import Cancelled, ErrorInfo, NodeflowError
from .events import Event, EventType
from .files import PathResolver

T = TypeVar("T")


class CancelToken:
    """A flag that a run checks between nodes and that long nodes check between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the run to stop at the next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()


@runtime_checkable
class ModelStoreAPI(Protocol):
    """The model store as nodes see it (implemented by :class:`nodeflow.models.ModelStore`).

    The store owns loaded weights for the life of the process; nodes never copy
    modules into the cache and never build a store of their own.
    """

    #: Whether pickle checkpoints (``.ckpt``/``.bin``) may be read (with ``weights_only=True``).
    allow_pickle: bool
    #: The ``torch.compile`` mode load nodes left at ``auto`` use (``None``: the default, eager path).
    compile: str | None

    def resolve_device(self, device: str | None = None) -> str:
        """The device a load asking for ``device`` (``None``: the store's default) will use."""
        ...

    def default_dtype(self, device: str | None = None) -> str:
        """The precision ``"auto"`` means for a model loaded on ``device`` (``fp32``/``fp16``/``bf16``)."""
        ...

    def load_sd(self, path: str | Path, dtype: str | None = None, device: str | None = None,
                prediction_type: str | None = None) -> Any:
        """Load (once) the Stable Diffusion model at ``path`` (a folder, a file, or ``"default"``).

        ``prediction_type`` overrides the model's (``epsilon``, ``v_prediction``, ``sample``).
        """
        ...

    def derived(self, key: tuple[Any, ...], build: Callable[[], T]) -> T:
        """The derived model under ``key`` (a LoRA merge...), built by ``build`` only the first time."""
        ...


@dataclass
class Context:
    """What a running node may use (see the module docstring)."""

    node_id: str
    node_type: str
    model_store: ModelStoreAPI | None = None
    paths: PathResolver = field(default_factory=PathResolver)
    output_dir: Path = Path("outputs")
    graph_source: Callable[[], dict[str, Any]] | None = None
    emit: Callable[[Event], None] | None = None
    cancel: CancelToken | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def models(self) -> ModelStoreAPI:
        """The model store; a clear error when the run was started without one."""
        if self.model_store is None:
            raise NodeflowError(ErrorInfo("no_model_store", f"'{self.node_type}' needs a model store, and this run has none"
                                          " (pass models= to the Executor)", self.node_id))
        return self.model_store

    @property
    def graph(self) -> dict[str, Any] | None:
        """The graph document being run, as JSON data (e.g. to embed in a saved PNG)."""
        return self.graph_source() if self.graph_source is not None else None

    def progress(self, value: float, max: float, **info: Any) -> None:
        """Report progress inside the node (e.g. denoise step ``value`` of ``max``); checks cancellation.

        ``info`` adds details to the event (a training loss...).
        """
        if self.emit is not None:
            self.emit(Event(EventType.PROGRESS, self.node_id, {"value": value, "max": max, **info}))
        self.check_cancelled()

    def preview(self, image: Any) -> None:
        """Offer a cheap preview (a PIL image) of the work in progress."""
        if self.emit is not None:
            self.emit(Event(EventType.PREVIEW, self.node_id, {"image": image}))

    def check_cancelled(self) -> None:
        """Raise :class:`~nodeflow.errors.Cancelled` if the run was cancelled."""
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled(self.node_id)

    def add_output(self, path: Path | str, kind: str = "image", **info: Any) -> None:
        """Record a file this node wrote (it is reported as a run output, cached runs included)."""
        self.outputs.append({"node": self.node_id, "path": str(path), "kind": kind, **info})
        if self.emit is not None:
            self.emit(Event(EventType.OUTPUT, self.node_id, {"path": str(path), "kind": kind, **info}))


__all__ = ["CancelToken", "Context", "ModelStoreAPI"]
