"""Request heads over the limits and malformed HTTP on the wire (issue 11, defect 6).

Each refusal is an ARM error body (`{"error": {"code", "message"}}`, JSON) with its
status: 414 `RequestUriTooLong`, 431 `RequestHeaderFieldsTooLarge`, 400 `BadRequest`;
whether h11 gave up on the head (larger than its buffer) or the head arrived whole and
the app refused it, the answer is the same. The connection is closed after it, and the
server keeps serving.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from rawhttp import RawResponse, TlsConn, request_head

from privatelink.serving import MAX_HEADER_BYTES, MAX_HEADER_COUNT, MAX_REQUEST_LINE

pytestmark = pytest.mark.integration

API = "api-version=2022-12-01"
HOST = "127.0.0.1"


@pytest.fixture
def healthy(server: Any) -> Iterator[Any]:
    """The shared server; after the test it must still answer an authenticated GET."""
    yield server
    resp = server.http.get(f"/subscriptions?{API}")
    assert resp.status_code == 200, resp.text


def _exchange(server: Any, data: bytes) -> tuple[RawResponse, bool]:
    """Send raw bytes on a fresh TLS connection: the response, and whether it was closed."""
    with TlsConn(server.url, server.ca_file) as conn:
        conn.send(data)
        resp = conn.read_response()
        return resp, conn.closed_by_server()


def _assert_arm_error(resp: RawResponse, status: int, code: str) -> str:
    assert resp.status == status, (resp.status, resp.body[:300])
    assert resp.headers["content-type"] == "application/json; charset=utf-8"
    error = httpx.Response(resp.status, content=resp.body).json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return str(error["message"])


@pytest.mark.parametrize(
    ("target", "headers", "status", "code"),
    [
        # Larger than h11's buffer: refused by the protocol before the app sees it.
        (f"/subscriptions/{'a' * 100_000}?{API}", [], 414, "RequestUriTooLong"),
        ("/subscriptions?" + API, [("X-Big", "b" * 200_000)], 431, "RequestHeaderFieldsTooLarge"),
        # Whole heads over a limit: refused by the app's first layer, with the same codes.
        (f"/subscriptions/{'a' * (MAX_REQUEST_LINE + 100)}", [], 414, "RequestUriTooLong"),
        (
            "/subscriptions?" + API,
            [("X-Big", "b" * (MAX_HEADER_BYTES + 100))],
            431,
            "RequestHeaderFieldsTooLarge",
        ),
        (
            "/subscriptions?" + API,
            [(f"X-H{i}", "v") for i in range(1000)],
            431,
            "RequestHeaderFieldsTooLarge",
        ),
        (
            "/subscriptions?" + API,
            [(f"X-H{i}", "v") for i in range(MAX_HEADER_COUNT)],
            431,
            "RequestHeaderFieldsTooLarge",
        ),
    ],
    ids=[
        "path-100KB",
        "header-200KB",
        "path-over-limit",
        "headers-over-limit",
        "1000-headers",
        "101-headers",
    ],
)
def test_an_over_long_head_gets_its_arm_error(
    healthy: Any, target: str, headers: list[tuple[str, str]], status: int, code: str
) -> None:
    resp, closed = _exchange(healthy, request_head("GET", target, HOST, headers))
    _assert_arm_error(resp, status, code)
    assert closed, "the connection stayed open after the refusal"


def test_a_head_within_the_limits_reaches_the_app(healthy: Any) -> None:
    # Just under each limit: the app answers (here 401, no token), not the limit check.
    target = "/subscriptions/" + "a" * (MAX_REQUEST_LINE - 200)
    headers = [(f"X-H{i}", "v" * 200) for i in range(MAX_HEADER_COUNT - 10)]
    resp, _closed = _exchange(healthy, request_head("GET", target, HOST, headers))
    _assert_arm_error(resp, 401, "AuthenticationFailed")


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"\x00\x01\x02 / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
    ],
    ids=["garbage", "binary-method", "bad-header-line", "no-host"],
)
def test_malformed_http_gets_an_arm_error(healthy: Any, data: bytes) -> None:
    resp, closed = _exchange(healthy, data)
    _assert_arm_error(resp, 400, "BadRequest")
    assert closed


def test_a_malformed_body_ends_the_request_with_an_arm_error(healthy: Any) -> None:
    head = request_head(
        "PUT",
        f"/subscriptions/{'0' * 8}-0000-4000-8000-{'0' * 12}/resourcegroups/rg?{API}",
        HOST,
        [("Transfer-Encoding", "chunked"), ("Content-Type", "application/json")],
    )
    resp, closed = _exchange(healthy, head + b"2\r\n{}\r\nnot-a-chunk-size\r\n")
    _assert_arm_error(resp, 400, "BadRequest")
    assert closed


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        # httpx refuses URLs over 64 KB itself; 60 KB is past h11's buffer already.
        (f"/subscriptions/{'a' * 60_000}?{API}", {}, 414, "RequestUriTooLong"),
        (f"/subscriptions?{API}", {"X-Big": "b" * 200_000}, 431, "RequestHeaderFieldsTooLarge"),
    ],
    ids=["url-60KB", "header-200KB"],
)
def test_httpx_sees_the_arm_error(
    healthy: Any, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    with healthy.anonymous() as client:
        resp = client.get(path, headers=headers)
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json; charset=utf-8"
    assert resp.json()["error"]["code"] == code
