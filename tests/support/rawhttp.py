"""Raw HTTP/1.1 over TLS, byte by byte, for what no HTTP client will send.

Over-long request lines, thousands of headers, garbage instead of a request line, a
body sent in pieces: `TlsConn` writes exactly the bytes given and `read_response`
parses one response (status, lower-cased headers, body by Content-Length or until the
server closes).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

TIMEOUT_S = 15.0


@dataclass
class RawResponse:
    """One parsed HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes


class TlsConn:
    """A TLS connection to a server URL (https://host:port), closed by `close()`."""

    def __init__(self, url: str, ca_file: str, timeout: float = TIMEOUT_S) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 443
        ctx = ssl.create_default_context(cafile=ca_file)
        raw = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self._buffer = b""

    def send(self, data: bytes) -> None:
        """Write bytes; a server that closed the connection early is not an error here."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            chunk = b""
        self._buffer += chunk
        return bool(chunk)

    def read_response(self) -> RawResponse:
        """Read one response (interim 1xx responses are returned too)."""
        while b"\r\n\r\n" not in self._buffer:
            if not self._fill():
                raise ConnectionError(f"closed before a full response head: {self._buffer!r}")
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status < 200:
            return RawResponse(status, headers, b"")
        if "content-length" in headers:
            size = int(headers["content-length"])
            while len(self._buffer) < size:
                if not self._fill():
                    raise ConnectionError("closed in the middle of a response body")
            body, self._buffer = self._buffer[:size], self._buffer[size:]
        else:
            while self._fill():
                pass
            body, self._buffer = self._buffer, b""
        return RawResponse(status, headers, body)

    def closed_by_server(self) -> bool:
        """Whether the server has closed its side (reads end) without sending more."""
        return not self._buffer and not self._fill()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> TlsConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request_head(
    method: str, target: str, host: str, headers: list[tuple[str, str]] | None = None
) -> bytes:
    """The bytes of a request head (no body)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
