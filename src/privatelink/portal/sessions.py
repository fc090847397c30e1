"""Portal sessions: who is signed in in which browser, and with which tokens.

A session is a random id in an HttpOnly, Secure, SameSite=Strict cookie; its tokens stay
on the server (the browser never holds one). A sign-in in progress is a PKCE verifier
kept under the `state` it sent, bound to the browser by a second cookie. Both live in
memory: a restart signs everyone out, which costs a password and no data.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: How long a session lasts without use (the refresh token outlives it).
IDLE_SECONDS = 8 * 3600
#: How long a sign-in may take between the redirect out and the code coming back.
SIGN_IN_SECONDS = 600
MAX_SESSIONS = 10_000


@dataclass
class Session:
    """A signed-in user's tokens and who they are (from the ID token)."""

    access_token: str
    refresh_token: str
    expires: float  # when the access token expires (monotonic clock)
    user_name: str
    display_name: str
    tenant_id: str
    object_id: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    last_used: float = 0.0


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in under way: its PKCE verifier and where to go back to."""

    verifier: str
    return_to: str
    started: float


class Sessions:
    """Sessions and sign-ins in progress, by their random ids."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._pending: dict[str, PendingSignIn] = {}
        self._lock = threading.Lock()

    def start_sign_in(self, return_to: str) -> tuple[str, str]:
        """A new sign-in: its `state` and PKCE verifier."""
        state, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        with self._lock:
            self._prune()
            self._pending[state] = PendingSignIn(verifier, return_to, self._clock())
        return state, verifier

    def finish_sign_in(self, state: str) -> PendingSignIn | None:
        """The sign-in of `state` (used up), or None when unknown or too old."""
        with self._lock:
            pending = self._pending.pop(state, None)
        if pending is None or self._clock() - pending.started > SIGN_IN_SECONDS:
            return None
        return pending

    def add(self, session: Session) -> str:
        """Keep `session`; its id (the cookie's value)."""
        session_id = secrets.token_urlsafe(32)
        session.last_used = self._clock()
        with self._lock:
            self._prune()
            while len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
            self._sessions[session_id] = session
        return session_id

    def get(self, session_id: str | None) -> Session | None:
        """The live session of a cookie value, or None."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            now = self._clock()
            if now - session.last_used > IDLE_SECONDS:
                del self._sessions[session_id]
                return None
            session.last_used = now
            return session

    def drop(self, session_id: str | None) -> None:
        """End a session (sign-out)."""
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)

    def _prune(self) -> None:
        now = self._clock()
        for state in [s for s, p in self._pending.items() if now - p.started > SIGN_IN_SECONDS]:
            del self._pending[state]
        for sid in [s for s, x in self._sessions.items() if now - x.last_used > IDLE_SECONDS]:
            del self._sessions[sid]
