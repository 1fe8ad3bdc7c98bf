"""The nodeflow server: REST API, websocket events, a persistent queue, the editor.

``run_server(...)`` is what ``nodeflow serve`` calls; :func:`start_server` and
:func:`create_app` serve the same application from your own event loop (tests do).
The execution backend is an object (:class:`ExecutionBackend`); :class:`LocalBackend`
runs graphs in this process. See ``docs/server.md`` for the API and security model.

Modules: ``config`` (settings, refusals), ``app`` (composition, lifecycle),
``routes`` (route table, handlers), ``schemas`` (JSON shapes), ``openapi``,
``security`` (guards, safe paths), ``store`` (SQLite queue and history),
``worker`` (the run thread), ``backend``, ``hub`` (websockets), ``workflows``,
``uploads``.
"""

from .app import RunningServer, Server, create_app, run_server, start_server
from .backend import ExecutionBackend, LocalBackend
from .config import ServerConfig, ServerConfigError

__all__ = [
    "ExecutionBackend", "LocalBackend", "RunningServer", "Server", "ServerConfig", "ServerConfigError",
    "create_app", "run_server", "start_server",
]
