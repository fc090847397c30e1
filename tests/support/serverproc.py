"""Start and stop a real `privatelink serve` process for tests (shared by the suites).

`serve_process` starts the server on a free 127.0.0.1 port with a data directory,
waits (with a deadline, by polling) until TLS works and an anonymous ARM GET answers
401, yields what a test needs, and always stops the process (terminate, then kill).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

START_DEADLINE_S = 30.0
STOP_TIMEOUT_S = 30.0  # above the default drain (10 s) plus the data plane's stop
LOCAL = "127.0.0.1,localhost"


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(url: str, ca_file: str) -> bool:
    """TLS against the server's CA, and an unauthenticated ARM GET answering 401."""
    ctx = ssl.create_default_context(cafile=ca_file)
    try:
        with httpx.Client(verify=ctx, timeout=2, trust_env=False) as c:
            return c.get(f"{url}/subscriptions?api-version=2022-12-01").status_code == 401
    except (httpx.HTTPError, ssl.SSLError, OSError):
        return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill after a timeout."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


def tail_of(path: Path, lines: int) -> str:
    """The last `lines` lines of a log file ("" when it cannot be read)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@dataclass
class ServerProcess:
    """A started server: its process, credentials.json and log files."""

    proc: subprocess.Popen[bytes]
    credentials: dict[str, Any]
    data_dir: Path
    stdout_path: Path
    stderr_path: Path

    @property
    def url(self) -> str:
        return str(self.credentials["url"])

    @property
    def ca_file(self) -> str:
        return str(self.credentials["ca_file"])

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stderr(self, tail: int = 80) -> str:
        """The end of the server's stderr."""
        return tail_of(self.stderr_path, tail)

    def accepts_connections(self) -> bool:
        """Whether a TCP connection to the server's port is accepted right now."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
        except OSError:
            return False
        return True

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        """Send a signal (SIGTERM by default) to the server process."""
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        """Wait (at most `timeout` seconds) for the process to exit; its exit status.

        Fails the test, with the server's stderr, when it is still running by then.
        """
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"privatelink serve still running {timeout} s after being asked to stop.\n"
                f"--- stderr ---\n{self.stderr()}",
                pytrace=False,
            )


@contextlib.contextmanager
def serve_process(
    data_dir: Path, *extra_args: str, port: int | None = None
) -> Iterator[ServerProcess]:
    """`privatelink serve --data-dir DIR ARGS...` on a free port (or `port`), until the
    block ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NO_PROXY=LOCAL, no_proxy=LOCAL)
    attempts = 3 if port is None else 1
    fixed = port
    for attempt in range(attempts):
        port = fixed or free_port()
        stdout_path = data_dir / f"server-{port}.stdout"
        stderr_path = data_dir / f"server-{port}.stderr"
        cmd = [sys.executable, "-m", "privatelink.cli.main", "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--data-dir", str(data_dir), *extra_args]
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        try:
            started: ServerProcess | None = None
            deadline = time.monotonic() + START_DEADLINE_S
            creds_file = data_dir / "credentials.json"
            while proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(ValueError, OSError):
                    creds = json.loads(creds_file.read_text())
                    if creds.get("url", "").endswith(f":{port}") and ready(
                        creds["url"], creds["ca_file"]
                    ):
                        started = ServerProcess(proc, creds, data_dir, stdout_path, stderr_path)
                        break
                # Waits for the process to exit, at most 50 ms: a poll, not a bare sleep.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.05)
            if started is None:
                exited = proc.poll()
                err_text = stderr_path.read_text(errors="replace")
                if exited is not None and "already in use" in err_text and attempt < attempts - 1:
                    continue
                what = f"exited with {exited}" if exited is not None else "was not ready in time"
                pytest.fail(
                    f"privatelink serve ({shlex.join(cmd)}) {what}.\n--- stderr ---\n{err_text}",
                    pytrace=False,
                )
            yield started
            return
        finally:
            stop(proc)
