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
are shared through the cache). A node that is not pure (draws randomness without a
seed, reuses files it wrote) passes ``pure=False`` and defines
``fingerprint(self, ctx, **inputs) -> str``; the string joins its cache key. An input
that names a file (``Input("STRING", file="lora")``) needs neither: the planner adds
the file's stamp to the key, and validation reports a missing file before anything runs.

A node may also check its own literal values before anything runs, as ComfyUI's
``VALIDATE_INPUTS`` does: ``validate_inputs(self, check, **literals)`` returns ``None``,
a sentence, or a list of sentences / :class:`~nodeflow.errors.ErrorInfo`; linked inputs
arrive as ``None``, and ``check.upstream(name)`` gives the literal inputs of the node
feeding ``name`` (see :class:`ValidationContext`). Its problems join the all-at-once report.

Renaming an input or output keeps old graphs working with ``aliases=("old_name",)``.

The declarations are pydantic models (:class:`InputSpec`, :class:`OutputSpec`,
:class:`NodeSchema`), so a node's schema exports as JSON for the editor and
``nodeflow nodes --json``; literal values are checked with pydantic and its errors are
translated into nodeflow's own codes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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

from .context import CancelToken, Context, ModelStoreAPI
from .errors import ErrorInfo
from .events import Event, EventType
from .files import KINDS
from .types import BOOL, FLOAT, INT, LITERAL_TYPES, STRING, socket_type_of

_MISSING: Any = object()
_ID_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
_SEMVER_RE = re.compile(r"^\d+\.\d+\.\d+$")


class InputSpec(BaseModel):
    """One declared input. ``widget`` hints the editor (``seed``, ``image``, ``model``, ``file``).

    ``file`` names the kind of file a ``STRING`` input names (``image``, ``lora``,
    ``embedding``, ``checkpoint``...; see :data:`nodeflow.files.KINDS`): validation checks
    the file exists and the planner keys the cache on its stamp.
    """

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
    file: str | None = None
    aliases: list[str] = Field(default_factory=list)
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
    aliases: list[str] = Field(default_factory=list)
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
        for spec in self.inputs:
            self._inputs_by_name.update(dict.fromkeys(spec.aliases, spec))
        for out in self.outputs:
            self._outputs_by_name.update(dict.fromkeys(out.aliases, out))

    def input(self, name: str) -> InputSpec | None:
        """The input called ``name`` (or once called so: an alias), if declared."""
        return self._inputs_by_name.get(name)

    def output(self, name: str) -> OutputSpec | None:
        """The output called ``name`` (or once called so: an alias), if declared."""
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
    file: str | None = None,
    aliases: tuple[str, ...] = (),
    description: str = "",
    display_name: str | None = None,
) -> InputSpec:
    """Declare an input. ``type`` is a socket type name (``"LATENTS"``) or a Python class.

    ``file`` (for ``STRING`` inputs) is the kind of file the value names; ``aliases``
    are former names, so graphs saved before a rename still load.
    """
    if file is not None and file not in KINDS:
        raise ValueError(f"file={file!r} is not a known kind of file ({', '.join(sorted(KINDS))})")
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
        file=file,
        aliases=list(aliases),
        description=description,
        display_name=display_name,
    )


def Output(  # noqa: N802
    type: Any, *, description: str = "", display_name: str | None = None, aliases: tuple[str, ...] = ()
) -> OutputSpec:
    """Declare an output. ``type`` is a socket type name or a Python class; ``aliases`` are former names."""
    return OutputSpec(type=_type_name(type), description=description, display_name=display_name, aliases=list(aliases))


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
        inputs, outputs = _declared(cls)
        _check_declaration(id, cls, inputs, pure)
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


def _declared(cls: type) -> tuple[list[InputSpec], list[OutputSpec]]:
    """The ``Input``/``Output`` class attributes of ``cls``, named after their attributes, in order."""
    inputs, outputs = [], []
    for name, value in vars(cls).items():
        if isinstance(value, InputSpec):
            inputs.append(value.model_copy(update={"name": name}))
        elif isinstance(value, OutputSpec):
            outputs.append(value.model_copy(update={"name": name}))
    return inputs, outputs


def _check_declaration(id: str, cls: type, inputs: list[InputSpec], pure: bool) -> None:
    """Refuse a node class that could not run as declared (raised at import, naming the node)."""
    if not callable(getattr(cls, "run", None)):
        raise TypeError(f"node {id}: class {cls.__name__} needs a run(self, ctx, **inputs) method")
    if not pure and not callable(getattr(cls, "fingerprint", None)):
        raise TypeError(f"node {id}: pure=False needs a fingerprint(self, ctx, **inputs) method")
    for spec in inputs:
        if spec.file is not None and spec.type != STRING:
            raise TypeError(f"node {id}: input '{spec.name}' names a file, so it must be a STRING, not {spec.type}")
        if spec.has_default and spec.accepts_literal:
            _, err = spec.check_literal(spec.default)
            if err is not None:
                raise ValueError(f"node {id}: default of input '{spec.name}': {err.message}")


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


@dataclass(frozen=True)
class ValidationContext:
    """What a node's ``validate_inputs`` hook may ask about the graph around it.

    ``upstream(name)`` gives the literal inputs (normalised, defaults filled) of the
    node linked into input ``name``, or ``None`` when ``name`` is not linked; enough to
    check a combination across nodes (img2img's strength against the scheduler's steps).
    ``paths`` resolves file names as the run will.

    Checks that span several nodes (is this conditioning encoded by the model whose UNet
    it meets?) walk further up: ``source(name)`` is the same context for the node linked
    into ``name``, with its ``node_type``, its ``literals`` and ``links`` (its linked
    inputs' socket types).
    """

    node_id: str
    upstream_literals: Callable[[str], dict[str, Any] | None]
    paths: Any = None
    node_type: str = ""
    literals: Mapping[str, Any] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)
    sources: Callable[[str], ValidationContext | None] | None = None

    def upstream(self, name: str) -> dict[str, Any] | None:
        """The literal inputs of the node feeding input ``name`` (``None`` if it is not linked)."""
        return self.upstream_literals(name)

    def source(self, name: str) -> ValidationContext | None:
        """The context of the node linked into input ``name`` (``None`` when it is not linked)."""
        return self.sources(name) if self.sources is not None else None


__all__ = [
    "Input", "Output", "node", "Context", "Event", "EventType", "CancelToken", "InputSpec", "ModelStoreAPI", "OutputSpec",
    "NodeSchema", "ValidationContext", "schema_of", "is_node_class",
]
