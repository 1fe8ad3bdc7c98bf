"""The JSON shapes of the API: request bodies, responses and websocket messages.

Handlers build their responses from these models and the OpenAPI document is
generated from the same models, so the document cannot drift from what is sent.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..events import NodeStatus, RunStatus
from ..graph import FORMAT, VERSION
from ..node import NodeSchema
from ..types import LITERAL_TYPES

#: The final run statuses.
FINISHED: frozenset[RunStatus] = frozenset(s for s in RunStatus if s.final)


class ErrorModel(BaseModel):
    """One structured problem (the JSON form of :class:`nodeflow.errors.ErrorInfo`)."""

    code: str
    message: str
    node: str | None = None
    input: str | None = None


class ErrorBody(BaseModel):
    """Every non-2xx answer: a sentence, a stable code and, for invalid graphs, every problem found."""

    error: str
    code: str
    errors: list[ErrorModel] = Field(default_factory=list)


class RunRequest(BaseModel):
    """Body of ``POST /api/runs``: a graph document or a saved workflow's name, plus graph inputs."""

    model_config = ConfigDict(extra="forbid")

    graph: dict[str, Any] | None = None
    workflow: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict, description="exposed graph inputs by name, or NODE_ID.INPUT")

    @model_validator(mode="after")
    def _one_source(self) -> RunRequest:
        if (self.graph is None) == (self.workflow is None):
            raise ValueError("give exactly one of 'graph' and 'workflow'")
        return self


class RunCreated(BaseModel):
    """Answer to an accepted run: its id and its place in the queue (0 = next)."""

    id: str
    status: RunStatus
    position: int | None = None


class Progress(BaseModel):
    """Progress inside a node: ``value`` of ``max`` (e.g. denoise steps), and what else it reported (``info``: a training loss)."""

    value: float
    max: float
    info: dict[str, float | int | str] = Field(default_factory=dict)


class NodeState(BaseModel):
    """How one node of a run fared (``running`` and ``progress`` only while the run is going)."""

    type: str | None = None
    status: NodeStatus
    seconds: float | None = None
    progress: Progress | None = None


class OutputInfo(BaseModel):
    """A file a run wrote. ``url`` serves it (add ``?token=`` when the server has a token)."""

    model_config = ConfigDict(extra="allow")

    node: str | None = None
    kind: str = "file"
    path: str = Field(description="relative to the outputs folder: RUN_ID/FILE")
    url: str | None = None


class RunSummary(BaseModel):
    """A run as the history lists it: counts of its nodes, not the nodes themselves. Times are Unix seconds.

    This is the one definition of a run's fields: the run store builds these models
    straight from its rows (:mod:`nodeflow.server.store`), so nothing is copied field by field.
    """

    id: str
    number: int = Field(0, description="the run's number in the order runs were accepted (the queue's order)")
    status: RunStatus
    created: float
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None
    workflow: str | None = None
    name: str | None = Field(None, description="the graph's meta.name, if it has one")
    inputs: dict[str, Any] = Field(default_factory=dict)
    position: int | None = Field(None, description="place in the queue while queued (0 = next)")
    attempts: int = 0
    node_total: int = Field(0, description="how many nodes the graph has")
    node_counts: dict[str, int] = Field(
        default_factory=dict, description="how many nodes are (or ended) in each node status; statuses with none are left out"
    )
    outputs: list[OutputInfo] = Field(default_factory=list)
    error: str | None = Field(None, description="the first error's sentence, if any")
    errors: list[ErrorModel] = Field(default_factory=list)
    worker: str | None = Field(None, description="the backend worker that ran it (its last attempt), once it has ended")


class RunDetail(RunSummary):
    """One run with every node's state, its readable values and the graph it ran (inputs already applied)."""

    values: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="readable results (numbers, text, booleans) of the run's output nodes, by node and output"
    )
    nodes: dict[str, NodeState] = Field(default_factory=dict)
    graph: dict[str, Any] = Field(default_factory=dict)


class RunList(BaseModel):
    """A page of the history, newest first."""

    runs: list[RunSummary]
    total: int
    limit: int
    offset: int


class RunRef(BaseModel):
    """A run id and its status after an action on it."""

    id: str
    status: RunStatus | Literal["deleted"]


class WorkflowInfo(BaseModel):
    """A saved workflow. Built-in ones (the repository's ``workflows/``) are read-only."""

    name: str
    source: Literal["builtin", "user"]
    read_only: bool
    description: str = ""
    inputs: dict[str, dict[str, Any]] = Field(default_factory=dict, description="exposed graph inputs")
    error: str | None = Field(None, description="why the file could not be read, if it could not")


class WorkflowList(BaseModel):
    """Every workflow, user ones first, each name once."""

    workflows: list[WorkflowInfo]


class WorkflowSaved(WorkflowInfo):
    """Answer to a save: the workflow, and what validation says about it now (saving never needs a valid graph)."""

    problems: list[ErrorModel] = Field(default_factory=list)


class UploadInfo(BaseModel):
    """A stored upload. Under ``nodeflow serve``, ``sd.load_image``'s ``path`` input takes its ``name``."""

    name: str
    path: str = Field(description="where the file is, relative to the uploads folder (the same as name)")
    url: str
    bytes: int
    width: int | None = None
    height: int | None = None
    format: str | None = None


class UploadList(BaseModel):
    """The uploaded images, newest first."""

    uploads: list[UploadInfo]


class QueueState(BaseModel):
    """How many runs wait and which ones run."""

    queued: int
    running: str | None = Field(None, description="the run that started first among those running (null when none)")
    running_ids: list[str] = Field(default_factory=list, description="every running run, oldest first")
    capacity: int = Field(1, description="how many runs may run at once (the server's runner threads)")
    waiting: str | None = Field(None, description="why queued runs are not starting although a runner is free, if so")


class ModelHeld(BaseModel):
    """A model a worker holds loaded (by file or folder name: answers carry no server path)."""

    name: str
    dtype: str | None = None
    device: str | None = None


class WorkerInfo(BaseModel):
    """One backend worker as ``GET /api/system`` shows it."""

    index: int
    name: str = Field(description="``local:N``, or ``INDEX@HOST:PID`` on Ray")
    state: Literal["starting", "idle", "busy", "recovering", "dead"]
    run: str | None = Field(None, description="the run it is running")
    busy_seconds: float | None = None
    models: list[ModelHeld] = Field(default_factory=list)
    memory: dict[str, int | None] = Field(default_factory=dict, description="bytes: rss, and cuda_allocated/cuda_reserved on a GPU")
    detail: str | None = Field(None, description="why it takes no run now (starting, restarting, gone)")


class SystemInfo(BaseModel):
    """Versions, device, memory, queue and cache: enough to answer "what is this server doing"."""

    versions: dict[str, str | None]
    backend: str
    device: dict[str, Any]
    memory: dict[str, int | None]
    queue: QueueState
    workers: list[WorkerInfo] = Field(default_factory=list)
    cache: dict[str, Any]
    nodes: int
    plugin_errors: int


class CacheStats(BaseModel):
    """The cache's counters after an action."""

    cache: dict[str, Any]


class GraphFormat(BaseModel):
    """The graph document format this server writes (older versions are read and migrated)."""

    format: str
    version: int


class Catalogue(BaseModel):
    """Node schemas, the type compatibility table, the vocabulary (see ``Registry.catalogue``) and the graph format.

    Besides the run vocabulary of ``Registry.catalogue`` (event types, node and run
    statuses), the server's ``vocabulary`` lists ``literal_types`` (socket types whose
    values can be typed in) and ``messages`` (its websocket message types), so that a
    client keeps no copies of them.
    """

    nodes: dict[str, NodeSchema]
    types: dict[str, Any]
    vocabulary: dict[str, list[str]] = Field(description="event types, node statuses and run statuses: the only spellings")
    errors: list[ErrorModel]
    graph: GraphFormat


# -- websocket messages -----------------------------------------------------------
class WsMessage(BaseModel):
    """Every websocket message has a ``type`` and the ``run`` it is about (``null`` for none)."""

    type: str
    run: str | None


class WsQueue(WsMessage):
    """``queue``: the queue changed (also sent once on connect)."""

    type: Literal["queue"] = "queue"
    queued: int
    running: str | None = None
    running_ids: list[str] = Field(default_factory=list)


class WsRunStarted(WsMessage):
    """``run_started``: the worker took the run; ``nodes`` is how many nodes the plan holds."""

    type: Literal["run_started"] = "run_started"
    nodes: int | None = None


class WsNode(WsMessage):
    """``node_started``, ``node_cached``, ``node_finished`` (with ``seconds``), ``node_failed`` (with ``error``), ``node_cancelled``."""

    type: Literal["node_started", "node_cached", "node_finished", "node_failed", "node_cancelled"]
    node: str
    node_type: str | None = None
    seconds: float | None = None
    error: ErrorModel | None = None


class WsRunCancelling(WsMessage):
    """``run_cancelling``: a cancel of the running run was requested; at most one more step's messages follow."""

    type: Literal["run_cancelling"] = "run_cancelling"


class WsProgress(WsMessage):
    """``progress``: step ``value`` of ``max`` inside ``node``; ``info`` holds what else the node reported (a training ``loss``)."""

    type: Literal["progress"] = "progress"
    node: str | None = None
    value: float
    max: float
    info: dict[str, float | int | str] = Field(default_factory=dict)


class WsPreview(WsMessage):
    """``preview``: a PNG data URL of the work in progress (at most one per ``preview_interval`` per run)."""

    type: Literal["preview"] = "preview"
    node: str | None = None
    image: str


class WsOutput(WsMessage):
    """``output``: a node wrote a file."""

    type: Literal["output"] = "output"
    node: str | None = None
    kind: str
    url: str | None = None


class WsRunFinished(WsMessage):
    """``run_succeeded``, ``run_failed``, ``run_cancelled``: the run ended; its record is final."""

    type: Literal["run_succeeded", "run_failed", "run_cancelled"]
    seconds: float | None = None
    error: str | None = None
    errors: list[ErrorModel] = Field(default_factory=list)
    outputs: list[OutputInfo] = Field(default_factory=list)
    values: dict[str, dict[str, Any]] = Field(default_factory=dict)


WS_MESSAGES: list[type[WsMessage]] = [
    WsQueue, WsRunStarted, WsNode, WsProgress, WsPreview, WsOutput, WsRunCancelling, WsRunFinished,
]


def client_catalogue(catalogue: dict[str, Any]) -> Catalogue:
    """``Registry.catalogue()`` plus what a client of this server also shares with it (see :class:`Catalogue`)."""
    messages = [t for m in WS_MESSAGES for t in get_args(m.model_fields["type"].annotation)]
    vocabulary = {**catalogue["vocabulary"], "literal_types": sorted(LITERAL_TYPES), "messages": messages}
    return Catalogue.model_validate({**catalogue, "vocabulary": vocabulary, "graph": {"format": FORMAT, "version": VERSION}})
