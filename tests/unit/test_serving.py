"""The HTTP serving layer without a network: head limits, the h11 protocol, the server.

`ArmH11Protocol` is driven with bytes through a fake transport (no sockets, no TLS):
what it writes back is parsed and compared with the ARM error it must be.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import signal
from collections.abc import Callable, Iterator
from typing import Any

import h11
import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle
from uvicorn.server import ServerState

from privatelink import serving
from privatelink.cli.main import serve
from privatelink.serving import (
    MAX_HEADER_BYTES,
    MAX_HEADER_COUNT,
    MAX_REQUEST_HEAD,
    MAX_REQUEST_LINE,
    ArmH11Protocol,
    GracefulServer,
    HeadLimits,
    head_error,
)

# --- head_error: the limits as a pure function ---------------------------------------------


def _headers(count: int, value: bytes = b"v") -> list[tuple[bytes, bytes]]:
    return [(f"x-h{i}".encode(), value) for i in range(count)]


@pytest.mark.parametrize(
    ("method", "target", "headers", "expected"),
    [
        ("GET", 100, _headers(10), None),
        # The request line at the limit is fine, one byte more is not.
        ("GET", MAX_REQUEST_LINE - len("GET  HTTP/1.1"), [], None),
        ("GET", MAX_REQUEST_LINE - len("GET  HTTP/1.1") + 1, [], (414, "RequestUriTooLong")),
        ("PUT", 100_000, [], (414, "RequestUriTooLong")),
        ("GET", 10, _headers(MAX_HEADER_COUNT), None),
        ("GET", 10, _headers(MAX_HEADER_COUNT + 1), (431, "RequestHeaderFieldsTooLarge")),
        ("GET", 10, [(b"x-big", b"b" * (MAX_HEADER_BYTES - 9))], None),
        (
            "GET",
            10,
            [(b"x-big", b"b" * (MAX_HEADER_BYTES - 8))],
            (431, "RequestHeaderFieldsTooLarge"),
        ),
    ],
)
def test_head_error_applies_each_limit(
    method: str, target: int, headers: list[tuple[bytes, bytes]], expected: tuple[int, str] | None
) -> None:
    error = head_error(method, target, headers)
    if expected is None:
        assert error is None
    else:
        assert error is not None
        assert (error.status, error.code) == expected


def test_the_h11_buffer_limit_covers_a_head_within_both_limits() -> None:
    # A head that keeps to both limits must never trip h11's incomplete-head limit.
    assert MAX_REQUEST_LINE + MAX_HEADER_BYTES + len("\r\n\r\n") <= MAX_REQUEST_HEAD


def test_render_is_an_arm_error_body() -> None:
    status, headers, body = serving.render(serving.RequestUriTooLong(limit=MAX_REQUEST_LINE))
    assert status == 414
    assert dict(headers)[b"content-type"].startswith(b"application/json")
    assert int(dict(headers)[b"content-length"]) == len(body)
    assert json.loads(body)["error"]["code"] == "RequestUriTooLong"


# --- HeadLimits: the ASGI layer -------------------------------------------------------------


def _call(app: Any, scope: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """Run an ASGI app on one scope; returns what it sent and whether the inner app ran."""
    sent: list[dict[str, Any]] = []
    reached = False

    async def inner(_scope: Any, _receive: Any, send: Any) -> None:
        nonlocal reached
        reached = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(inner)(scope, receive, send))
    return sent, reached


def _scope(path: str, headers: list[tuple[bytes, bytes]], query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers,
    }


def test_head_limits_pass_an_ordinary_request() -> None:
    sent, reached = _call(HeadLimits, _scope("/subscriptions", _headers(5), b"api-version=1"))
    assert reached and sent[0]["status"] == 200


@pytest.mark.parametrize(
    ("scope", "status", "code"),
    [
        (_scope("/s/" + "a" * MAX_REQUEST_LINE, []), 414, "RequestUriTooLong"),
        (_scope("/s", [], b"q=" + b"a" * MAX_REQUEST_LINE), 414, "RequestUriTooLong"),
        (_scope("/s", _headers(MAX_HEADER_COUNT + 1)), 431, "RequestHeaderFieldsTooLarge"),
        (_scope("/s", [(b"x", b"b" * MAX_HEADER_BYTES)]), 431, "RequestHeaderFieldsTooLarge"),
    ],
)
def test_head_limits_refuse_with_the_arm_error(
    scope: dict[str, Any], status: int, code: str
) -> None:
    sent, reached = _call(HeadLimits, scope)
    assert not reached, "the app ran on a head over the limits"
    assert sent[0]["status"] == status
    assert (b"content-type", b"application/json; charset=utf-8") in sent[0]["headers"]
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"]["code"] == code


def test_head_limits_pass_lifespan_through() -> None:
    seen: list[str] = []

    async def inner(scope: Any, _receive: Any, _send: Any) -> None:
        seen.append(scope["type"])

    async def nothing() -> None:
        return None

    asyncio.run(HeadLimits(inner)({"type": "lifespan"}, nothing, nothing))
    assert seen == ["lifespan"]


# --- ArmH11Protocol through a fake transport ------------------------------------------------


class FakeTransport:
    """What uvicorn's protocol uses of an asyncio transport; records writes and closes."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False
        self.aborted = False
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8443), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes) -> None:
        assert not self.closing, "wrote after close"
        self.written += data

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True
        self.aborted = True
        if self.protocol is not None:
            self.protocol.connection_lost(None)
            self.protocol = None

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class FakeLoop:
    """Enough of an event loop for the protocol: tasks run on a real loop, timers are kept."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def create_task(self, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        return self.loop.create_task(coro, **kw)

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        self.timers.append((delay, callback))
        return self.loop.call_later(3600, lambda: None)

    def fire_timers(self) -> None:
        timers, self.timers = self.timers, []
        for _delay, callback in timers:
            callback()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def _protocol(
    loop: asyncio.AbstractEventLoop, app: Any = None
) -> tuple[ArmH11Protocol, FakeTransport, FakeLoop]:
    async def default_app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    config = uvicorn.Config(
        app or default_app, http=ArmH11Protocol, lifespan="off", log_level="critical"
    )
    config.load()
    fake_loop = FakeLoop(loop)
    protocol = ArmH11Protocol(
        config=config,
        server_state=ServerState(),
        app_state={},
        _loop=fake_loop,  # type: ignore[arg-type]
    )
    transport = FakeTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport, fake_loop


def _response(written: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = bytes(written).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        # An incomplete request line larger than the buffer limit.
        (b"GET /" + b"a" * (MAX_REQUEST_HEAD + 10), 414, "RequestUriTooLong"),
        # A complete request line, then headers beyond the buffer limit.
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (MAX_REQUEST_HEAD + 10),
            431,
            "RequestHeaderFieldsTooLarge",
        ),
        # A request line longer than its limit with the headers starting after it.
        (
            b"GET /"
            + b"a" * (MAX_REQUEST_LINE + 10)
            + b" HTTP/1.1\r\nX: "
            + b"b" * MAX_REQUEST_HEAD,
            414,
            "RequestUriTooLong",
        ),
        (b"GARBAGE\r\n\r\n", 400, "BadRequest"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n", 400, "BadRequest"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, "BadRequest"),
    ],
)
def test_a_refused_head_gets_an_arm_error_and_the_connection_closes(
    loop: asyncio.AbstractEventLoop, data: bytes, status: int, code: str
) -> None:
    protocol, transport, _ = _protocol(loop)
    protocol.data_received(data)
    got_status, headers, body = _response(transport.written)
    assert (got_status, body["error"]["code"]) == (status, code)
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(json.dumps(body))
    assert transport.closing
    # More bytes after the refusal change nothing (h11 would raise again).
    before = bytes(transport.written)
    protocol.data_received(b"more\r\n\r\n")
    assert bytes(transport.written) == before


def test_a_refusal_message_does_not_echo_a_long_request_line(
    loop: asyncio.AbstractEventLoop,
) -> None:
    protocol, transport, _ = _protocol(loop)
    protocol.data_received(b"X" * 5000 + b"\r\n\r\n")
    _status, _headers, body = _response(transport.written)
    assert len(body["error"]["message"]) < 400


def test_a_body_breaking_the_protocol_ends_the_request_with_an_arm_error(
    loop: asyncio.AbstractEventLoop,
) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    protocol, transport, _ = _protocol(loop, app)
    protocol.data_received(
        b"PUT /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n"
    )
    loop.run_until_complete(asyncio.sleep(0.01))
    protocol.data_received(b"zz-not-a-chunk-size\r\n")
    loop.run_until_complete(asyncio.sleep(0.01))
    status, _headers, body = _response(transport.written)
    assert (status, body["error"]["code"]) == (400, "BadRequest")
    assert seen[-1]["type"] == "http.disconnect", "the app was not told the request is gone"
    assert b"late" not in transport.written, "the app's answer went out after the refusal"


def test_an_idle_connection_closes_at_shutdown_and_its_tls_close_is_bounded(
    loop: asyncio.AbstractEventLoop,
) -> None:
    protocol, transport, fake_loop = _protocol(loop)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    loop.run_until_complete(asyncio.sleep(0.01))
    assert b" 200 " in transport.written and not transport.closing  # kept alive
    fake_loop.timers.clear()  # uvicorn's keep-alive timer
    protocol.shutdown()
    assert transport.closing and not transport.aborted
    assert [delay for delay, _ in fake_loop.timers] == [serving.CLOSE_GRACE]
    fake_loop.fire_timers()  # the client never answered the TLS close
    assert transport.aborted


def test_a_busy_connection_finishes_its_response_then_closes(
    loop: asyncio.AbstractEventLoop,
) -> None:
    protocol, transport, fake_loop = _protocol(loop)
    protocol.data_received(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    loop.run_until_complete(asyncio.sleep(0.01))
    assert protocol.busy
    protocol.shutdown()
    assert not transport.closing, "an in-flight request was cut"
    protocol.data_received(b"cd")
    loop.run_until_complete(asyncio.sleep(0.01))
    assert b" 200 " in transport.written
    assert transport.closing, "the connection stayed open after its last response"
    assert serving.CLOSE_GRACE in [delay for delay, _ in fake_loop.timers]


# --- GracefulServer -------------------------------------------------------------------------


def test_a_second_signal_skips_the_drain() -> None:
    server = GracefulServer(uvicorn.Config(lambda *a: None), drain_timeout=5)
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit and not server.force_exit
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit


def test_a_negative_drain_timeout_is_refused() -> None:
    with pytest.raises(ValueError):
        GracefulServer(uvicorn.Config(lambda *a: None), drain_timeout=-1)


def test_the_signal_is_not_raised_again_after_the_shutdown() -> None:
    # uvicorn's capture_signals raises a recorded signal again after the shutdown (the
    # process would die of it, not exit 0); our handler does not record it.
    raised_again: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda sig, _frame: raised_again.append(sig))
    try:
        server = GracefulServer(uvicorn.Config(lambda *a: None))
        with server.capture_signals():
            assert signal.getsignal(signal.SIGTERM) == server.handle_exit
            signal.raise_signal(signal.SIGTERM)  # handled: only marks the server as stopping
        assert server.should_exit
        assert raised_again == [], "the signal was raised again after the shutdown"
    finally:
        signal.signal(signal.SIGTERM, before)


# --- the uvicorn hooks this layer overrides -------------------------------------------------


def test_uvicorn_still_has_the_hooks_we_override() -> None:
    # An uvicorn upgrade that renames one of these would silently bring plain-text 400s
    # back or unbounded shutdowns: fail here instead.
    for name in ("send_400_response", "shutdown", "on_response_complete", "handle_events"):
        assert callable(getattr(H11Protocol, name)), name
    assert list(inspect.signature(H11Protocol.send_400_response).parameters) == ["self", "msg"]
    cycle = inspect.signature(RequestResponseCycle.__init__).parameters
    assert "message_event" in cycle and "on_response" in cycle
    source = inspect.getsource(H11Protocol.handle_events)
    assert "self.send_400_response(" in source and "self.conn.next_event()" in source
    for name in ("capture_signals", "handle_exit", "shutdown", "main_loop"):
        assert callable(getattr(uvicorn.Server, name)), name
    assert {"should_exit", "force_exit", "server_state"} <= set(
        vars(uvicorn.Server(uvicorn.Config(lambda *a: None)))
    )
    assert h11.RemoteProtocolError("x", error_status_hint=431).error_status_hint == 431


def test_serve_uses_the_serving_layer_defaults() -> None:
    option = next(p for p in serve.params if p.name == "shutdown_timeout")
    assert option.default == serving.DEFAULT_DRAIN_TIMEOUT
