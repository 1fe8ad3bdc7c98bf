"""The graph document: one JSON format for the editor and for headless runs.

::

    {"format": "nodeflow/graph", "version": 2,
     "nodes": {"5": {"type": "sd.denoise",
                     "inputs": {"steps": 20, "latents": {"node": "4", "output": "latents"}},
                     "ui": {"pos": [400, 120], "title": "Sampler"}}},
     "inputs": {"prompt": {"node": "2", "input": "text"}},
     "meta": {"name": "txt2img", "description": "..."}}

An input value is a literal, or a link ``{"node": id, "output": name}``. ``ui`` is
for the editor and ignored by the executor. Graph ``inputs`` expose chosen node inputs
by name, so a saved workflow runs with ``--set prompt=...`` alone.

Version 2 added, with ComfyUI's meanings:

* ``"mode"`` on a node: ``"active"`` (the default, not written), ``"muted"`` (it does
  not run, nor does anything that needs it) or ``"bypassed"`` (each of its outputs
  passes through its first input of the same type);
* ``"subgraphs"``: named graphs used as nodes of type ``"subgraph:NAME"``. A subgraph
  has its own ``nodes``, ``inputs`` (each feeding one or more inner inputs) and
  ``outputs`` (each an inner node's output). :mod:`nodeflow.expand` flattens them
  before validation; inner nodes are then named ``outer_id/inner_id``.

Version 1 documents are version 2 documents without those fields.

Parsing never raises anything but :class:`~nodeflow.errors.GraphInvalid` with
structured errors; saving is byte-stable (sorted keys, two-space indent).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SerializerFunctionWrapHandler, ValidationError, model_serializer

from .errors import ErrorInfo, GraphInvalid

FORMAT = "nodeflow/graph"
VERSION = 2
#: A node of type ``"subgraph:NAME"`` runs the document's subgraph ``NAME``.
SUBGRAPH_PREFIX = "subgraph:"

#: version -> function turning a raw document of that version into the next version.
#: Loading applies them in order until ``VERSION``; add one here when the format changes.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: lambda doc: doc,  # version 2 only added optional fields (node modes, subgraphs)
}


class NodeMode(str, Enum):
    """Whether a node runs (see the module docstring)."""

    ACTIVE = "active"
    MUTED = "muted"
    BYPASSED = "bypassed"

    def __str__(self) -> str:
        return self.value


class NodeDoc(BaseModel):
    """One node in a graph: its type id, its input values or links, its mode and editor hints."""

    model_config = ConfigDict(extra="forbid")

    type: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    mode: NodeMode = NodeMode.ACTIVE
    ui: dict[str, Any] = Field(default_factory=dict)

    @model_serializer(mode="wrap")
    def _drop_default_mode(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.mode is NodeMode.ACTIVE:
            data.pop("mode", None)  # keeps version-1 style documents byte-stable
        return data

    @property
    def subgraph(self) -> str | None:
        """The subgraph name when this node is a subgraph instance."""
        return self.type[len(SUBGRAPH_PREFIX):] if self.type.startswith(SUBGRAPH_PREFIX) else None


class GraphInput(BaseModel):
    """A named graph input: it sets ``input`` of node ``node``."""

    model_config = ConfigDict(extra="forbid")

    node: str
    input: str
    description: str = ""


class Target(BaseModel):
    """An inner node's input that a subgraph input feeds."""

    model_config = ConfigDict(extra="forbid")

    node: str
    input: str


class SubgraphInput(BaseModel):
    """A subgraph's input: the inner inputs it sets."""

    model_config = ConfigDict(extra="forbid")

    targets: list[Target]
    description: str = ""


class SubgraphOutput(BaseModel):
    """A subgraph's output: an inner node's output."""

    model_config = ConfigDict(extra="forbid")

    node: str
    output: str
    description: str = ""


class SubgraphDoc(BaseModel):
    """A reusable graph used as a node: its nodes and the sockets it shows outside."""

    model_config = ConfigDict(extra="forbid")

    nodes: dict[str, NodeDoc] = Field(default_factory=dict)
    inputs: dict[str, SubgraphInput] = Field(default_factory=dict)
    outputs: dict[str, SubgraphOutput] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)


class GraphDoc(BaseModel):
    """A whole graph document (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    version: int = VERSION
    nodes: dict[str, NodeDoc] = Field(default_factory=dict)
    inputs: dict[str, GraphInput] = Field(default_factory=dict)
    subgraphs: dict[str, SubgraphDoc] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)

    #: The folder of the file this document was loaded from (relative file names in it resolve there first).
    _folder: Path | None = PrivateAttr(default=None)

    @property
    def folder(self) -> Path | None:
        """The folder of the file the document came from (:func:`load_graph`), else ``None``."""
        return self._folder

    @model_serializer(mode="wrap")
    def _drop_empty_subgraphs(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not self.subgraphs:
            data.pop("subgraphs", None)
        return data


def is_link(value: Any) -> bool:
    """Whether an input value is a link ``{"node": id, "output": name}``."""
    return (
        type(value) is dict
        and len(value) == 2
        and type(value.get("node")) is str
        and type(value.get("output")) is str
    )


def parse_graph(data: str | bytes | dict[str, Any], migrations: dict[int, Callable[..., Any]] | None = None) -> GraphDoc:
    """Parse JSON text or an already-decoded object into a :class:`GraphDoc`.

    Older format versions are migrated first. Raises :class:`GraphInvalid` with codes
    ``invalid_json`` (not JSON, or not a graph document), ``unsupported_version``.
    """
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise GraphInvalid(ErrorInfo("invalid_json", f"the graph is not valid JSON: {exc}")) from None
    if not isinstance(data, dict):
        raise GraphInvalid(ErrorInfo("invalid_json", f"a graph must be a JSON object, not {_json_kind(data)}"))
    data = migrate(data, MIGRATIONS if migrations is None else migrations)
    try:
        return GraphDoc.model_validate(data)
    except ValidationError as exc:
        raise GraphInvalid([_document_error(e) for e in exc.errors()]) from None
    except RecursionError:
        raise GraphInvalid(ErrorInfo("invalid_json", "the graph document is nested too deeply")) from None


def migrate(data: dict[str, Any], migrations: dict[int, Callable[[dict[str, Any]], dict[str, Any]]]) -> dict[str, Any]:
    """Bring a raw document to the current :data:`VERSION` using ``migrations``."""
    if data.get("format", FORMAT) != FORMAT:
        raise GraphInvalid(ErrorInfo("invalid_json", f"'format' must be {FORMAT!r}, not {data.get('format')!r}"))
    version = data.get("version", VERSION)
    if type(version) is not int:
        raise GraphInvalid(ErrorInfo("invalid_json", f"'version' must be an integer, not {version!r}"))
    while version < VERSION and version in migrations:
        data = migrations[version](dict(data))
        version = data["version"] = version + 1
    if version != VERSION:
        raise GraphInvalid(
            ErrorInfo(
                "unsupported_version",
                f"graph format version {version} is not supported (this nodeflow reads version {VERSION}"
                + (" and migrates " + ", ".join(map(str, sorted(migrations))) if migrations else "")
                + ")",
            )
        )
    return data


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _document_error(err: Any) -> ErrorInfo:
    """Translate one pydantic error on the document into a sentence with the node id."""
    loc = [str(p) for p in err["loc"]]
    node = loc[1] if len(loc) >= 2 and loc[0] == "nodes" else None
    where = ".".join(loc) or "the document"
    if err["type"] == "missing":
        message = f"'{where}' is required"
    elif err["type"] == "extra_forbidden":
        message = f"'{where}' is not a known field"
    else:
        message = f"'{where}' must be {_expected(err['type'])}, not {_json_kind(err.get('input'))}"
    return ErrorInfo("invalid_json", message, node=node)


def _expected(kind: str) -> str:
    return {
        "dict_type": "an object",
        "model_type": "an object",
        "string_type": "a string",
        "int_type": "an integer",
        "int_parsing": "an integer",
        "list_type": "an array",
    }.get(kind, "of the right kind")


def load_graph(path: str | Path) -> GraphDoc:
    """Read and parse a graph file; the document remembers its folder (:attr:`GraphDoc.folder`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GraphInvalid(ErrorInfo("invalid_json", f"cannot read graph file {path}: {exc}")) from None
    doc = parse_graph(text)
    doc._folder = Path(path).resolve().parent
    return doc


def dump_graph(doc: GraphDoc) -> str:
    """Serialise byte-stably: sorted keys, two-space indent, trailing newline."""
    return json.dumps(doc.model_dump(mode="json"), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def save_graph(doc: GraphDoc, path: str | Path) -> None:
    """Write ``doc`` to ``path`` with :func:`dump_graph`."""
    Path(path).write_text(dump_graph(doc), encoding="utf-8")


def resolve_input(doc: GraphDoc, name: str) -> tuple[str, str]:
    """The ``(node id, input name)`` a graph-input name sets: an exposed input (``prompt``) or ``NODE_ID.INPUT``.

    Raises :class:`GraphInvalid` (code ``unknown_graph_input``) for a name that is neither.
    """
    target = doc.inputs.get(name)
    if target is not None:
        return target.node, target.input
    if "." in name:
        node_id, input_name = name.rsplit(".", 1)
        if node_id in doc.nodes:
            return node_id, input_name
        raise GraphInvalid(ErrorInfo("unknown_graph_input", f"'{name}' refers to node '{node_id}', which is not in the graph"))
    known = ", ".join(sorted(doc.inputs)) or "none"
    raise GraphInvalid(ErrorInfo("unknown_graph_input", f"'{name}' is not a graph input (known: {known})"))


def apply_inputs(doc: GraphDoc, values: dict[str, Any]) -> GraphDoc:
    """A copy of ``doc`` with graph inputs set (names as :func:`resolve_input` reads them).

    Unknown names raise :class:`GraphInvalid` with code ``unknown_graph_input``, all at once.
    """
    if not values:
        return doc
    folder = doc.folder
    doc = doc.model_copy(deep=True)
    doc._folder = folder
    errors = []
    for name, value in values.items():
        try:
            node_id, input_name = resolve_input(doc, name)
        except GraphInvalid as exc:
            errors.extend(exc.errors)
            continue
        doc.nodes[node_id].inputs[input_name] = value
    if errors:
        raise GraphInvalid(errors)
    return doc
