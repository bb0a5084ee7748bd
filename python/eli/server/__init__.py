# eli/server: the OpenAI-compatible HTTP server behind `eli serve` (FastAPI + uvicorn).
#
# Invariants: importing eli.server needs fastapi/uvicorn/prometheus_client (the `serve` extra);
# nothing else in eli imports it. run_server() loads the model before binding the port, so a bad
# model fails fast; uvicorn handles SIGINT/SIGTERM: it stops accepting connections, lets in-flight
# requests finish (up to graceful_timeout_s, then cancels them, which aborts their engine requests),
# and the app's lifespan shuts the engine down last.
from __future__ import annotations

from typing import Optional

from .app import Server, create_app
from .protocol import ApiError


def run_server(llm, *, model_name: str, host: str = "127.0.0.1", port: int = 8000,
               api_key: Optional[str] = None, chat_template: Optional[str] = None, max_waiting: int = 0,
               wedge_timeout_s: float = 60.0, graceful_timeout_s: float = 30.0,
               log_level: str = "info") -> None:
    """Serves `llm` (an eli.AsyncLLM, owned: shut down on exit) until SIGINT/SIGTERM."""
    import uvicorn

    app = create_app(llm, model_name=model_name, api_key=api_key, chat_template=chat_template,
                     max_waiting=max_waiting, wedge_timeout_s=wedge_timeout_s, owns_llm=True)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=graceful_timeout_s, access_log=log_level == "debug")
    uvicorn.Server(config).run()


__all__ = ["ApiError", "Server", "create_app", "run_server"]
