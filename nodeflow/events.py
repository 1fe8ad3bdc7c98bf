"""The run vocabulary: event types, node statuses, run statuses, as enums.

These are the only spellings. The CLI draws events, the server forwards them on its
websocket and stores statuses, and the editor reads :func:`vocabulary` from
``GET /api/nodes`` instead of keeping its own copy. The enums are ``str`` subclasses,
so they serialise to JSON as their plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class EventType(str, Enum):
    """What an :class:`Event` reports."""

    RUN_STARTED = "run_started"
    NODE_STARTED = "node_started"
    NODE_CACHED = "node_cached"
    NODE_FINISHED = "node_finished"
    NODE_FAILED = "node_failed"
    NODE_CANCELLED = "node_cancelled"
    PROGRESS = "progress"
    PREVIEW = "preview"
    OUTPUT = "output"
    RUN_FINISHED = "run_finished"

    def __str__(self) -> str:
        return self.value


class NodeStatus(str, Enum):
    """How one node of a run fared."""

    PENDING = "pending"  #: planned, not reached yet
    SKIPPED = "skipped"  #: planned, never reached: the run failed or was cancelled first
    RUNNING = "running"
    RAN = "ran"
    CACHED = "cached"  #: its value came from the cache
    NOT_NEEDED = "not_needed"  #: planned, but everything downstream of it was cached
    FAILED = "failed"
    CANCELLED = "cancelled"  #: it was running when the run was cancelled
    MUTED = "muted"  #: muted in the graph, or needs a muted node's output
    BYPASSED = "bypassed"  #: bypassed in the graph: its inputs were passed through

    def __str__(self) -> str:
        return self.value


class RunStatus(str, Enum):
    """Where a run is; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """Whether the run has ended."""
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)

    def __str__(self) -> str:
        return self.value


#: The node status each node event implies.
STATUS_OF_EVENT: dict[EventType, NodeStatus] = {
    EventType.NODE_STARTED: NodeStatus.RUNNING,
    EventType.NODE_CACHED: NodeStatus.CACHED,
    EventType.NODE_FINISHED: NodeStatus.RAN,
    EventType.NODE_FAILED: NodeStatus.FAILED,
    EventType.NODE_CANCELLED: NodeStatus.CANCELLED,
}


@dataclass
class Event:
    """Something that happened during a run; the CLI draws it, the server forwards it.

    ``data`` holds the details (``seconds``, ``value`` and ``max``, ``image`` (a PIL
    image), ``error``...).
    """

    type: EventType
    node: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def vocabulary() -> dict[str, list[str]]:
    """Every spelling, for clients: event types, node statuses, run statuses (final ones apart)."""
    return {
        "events": [e.value for e in EventType],
        "node_statuses": [s.value for s in NodeStatus],
        "run_statuses": [s.value for s in RunStatus],
        "final_run_statuses": [s.value for s in RunStatus if s.final],
    }


__all__ = ["STATUS_OF_EVENT", "Event", "EventType", "NodeStatus", "RunStatus", "vocabulary"]
