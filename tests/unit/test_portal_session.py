"""Portal sessions: a sign-in's state is single use and expires; an access token due
for renewal is renewed with the refresh token, and a refused renewal ends the session
(the next page asks for a sign-in) instead of failing every page."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.requests import Request

from privatelink.portal.arm import ArmError
from privatelink.portal.context import SESSION_COOKIE, Portal
from privatelink.portal.sessions import SIGN_IN_SECONDS, Session, Sessions


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _session(expires: float) -> Session:
    return Session("old-access", "refresh", expires, "alice@t", "Alice", "tid", "oid")


def test_a_sign_in_state_is_single_use_and_expires() -> None:
    clock = _Clock()
    store = Sessions(clock)
    state, verifier = store.start_sign_in("/portal/")
    assert store.finish_sign_in(state) is not None
    assert store.finish_sign_in(state) is None  # used up
    late, _ = store.start_sign_in("/portal/")
    clock.now += SIGN_IN_SECONDS + 1
    assert store.finish_sign_in(late) is None and len(verifier) > 40


class _TokenApp:
    """An ASGI app answering the token endpoint (and counting ARM calls)."""

    def __init__(self, ok: bool) -> None:
        self.ok = ok
        self.arm_calls: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"].endswith("/token"):
            status = 200 if self.ok else 400
            body: dict[str, Any] = (
                {"access_token": "new-access", "refresh_token": "r2", "expires_in": 3600}
                if self.ok
                else {"error": "invalid_grant", "error_description": "AADSTS50034: gone"}
            )
        else:
            headers = dict(scope["headers"])
            self.arm_calls.append(headers[b"authorization"].decode())
            status, body = 200, {"value": []}
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})


def _request(session_id: str) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/portal/",
        "query_string": b"",
        "scheme": "https",
        "server": ("127.0.0.1", 8443),
        "headers": [
            (b"host", b"127.0.0.1:8443"),
            (b"cookie", f"{SESSION_COOKIE}={session_id}".encode()),
        ],
    }
    return Request(scope)


def test_a_due_token_is_renewed_with_the_refresh_token() -> None:
    app = _TokenApp(ok=True)
    portal = Portal(app)
    session = _session(expires=0.0)  # due
    sid = portal.store.add(session)
    arm = portal.arm_for(_request(sid), session)
    asyncio.run(arm.get("/subscriptions"))
    assert app.arm_calls == ["Bearer new-access"] and session.refresh_token == "r2"


def test_a_refused_renewal_ends_the_session() -> None:
    app = _TokenApp(ok=False)
    portal = Portal(app)
    session = _session(expires=0.0)
    sid = portal.store.add(session)
    arm = portal.arm_for(_request(sid), session)
    with pytest.raises(ArmError) as ended:
        asyncio.run(arm.get("/subscriptions"))
    assert ended.value.code == "SessionExpired" and ended.value.status == 401
    assert portal.store.get(sid) is None and app.arm_calls == []
