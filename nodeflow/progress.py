"""Terminal progress for headless runs: tqdm bars on stderr fed by executor events."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

from .node import Event


class ProgressPrinter:
    """An ``on_event`` callback drawing one bar over nodes and one inside long nodes."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._nodes: Any = None
        self._steps: Any = None
        self._steps_node: str | None = None

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_steps()
        if self._nodes is not None:
            self._nodes.close()

    def __call__(self, event: Event) -> None:
        if not self.enabled:
            return
        kind = event.type
        if kind == "run_started":
            self._nodes = tqdm(total=event.data["nodes"], desc="nodes", unit="node", file=sys.stderr, leave=False)
        elif kind == "node_started" and self._nodes is not None:
            self._nodes.set_postfix_str(f"{event.node} {event.data.get('type', '')}")
        elif kind in ("node_finished", "node_cached") and self._nodes is not None:
            self._close_steps()
            self._nodes.update(1)
        elif kind == "progress":
            self._progress(event)

    def _progress(self, event: Event) -> None:
        """Move the bar of the node reporting steps (a new bar for a new node); extra numbers (a loss) go after it."""
        if self._steps is None or self._steps_node != event.node:
            self._close_steps()
            self._steps = tqdm(total=event.data["max"], desc=f"  node {event.node}", unit="step", file=sys.stderr, leave=False)
            self._steps_node = event.node
        self._steps.n = event.data["value"]
        extra = {k: v for k, v in event.data.items() if k not in ("value", "max") and isinstance(v, (int, float))}
        if extra:  # a training node's loss, say
            self._steps.set_postfix({k: f"{v:.4g}" for k, v in extra.items()}, refresh=False)
        self._steps.refresh()

    def _close_steps(self) -> None:
        if self._steps is not None:
            self._steps.close()
            self._steps = None
