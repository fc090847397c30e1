"""ARM's request limits: body size, tags, and text that can be stored and echoed back.

`BodyLimit` is a pure ASGI middleware: a request body on an ARM path larger than
`MAX_BODY_BYTES` (ARM's 4 MB) is refused with 413 `RequestContentTooLarge` before the
body is read (declared Content-Length) or as soon as the streamed bytes pass the limit
(chunked), so at most the limit is ever held in memory. `check_text` and `check_tags`
are pure checks applied where bodies are parsed (`arm.parse_body`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from privatelink.api.paths import is_arm_path
from privatelink.core import errors

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_TAGS = 50
MAX_TAG_NAME = 512  # 128 for storage accounts; none of ours is one
MAX_TAG_VALUE = 256

# Decoded JSON keeps a valid surrogate pair as one character, so any code point left in
# this range is a lone surrogate: it cannot be encoded as UTF-8, hence never echoed back.
_SURROGATE = re.compile("[\ud800-\udfff]")


class RequestContentTooLarge(errors.ArmError):
    status = 413
    code = "RequestContentTooLarge"
    template = "The request content size exceeds the maximum size of {limit}."


class InvalidTagCount(errors.BadRequest):
    code = "InvalidTagCount"
    template = "The resource has {count} tags; the maximum is {limit}."


class InvalidTagNameLength(errors.BadRequest):
    code = "InvalidTagNameLength"
    template = "The tag name '{name}...' exceeds the maximum length of {limit} characters."


class InvalidTagValueLength(errors.BadRequest):
    code = "InvalidTagValueLength"
    template = (
        "The value of tag '{name}' exceeds the maximum length of {limit} characters "
        "({length} given)."
    )


def check_text(body: Any) -> None:
    """Refuse a decoded JSON document holding a lone UTF-16 surrogate in any key or string.

    Walks iteratively (no recursion limit); the message names where, never the text.
    """
    stack: list[tuple[str, Any]] = [("body", body)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise errors.InvalidRequestContent(
                    f"The request content is invalid: {where} holds a lone UTF-16 surrogate "
                    "(\\ud800-\\udfff), which is not a Unicode character."
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                stack.append((where, key))
                stack.append((f"{where}.{_printable(key)}", item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))


def _printable(key: Any) -> str:
    text = str(key)[:40]
    return text if not _SURROGATE.search(text) else "?"


def check_tags(tags: Mapping[str, str] | None) -> None:
    """ARM's tag limits: 50 per resource, names of 512 and values of 256 characters."""
    if not tags:
        return
    if len(tags) > MAX_TAGS:
        raise InvalidTagCount(count=len(tags), limit=MAX_TAGS)
    for name, value in tags.items():
        if len(name) > MAX_TAG_NAME:
            raise InvalidTagNameLength(name=name[:40], limit=MAX_TAG_NAME)
        if len(value) > MAX_TAG_VALUE:
            raise InvalidTagValueLength(name=name[:40], limit=MAX_TAG_VALUE, length=len(value))


ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class BodyLimit:
    """ASGI middleware refusing ARM request bodies over `max_bytes` with a 413 ARM error.

    The body is read here (bounded) and replayed to the app, so the app never sees more
    than `max_bytes`; other paths (token endpoint, portal) pass through untouched.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not is_arm_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()  # disconnect detection
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        exc = RequestContentTooLarge(limit=_size(self.max_bytes))
        payload = json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": exc.status,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _content_length(scope: MutableMapping[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def _size(limit: int) -> str:
    mb, rest = divmod(limit, 1024 * 1024)
    return f"{mb} MB" if not rest and mb else f"{limit} bytes"
