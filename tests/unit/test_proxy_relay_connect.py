"""The relay's flow start when the backend's connect is not done at once.

Over veths the handshake usually completes within connect(2), and `_Flow.begin` sends
the header right away (the netns tier covers that). Here the backend's accept queue is
full, so its SYN is dropped and retransmitted a second later: the first `begin` must
send nothing and leave the flow to the loop, which reports the connect and sends the
header then, ahead of what the client sent meanwhile. TCP on 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from privatelink.dataplane.proxy.relay import Relay, _Flow


def _until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _on_loop(relay: Relay, fn: Callable[[], object]) -> object:
    """Run `fn` on the relay's thread and return its result."""
    done = threading.Event()
    out: list[object] = []
    assert relay._loop is not None
    relay._loop.call_soon_threadsafe(lambda: (out.append(fn()), done.set()))
    assert done.wait(5)
    return out[0]


def test_a_backend_that_connects_late_gets_the_header_first() -> None:
    relay = Relay()
    relay._start()
    sockets: list[socket.socket] = []
    try:
        backend_listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        sockets.append(backend_listener)
        address = backend_listener.getsockname()
        # Fill the accept queue (backlog 0 holds one connection): the next SYN is dropped.
        sockets.append(socket.create_connection(address, timeout=5))
        front = socket.create_server(("127.0.0.1", 0))
        sockets.append(front)
        client = socket.create_connection(front.getsockname(), timeout=5)
        accepted, _ = front.accept()
        sockets += [client, accepted]
        accepted.setblocking(False)
        backend = socket.socket()
        backend.setblocking(False)
        sockets.append(backend)
        assert backend.connect_ex(address) != 0  # under way (its SYN was dropped)
        flow = _Flow(relay, "link", accepted, backend, b"HEADER|", [0, 0, 0])
        relay._flows["link"] = {flow}
        client.sendall(b"hello")
        _on_loop(relay, flow.wait_connect)
        assert _on_loop(relay, lambda: flow.connecting), "sent before the connect completed"
        # Free the queue: the SYN's retransmission (about 1 s later) is answered.
        queued, _ = backend_listener.accept()
        sockets.append(queued)
        _until(lambda: not _on_loop(relay, lambda: flow.connecting), 5, "the connect")
        served = None
        deadline = time.monotonic() + 5
        while served is None and time.monotonic() < deadline:
            backend_listener.settimeout(1)
            conn, peer = backend_listener.accept()
            sockets.append(conn)
            if peer[1] == backend.getsockname()[1]:
                served = conn
        assert served is not None
        served.settimeout(5)
        got = b""
        while len(got) < len(b"HEADER|hello"):
            chunk = served.recv(64)
            assert chunk
            got += chunk
        assert got == b"HEADER|hello"
        served.sendall(b"answer")
        client.settimeout(5)
        assert client.recv(16) == b"answer"
        assert relay.stats.relayed == 1 and relay.stats.failed == 0
    finally:
        relay.stop()
        for sock in sockets:
            sock.close()
