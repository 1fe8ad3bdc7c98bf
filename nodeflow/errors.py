"""Errors as values: a code, a node id, an input name and a human sentence.

Every problem nodeflow reports to a user (invalid graph, failing node, broken plugin)
is an :class:`ErrorInfo`. Exceptions carry a list of them so that the CLI, the server
and tests all see the same structured data instead of parsing messages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorInfo:
    """One problem: a stable ``code``, a sentence, and where it is (node id, input name)."""

    code: str
    message: str
    node: str | None = None
    input: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form used by ``--json`` output and the server."""
        return asdict(self)

    def __str__(self) -> str:
        where = ""
        if self.node is not None:
            where = f"node {self.node}" + (f", input '{self.input}'" if self.input else "")
            where = f"[{where}] "
        return f"{where}{self.message} ({self.code})"


class NodeflowError(Exception):
    """Base class: an exception that carries one or more :class:`ErrorInfo`."""

    def __init__(self, errors: list[ErrorInfo] | ErrorInfo):
        self.errors = [errors] if isinstance(errors, ErrorInfo) else list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


class GraphInvalid(NodeflowError):
    """The graph document failed validation; ``errors`` lists every problem found."""


class NodeFailed(NodeflowError):
    """A node raised while running. ``errors[0]`` names the node; ``__cause__`` is the original."""


class Cancelled(NodeflowError):
    """The run was cancelled (between nodes or inside a long node)."""

    def __init__(self, node: str | None = None):
        super().__init__(ErrorInfo("cancelled", "the run was cancelled", node=node))


class RegistryError(NodeflowError):
    """A node pack could not be loaded or registered an id twice."""


class UsageError(Exception):
    """Bad command-line usage that argparse cannot catch (the CLI exits 2)."""
