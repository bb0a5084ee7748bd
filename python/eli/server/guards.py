# eli/server/guards.py: HTTP-level protections of `eli serve` (issue 20 items 8 and 19).
#
# HttpGuard, a pure ASGI middleware inside Starlette's ServerErrorMiddleware, for every request:
#   - Host allow-list (DNS rebinding): a request whose Host header names no allowed host gets 400.
#     Default: any host when bound to a non-loopback address; the loopback names (localhost,
#     127.0.0.1, ::1, *.localhost) when bound to loopback.
#   - Content-Type (CSRF): a POST whose Content-Type is not application/json gets 415 (browsers can
#     send form, text/plain or typeless bodies cross-origin without a preflight; JSON they cannot).
#   - every response status is counted per endpoint in eli:http_requests_total (unknown paths are
#     counted as "other"), 500s included;
#   - an unhandled exception is logged once, with its traceback, and answered 500 (when no response
#     started); it is not re-raised, so uvicorn does not log it a second time.
# header_timeout_protocol(): a uvicorn HTTP protocol class that closes a connection whose request
# head (request line + headers) has not arrived kHeaderTimeoutS after the connection opened or the
# previous response ended (slowloris). The body has its own deadline (Server.read_body).
from __future__ import annotations

import ipaddress
import json
import logging
from typing import Iterable, Optional

log = logging.getLogger("eli.server")

kLoopbackHosts = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(bind_host: str) -> list[str]:
    """The allow-list for a server bound to `bind_host` when --allowed-hosts is not given."""
    return list(kLoopbackHosts) if is_loopback(bind_host) else ["*"]


def _host_name(header: str) -> str:
    """The host part of a Host header value (no port, no IPv6 brackets), lower case."""
    h = header.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else h
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


class HostAllowList:
    def __init__(self, hosts: Iterable[str]):
        self.any = False
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        for h in hosts:
            h = h.strip().lower()
            if h == "*":
                self.any = True
            elif h.startswith("*."):
                self.suffixes.append(h[1:])
            elif h:
                self.names.add(_host_name(h))
        if "localhost" in self.names:
            self.suffixes.append(".localhost")  # RFC 6761: always the loopback

    def allows(self, header: Optional[str]) -> bool:
        if self.any:
            return True
        if not header:
            return False
        name = _host_name(header)
        if name in self.names:
            return True
        if any(name.endswith(s) for s in self.suffixes):
            return True
        try:  # every loopback literal (127.0.0.2, ::1 spelled differently) when loopback is allowed
            return ipaddress.ip_address(name).is_loopback and "127.0.0.1" in self.names
        except ValueError:
            return False


def _error_body(status: int, message: str, code: str, type_: str = "invalid_request_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


class HttpGuard:
    """See the file header. `endpoints`: the paths counted by name (others: "other")."""

    def __init__(self, app, *, allowed_hosts: Iterable[str], metrics, endpoints: Iterable[str]):
        self.app = app
        self.hosts = HostAllowList(allowed_hosts)
        self.metrics = metrics
        self.endpoints = frozenset(endpoints)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        endpoint = path if path in self.endpoints else "other"
        headers = {}
        for k, v in scope.get("headers") or ():
            headers.setdefault(k.lower(), v)
        host = headers.get(b"host")
        host_s = host.decode("latin-1") if host is not None else None
        if not self.hosts.allows(host_s):
            shown = (host_s or "")[:100]
            return await self._reply(send, endpoint, 400, f"Host header {shown!r} is not allowed; start the "
                                     f"server with --allowed-hosts to accept it", "invalid_host")
        if scope.get("method") == "POST":
            ctype = headers.get(b"content-type", b"").decode("latin-1").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                return await self._reply(send, endpoint, 415, "Content-Type must be application/json, got "
                                         f"{ctype[:100]!r}" if ctype else "Content-Type must be application/json",
                                         "unsupported_media_type")
        status = {}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as e:  # noqa: BLE001 -- the one place an unhandled error is logged
            log.exception("unhandled error on %s %s", scope.get("method"), path)
            if "code" not in status:
                await self._reply(send, endpoint, 500, f"internal error: {type(e).__name__}", None, "server_error")
                return
            status.setdefault("code", 500)
        self.metrics.http(endpoint, status.get("code", 500))

    async def _reply(self, send, endpoint, status, message, code, type_="invalid_request_error"):
        body = _error_body(status, message, code, type_)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        self.metrics.http(endpoint, status)


def header_timeout_protocol(base: type, timeout_s: float) -> type:
    """`base` (a uvicorn HTTP protocol class) with a deadline on each request head. Relies on the
    attributes uvicorn's h11 and httptools protocols share (transport, cycle, on_response_complete,
    cycle.response_complete); without them the class is returned unchanged, with a warning."""
    needed = ("connection_made", "connection_lost", "on_response_complete")
    if not all(hasattr(base, a) for a in needed):
        log.warning("uvicorn protocol %s lacks the hooks for a request-head timeout", base.__name__)
        return base

    class HeadTimeoutProtocol(base):
        _eli_timer = None

        def _eli_arm(self) -> None:
            if self._eli_timer is not None:
                self._eli_timer.cancel()
            self._eli_timer = self.loop.call_later(timeout_s, self._eli_expire)

        def _eli_expire(self) -> None:
            self._eli_timer = None
            cycle = getattr(self, "cycle", None)
            if cycle is None or getattr(cycle, "response_complete", False):
                transport = getattr(self, "transport", None)
                if transport is not None and not transport.is_closing():
                    transport.close()  # no complete request head in time

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._eli_arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._eli_arm()

        def connection_lost(self, exc) -> None:
            if self._eli_timer is not None:
                self._eli_timer.cancel()
                self._eli_timer = None
            super().connection_lost(exc)

    HeadTimeoutProtocol.__name__ = f"HeadTimeout{base.__name__}"
    return HeadTimeoutProtocol


__all__ = ["HostAllowList", "HttpGuard", "default_allowed_hosts", "header_timeout_protocol", "is_loopback"]
