# eli/server: the OpenAI-compatible HTTP server behind `eli serve` (FastAPI + uvicorn).
#
# Invariants: importing eli.server.app / serve needs fastapi/uvicorn/prometheus_client (the `serve`
# extra); nothing else in eli imports them. This package's __init__ imports nothing heavy (names
# resolve lazily), so the chat render worker (`eli.server.render_worker`, a separate process) starts
# without FastAPI. `eli serve` binds the port before loading the model (a busy port fails fast);
# uvicorn handles SIGINT/SIGTERM: it stops accepting connections, lets in-flight requests finish (up
# to graceful_timeout_s, then cancels them, which aborts their engine requests), and the app's
# lifespan shuts the render workers and the engine down last.
from __future__ import annotations

_LAZY = {"Server": "core", "create_app": "app", "ApiError": "protocol", "run_server": "serve",
         "bind_socket": "serve", "uvicorn_config": "serve"}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'eli.server' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


__all__ = sorted(_LAZY)
