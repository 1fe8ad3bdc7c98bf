"""The nodeflow server: REST API, websocket events, a persistent queue, the editor.

``run_server(...)`` is what ``nodeflow serve`` calls; :func:`start_server` and
:func:`create_app` serve the same application from your own event loop (tests do).
The execution backend is a :class:`nodeflow.backends.Backend`; :class:`LocalBackend`
runs graphs in this process. See ``docs/server.md`` for the API and security model.

Modules: ``config`` (settings, refusals), ``app`` (composition, lifecycle),
``routes`` (route table, handlers), ``schemas`` (JSON shapes), ``openapi``,
``security`` (guards, safe paths), ``store`` (SQLite queue and history),
``worker`` (the run thread), ``hub`` (websockets), ``workflows``, ``uploads``.
"""

from ..backends import Backend, LocalBackend
from .app import RunningServer, Server, create_app, run_server, start_server
from .config import ServerConfig, ServerConfigError

__all__ = [
    "Backend", "LocalBackend", "RunningServer", "Server", "ServerConfig", "ServerConfigError",
    "create_app", "run_server", "start_server",
]
