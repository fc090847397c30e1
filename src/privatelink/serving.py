"""How `privatelink serve` speaks HTTP: request-head limits and graceful shutdown.

uvicorn (with h11; httptools is not used) runs the app. This module owns the three
things about that which are ours:

- **Request-head limits, always answered with an ARM error body.** The request line may
  hold `MAX_REQUEST_LINE` bytes (else 414 `RequestUriTooLong`); the header fields
  `MAX_HEADER_BYTES` bytes in all and `MAX_HEADER_COUNT` fields (else 431
  `RequestHeaderFieldsTooLarge`); anything that is not HTTP/1.1 gets 400 `BadRequest`.
  Two places enforce them with the same errors: `ArmH11Protocol`, when h11 gives up on a
  head before the app sees it (an incomplete head larger than `MAX_REQUEST_HEAD`, or
  malformed bytes; uvicorn would answer plain text), and `HeadLimits`, a pure ASGI layer
  for a head that arrived whole but breaks a limit (h11 bounds only incomplete heads).
- **The HTTP implementation**: `ArmH11Protocol` is passed as uvicorn's `http=`; it is
  the one place the h11 limit is set, whatever uvicorn's config says.
- **Graceful shutdown** (`GracefulServer`): on SIGTERM or SIGINT, stop accepting,
  let in-flight requests finish for at most the drain timeout (`--shutdown-timeout`),
  close idle keep-alive connections at once (their TLS close is bounded, so an idle
  client never holds the shutdown), then cut what is left, run the app's lifespan
  shutdown (reconciler, probes, DNS server, database) and return normally: exit 0.
  A second signal skips the wait. Kernel state is never touched here.

Status codes and codes: Azure's front ends refuse an over-long head before ARM runs
(HTTP.sys: 414 for a URL, 400 "Request Header Too Long"; Kestrel, ASP.NET Core's
server: 414 for the request line, 431 for headers, by size or by count). We answer as
Kestrel does, in ARM's error shape, with .NET's `HttpStatusCode` names as codes.
The limits are Kestrel's header count (100), HTTP.sys's default field length (16 KB)
for the request line, and Kestrel's header total (32 KB).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from types import FrameType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol

from privatelink.core import errors

# uvicorn configures this logger (--log-level): our messages sit beside its own.
log = logging.getLogger("uvicorn.error")

MAX_REQUEST_LINE = 16 * 1024  # method, target (path and query) and version
MAX_HEADER_BYTES = 32 * 1024  # every header line, `name: value\r\n`
MAX_HEADER_COUNT = 100
# The largest head h11 buffers while it is incomplete: whatever is larger breaks one of
# the two limits above, so the protocol can refuse it without waiting for the rest.
MAX_REQUEST_HEAD = MAX_REQUEST_LINE + MAX_HEADER_BYTES + 4

DEFAULT_DRAIN_TIMEOUT = 10.0  # seconds in-flight requests get after SIGTERM
# How long a closing TLS connection may wait for the client's close_notify during a
# shutdown (asyncio waits 30 s): the response is with the kernel by then.
CLOSE_GRACE = 1.0
# After the drain timeout, how long the requests whose connections were cut get to end
# on their own, then (cancelled) to unwind.
CANCEL_GRACE = 5.0
_POLL = 0.05


# --- the errors ---------------------------------------------------------------------------


class RequestUriTooLong(errors.ArmError):
    status = 414
    code = "RequestUriTooLong"
    template = "The request URL is too long: the request line exceeds {limit} bytes."


class RequestHeaderFieldsTooLarge(errors.ArmError):
    status = 431
    code = "RequestHeaderFieldsTooLarge"
    template = "The request headers are too large: {what} exceeds the limit of {limit}."


class InvalidHttpRequest(errors.BadRequest):
    code = "BadRequest"
    echo_limit = errors.MAX_ECHO
    template = "The request is not valid HTTP/1.1: {reason}."


def render(error: errors.ArmError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of an ARM error that ends the connection."""
    body = json.dumps({"error": {"code": error.code, "message": error.message}}).encode()
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return error.status, headers, body


def head_error(
    method: str, target_bytes: int, headers: list[tuple[bytes, bytes]]
) -> errors.ArmError | None:
    """The limit a whole request head breaks, if any (pure).

    `target_bytes` is the length of the request target (path and query as sent).
    """
    line = len(method) + 1 + target_bytes + len(" HTTP/1.1")
    if line > MAX_REQUEST_LINE:
        return RequestUriTooLong(limit=MAX_REQUEST_LINE)
    if len(headers) > MAX_HEADER_COUNT:
        return RequestHeaderFieldsTooLarge(
            what=f"their number ({len(headers)})", limit=f"{MAX_HEADER_COUNT} fields"
        )
    size = sum(len(name) + len(value) + 4 for name, value in headers)
    if size > MAX_HEADER_BYTES:
        return RequestHeaderFieldsTooLarge(
            what=f"their size ({size} bytes)", limit=f"{MAX_HEADER_BYTES} bytes"
        )
    return None


# --- the ASGI layer -----------------------------------------------------------------------

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class HeadLimits:
    """ASGI middleware refusing a request head over the limits with its ARM error.

    The request body is not read; the connection is closed after the answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raw_path = scope.get("raw_path") or scope["path"].encode()
            query = scope.get("query_string", b"")
            target = len(raw_path) + (len(query) + 1 if query else 0)
            error = head_error(scope["method"], target, list(scope.get("headers", ())))
            if error is not None:
                status, headers, body = render(error)
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


# --- the protocol -------------------------------------------------------------------------


class _Connection(h11.Connection):
    """h11's connection, remembering the protocol error it last raised (uvicorn drops it)."""

    last_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.last_error = exc
            raise


class ArmH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, refusing bad request heads with ARM errors.

    Overrides three hooks of uvicorn's `H11Protocol` (checked by a unit test):
    `send_400_response` (every h11 refusal goes through it), `shutdown` and
    `on_response_complete` (so a closing connection's TLS shutdown is bounded while
    the server stops).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The one place the head limit is set (uvicorn's h11_max_incomplete_event_size
        # is ignored): an incomplete head larger than this is refused.
        self._h11 = _Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        self.conn = self._h11
        self._refused = False
        self._draining = False

    # -- refusals -----------------------------------------------------------------------

    def refusal(self, fallback: str) -> errors.ArmError:
        """The ARM error for the protocol error h11 just raised."""
        exc = self._h11.last_error
        if exc is None:
            return InvalidHttpRequest(reason=fallback)
        if exc.error_status_hint == 431 and self.conn.our_state is h11.IDLE:
            # The head outgrew MAX_REQUEST_HEAD before it was complete: which part?
            pending, _closed = self.conn.trailing_data
            if pending.find(b"\n", 0, MAX_REQUEST_LINE + 2) == -1:
                return RequestUriTooLong(limit=MAX_REQUEST_LINE)
            return RequestHeaderFieldsTooLarge(what="their size", limit=f"{MAX_HEADER_BYTES} bytes")
        return InvalidHttpRequest(reason=str(exc) or type(exc).__name__)

    def send_400_response(self, msg: str) -> None:
        """Answer an h11 protocol error with its ARM error, then close the connection."""
        if self._refused or self.transport.is_closing():
            return  # already answered; h11 repeats the error for any later bytes
        self._refused = True
        error = self.refusal(msg)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # A request body broke the protocol while the app handles the request: the
            # app now sees a disconnect, and whatever it answers goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            status, headers, body = render(error)
            response = h11.Response(
                status_code=status,
                headers=[*self.server_state.default_headers, *headers],
                reason=STATUS_PHRASES[status],
            )
            with contextlib.suppress(h11.LocalProtocolError):
                out = self.conn.send(response) or b""
                out += self.conn.send(h11.Data(data=body)) or b""
                out += self.conn.send(h11.EndOfMessage()) or b""
                self.transport.write(out)
        self.transport.close()

    # -- shutdown -----------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a request is being handled on this connection right now."""
        return self.cycle is not None and not self.cycle.response_complete

    def shutdown(self) -> None:
        """The server stops: close now if idle, else after the response in flight."""
        self._draining = True
        if self.transport.is_closing():
            self._bound_close()
            return
        try:
            super().shutdown()
        except h11.LocalProtocolError:
            self.transport.close()
        if self.transport.is_closing():
            self._bound_close()

    def on_response_complete(self) -> None:
        """After each response; while draining, the connection is closing: bound it."""
        super().on_response_complete()
        if self._draining and self.transport.is_closing():
            self._bound_close()

    def _bound_close(self) -> None:
        # asyncio's TLS close waits up to 30 s for the client's close_notify, which an
        # idle keep-alive client only sends when it next reads: abort after a grace.
        self.loop.call_later(CLOSE_GRACE, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if self in self.connections:
            self.transport.abort()


# --- the server ---------------------------------------------------------------------------


class GracefulServer(uvicorn.Server):
    """uvicorn's server with a bounded drain on SIGTERM/SIGINT and a clean exit.

    `drain_timeout`: seconds in-flight requests get to finish once the server stops
    (uvicorn's `timeout_graceful_shutdown` is not used). Unlike uvicorn, the signal is
    not re-raised after the shutdown: a stop that was asked for and done exits 0.
    """

    def __init__(
        self, config: uvicorn.Config, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    ) -> None:
        super().__init__(config)
        if drain_timeout < 0:
            raise ValueError("the drain timeout cannot be negative")
        self.drain_timeout = drain_timeout

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: drain and stop; a second one: stop without waiting.

        uvicorn's handler also records the signal, and `capture_signals` raises it again
        once the server is down, so the process dies of it (SIGTERM: status -15, SIGINT:
        KeyboardInterrupt). A stop that was asked for and done is a clean exit: not here.
        """
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        """Stop accepting, drain (bounded), cut the rest, then the app's lifespan shutdown."""
        state = self.server_state
        log.info(
            "stopping: no new connections; %d request(s) in flight get up to %.0f s",
            sum(1 for c in state.connections if getattr(c, "busy", False)),
            self.drain_timeout,
        )
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        while (state.connections or state.tasks) and not self.force_exit:
            if loop.time() >= deadline:
                break
            await asyncio.sleep(_POLL)
        if state.connections:
            log.error(
                "closing %d connection(s) still open after the drain (%.0f s or a second signal)",
                len(state.connections),
                self.drain_timeout,
            )
            for connection in list(state.connections):
                connection.transport.abort()
        if state.tasks:
            # Their clients are gone: a request reading its body sees the disconnect, one
            # in a worker thread finishes its transaction (threads are not interrupted).
            _done, pending = await asyncio.wait(set(state.tasks), timeout=CANCEL_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=CANCEL_GRACE)
        await self.lifespan.shutdown()


def serve(config: uvicorn.Config, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT) -> bool:
    """Run the server until SIGTERM/SIGINT; False when it never started (port, lifespan)."""
    server = GracefulServer(config, drain_timeout)
    server.run()
    return server.started
