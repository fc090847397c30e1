"""Deployment bodies as az sends them: lenient JSON, made strict before FastAPI reads it.

`az deployment group create --template-file F` does not send JSON: to keep the template's
whitespace it splices the file's text in as `..., template:<file>}}` (an unquoted key,
and whatever comments the file has). ARM's JSON.NET reads that, so must we. This pure
ASGI middleware touches only PUT and POST bodies under `.../deployments/...` of
Microsoft.Resources that are not JSON: it reads them with `json5` (JSON with unquoted
keys, comments and trailing commas) and hands the application the same document as
strict JSON. Anything else passes untouched, and what json5 cannot read either goes on
as it came (the route answers 400 as for any bad body). Inside `BodyLimit`, so at most
ARM's 4 MB are ever held.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import json5

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DEPLOYMENTS = "/providers/microsoft.resources/deployments/"


def strict(body: bytes) -> bytes | None:
    """`body` as strict JSON when it is lenient JSON; None when it is JSON already or
    not readable either way (then it goes on as it came)."""
    try:
        json.loads(body)
        return None
    except RecursionError:
        return None  # too deep for any parser here: the route answers it as before
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        document = json5.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


class TemplateBodyMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", "")).lower()
        if (
            scope["type"] != "http"
            or scope.get("method") not in ("PUT", "POST")
            or _DEPLOYMENTS not in path
        ):
            await self.app(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)  # a disconnect
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        fixed = strict(body)
        if fixed is not None:
            body = fixed
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        await self.app(
            scope, _replay([{"type": "http.request", "body": body, "more_body": False}]), send
        )


def _replay(messages: list[Message]) -> Receive:
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        return {"type": "http.disconnect"}

    return receive
