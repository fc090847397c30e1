"""ARM request limits: body size (ASGI middleware), tags, lone surrogates, safe rendering."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import pytest

from privatelink.api import arm, limits
from privatelink.api.resource_manager import ResourceGroupWire
from privatelink.api.virtual_network import VirtualNetworkWire
from privatelink.core import errors

LONE = "\ud800"

# --- lone surrogates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"tags": {"a": LONE}},
        {"tags": {LONE: "a"}},
        {"properties": {"subnets": [{"name": "s", "x": ["ok", "\udfff"]}]}},
        {"deep": [[[[{"k": f"prefix{LONE}suffix"}]]]]},
    ],
)
def test_check_text_refuses_a_lone_surrogate_anywhere(body: Any) -> None:
    with pytest.raises(errors.InvalidRequestContent) as info:
        limits.check_text(body)
    assert info.value.status == 400
    # The message must itself be renderable (never echoes the bad text).
    info.value.message.encode("utf-8")


def test_check_text_accepts_valid_unicode_and_pairs() -> None:
    body = json.loads(
        '{"tags": {"emoji": "\\ud83d\\ude00", "name": "Zürich 東京"}, "n": [1, null]}'
    )
    limits.check_text(body)


def test_check_text_survives_deep_nesting() -> None:
    body: Any = LONE
    for _ in range(5000):
        body = [body]
    with pytest.raises(errors.InvalidRequestContent):
        limits.check_text(body)


def test_parse_body_refuses_surrogates_before_validation() -> None:
    with pytest.raises(errors.InvalidRequestContent, match="surrogate"):
        arm.parse_body(ResourceGroupWire, {"location": "eastus", "tags": {"t": LONE}})


# --- tags -----------------------------------------------------------------------------------


def _tags(n: int) -> dict[str, str]:
    return {f"t{i}": "v" for i in range(n)}


@pytest.mark.parametrize(
    ("tags", "error", "code"),
    [
        (_tags(51), limits.InvalidTagCount, "InvalidTagCount"),
        ({"n" * 513: "v"}, limits.InvalidTagNameLength, "InvalidTagNameLength"),
        ({"n": "v" * 257}, limits.InvalidTagValueLength, "InvalidTagValueLength"),
        ({"n": "v" * 10_000}, limits.InvalidTagValueLength, "InvalidTagValueLength"),
    ],
)
def test_check_tags_refuses_over_arm_limits(
    tags: dict[str, str], error: type[errors.ArmError], code: str
) -> None:
    with pytest.raises(error) as info:
        limits.check_tags(tags)
    assert info.value.code == code
    assert info.value.status == 400
    assert len(info.value.message) < 300  # a long name is never echoed whole


@pytest.mark.parametrize("tags", [None, {}, _tags(50), {"n" * 512: "v" * 256}, {"n": ""}])
def test_check_tags_accepts_up_to_the_limits(tags: dict[str, str] | None) -> None:
    limits.check_tags(tags)


@pytest.mark.parametrize("wire", [ResourceGroupWire, VirtualNetworkWire])
def test_parse_body_checks_tags_of_tracked_resources_and_groups(wire: Any) -> None:
    body = {"location": "eastus", "tags": _tags(51), "properties": {}}
    with pytest.raises(limits.InvalidTagCount):
        arm.parse_body(wire, body)
    ok = arm.parse_body(wire, {**body, "tags": _tags(50)})
    assert ok.tags == _tags(50)


# --- rendering what is stored ---------------------------------------------------------------


def test_arm_json_response_renders_a_stored_lone_surrogate() -> None:
    resp = arm.ok({"tags": {"t": LONE, "u": "é"}})
    assert resp.status_code == 200
    assert json.loads(resp.body) == {"tags": {"t": LONE, "u": "é"}}


def test_arm_json_response_keeps_utf8_for_ordinary_text() -> None:
    assert arm.ok({"u": "é"}).body == '{"u":"é"}'.encode()


# --- body size middleware -------------------------------------------------------------------


class _App:
    """An ASGI app recording the body it read."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _run(
    app: Any,
    path: str,
    chunks: list[bytes],
    content_length: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Run one request; return the messages sent and how many receive() calls were made."""
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    scope = {"type": "http", "method": "PUT", "path": path, "headers": headers}
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent, received


ARM_PATH = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"


def _assert_413(sent: list[dict[str, Any]]) -> None:
    assert sent[0]["status"] == 413
    body = json.loads(sent[1]["body"])
    assert body["error"]["code"] == "RequestContentTooLarge"
    assert "4 MB" in body["error"]["message"]


def test_body_limit_refuses_a_declared_length_without_reading() -> None:
    inner = _App()
    sent, received = _run(
        limits.BodyLimit(inner), ARM_PATH, [b"x" * 100], content_length=limits.MAX_BODY_BYTES + 1
    )
    _assert_413(sent)
    assert received == 0
    assert inner.bodies == []


def test_body_limit_stops_reading_a_stream_once_over_the_limit() -> None:
    inner = _App()
    chunk = b"x" * (1024 * 1024)
    sent, received = _run(limits.BodyLimit(inner), ARM_PATH, [chunk] * 50)
    _assert_413(sent)
    assert received == 5  # 4 MB + one byte is reached in the fifth chunk; 45 are never read
    assert inner.bodies == []


def test_body_limit_passes_a_body_at_the_limit_whole() -> None:
    inner = _App()
    chunks = [b"a" * (2 * 1024 * 1024), b"b" * (2 * 1024 * 1024)]
    sent, _ = _run(limits.BodyLimit(inner), ARM_PATH, chunks)
    assert sent[0]["status"] == 200
    assert inner.bodies == [b"".join(chunks)]


def test_body_limit_leaves_other_paths_alone() -> None:
    inner = _App()
    sent, _ = _run(limits.BodyLimit(inner, max_bytes=10), "/tenant/oauth2/v2.0/token", [b"x" * 20])
    assert sent[0]["status"] == 200
    assert inner.bodies == [b"x" * 20]


def test_body_limit_is_configurable_and_counts_small_limits_in_bytes() -> None:
    sent, _ = _run(limits.BodyLimit(_App(), max_bytes=10), ARM_PATH, [b"x" * 11])
    assert sent[0]["status"] == 413
    assert "10 bytes" in json.loads(sent[1]["body"])["error"]["message"]
