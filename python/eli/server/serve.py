# eli/server/serve.py: running the app under uvicorn with eli's connection limits and logging:
# bind_socket() (before the model loads, so a busy port fails fast), uvicorn_config() (the limits
# docs/limits.md lists: concurrency, keep-alive, request-head timeout; access log and eli's own
# log lines at the chosen level) and run_server().
#
# Invariants: every connection limit has a default here and is documented in docs/limits.md; the
# socket is bound (not yet listening) before the model loads, so nothing else can take the port
# and clients get "connection refused", not a hang, until the server is ready.
from __future__ import annotations

import copy
import socket
from typing import Optional, Sequence, Union

kDefaultLimitConcurrency = 1024   # connections + in-flight requests; uvicorn answers 503 above
kDefaultKeepAliveS = 5.0          # idle keep-alive connections are closed after this
kDefaultHeaderTimeoutS = 15.0     # a request head (line + headers) must arrive within this


class PortInUseError(OSError):
    pass


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (not listening yet); PortInUseError names the port."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise OSError(f"cannot resolve --host {host!r}: {e.strerror}") from None
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host in ("::", "") else 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise PortInUseError(f"cannot listen on {host}:{port}: {e.strerror} (is another server running "
                             f"there? pick another --port)") from None
    return sock


def log_config(level: str) -> dict:
    """uvicorn's logging config, everything on stderr, plus the `eli` loggers at `level`."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["handlers"]["access"]["stream"] = "ext://sys.stderr"
    cfg["loggers"]["eli"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return cfg


def uvicorn_config(app, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
                   limit_concurrency: int = kDefaultLimitConcurrency,
                   timeout_keep_alive: float = kDefaultKeepAliveS, header_timeout_s: float = kDefaultHeaderTimeoutS,
                   graceful_timeout_s: float = 30.0, access_log: Optional[bool] = None, configure_logging: bool = True,
                   http: str = "auto"):
    """A uvicorn.Config for `app` with eli's limits. access_log defaults to on at info and debug.
    http: uvicorn's HTTP implementation ("auto": httptools when installed, else h11)."""
    import importlib

    import uvicorn
    from uvicorn.config import HTTP_PROTOCOLS

    from .guards import header_timeout_protocol

    module, _, cls = HTTP_PROTOCOLS[http].partition(":")
    base = getattr(importlib.import_module(module), cls)

    if access_log is None:
        access_log = log_level in ("debug", "info")
    kw = dict(log_config=log_config(log_level)) if configure_logging else dict(log_config=None)
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                          limit_concurrency=limit_concurrency, timeout_keep_alive=int(max(timeout_keep_alive, 1)),
                          timeout_graceful_shutdown=graceful_timeout_s,
                          http=header_timeout_protocol(base, header_timeout_s), **kw)


def run_server(llm, *, model_name: str, host: str = "127.0.0.1", port: int = 8000,
               api_key: Union[str, Sequence[str], None] = None, log_level: str = "info",
               graceful_timeout_s: float = 30.0, limit_concurrency: int = kDefaultLimitConcurrency,
               timeout_keep_alive: float = kDefaultKeepAliveS, header_timeout_s: float = kDefaultHeaderTimeoutS,
               sock: Optional[socket.socket] = None, **app_options) -> None:
    """Serves `llm` (an eli.AsyncLLM, owned: shut down on exit) until SIGINT/SIGTERM. `sock`: a
    socket from bind_socket() (default: bound here). app_options go to create_app."""
    import uvicorn

    from .app import create_app

    if sock is None:
        sock = bind_socket(host, port)
    app_options.setdefault("bind_host", host)
    app = create_app(llm, model_name=model_name, api_key=api_key, owns_llm=True, **app_options)
    config = uvicorn_config(app, host=host, port=port, log_level=log_level, limit_concurrency=limit_concurrency,
                            timeout_keep_alive=timeout_keep_alive, header_timeout_s=header_timeout_s,
                            graceful_timeout_s=graceful_timeout_s)
    uvicorn.Server(config).run(sockets=[sock])


__all__ = ["PortInUseError", "bind_socket", "run_server", "uvicorn_config"]
