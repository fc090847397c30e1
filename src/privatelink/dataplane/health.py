"""Health probes: really probe each backend from its hub, like Azure's 168.63.129.16.

One asyncio loop in one thread runs a task per (hub, backend, probe). A TCP probe
passes when a connection is accepted (after a PROXY v2 LOCAL header when the load
balancer serves a service with enableProxyProtocol); an HTTP probe when `GET path` answers 200.
`threshold` consecutive failures take a backend out; one success brings it back.
Verdict changes call `on_change` (the reconciler's mark_dirty). Each target's state is
also kept in Azure's words (`states`, `rule_health`: Up or Down and a reason code such as
Down_Probe_TcpProbeTimeout), for the load-balancing rule health API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Mapping

from privatelink.core import load_balancer as lbm
from privatelink.core.ids import key as id_key
from privatelink.dataplane import privileged
from privatelink.dataplane.desired import HealthKey, Plan
from privatelink.dataplane.names import AZURE_PLATFORM_IP
from privatelink.dataplane.proxy import header

log = logging.getLogger("privatelink.health")
TIMEOUT = 2.0


async def probe_once(key: HealthKey) -> bool:
    """One probe of one backend; True when healthy."""
    return await probe_failure(key) is None


async def probe_failure(key: HealthKey) -> str | None:
    """One probe of one backend: None when healthy, else why not, as Azure's reason code
    (no TCP connection, the HTTP(S) session refused, no answer, an answer other than 200;
    `Down_Platform` when the probe could not even start in its hub)."""
    try:
        sock = privileged.socket_in_netns(key.netns)
    except (OSError, privileged.KernelError):
        return lbm.DOWN_PLATFORM
    sock.setblocking(False)
    try:
        with contextlib.suppress(OSError):
            sock.bind((AZURE_PLATFORM_IP, 0))  # as Azure probes come from 168.63.129.16
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.sock_connect(sock, (key.backend_ip, key.probe.port)), TIMEOUT
            )
            if key.probe.proxy:
                # Azure: with PROXY protocol on, probes carry a header too, with no client
                # in it; a LOCAL one says exactly that (and a backend that requires the
                # header passes its probes only when it parses it).
                await asyncio.wait_for(loop.sock_sendall(sock, header.encode_local()), TIMEOUT)
        except (OSError, TimeoutError):
            return lbm.DOWN_PROBE_TCP_TIMEOUT
        if key.probe.protocol == "Tcp":
            return None
        return await _http_failure(key, sock)
    finally:
        sock.close()


async def _http_failure(key: HealthKey, sock: socket.socket) -> str | None:
    """The HTTP(S) part of a probe on a connected socket (see `probe_failure`)."""
    tls = ssl.create_default_context() if key.probe.protocol == "Https" else None
    if tls is not None:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE  # Azure does not validate probe certificates
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                sock=sock, ssl=tls, server_hostname=key.backend_ip if tls else None
            ),
            TIMEOUT,
        )
    except (OSError, TimeoutError, ssl.SSLError):
        return lbm.DOWN_PROBE_HTTP_UNREACHABLE
    try:
        request = (
            f"GET {key.probe.path or '/'} HTTP/1.1\r\nHost: {key.backend_ip}\r\n"
            "User-Agent: Load Balancer Agent\r\nConnection: close\r\n\r\n"
        )
        try:
            writer.write(request.encode())
            await writer.drain()
        except (OSError, ssl.SSLError):
            return lbm.DOWN_PROBE_HTTP_UNREACHABLE
        try:
            line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        except (OSError, TimeoutError, ssl.SSLError):
            return lbm.DOWN_PROBE_HTTP_NO_RESPONSE
        parts = line.decode("latin-1").split()
        if len(parts) < 2:
            return lbm.DOWN_PROBE_HTTP_NO_RESPONSE
        return None if parts[1] == "200" else lbm.DOWN_PROBE_HTTP_STATUS
    finally:
        writer.close()


class Prober:
    """Runs probes and keeps each target's verdict."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._verdicts: dict[HealthKey, bool] = {}
        self._failures: dict[HealthKey, int] = {}
        self._reasons: dict[HealthKey, str] = {}  # the last failure's reason code
        self._tasks: dict[HealthKey, asyncio.Task[None]] = {}
        self._lock = threading.Lock()
        # The loop and its thread start with the first target: a data plane without
        # probes (and every reconciler a test makes) holds no thread, no descriptors.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    def verdicts(self) -> dict[HealthKey, bool]:
        """Current verdicts (targets never probed yet are absent)."""
        with self._lock:
            return dict(self._verdicts)

    def states(self) -> dict[HealthKey, lbm.ProbeState]:
        """Current verdicts with Azure's reason codes (targets never probed yet are
        absent): Up_Probe_Success, Up_Probe_ApproachingUnhealthyThreshold while failures
        have not reached the threshold, else Down and the last failure's reason."""
        with self._lock:
            out = {}
            for key, up in self._verdicts.items():
                failing = self._failures.get(key, 0) > 0
                if not up:
                    reason = self._reasons.get(key, lbm.DOWN_PROBE_TCP_TIMEOUT)
                elif failing:
                    reason = lbm.UP_PROBE_APPROACHING_UNHEALTHY
                else:
                    reason = lbm.UP_PROBE_SUCCESS
                out[key] = lbm.ProbeState(up, reason)
            return out

    def track(self, keys: tuple[HealthKey, ...]) -> None:
        """Probe exactly these targets from now on."""
        with self._lock:
            if self._stopped:
                return
            if self._loop is None:
                if not keys:
                    return
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="prober", daemon=True
                )
                self._thread.start()
            loop = self._loop
        loop.call_soon_threadsafe(self._retarget, set(keys))

    def _retarget(self, keys: set[HealthKey]) -> None:
        for key in list(self._tasks):
            if key not in keys:
                self._tasks.pop(key).cancel()
                with self._lock:
                    self._verdicts.pop(key, None)
                    self._failures.pop(key, None)
                    self._reasons.pop(key, None)
        for key in keys:
            if key not in self._tasks:
                assert self._loop is not None
                self._tasks[key] = self._loop.create_task(self._run(key))

    async def _run(self, key: HealthKey) -> None:
        while True:
            failure = await probe_failure(key)
            changed = False
            with self._lock:
                before = self._verdicts.get(key, True)
                if failure is None:
                    self._failures[key] = 0
                    verdict = True
                else:
                    self._reasons[key] = failure
                    self._failures[key] = self._failures.get(key, 0) + 1
                    verdict = self._failures[key] < key.probe.threshold and before
                self._verdicts[key] = verdict
                changed = verdict != before
            if changed:
                log.info(
                    "backend %s in %s is now %s",
                    key.backend_ip,
                    key.netns,
                    "up" if verdict else "down",
                )
                self._on_change()
            await asyncio.sleep(key.probe.interval)

    def stop(self) -> None:
        """Cancel all probes and stop the loop."""

        with self._lock:
            self._stopped = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return

        async def drain() -> None:
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        def shutdown() -> None:
            loop.create_task(drain())

        loop.call_soon_threadsafe(shutdown)
        thread.join(timeout=5)
        loop.close()


def rule_health(
    plan: Plan | None, states: Mapping[HealthKey, lbm.ProbeState], rule_id: str
) -> dict[str, lbm.ProbeState]:
    """The probe state of each backend of a rule, by backend IP, as the data plane has it
    (the plan last applied and the prober's states): backends not probed yet, and every
    backend of a rule without a probe or not (yet) in the plan, are absent."""
    if plan is None:
        return {}
    wanted = id_key(rule_id)
    for hub in plan.hubs:
        for rule in hub.rules:
            if id_key(rule.rule_id) == wanted:
                return {c.backend_ip: states[c] for c in rule.probed if c in states}
    return {}
