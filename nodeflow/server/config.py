"""Server settings and the refusals that keep a default install safe.

:class:`ServerConfig` is a plain dataclass: the CLI fills it from flags, tests build
one by hand. :func:`check_config` refuses the dangerous combinations before anything
binds a socket (a non-loopback host without a token, an unknown backend).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..budget import DEFAULT_MAX_PIXELS, Budget
from ..files import PathResolver
from ..net import is_loopback
from ..resources import web_dir, workflows_dir


class ServerConfigError(ValueError):
    """The server refuses to start with these settings; the message says why and what to do."""


@dataclass
class ServerConfig:
    """Everything the server needs to know before it starts.

    Size limits are in bytes. ``web_dir`` and ``builtin_workflows_dir`` default to the
    editor and the example workflows shipped with nodeflow (:mod:`nodeflow.resources`).
    ``allow_read`` are extra folders whose files graphs may name (besides the uploads
    folder); ``models`` is the model store (``None``: a default one); ``workers`` is how
    many runs run at once (local: threads splitting the cores, default 1; Ray: worker
    actors, default one per GPU the cluster reports, else one per CPU); ``threads`` pins
    torch's CPU threads per worker; ``gpus_per_worker`` (Ray on GPUs) is each worker's share
    of a GPU (1 by default, 0.5 puts two workers on a GPU). ``model_kinds`` are the model folders by kind
    (:func:`nodeflow.files.kind_folders`: ``--models-dir``, ``--comfy-paths``).
    """

    host: str = "127.0.0.1"
    port: int = 8188
    token: str | None = None
    data_dir: Path = Path("nodeflow-data")
    plugin_dirs: list[Path] = field(default_factory=list)
    backend: str = "local"
    address: str | None = None
    allow_read: list[Path] = field(default_factory=list)
    models: Any = None
    threads: int | None = None
    workers: int | None = None
    model_kinds: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    gpus_per_worker: float | None = None
    web_dir: Path | None = None
    builtin_workflows_dir: Path | None = None
    #: Largest JSON body accepted (a graph, a run request); larger ones get 413 ``too_large``.
    max_json_bytes: int = 2 << 20
    #: Deepest nesting of arrays and objects in a JSON body; deeper gets 400 ``invalid_json``.
    max_json_depth: int = 64
    #: Most nodes in one graph (run or saved workflow); more gets 413 ``graph_too_large``.
    max_graph_nodes: int = 10_000
    max_upload_bytes: int = 25 << 20
    max_upload_pixels: int = 64_000_000
    #: Seconds a connection may take to send a request's headers (also how long an idle connection stays open).
    header_timeout: float = 30.0
    #: Seconds a request may take to send its body; slower ones get 408 ``request_timeout``.
    body_timeout: float = 120.0
    preview_interval: float = 0.25
    #: How many times a run interrupted by a crash is started again before it is marked failed.
    max_attempts: int = 3
    #: Most pixels x batch one node may make (``over_budget`` otherwise); ``None``: no limit. See :mod:`nodeflow.budget`.
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    #: Most estimated peak memory (bytes) of a run whose model is known; ``None`` (default): not checked.
    max_memory: int | None = None
    #: Seconds a graceful stop waits for the running node to notice its cancellation.
    shutdown_grace: float = 10.0

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.plugin_dirs = [Path(p) for p in self.plugin_dirs]
        self.allow_read = [Path(p) for p in self.allow_read]
        self.web_dir = web_dir() if self.web_dir is None else Path(self.web_dir)
        self.builtin_workflows_dir = workflows_dir() if self.builtin_workflows_dir is None else Path(self.builtin_workflows_dir)

    @property
    def loopback(self) -> bool:
        """Whether the server binds to a loopback address only."""
        return is_loopback(self.host)

    @property
    def outputs_dir(self) -> Path:
        """Where each run writes its files, one folder per run id."""
        return self.data_dir / "outputs"

    @property
    def inputs_dir(self) -> Path:
        """Where uploaded images are stored (what load-image nodes read)."""
        return self.data_dir / "inputs"

    @property
    def workflows_dir(self) -> Path:
        """Where saved (user) workflows live."""
        return self.data_dir / "workflows"

    @property
    def database(self) -> Path:
        """The SQLite file holding the queue and the history."""
        return self.data_dir / "nodeflow.sqlite3"

    def budget(self, auto_dtype: str = "fp32") -> Budget:
        """The run budget every graph this server accepts must fit (checked with validation)."""
        return Budget(self.max_pixels, self.max_memory, auto_dtype)

    def paths(self) -> PathResolver:
        """How graphs run by this server find files: confined to the uploads and the ``allow_read`` folders.

        A name outside them is refused without saying whether it exists (the API is not a
        way to probe the server's disk).
        """
        shipped = [self.builtin_workflows_dir.resolve()] if self.builtin_workflows_dir is not None else []
        # The shipped workflows' own files (their example image, embedding) stay readable.
        return PathResolver.create([self.inputs_dir.resolve(), *(p.resolve() for p in self.allow_read)],
                                   kinds={k: [p.resolve() for p in v] for k, v in self.model_kinds.items()},
                                   fallback=shipped, confined=True)


def check_config(config: ServerConfig) -> None:
    """Raise :class:`ServerConfigError` for settings the server must refuse."""
    if not config.loopback and not config.token:
        raise ServerConfigError(
            f"refusing to listen on {config.host!r} without an access token: anyone who can reach this"
            " address could run graphs and read outputs. Pass --token TOKEN (or set NODEFLOW_TOKEN),"
            " or bind to 127.0.0.1."
        )
    if config.backend not in ("local", "ray"):
        raise ServerConfigError(f"unknown backend {config.backend!r} (choose 'local' or 'ray')")
    if config.workers is not None and config.workers < 1:
        raise ServerConfigError(f"--workers must be at least 1, not {config.workers}")
    if config.gpus_per_worker is not None and config.backend != "ray":
        raise ServerConfigError("--gpus-per-worker applies to the Ray backend only (--backend ray)")
    for name in ("max_pixels", "max_memory"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ServerConfigError(f"{name} must be at least 1 (or None for no limit), not {value}")
    if not 0 <= config.port <= 65535:
        raise ServerConfigError(f"port {config.port} is not between 0 and 65535")
