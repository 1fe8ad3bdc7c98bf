"""The public node API: what a node-pack author writes.

A node is a class decorated with :func:`node`. Its inputs and outputs are class
attributes made with :func:`Input` and :func:`Output`; its work is one ``run`` method
that receives a :class:`Context` and the input values as keyword arguments and returns
a dict of outputs (or the bare value when there is a single output)::

    from nodeflow.node import Input, Output, node

    @node("example.add", category="math", version="1.0.0")
    class Add:
        \"\"\"Add two numbers.\"\"\"
        a = Input("FLOAT", default=0.0)
        b = Input("FLOAT", default=0.0, min=-100, max=100)
        total = Output("FLOAT")

        def run(self, ctx, a, b):
            return a + b

Nodes are pure: same inputs, same outputs, and never mutate an input in place (values
are shared through the cache). A node that is not pure (reads a file that may change,
draws randomness without a seed) passes ``pure=False`` and defines
``fingerprint(self, ctx, **inputs) -> str``; the string joins its cache key.

The declarations are pydantic models (:class:`InputSpec`, :class:`OutputSpec`,
:class:`NodeSchema`), so a node's schema exports as JSON for the editor and
``nodeflow nodes --json``; literal values are checked with pydantic and its errors are
translated into nodeflow's own codes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from .errors import Cancelled, ErrorInfo
from .types import BOOL, FLOAT, INT, LITERAL_TYPES, STRING, socket_type_of

_MISSING: Any = object()
_ID_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
_SEMVER_RE = re.compile(r"^\d+\.\d+\.\d+$")


class InputSpec(BaseModel):
    """One declared input. ``widget`` hints the editor (``seed``, ``image``, ``model``, ``file``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    type: str
    default: Any = None
    has_default: bool = False
    optional: bool = False
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: list[Any] | None = None
    multiline: bool = False
    widget: str | None = None
    description: str = ""
    display_name: str | None = None

    _adapter: TypeAdapter[Any] | None = PrivateAttr(default=None)

    @property
    def required(self) -> bool:
        """True when the graph must give a value or a link."""
        return not (self.has_default or self.optional)

    @property
    def accepts_literal(self) -> bool:
        """Whether a value may be typed in (primitives and choice lists) instead of linked."""
        return self.type in LITERAL_TYPES or self.choices is not None

    def check_literal(self, value: Any) -> tuple[Any, ErrorInfo | None]:
        """Validate and normalise a literal with pydantic; translate any error.

        Returns ``(value, None)`` or ``(None, ErrorInfo)`` with code ``value_out_of_range``
        or ``invalid_value`` (``node`` is left for the caller to fill in).
        """
        if self._adapter is None:
            self._adapter = TypeAdapter(self._pydantic_type())
        try:
            checked = self._adapter.validate_python(value)
        except ValidationError as exc:
            return None, _translate(exc, self, value)
        return (float(checked) if self.type == FLOAT and self.choices is None else checked), None

    def _pydantic_type(self) -> Any:
        if self.choices is not None:
            return Literal[tuple(self.choices)]
        bounds = Field(ge=self.min, le=self.max)
        base: Any = {INT: StrictInt, FLOAT: StrictFloat | StrictInt, STRING: StrictStr, BOOL: StrictBool}[self.type]
        return Annotated[base, bounds] if self.type in (INT, FLOAT) else base


def _translate(exc: ValidationError, spec: InputSpec, value: Any) -> ErrorInfo:
    """Turn pydantic's error list into one nodeflow sentence (never dump pydantic text)."""
    kind = exc.errors()[0]["type"]
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    if kind in ("greater_than_equal", "less_than_equal"):
        lo = "-inf" if spec.min is None else f"{spec.min:g}"
        hi = "inf" if spec.max is None else f"{spec.max:g}"
        return ErrorInfo("value_out_of_range", f"{shown} is outside the allowed range [{lo}, {hi}]", input=spec.name)
    if spec.choices is not None:
        options = ", ".join(repr(c) for c in spec.choices[:12])
        return ErrorInfo("invalid_value", f"{shown} is not one of the choices: {options}", input=spec.name)
    expected = {INT: "an integer", FLOAT: "a number", STRING: "a string", BOOL: "true or false"}.get(spec.type, spec.type)
    return ErrorInfo("invalid_value", f"{shown} is not {expected}", input=spec.name)


class OutputSpec(BaseModel):
    """One declared output."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    type: str
    description: str = ""
    display_name: str | None = None


class NodeSchema(BaseModel):
    """Everything the editor, the validator and the executor know about a node type."""

    id: str
    display_name: str
    category: str
    description: str
    version: str
    inputs: list[InputSpec]
    outputs: list[OutputSpec]
    output_node: bool = False
    pure: bool = True
    pack: str = ""

    # Lookups by name happen per link during validation: keep them O(1) for big graphs.
    _inputs_by_name: dict[str, InputSpec] = PrivateAttr(default_factory=dict)
    _outputs_by_name: dict[str, OutputSpec] = PrivateAttr(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        self._inputs_by_name = {i.name: i for i in self.inputs}
        self._outputs_by_name = {o.name: o for o in self.outputs}

    def input(self, name: str) -> InputSpec | None:
        """The input called ``name``, if declared."""
        return self._inputs_by_name.get(name)

    def output(self, name: str) -> OutputSpec | None:
        """The output called ``name``, if declared."""
        return self._outputs_by_name.get(name)


def Input(  # noqa: N802 - reads as a declaration, like pydantic's Field
    type: Any,
    *,
    default: Any = _MISSING,
    optional: bool = False,
    min: float | None = None,
    max: float | None = None,
    step: float | None = None,
    choices: list[Any] | None = None,
    multiline: bool = False,
    widget: str | None = None,
    description: str = "",
    display_name: str | None = None,
) -> InputSpec:
    """Declare an input. ``type`` is a socket type name (``"LATENTS"``) or a Python class."""
    return InputSpec(
        type=_type_name(type),
        default=None if default is _MISSING else default,
        has_default=default is not _MISSING,
        optional=optional,
        min=min,
        max=max,
        step=step,
        choices=choices,
        multiline=multiline,
        widget=widget,
        description=description,
        display_name=display_name,
    )


def Output(type: Any, *, description: str = "", display_name: str | None = None) -> OutputSpec:  # noqa: N802
    """Declare an output. ``type`` is a socket type name or a Python class."""
    return OutputSpec(type=_type_name(type), description=description, display_name=display_name)


def _type_name(type_: Any) -> str:
    if isinstance(type_, str):
        return type_
    name = socket_type_of(type_)
    if name is None:
        raise TypeError(f"{type_!r} has no socket type; pass a type name such as 'LATENTS'")
    return name


def node(
    id: str,
    *,
    display_name: str | None = None,
    category: str = "misc",
    version: str = "1.0.0",
    description: str | None = None,
    output_node: bool = False,
    pure: bool = True,
) -> Callable[[type], type]:
    """Class decorator that turns a class with ``Input``/``Output`` attributes and ``run`` into a node.

    ``id`` is dotted (``pack.name``); ``version`` is semver and joins the cache key, so
    bump it when the node's results change. ``output_node`` marks sinks (save, preview)
    that a run always computes. ``description`` defaults to the class docstring.
    """
    if not _ID_RE.match(id):
        raise ValueError(f"node id {id!r} must be dotted lower-case, like 'sd.tokenize'")
    if not _SEMVER_RE.match(version):
        raise ValueError(f"node {id}: version {version!r} is not semver (like '1.0.0')")

    def wrap(cls: type) -> type:
        inputs, outputs = [], []
        for name, value in vars(cls).items():
            if isinstance(value, InputSpec):
                inputs.append(value.model_copy(update={"name": name}))
            elif isinstance(value, OutputSpec):
                outputs.append(value.model_copy(update={"name": name}))
        if not callable(getattr(cls, "run", None)):
            raise TypeError(f"node {id}: class {cls.__name__} needs a run(self, ctx, **inputs) method")
        if not pure and not callable(getattr(cls, "fingerprint", None)):
            raise TypeError(f"node {id}: pure=False needs a fingerprint(self, ctx, **inputs) method")
        for spec in inputs:
            if spec.has_default and spec.accepts_literal:
                _, err = spec.check_literal(spec.default)
                if err is not None:
                    raise ValueError(f"node {id}: default of input '{spec.name}': {err.message}")
        doc = (cls.__doc__ or "").strip()
        cls.__nodeflow__ = NodeSchema(  # type: ignore[attr-defined]
            id=id,
            display_name=display_name or _title(cls.__name__),
            category=category,
            description=description if description is not None else doc.split("\n\n")[0].replace("\n", " "),
            version=version,
            inputs=inputs,
            outputs=outputs,
            output_node=output_node,
            pure=pure,
        )
        return cls

    return wrap


def _title(class_name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", class_name)


def schema_of(cls: type) -> NodeSchema:
    """The :class:`NodeSchema` of a decorated node class."""
    schema = getattr(cls, "__nodeflow__", None)
    if not isinstance(schema, NodeSchema):
        raise TypeError(f"{cls!r} is not a node class (decorate it with @node)")
    return schema


def is_node_class(obj: Any) -> bool:
    """Whether ``obj`` is a class decorated with :func:`node`."""
    return isinstance(obj, type) and isinstance(getattr(obj, "__nodeflow__", None), NodeSchema)


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


@dataclass
class Event:
    """Something that happened during a run; the CLI draws it, the server forwards it.

    ``type`` is one of ``run_started``, ``node_started``, ``node_cached``,
    ``node_finished``, ``node_failed``, ``node_skipped``, ``progress``, ``preview``,
    ``output``, ``run_finished``. ``data`` holds the details (``seconds``, ``value`` and
    ``max``, ``image`` (a PIL image) ...).
    """

    type: str
    node: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What a running node may use: progress, previews, cancellation, models, outputs.

    A narrow object on purpose (InvokeAI's lesson): nodes never reach into the server
    or the executor.
    """

    node_id: str
    node_type: str
    models: Any = None
    output_dir: Path = Path("outputs")
    graph_source: Callable[[], dict[str, Any]] | None = None
    emit: Callable[[Event], None] | None = None
    cancel: CancelToken | None = None
    files: list[dict[str, Any]] = field(default_factory=list)

    @property
    def graph(self) -> dict[str, Any] | None:
        """The graph document being run, as JSON data (e.g. to embed in a saved PNG)."""
        return self.graph_source() if self.graph_source is not None else None

    def progress(self, value: float, max: float) -> None:
        """Report progress inside the node (e.g. denoise step ``value`` of ``max``); checks cancellation."""
        if self.emit is not None:
            self.emit(Event("progress", self.node_id, {"value": value, "max": max}))
        self.check_cancelled()

    def preview(self, image: Any) -> None:
        """Offer a cheap preview (a PIL image) of the work in progress."""
        if self.emit is not None:
            self.emit(Event("preview", self.node_id, {"image": image}))

    def check_cancelled(self) -> None:
        """Raise :class:`~nodeflow.errors.Cancelled` if the run was cancelled."""
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled(self.node_id)

    def add_output(self, path: Path | str, kind: str = "image", **info: Any) -> None:
        """Record a file this node wrote (it is reported as a run output, cached runs included)."""
        self.files.append({"node": self.node_id, "path": str(path), "kind": kind, **info})
        if self.emit is not None:
            self.emit(Event("output", self.node_id, {"path": str(path), "kind": kind, **info}))


__all__ = [
    "Input", "Output", "node", "Context", "Event", "CancelToken", "InputSpec", "OutputSpec",
    "NodeSchema", "schema_of", "is_node_class",
]
