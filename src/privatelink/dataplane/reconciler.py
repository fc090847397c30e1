"""The reconciler: one loop that makes the kernel match the store.

API writes and probe verdicts only mark the reconciler dirty; a single thread reads a
snapshot, computes the plan (desired.py) and applies it: namespaces and veths first,
then each hub's nft table as one transaction, then the removal of what is stale
(conntrack entries of dead links before their veths). Success reports provisioning
states back (Updating -> Succeeded); failure reports Failed with the reason and is
retried with back-off. Nothing is applied before the first full snapshot is read.

Self-repair: a watcher (watcher.py) reports kernel events (a namespace, interface,
address or route of ours deleted, our nft table changed by someone else); `report()`
turns them into damaged hubs, links and tables (repair.py) that the next sync
re-verifies even if the store did not change, within a second. The full pass every
`FULL_RESYNC_SECONDS` repairs anything the events missed. The watcher also samples each
hub's conntrack count: at `conntrack_limit` the hub's table refuses new flows with a
reset (counted, logged) instead of letting the kernel drop them silently.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privatelink.core.ids import key
from privatelink.core.load_balancer import ProbeState
from privatelink.core.network_interface import NetworkInterface
from privatelink.core.private_endpoint import PrivateEndpoint
from privatelink.core.private_link_service import PrivateEndpointConnection, PrivateLinkService
from privatelink.core.resource import Resource
from privatelink.core.virtual_network import VirtualNetwork
from privatelink.dataplane import fabric as fabrics
from privatelink.dataplane import names, nft, privileged
from privatelink.dataplane.desired import (
    HubPlan,
    LinkPlan,
    NicPlan,
    Plan,
    PlanChange,
    Planner,
    Snapshot,
    approved_keys,
    service_facts,
)
from privatelink.dataplane.events import KernelEvent
from privatelink.dataplane.health import Prober, rule_health
from privatelink.dataplane.privileged import KernelError, Netlink
from privatelink.dataplane.proxy.config import link_id_of, proxy_config
from privatelink.dataplane.proxy.workers import RelayPool, default_workers
from privatelink.dataplane.repair import NONE, Damage, Owned, links_touching
from privatelink.dataplane.watcher import Watcher
from privatelink.store.repository import utc_now
from privatelink.store.sql import SqlRepository

log = logging.getLogger("privatelink.dataplane")

# Each strongSwan's configuration, keys, socket and log (per namespace, mode 0700).
IPSEC_RUN_DIR = Path("/run/privatelink/ipsec")
# How often connection states are read from strongSwan between syncs.
TUNNEL_POLL_SECONDS = 2.0
# A fabric namespace (internet, gateway, site) only routes between its wires.
NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}
HUB_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    # Conntrack must remember a closed flow a little longer than a backend keeps its
    # TIME_WAIT socket (60 s, fixed in Linux): SNAT would otherwise hand out a (NAT IP,
    # port) the backend still holds, whose SYN it answers with a stale ACK (1 s stalls).
    # Shorter than the kernel's 120 s, so a short flow pins its entries half as long.
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait": "65",
    "net.ipv4.conf.all.accept_local": "1",
    # The data plane is IPv4. With IPv6 left on, every link veth makes link-local
    # neighbour entries in the host-wide IPv6 table (1024 by default): a few hundred
    # links fill it, for the whole host (bench/kernel_objects.py, docs/dataplane.md §8).
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}
PENDING_STATES = ("Updating", "Failed")
# `ip netns exec` (and so `privatelink exec`) bind-mounts /etc/netns/<ns>/resolv.conf over
# /etc/resolv.conf: every program in a VNet's namespaces asks the VNet's DNS server.
RESOLV_CONF = (
    "# Written by privatelink: the private DNS server of this virtual network.\n"
    f"nameserver {names.AZURE_PLATFORM_IP}\n"
)
# A full check repairs what no event reported (events lost, or missed while a hub was
# being (re)subscribed). Events repair the rest within a second, so the full pass stays
# rare: with 1000 links it takes about 11 s (docs/dataplane.md, "Self-repair").
FULL_RESYNC_SECONDS = 300.0
# A periodic full pass that falls due while changes are being applied waits for a sync
# with nothing to apply, at most this much longer: a burst of writes (10,000 endpoints
# being made) is not slowed by a pass over everything; damage meanwhile reaches the
# watcher. A full pass after a failure never waits.
FULL_DEFER_SECONDS = 300.0
# How long a new pair veth may take to carry packets before its first route goes in.
VETH_READY_SECONDS = 0.2
# Default conntrack limit per hub: this share of nf_conntrack_max, which the kernel
# applies to each namespace's own count. Above it the hub refuses new flows.
CONNTRACK_LIMIT_SHARE = 0.9


# What a hub's table is rendered from: its plan, the marks of dying links, the gate.
_TableInputs = tuple[HubPlan, frozenset[int], bool]


@dataclass
class _Read:
    """What a read of the change feed brought: (as it was or None, as it is now) per
    resource put, and the resources deleted as they were."""

    put: list[tuple[Resource | None, Resource]]
    deleted: list[Resource]


class _StoredPairSlots:
    """Slots of pairs of hubs (`desired.PairSlots`) as the store hands them out: kept
    while a pair has links, so its veth keeps its names and /30 across restarts."""

    def __init__(self, repo: SqlRepository) -> None:
        self.repo = repo
        self._held: dict[str, int] | None = None

    def _slots(self) -> dict[str, int]:
        if self._held is None:
            self._held = self.repo.held_slots("pair")
        return self._held

    def get(self, pair: str) -> int | None:
        """The pair's slot, given now (one small write) if it had none."""
        held = self._slots()
        slot = held.get(pair)
        if slot is None:
            got = self.repo.change_link_slots({pair}, set(), names.MAX_PAIRS, kind="pair")
            slot = got.get(pair)
            if slot is not None:
                held[pair] = slot
        return slot

    def release(self, pairs: Iterable[str]) -> None:
        """Free the slots of pairs that have no link any more (they rest before reuse)."""
        held = self._slots()
        gone = {p for p in pairs if p in held}
        if gone:
            self.repo.change_link_slots(set(), gone, names.MAX_PAIRS, kind="pair")
            for p in gone:
                del held[p]

    def keep(self, pairs: set[str]) -> None:
        """Free every slot but these pairs'."""
        self.release([p for p in self._slots() if p not in pairs])

    def reset(self) -> None:
        """Read the store again next time (after a failure)."""
        self._held = None


@dataclass
class SyncReport:
    """What one sync did."""

    seconds: float
    hubs: int
    links: int
    error: str | None = None
    repaired: tuple[str, ...] = ()  # what damage reported by the watcher it re-verified


@dataclass(frozen=True)
class DataplaneStats:
    """Counters of the data plane's self-repair and admission (for status and metrics).

    `refused_flows`: new flows refused (TCP reset / ICMP) because their hub's conntrack
    table was at `conntrack_limit`; `kernel_drops`: packets the kernel dropped anyway
    because a table was full (nf_conntrack "table full"); `repairs`: syncs that
    re-verified damage the watcher reported."""

    refused_flows: int
    refused_by_hub: Mapping[str, int]
    kernel_drops: int
    conntrack: Mapping[str, int]  # last sampled count per hub
    conntrack_limit: int
    full_hubs: tuple[str, ...]  # hubs refusing new flows right now
    repairs: int
    last_repair: tuple[str, ...] = ()
    damage_pending: bool = False
    watching: bool = False


def _local_addresses(hub: HubPlan) -> frozenset[str]:
    """The PE and NAT addresses of a hub's `lo`: local so that, when no live flow NATs
    them, the input chain answers with a TCP reset instead of "unreachable"."""
    return frozenset(f"{ip}/32" for ip in hub.pe_ips) | frozenset(
        f"{ip}/32" for s in hub.services for ip in s.nat_ips
    )


class Reconciler:
    """Applies the desired state of a repository onto this host's kernel."""

    def __init__(
        self,
        repo: SqlRepository,
        prefix: str,
        data_dir: Path | None = None,
        kernel: Any = privileged,
        conntrack_limit: int | None = None,
        watch: bool = True,
        public_range: str = "198.18.0.0/15",
        proxy_workers: int | None = None,
    ) -> None:
        """`kernel` is the privileged module (tests pass a fake with the same functions).

        `conntrack_limit`: entries per hub at which new flows are refused (default
        `CONNTRACK_LIMIT_SHARE` of nf_conntrack_max); `watch`: run the kernel watcher;
        `proxy_workers`: processes of the PROXY relay (default: one per core)."""
        self.repo = repo
        self.kernel = kernel
        self.prefix = names.check_prefix(prefix)
        self.data_dir = data_dir
        self.prober = Prober(self.mark_dirty)
        # The PROXY relay (dataplane/proxy): fed after every sync once a service used it.
        # Worker processes use the real kernel: a fake one (unit tests) gets one relay.
        workers = (proxy_workers or default_workers()) if kernel is privileged else 1
        self.relay = RelayPool(kernel, workers)
        self._relay_used = False
        self._dirty = threading.Event()
        # Guards the generations; notified when a sync completes one (`wait_idle`).
        self._generation_lock = threading.Condition()
        self._wanted = 0  # bumped by mark_dirty
        self._done = 0  # the generation the last successful sync covered
        self._stop = threading.Event()
        # Each hub's table as last applied, by what it was rendered from (hub, dying, gated).
        self._applied: dict[str, _TableInputs] = {}
        self._prepared: set[str] = set()
        self._thread: threading.Thread | None = None
        self._handles: dict[str, Netlink] = {}
        # Each hub's NICs and local (PE and NAT) addresses as last made.
        self._hub_sigs: dict[str, tuple[tuple[NicPlan, ...], frozenset[str]]] = {}
        self._links: dict[int, LinkPlan] = {}
        # Each pair veth's consumer-end interface index, as last made or checked: a link
        # over a pair that exists costs one route (no interface lookup).
        self._pair_index: dict[int, int] = {}
        # Ends (netns, ifname) of pair veths whose last link went, deleted once the sync
        # that removed the link has been reported (`_retire_pairs`).
        self._retiring: list[tuple[str, str]] = []
        self._pair_slots = _StoredPairSlots(repo)
        self._full_due = 0.0
        # The stored resources as of change version `_version` (None: read them all next
        # time), kept up to date from the store's change feed: a sync reads what changed,
        # not every resource. Insertion order is creation order, as a snapshot's.
        self._world: dict[str, Resource] = {}
        self._seqs: dict[str, int] = {}  # creation numbers of the kept resources
        self._version: int | None = None
        self._feed_kept = 0  # the version read one full pass ago: the feed is pruned to it
        # Approved connections, their link slots as last assigned (None: ask for all
        # next time) and those that got none: asked again only for what changed.
        self._conn_keys: set[str] = set()
        self._slot_of: dict[str, int] | None = None
        self._unslotted: set[str] = set()
        # Resources whose provisioning state the next sync settles (Updating, Failed).
        self._pending: dict[str, Resource] = {}
        self._plan: Plan | None = None  # the plan last applied whole or by difference
        # Each hub's last rendered table, by what it was rendered from.
        self._rendered: dict[str, tuple[_TableInputs, nft.Table]] = {}
        self._planner = Planner()
        # The fabric (peerings' wires): its wires' slots by key, and what was applied.
        self._wire_keys: set[str] | None = None
        self._wire_slots: dict[str, int] = {}
        self._fabric: fabrics.Fabric | None = None
        self.public_range = public_range
        # On-premises sites (admin objects): as last read, and the store's version of them.
        self._sites: list[Any] = []
        self._sites_version: object = None
        # strongSwan per gateway and site namespace: what it serves and the daemon; the
        # kernel's ESP (None: not asked yet); connection states as last reported.
        self._charons: dict[str, tuple[fabrics.Tunnels, Any]] = {}
        self._esp: bool | None = None
        self._reported: dict[str, tuple[str, int, int]] = {}
        self._modes: dict[str, str] = {}
        self.last: SyncReport | None = None
        self.syncs = 0
        self._listeners: list[Callable[[], None]] = []
        # Self-repair: what the kernel reported damaged, against the last published plan.
        self._owned = Owned()
        self._damage_lock = threading.Lock()
        self._damage: Damage = NONE
        self._repairs = 0
        self._last_repair: tuple[str, ...] = ()
        # Admission: per-hub conntrack counts, hubs refusing new flows, what was refused.
        if conntrack_limit is not None and conntrack_limit < 1:
            raise ValueError("conntrack_limit must be at least 1")
        self._conntrack_limit = conntrack_limit
        self._admission_lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._full: set[str] = set()
        self._drops_seen: dict[str, int] = {}
        self._kernel_drops = 0
        self._refused: dict[str, int] = {}
        self._gated_applied: set[str] = set()  # hubs whose applied table refuses new flows
        self._watcher: Watcher | None = Watcher(self, kernel) if watch else None

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after every sync (the DNS server re-checks its hubs)."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # a listener's bug must not stop the data plane
                log.exception("sync listener failed")

    # --- loop --------------------------------------------------------------------

    def mark_dirty(self) -> None:
        """Something changed: sync soon."""
        with self._generation_lock:
            self._wanted += 1
        self._dirty.set()

    def start(self) -> None:
        """Start the sync loop (the first sync runs at once) and the kernel watcher."""
        self._dirty.set()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
        self._thread.start()
        if self._watcher is not None:
            self._watcher.start()

    def stop(self) -> None:
        """Stop the loop (kernel state stays: flows survive a restart). The VPN daemons
        end with it: a tunnel needs its daemon, and the next start makes them again
        (their tunnels come back within seconds)."""
        self._stop.set()
        self._dirty.set()
        if self._watcher is not None:
            self._watcher.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.prober.stop()
        self.relay.stop()
        for _tunnels, charon in self._charons.values():
            try:
                charon.stop()
            except Exception:  # stopping the server must not fail on one daemon
                log.exception("could not stop strongSwan in %s", _tunnels.netns)
        self._charons.clear()
        if self._thread is None:
            self._close_handles()

    def _close_handles(self) -> None:
        # pyroute2 keeps per-thread state: handles must be closed by the thread that used them.
        for netns in list(self._handles):
            self._forget(netns)

    def _loop(self) -> None:
        try:
            self._run()
        finally:
            self._close_handles()

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            # Wake up when the full pass is due (it repairs drift), at the latest.
            due = min(max(self._full_due - time.monotonic(), 0.05), FULL_RESYNC_SECONDS)
            if self._charons and not backoff:
                due = min(due, TUNNEL_POLL_SECONDS)
            woke = self._dirty.wait(timeout=backoff or due)
            if self._stop.is_set():
                return
            if not woke and not backoff and time.monotonic() < self._full_due:
                try:
                    self.poll_tunnels()  # between syncs: the tunnels' states and bytes
                except Exception:
                    log.exception("reading the tunnels failed")
                continue
            self._dirty.clear()
            with self._generation_lock:
                generation = self._wanted
            report = self._sync_once()
            # Listeners first (the DNS server binds in new hubs): a change counts as
            # applied for `wait_idle` once they have seen it too.
            self._notify()
            if not report.error:
                with self._generation_lock:
                    self._done = generation
                    self._generation_lock.notify_all()
            self._retire_pairs()
            if report.error:
                backoff = min(max(backoff * 2, 0.5), 30.0)
                log.warning("sync failed (retry in %.1fs): %s", backoff, report.error)
            else:
                backoff = 0.0
            time.sleep(0.01)  # coalesce bursts of writes into one sync

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every change marked so far has been applied (every API write that
        waits for its provisioning state, tests, the demo). Woken by the sync that
        completes it: no polling, so many waiting requests cost nothing while they wait."""
        with self._generation_lock:
            target = self._wanted
            return self._generation_lock.wait_for(lambda: self._done >= target, timeout)

    @property
    def plan(self) -> Plan | None:
        """The plan last applied, whole or by difference (None before the first sync):
        what the metrics sampler (dataplane/metrics.py) reads the kernel's counters by."""
        return self._plan

    def rule_health(self, rule_id: str) -> Mapping[str, ProbeState]:
        """The live probe state of each backend of a load-balancing rule, by backend IP
        (`core.load_balancer.RuleHealth`, served by the rule health API)."""
        return rule_health(self._plan, self.prober.states(), rule_id)

    # --- self-repair and admission (called by the watcher's thread) ------------------

    def owned(self) -> Owned:
        """What the data plane owns, as of the plan being applied (the watcher's map)."""
        return self._owned

    def report(self, event: KernelEvent, netns: str | None = None) -> Damage | None:
        """A kernel event (from namespace `netns`): if it damaged something of ours,
        remember it and sync soon. Returns the damage, or None when it did not matter."""
        damage = self._owned.damage(event, netns)
        if not damage:
            return None
        with self._damage_lock:
            self._damage = self._damage | damage
        log.warning("kernel state damaged: %s", "; ".join(damage.why))
        self.mark_dirty()
        return damage

    @property
    def conntrack_limit(self) -> int:
        """Conntrack entries per hub at which new flows are refused."""
        if self._conntrack_limit is not None:
            return self._conntrack_limit
        return max(int(self.kernel.conntrack_max() * CONNTRACK_LIMIT_SHARE), 1)

    @conntrack_limit.setter
    def conntrack_limit(self, value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError("conntrack_limit must be at least 1")
        self._conntrack_limit = value

    def observe_conntrack(self, netns: str, count: int, drops: int | None = None) -> None:
        """A hub's conntrack count (and the kernel's drop counter, when read).

        At `conntrack_limit` the hub starts refusing new flows; 5 % below it, it takes
        them again (the gap keeps it from flapping). Drops are what the kernel could not
        track: they mean the limit was no protection, and are logged as errors."""
        limit = self.conntrack_limit
        low = limit - max(1, limit // 20)
        changed = False
        with self._admission_lock:
            self._counts[netns] = count
            if count >= limit and netns not in self._full:
                self._full.add(netns)
                changed = True
                log.warning(
                    "hub %s holds %d conntrack entries, its limit is %d: new flows are "
                    "refused with a reset until it holds fewer than %d",
                    netns,
                    count,
                    limit,
                    low,
                )
            elif count < low and netns in self._full:
                self._full.discard(netns)
                changed = True
                log.info("hub %s holds %d conntrack entries: new flows are admitted", netns, count)
            if drops is not None:
                seen = self._drops_seen.setdefault(netns, drops)
                if drops > seen:
                    self._kernel_drops += drops - seen
                    log.error(
                        "hub %s: the kernel dropped %d packets because its conntrack table "
                        "was full (nf_conntrack_max %d, %d entries now)",
                        netns,
                        drops - seen,
                        self.kernel.conntrack_max(),
                        count,
                    )
                self._drops_seen[netns] = drops
        if changed:
            self.mark_dirty()

    def forget_conntrack(self, netns: str) -> None:
        """A hub is gone (or made again): its samples no longer apply."""
        with self._admission_lock:
            self._counts.pop(netns, None)
            self._drops_seen.pop(netns, None)
            was_full = netns in self._full
            self._full.discard(netns)
        if was_full:
            self.mark_dirty()

    def collect_refusals(self) -> int:
        """Read (and zero) the refusal counters of the hubs that refuse new flows now;
        logs a warning per hub that refused some. Returns how many were added."""
        with self._admission_lock:
            hubs = sorted(self._full | (self._gated_applied & set(self._counts)))
        return sum(self._take_refused(netns) for netns in hubs)

    def _take_refused(self, netns: str) -> int:
        try:
            refused = self.kernel.take_nft_counter(netns, names.TABLE, names.REFUSED_COUNTER)
        except KernelError as exc:
            log.debug("refusal counter of %s unreadable: %s", netns, exc.message)
            return 0
        if refused:
            with self._admission_lock:
                self._refused[netns] = self._refused.get(netns, 0) + refused
                count = self._counts.get(netns, 0)
            log.warning(
                "hub %s refused %d new flows: its conntrack table holds %d entries (limit %d)",
                netns,
                refused,
                count,
                self.conntrack_limit,
            )
        return int(refused)

    def stats(self) -> DataplaneStats:
        """The data plane's repair and admission counters (for status pages and metrics)."""
        with self._admission_lock:
            refused = dict(self._refused)
            counts = dict(self._counts)
            full = tuple(sorted(self._full))
            drops = self._kernel_drops
        with self._damage_lock:
            pending = bool(self._damage)
        return DataplaneStats(
            refused_flows=sum(refused.values()),
            refused_by_hub=refused,
            kernel_drops=drops,
            conntrack=counts,
            conntrack_limit=self.conntrack_limit,
            full_hubs=full,
            repairs=self._repairs,
            last_repair=self._last_repair,
            damage_pending=pending,
            watching=self._watcher is not None and self._watcher.watching,
        )

    # --- one sync ------------------------------------------------------------------

    def sync_once(self) -> SyncReport:
        """Read, plan, apply, report, and delete the veths of pairs left without links.
        Never raises (a failure is reported and retried)."""
        report = self._sync_once()
        self._retire_pairs()
        return report

    def _retire_pairs(self) -> None:
        """Delete the veths whose pair's last link the last sync removed.

        Deferred until that sync has been reported (its waiting requests answered):
        deleting a veth waits about 22 ms for the kernel's teardown, and the link is
        already dead without it (route deleted, flows cut, nft elements gone). A pair
        slot rests 60 s before reuse, so its names are not wanted again before this
        runs; one left by a failure is stale to the next full pass, which deletes it.
        """
        retiring, self._retiring = self._retiring, []
        for netns, ifname in retiring:
            try:
                self._netlink(netns).delete_link(ifname)  # its peer goes with it
            except KernelError as exc:
                log.warning("could not delete %s in %s: %s", ifname, netns, exc.message)
                self._full_due = 0.0

    def _sync_once(self) -> SyncReport:
        """`sync_once` without retiring pairs (the loop retires after reporting)."""
        try:
            return self._sync()
        except Exception as exc:  # e.g. the database is unreachable: report, retry later
            log.exception("sync failed before it could report")
            self._full_due = 0.0
            self.last = SyncReport(0.0, 0, 0, f"sync failed: {exc}")
            return self.last

    def _read_world(self) -> _Read | None:
        """Bring the kept resources up to now: what changed since the last read (returned,
        with each resource as it was), or (a first read, or a feed pruned past us) all of
        them, returning None. A full pass reads the feed too: it verifies the kernel, and
        reading every resource again would only make a second copy of the world (40 MB
        more at 10,000 endpoints, which the allocator then keeps)."""
        delta = None if self._version is None else self.repo.changes_since(self._version)
        if delta is None:
            version, everything = self.repo.versioned_snapshot()
            self._world = {r.key: r for _, r in everything}
            self._seqs = {r.key: seq for seq, r in everything}
            self._pending = {
                k: r for k, r in self._world.items() if r.provisioning_state in PENDING_STATES
            }
            self._version = version
            return None
        version, put, deleted = delta
        read = _Read([], [])
        for k in deleted:
            gone = self._world.pop(k, None)
            self._seqs.pop(k, None)
            self._pending.pop(k, None)
            if gone is not None:
                read.deleted.append(gone)
        for seq, r in put:
            old = self._world.get(r.key)
            if self._seqs.get(r.key, seq) != seq:
                # Deleted and made again since: it goes where a snapshot has it, last.
                del self._world[r.key]
            self._world[r.key] = r
            self._seqs[r.key] = seq
            if r.provisioning_state in PENDING_STATES:
                self._pending[r.key] = r
            else:
                self._pending.pop(r.key, None)
            read.put.append((old, r))
        self._version = version
        return read

    def _change_slots(self, added: set[str], removed: set[str]) -> set[str]:
        """Take approved connections in and out: frees the slots of `removed`, gives
        slots to `added` (and again to those that had none: one may be free now).
        Returns the connection keys whose slot changed."""
        if self._slot_of is None:
            self._conn_keys = (self._conn_keys | added) - removed
            self._slot_of = self.repo.link_slots(set(self._conn_keys), names.MAX_SLOTS)
            self._unslotted = self._conn_keys - self._slot_of.keys()
            return set(self._conn_keys)
        removed = removed & self._conn_keys
        added = added - self._conn_keys
        self._conn_keys -= removed
        self._conn_keys |= added
        self._unslotted -= removed
        want = added | self._unslotted
        if not want and not removed:
            return set()
        got = self.repo.change_link_slots(want, removed, names.MAX_SLOTS)
        for k in removed:
            self._slot_of.pop(k, None)
        self._slot_of.update(got)
        self._unslotted = want - got.keys()
        return removed | got.keys()

    def _endpoint_change(self, read: _Read) -> tuple[set[str], set[str], set[str]] | None:
        """What a change did when it touched only endpoints, their NICs and the states of
        connections (the common case, planned by difference): the endpoints to re-plan
        and the approved connections that came and went. None for anything else."""
        if self._plan is None or self._slot_of is None:
            return None
        with self._damage_lock:
            if self._damage:
                return None
        if not self._planner.can_update(self.prefix, self.prober.verdicts()):
            return None
        endpoints: set[str] = set()
        nics: set[str] = set()
        came: set[str] = set()
        went: set[str] = set()
        for old, new in [*read.put, *((r, None) for r in read.deleted)]:
            either = new if new is not None else old
            if isinstance(either, PrivateEndpoint) and (
                old is None or isinstance(old, PrivateEndpoint)
            ):
                endpoints.add(either.key)
            elif (
                isinstance(either, NetworkInterface)
                and either.managed_by
                and (old is None or (isinstance(old, NetworkInterface) and old.managed_by))
            ):
                nics.add(either.key)
            elif isinstance(old, PrivateLinkService) and isinstance(new, PrivateLinkService):
                if service_facts(old) != service_facts(new):
                    return None
            elif isinstance(either, PrivateEndpointConnection) and (
                old is None or isinstance(old, PrivateEndpointConnection)
            ):
                before, after = (
                    approved_keys([old] if old else []),
                    approved_keys([new] if new else []),
                )
                came |= after - before
                went |= before - after
            elif isinstance(old, VirtualNetwork) and isinstance(new, VirtualNetwork):
                continue  # a plan takes only a network's id
            else:
                return None
        return endpoints | self._planner.endpoints_of(nic_keys=nics), came, went

    def _sync(self) -> SyncReport:
        began = time.monotonic()
        started = utc_now()
        now = time.monotonic()
        full = now >= self._full_due
        try:
            read = self._read_world()
        except Exception:
            self._version = None  # read everything again next time
            raise
        if full and self._full_due and read is not None and (read.put or read.deleted):
            # Periodic (not after a failure: `_full_due` 0) and busy: FULL_DEFER_SECONDS.
            full = now >= self._full_due + FULL_DEFER_SECONDS
        repaired: tuple[str, ...] = ()
        desired: Plan | None = None
        try:
            sites_changed = self.repo.sites_version() != self._sites_version
            change = None if read is None or full or sites_changed else self._endpoint_change(read)
            if change is not None:
                desired = self._sync_endpoints(*change)
            else:
                desired, repaired = self._sync_all(full)
            error = None
        except KernelError as exc:
            error = exc.message
            desired = None
            self._failed()
            for netns in list(self._handles):
                self._forget(netns)
        except Exception as exc:  # a bug must not kill the loop; report it on resources
            log.exception("sync failed")
            error = f"internal error while applying network state: {exc}"
            desired = None
            self._failed()
        if desired is not None and error is None:
            self._update_relay(desired)
        problems = dict(desired.problems) if desired else {}
        states = {}
        for r in self._pending.values():
            failed = error or problems.get(r.key)
            states[r.key] = (r.etag, "Failed" if failed else "Succeeded")
        self.repo.set_provisioning_states(states)
        failures = {k: error for k in self._world} if error else problems
        self.repo.complete_operations(started, failures, utc_now())
        self.syncs += 1
        if repaired and not error:
            self._repairs += 1
            self._last_repair = repaired
            log.warning("repaired: %s", "; ".join(repaired))
        self.last = SyncReport(
            time.monotonic() - began,
            len(desired.hubs) if desired else 0,
            len(desired.links) if desired else 0,
            error,
            repaired,
        )
        return self.last

    def _update_relay(self, plan: Plan) -> None:
        """Give the relay its part of `plan` and wait until it serves it (a service's
        flag and its listener come together: an API write completes after both)."""
        proxied = [h for h in plan.hubs if any(s.proxy for s in h.services)]
        if not proxied and not self._relay_used:
            return  # no PROXY service ever: no per-sync cost
        self._relay_used = True
        link_ids: dict[str, int] = {}
        for hub in proxied:
            for x in hub.links_in:
                conn = self._world.get(x.link_key)
                if isinstance(conn, PrivateEndpointConnection):
                    found = link_id_of(conn.link_identifier)
                    if found is not None:
                        link_ids[x.link_key] = found
        self.relay.update(proxy_config(plan, link_ids))
        if not self.relay.wait_applied(10.0):
            log.warning("the PROXY relay did not take the new plan within 10 s")

    def _failed(self) -> None:
        """After a failure: check everything next time, against tables we no longer know."""
        self._full_due = 0.0
        self._slot_of = None
        self._plan = None
        self._applied.clear()
        self._pair_index.clear()
        self._pair_slots.reset()
        self._wire_keys = None
        self._fabric = None

    def _sync_all(self, full: bool) -> tuple[Plan, tuple[str, ...]]:
        """Plan from every resource and apply (a full pass, or a change of more than
        endpoints and connections)."""
        snapshot = Snapshot.of(self._world.values())
        # Only approved connections take a link slot (and so count against MAX_SLOTS).
        conn_keys = approved_keys(self._world.values())
        self._change_slots(conn_keys - self._conn_keys, self._conn_keys - conn_keys)
        assert self._slot_of is not None
        version = self.repo.sites_version()
        if version != self._sites_version:
            self._sites, self._sites_version = self.repo.list_sites(), version
        wire_keys = fabrics.wire_keys(self._world.values(), self._sites)
        if wire_keys != self._wire_keys:
            self._wire_slots = self.repo.link_slots(wire_keys, names.MAX_WIRES, kind="wire")
            self._wire_keys = wire_keys
        fabric = fabrics.plan(
            self._world.values(), self._wire_slots, self.prefix, self._sites, self.public_range
        )
        desired = self._planner.plan(
            snapshot,
            self._slot_of,
            self.prober.verdicts(),
            self.prefix,
            self._pair_slots,
            fabric,
        )
        repaired = self.apply(desired, full=full)
        if full:
            self._full_due = time.monotonic() + FULL_RESYNC_SECONDS
            # Keep a full pass's worth of the change feed (other servers on the same
            # PostgreSQL read it too; one further behind reads everything).
            self.repo.prune_changes(self._feed_kept)
            self._feed_kept = self._version or 0
        self.prober.track(desired.health_checks)
        self._write_index(desired)
        if self._watcher is not None:
            self._watcher.refresh()  # watch new hubs, forget gone ones
        return desired, repaired

    def _sync_endpoints(self, endpoints: set[str], came: set[str], went: set[str]) -> Plan:
        """Plan and apply a change of endpoints and connections by difference: what one
        endpoint costs does not grow with the endpoints that exist (no hub listing, no
        table rendering, no pass over every link)."""
        moved = self._change_slots(came, went)
        assert self._slot_of is not None
        endpoints |= self._planner.endpoints_of(link_keys=moved)
        change = self._planner.update(self._world.get, endpoints, self._slot_of)
        self._apply_change(change)
        with self._admission_lock:
            gate = self._full ^ self._gated_applied  # hubs to gate, or to open again
        for hub in change.plan.hubs:
            if hub.netns in gate:
                self._apply_nft(hub, frozenset())
        return change.plan

    def _netlink(self, netns: str) -> Netlink:
        """A cached netlink handle for a namespace (opening one costs ~20 ms)."""
        handle = self._handles.get(netns)
        if handle is None:
            handle = self._handles[netns] = self.kernel.Netlink(netns)
        return handle

    def _forget(self, netns: str) -> None:
        handle = self._handles.pop(netns, None)
        if handle is not None:
            handle.close()
        self.kernel.forget_nft(netns)  # its socket would keep a deleted namespace alive
        self._applied.pop(netns, None)
        self._prepared.discard(netns)
        self._hub_sigs.pop(netns, None)

    def apply(self, desired: Plan, full: bool = True) -> tuple[str, ...]:
        """Make the kernel match a plan; returns what reported damage it re-verified.

        A full pass checks every namespace, interface, address and route; an
        incremental pass (the normal case) touches only hubs whose NICs or addresses
        changed and links that appeared or vanished, then the nft tables that changed,
        plus whatever the watcher reported damaged (and what a missing namespace
        touches: its hub, and the links of a hub).
        """
        # Published before any change: our own deletions of what the plan no longer wants
        # are then never taken for damage.
        before, self._owned = self._owned, Owned.of(desired)
        with self._damage_lock:
            damage, self._damage = self._damage, NONE
        full = full or damage.everything
        existing = {n for n in self.kernel.list_netns() if names.is_ours(self.prefix, n)}
        wanted = {h.netns for h in desired.hubs} | {n.netns for h in desired.hubs for n in h.nics}
        wanted |= {n.netns for n in desired.fabric.nodes}
        missing = wanted - existing
        # A site's hosts are made by `privatelink exec --site`: kept while their site is.
        tags = {names.site_tag(site) for site in desired.fabric.sites}
        host = names.host_prefix(self.prefix)
        wanted |= {n for n in existing if n.startswith(host) and n[len(host) :][:6] in tags}
        if full:
            # A file in /run/netns that is no namespace (a crash between creating and
            # mounting it) would fail every sync: make it again.
            missing |= {n for n in wanted & existing if not self.kernel.netns_ok(n)}
        nic_hub = {n.netns: h.netns for h in desired.hubs for n in h.nics}
        why = list(damage.why)
        damaged_hubs = set(damage.hubs)
        for netns in sorted(missing):
            self.kernel.create_netns(netns)
            self._forget(netns)
            # A namespace made again: its hub re-checks its veths, routes and NICs.
            damaged_hubs.add(nic_hub.get(netns, netns))
            known = netns in before.hubs or netns in before.nic_hub
            if known and not any(netns in reason for reason in damage.why):
                why.append(f"namespace {netns} was missing")  # no event told us
        relink = set(damage.links) | links_touching(desired, damaged_hubs, damage.pairs)
        for netns in damaged_hubs | set(damage.tables):
            self._applied.pop(netns, None)  # re-apply its table (gone with a namespace)
        # Each hub's interfaces as listed once by this pass (a listing of thousands of
        # link veths costs seconds): checked against the plan, not asked again per link.
        listed: dict[str, dict[str, privileged.Link]] = {}
        for hub in desired.hubs:
            local = _local_addresses(hub)
            made = self._hub_sigs.get(hub.netns)
            if full or hub.netns in damaged_hubs or made is None or made[0] != hub.nics:
                listed[hub.netns] = self._hub(hub)
            elif made[1] != local:
                # Only PE or NAT addresses changed (an endpoint came or went): add and
                # remove those on `lo`, without listing the hub's interfaces (with
                # thousands of link veths a listing costs seconds, docs/dataplane.md §8).
                nl = self._netlink(hub.netns)
                for address in sorted(made[1] - local):
                    nl.delete_address("lo", address)
                for address in sorted(local - made[1]):
                    nl.add_address("lo", address)
            self._hub_sigs[hub.netns] = (hub.nics, local)
        links = {x.slot: x for x in desired.links}
        # Marks of links this sync removes, per hub: until their conntrack entries are
        # gone, a `forward` rule resets their flows on the next packet. Only for that
        # moment: a per-packet check of every flow would cost about 5 % of the short
        # connections a core can carry (bench/dataplane.py).
        dying: dict[str, set[int]] = {}
        for slot, old in self._links.items():
            if not _same_wire(links.get(slot), old):
                for netns in (old.consumer_netns, old.provider_netns):
                    dying.setdefault(netns, set()).add(old.mark)
        # nft first: dead links leave the maps (and dying flows get resets) and new ones
        # are matched by interface name, which needs no interface yet.
        for hub in desired.hubs:
            self._apply_nft(hub, frozenset(dying.get(hub.netns, ())))
            if hub.netns not in self._prepared:
                # After the table: nft has loaded conntrack, so its sysctls exist now.
                self.kernel.write_sysctls(hub.netns, HUB_SYSCTLS)
                self._prepared.add(hub.netns)
        # Then removals (conntrack by mark, then veths), before any creation: a slot freed
        # in this sync may be handed to a new link, with the same interface names.
        routed: dict[str, dict[str, tuple[int, str | None]]] = {}
        veth_pairs = {x.pair for x in desired.links if not x.local}
        # Links known from the last sync and gone (or now a different wire): their flows
        # are cut by mark, their routes or pair veths go. A full pass then sweeps what no
        # sync knew of (left by a crash, or by hand).
        for slot in list(self._links):
            if not _same_wire(links.get(slot), self._links[slot]):
                old = self._links.pop(slot)
                self._remove_link(old, wanted, old.pair not in veth_pairs)
        if full:
            routed = self._remove_stale_links(desired, listed)
        # Each pair veth is checked (or made) once in this pass, by its first link.
        checked: dict[int, int] = {}
        for slot, link in links.items():
            if full or slot in relink or not _same_wire(self._links.get(slot), link):
                self._link(link, listed, routed, checked)
            self._links[slot] = link
        self._pair_index = {p: i for p, i in self._pair_index.items() if p in veth_pairs}
        self._pair_index.update(checked)
        self._apply_fabric(desired.fabric, full or bool(damaged_hubs), listed)
        # The dying links' entries are deleted: a new packet of such a flow has mark 0
        # and meets the rules for unmarked packets. Drop the reset rule again.
        for hub in desired.hubs:
            if hub.netns in dying:
                self._apply_nft(hub, frozenset())
        for netns in sorted(existing - wanted):
            self._forget(netns)
            self.kernel.delete_netns(netns)
            self.kernel.remove_netns_etc(netns)
        for netns in set(self._handles) - wanted - existing:
            self._forget(netns)  # deleted by someone else and no longer wanted
        if full:
            # Files of namespaces that vanished without us (or before a crash).
            for netns in self.kernel.list_netns_etc():
                if names.is_ours(self.prefix, netns) and netns not in wanted:
                    self.kernel.remove_netns_etc(netns)
        self._plan = desired
        return tuple(why)

    def _apply_fabric(
        self,
        fabric: fabrics.Fabric,
        full: bool,
        listed: Mapping[str, Mapping[str, privileged.Link]],
    ) -> None:
        """Make the fabric's wires and routes (dataplane/fabric.py): by difference from
        what was last applied; a full pass (or the first) also checks every wire and
        sweeps wires and routes nothing wants from the hubs `listed`."""
        old = self._fabric
        if old == fabric and not full:
            return
        full = full or old is None
        had_nodes = set() if old is None else set(old.nodes)
        for node in fabric.nodes:
            if full or node not in had_nodes:
                self._node(node)
        ends = {(w.a_netns, w.a_ifname) for w in fabric.wires} | {
            (w.b_netns, w.b_ifname) for w in fabric.wires
        }
        for w in () if old is None else old.wires:
            if (w.a_netns, w.a_ifname) not in ends:
                self._delete_wire_end(w.a_netns, w.a_ifname)  # its peer goes with it
        if full:
            for netns, links in listed.items():
                for name in links:
                    if names.is_wire_ifname(name) and (netns, name) not in ends:
                        self._delete_wire_end(netns, name)
        before = set() if old is None else set(old.wires)
        for w in fabric.wires:
            if full or w not in before:
                self._wire(w)
        wanted = set(fabric.routes)
        gone = set() if old is None else set(old.routes) - wanted
        for r in sorted(gone, key=lambda r: (r.netns, r.dst)):
            if (r.netns, r.ifname) in ends:  # else it went with its wire
                self._netlink(r.netns).delete_route(r.dst)
        had = set() if old is None else set(old.routes)
        for r in sorted(wanted, key=lambda r: (r.netns, r.dst)):
            if full or r not in had:
                self._netlink(r.netns).replace_route(r.dst, r.ifname, gateway=r.via, src=r.src)
        if full:
            self._sweep_fabric_routes(fabric, ends)
        self._fabric = fabric
        self._tunnels(fabric.tunnels)

    def _node(self, node: fabrics.Node) -> None:
        """A fabric namespace's own parts: lo with its addresses, forwarding on."""
        nl = self._netlink(node.netns)
        lo = nl.links()["lo"]
        nl.set_addresses("lo", ["127.0.0.1/8", *(f"{a}/32" for a in node.addresses)], lo.addresses)
        if not lo.up:
            nl.set_up("lo")
        if node.netns not in self._prepared:
            self.kernel.write_sysctls(node.netns, NODE_SYSCTLS)
            self._prepared.add(node.netns)

    def _tunnels(self, wanted: Iterable[fabrics.Tunnels]) -> None:
        """One strongSwan per gateway and site namespace, serving its tunnels: started,
        or restarted when what it serves changed (a new key takes effect at once); a
        namespace without tunnels runs none. A daemon that fails to start is reported on
        its connections (NotConnected) and tried again by the next full pass."""
        by_netns = {t.netns: t for t in wanted}
        for netns in list(self._charons):
            if netns not in by_netns or not by_netns[netns].endpoints:
                _tunnels, charon = self._charons.pop(netns)
                charon.stop()
                self.kernel.remove_run_dir(IPSEC_RUN_DIR / netns)  # its keys go with it
        for netns, tunnels in sorted(by_netns.items()):
            have = self._charons.get(netns)
            if not tunnels.endpoints or (
                have is not None and have[0] == tunnels and have[1].alive()
            ):
                continue
            if have is not None:
                have[1].stop()
                del self._charons[netns]
            else:
                self.kernel.stop_charons_in(netns)  # one an earlier server left running
            if self._esp is None:
                self._esp = self.kernel.esp_in_kernel()
                log.info(
                    "IPsec: %s",
                    "kernel ESP" if self._esp else "kernel-libipsec (no ESP in the kernel)",
                )
            # Under /run, not the data directory: a vici socket path is at most 100 bytes,
            # and the keys need not outlive the host.
            workdir = IPSEC_RUN_DIR / netns
            try:
                charon = self.kernel.Charon.start(
                    netns, workdir, tunnels.endpoints, libipsec=not self._esp, install_routes=False
                )
            except (privileged.CharonFailed, ValueError) as exc:
                log.warning("strongSwan did not start in %s: %s", netns, exc)
                self._full_due = min(self._full_due, time.monotonic() + 5.0)
                continue
            self._charons[netns] = (tunnels, charon)
            self._tunnel_routes(tunnels)
        self.poll_tunnels()

    def _tunnel_routes(self, tunnels: fabrics.Tunnels) -> None:
        """Route what the tunnels carry to the remote side: into user-space ESP's TUN
        device (kernel-libipsec), or, with the kernel's ESP, towards the internet, where
        the kernel's IPsec policy encrypts it on the way out."""
        nl = self._netlink(tunnels.netns)
        remote = sorted({ts for e in tunnels.endpoints for ts in e.remote_ts})
        if not self._esp:
            for ts in remote:
                nl.replace_route(ts, privileged.LIBIPSEC_IFNAME)
            return
        assert self._fabric is not None
        out = next(
            (
                r
                for r in self._fabric.routes
                if r.netns == tunnels.netns and r.dst == self.public_range
            ),
            None,
        )
        if out is not None:
            for ts in remote:
                nl.replace_route(ts, out.ifname, gateway=out.via, src=out.src)

    def poll_tunnels(self) -> None:
        """Report each gateway connection's tunnel (connectionStatus, bytes) and each
        gateway's IPsec mode on the stored resources, when they changed."""
        states: dict[str, dict[str, Any]] = {}
        mode = "" if self._esp is None else ("kernel" if self._esp else "libipsec")
        for tunnels, charon in self._charons.values():
            if not tunnels.connections:
                continue  # a site: nothing of Azure's to report
            if mode and self._modes.get(tunnels.owner) != mode:
                states[key(tunnels.owner)] = {"ipsec_mode": mode}
                self._modes[tunnels.owner] = mode
            try:
                sas = charon.list_sas() if charon.alive() else {}
            except privileged.CharonFailed as exc:
                log.warning("cannot read the tunnels in %s: %s", tunnels.netns, exc)
                sas = {}
            for name, conn_id in tunnels.connections:
                sa = sas.get(name)
                status = "NotConnected"
                if sa is not None and sa.installed:
                    status = "Connected"
                elif sa is not None:
                    status = "Connecting"
                now = (status, sa.bytes_in if sa else 0, sa.bytes_out if sa else 0)
                if self._reported.get(key(conn_id)) != now:
                    self._reported[key(conn_id)] = now
                    states[key(conn_id)] = {
                        "connection_status": now[0],
                        "ingress_bytes_transferred": now[1],
                        "egress_bytes_transferred": now[2],
                    }
        if states:
            self.repo.report_fields(states)

    def _delete_wire_end(self, netns: str, ifname: str) -> None:
        with contextlib.suppress(privileged.NetnsNotFound):  # gone, and the wire with it
            self._netlink(netns).delete_link(ifname)

    def _wire(self, w: fabrics.Wire) -> None:
        """Make (or check) one wire: the veth, its /30 on both ends, both up."""
        nl = self._netlink(w.a_netns)
        if nl.link(w.a_ifname) is None:
            # An end left alone (its peer's namespace was made again): make the pair anew.
            self._netlink(w.b_netns).delete_link(w.b_ifname)
            nl.add_veth(w.a_ifname, w.b_ifname, w.b_netns)
        for netns, ifname, addr in (
            (w.a_netns, w.a_ifname, w.a_addr),
            (w.b_netns, w.b_ifname, w.b_addr),
        ):
            end_nl = self._netlink(netns)
            link = end_nl.link(ifname)
            if link is None:
                raise privileged.InterfaceNotFound(f"{ifname} missing in {netns}")
            end_nl.set_addresses(ifname, [f"{addr}/30"], link.addresses)
            if not link.up:
                end_nl.set_up(ifname)

    def _sweep_fabric_routes(self, fabric: fabrics.Fabric, ends: set[tuple[str, str]]) -> None:
        """Routes through a wire that the fabric does not want (left by a crash)."""
        wanted = {(r.netns, r.dst) for r in fabric.routes}
        for netns in sorted({n for n, _ in ends}):
            nl = self._netlink(netns)
            wire_indexes = {
                link.index for name, link in nl.links().items() if names.is_wire_ifname(name)
            }
            for dst, (oif, _gw) in nl.routes().items():
                if oif in wire_indexes and (netns, dst) not in wanted:
                    nl.delete_route(dst)

    def _apply_nft(self, hub: HubPlan, dying: frozenset[int]) -> None:
        """Bring the hub's table to its plan: by elements and chains when we know what it
        holds (`nft.delta`: a link costs the same with ten or ten thousand), else (first
        time, after damage, or if the delta fails) by replacing the whole table."""
        with self._admission_lock:
            full = hub.netns in self._full
        inputs = (hub, dying, full)
        applied = self._applied.get(hub.netns)
        if applied == inputs:
            return
        self._put_table(hub.netns, inputs, None if applied is None else self._table(applied))

    def _table(self, inputs: _TableInputs) -> nft.Table:
        """The table these inputs render (the last rendered of each hub is kept: building
        the table of a hub with thousands of links costs more than comparing plans)."""
        cached = self._rendered.get(inputs[0].netns)
        if cached is not None and cached[0] == inputs:
            return cached[1]
        table = nft.table(*inputs)
        self._rendered[inputs[0].netns] = (inputs, table)
        return table

    def _put_table(
        self, netns: str, inputs: _TableInputs, applied: nft.Table | None, text: str | None = None
    ) -> None:
        """Apply `text` (or the delta from `applied`) taking the hub's table to what
        `inputs` render; if that fails, or nothing is known, replace the whole table."""
        if netns in self._gated_applied:
            # What the gated table counted: taken now, since replacing the table zeroes
            # the counter and an ungated hub's counter is no longer read.
            self._take_refused(netns)
        done = False
        if text is None and applied is not None:
            text = nft.delta(applied, self._table(inputs))
        elif text is not None:
            # Applied by difference: the table last rendered for this hub is stale now,
            # and keeping it would hold a copy of every link's elements for nothing.
            self._rendered.pop(netns, None)
        if text is not None:
            try:
                self.kernel.apply_nft(netns, text)
                done = True
            except privileged.NftApplyFailed as exc:
                # The table is not what we think (changed behind our back): replace it.
                log.warning("nft delta failed in %s, replacing the table: %s", netns, exc)
        if not done:
            self.kernel.apply_nft(netns, nft.serialize(self._table(inputs)))
        self._applied[netns] = inputs
        with self._admission_lock:
            if inputs[2]:
                self._gated_applied.add(netns)
            else:
                self._gated_applied.discard(netns)

    def _apply_change(self, change: PlanChange) -> None:
        """Apply an incremental plan (`Planner.update`): the PE addresses, links and nft
        elements that came and went, in `apply`'s order, and nothing else."""
        assert self._plan is not None
        old_hubs = {h.netns: h for h in self._plan.hubs}
        hubs = {h.netns: h for h in change.plan.hubs if h.netns in change.hubs}
        lo: dict[str, frozenset[str]] = {}
        was: dict[str, frozenset[str]] = {}
        for netns in change.pe_ips:
            made = self._hub_sigs.get(netns)
            hub = hubs.get(netns)
            if made is None or hub is None:
                raise RuntimeError(f"hub {netns} changed before it was made")  # a bug
            was[netns], lo[netns] = made[1], _local_addresses(hub)
            self._hub_sigs[netns] = (made[0], lo[netns])
        # Published before any change, as in `apply`: our own deletions are no damage.
        self._owned = self._owned.changed(change.added, change.removed, lo, change.gone_pairs)
        for netns, local in lo.items():
            # Only PE addresses changed: add and remove those on `lo` (no listing).
            nl = self._netlink(netns)
            for address in sorted(was[netns] - local):
                nl.delete_address("lo", address)
            for address in sorted(local - was[netns]):
                nl.add_address("lo", address)
        new_at = {x.slot: x for x in change.added}
        dead = [x for x in change.removed if not _same_wire(new_at.get(x.slot), x)]
        dying: dict[str, set[int]] = {}
        for x in dead:
            for netns in (x.consumer_netns, x.provider_netns):
                dying.setdefault(netns, set()).add(x.mark)

        def elements(netns: str, marks: frozenset[int], links: bool) -> None:
            hub = hubs[netns]
            with self._admission_lock:
                gated = netns in self._full
            applied = self._applied.get(netns)
            inputs = (hub, marks, gated)
            if applied is None or applied[2] != gated or applied[0] is not old_hubs[netns]:
                # Not the table this change starts from: the whole way.
                self._apply_nft(hub, marks)
                return
            text = nft.link_delta(
                hub,
                change.added if links else (),
                change.removed if links else (),
                change.pe_ips.get(netns, ((), ())) if links else ((), ()),
                (applied[1], marks),
                gated,
                (change.new_pairs, change.gone_pairs) if links else (frozenset(), frozenset()),
            )
            if text:
                self._put_table(netns, inputs, None, text)
            else:
                self._applied[netns] = inputs

        for netns in sorted(hubs):
            elements(netns, frozenset(dying.get(netns, ())), True)
        # Removals before creations: a slot freed here may be handed to a new link.
        for x in dead:
            self._remove_link(x, {x.consumer_netns, x.provider_netns}, x.pair in change.gone_pairs)
            if self._links.get(x.slot) is x:
                del self._links[x.slot]
        for pair in change.new_pairs:
            self._pair_index.pop(pair, None)  # made (or checked) by its first link
        for x in change.added:
            if not _same_wire(self._links.get(x.slot), x):
                self._link(x, pairs=self._pair_index)
            self._links[x.slot] = x
        for netns in sorted(dying):
            old_hubs[netns] = hubs[netns]  # the table now holds the new plan
            elements(netns, frozenset(), False)
        self._plan = change.plan

    def _remove_link(self, gone: LinkPlan, wanted: set[str], veth: bool) -> None:
        """Cut a link's flows in both hubs, then delete its endpoint route; with `veth`
        (the last link of its pair) its pair's veth is retired after the sync is
        reported (`_retire_pairs`)."""
        for netns in {gone.consumer_netns, gone.provider_netns} & wanted:
            self.kernel.conntrack_delete_mark(netns, gone.mark)
        if gone.local:
            return
        if gone.consumer_netns in wanted:
            self._netlink(gone.consumer_netns).delete_route(
                f"{gone.pe_ip}/32", table=names.ENDPOINT_TABLE
            )
        if veth:
            self._pair_index.pop(gone.pair, None)
            self._retiring += [
                (netns, ifname)
                for netns, ifname in (
                    (gone.consumer_netns, gone.consumer_ifname),
                    (gone.provider_netns, gone.provider_ifname),
                )
                if netns in wanted
            ]

    def _link(
        self,
        link: LinkPlan,
        listed: Mapping[str, Mapping[str, privileged.Link]] = {},
        routed: Mapping[str, Mapping[str, tuple[int, str | None]]] = {},
        pairs: dict[int, int] | None = None,
    ) -> None:
        """Make a link: its pair's veth (unless `pairs`, pair -> consumer-end index, has
        it already) and its endpoint route. With the hubs' listings (`listed`, and
        `routed`: their endpoint routes) a link that is as planned costs no kernel call."""
        if link.local:
            return  # endpoint and service in one network: NAT inside the hub, no veth
        index = None if pairs is None else pairs.get(link.pair)
        if index is None:
            index = self._pair(link, listed)
            if pairs is not None:
                pairs[link.pair] = index
        dst = f"{link.pe_ip}/32"
        if link.consumer_netns in routed and routed[link.consumer_netns].get(dst) == (
            index,
            link.provider_addr,
        ):
            return
        # Last, once both ends are up: the PE ip now goes into the pair's veth, to the
        # provider end's address (the provider hub answers ARP for that one only).
        self._netlink(link.consumer_netns).replace_route(
            dst,
            link.consumer_ifname,
            gateway=link.provider_addr,
            table=names.ENDPOINT_TABLE,
            index=index,
        )

    def _pair(self, link: LinkPlan, listed: Mapping[str, Mapping[str, privileged.Link]]) -> int:
        """Make (or check) the veth of a link's pair of hubs, its addresses and state;
        returns its consumer end's interface index."""
        ends = (
            (link.consumer_netns, link.consumer_ifname, f"{link.consumer_addr}/30"),
            (link.provider_netns, link.provider_ifname, f"{link.provider_addr}/30"),
        )
        if all(netns in listed for netns, _, _ in ends):
            seen = [listed[netns].get(ifname) for netns, ifname, _ in ends]
            if all(
                x is not None and x.up and a in x.addresses
                for x, (_, _, a) in zip(seen, ends, strict=True)
            ):
                assert seen[0] is not None
                return seen[0].index
        nl = self._netlink(link.consumer_netns)
        provider = self._netlink(link.provider_netns)
        # Single-interface queries: listing every link per link would be O(n^2) at 1000s.
        here = nl.link(link.consumer_ifname)
        there = provider.link(link.provider_ifname)
        if here is None or there is None:
            # One end without the other: its peer is in a namespace that was deleted (or
            # made again while something held the old one open). Make the pair anew.
            if here is not None:
                nl.delete_link(link.consumer_ifname)
            if there is not None:
                provider.delete_link(link.provider_ifname)
            nl.add_veth(link.consumer_ifname, link.provider_ifname, link.provider_netns)
            here = nl.link(link.consumer_ifname)
            there = provider.link(link.provider_ifname)
        # The ends' indexes as just asked: no further lookup per address, state or route.
        self._link_address(nl, here, link.consumer_ifname, ends[0][2])
        self._link_address(provider, there, link.provider_ifname, ends[1][2])
        assert here is not None and there is not None
        if not (here.up and there.up):
            # Set up just now: the kernel drops what the veth is given until its linkwatch
            # worker has activated it, and a dropped SYN waits 1 s for its retransmit. The
            # route comes only once the veth carries (a few ms; bounded).
            deadline = time.monotonic() + VETH_READY_SECONDS
            for handle, ifname in ((nl, link.consumer_ifname), (provider, link.provider_ifname)):
                while not handle.operational(ifname) and time.monotonic() < deadline:
                    time.sleep(0.001)
        return here.index

    def _link_address(
        self, nl: Netlink, link: privileged.Link | None, ifname: str, address: str
    ) -> None:
        # A link's address only ever comes from its slot: adding is enough (no listing).
        if link is None:
            raise privileged.InterfaceNotFound(f"{ifname} missing in {nl.netns}")
        nl.add_address(ifname, address, index=link.index)
        if not link.up:
            nl.set_up(ifname, index=link.index)

    def _address(self, nl: Netlink, ifname: str, addresses: list[str]) -> None:
        link = nl.links().get(ifname)
        if link is None:
            raise privileged.InterfaceNotFound(f"{ifname} missing in {nl.netns}")
        nl.set_addresses(ifname, addresses, link.addresses)
        if not link.up:
            nl.set_up(ifname)

    def _hub(self, hub: HubPlan) -> dict[str, privileged.Link]:
        """Make a hub's own parts (lo, NIC veths and routes, resolv.conf, the NICs);
        returns its interfaces as listed (link veths as they were, NIC veths as now)."""
        nl = self._netlink(hub.netns)
        links = nl.links()
        lo = links["lo"]
        # 168.63.129.16: health probes come from it and the VNet's DNS server listens on it.
        wanted_lo = ["127.0.0.1/8", f"{names.AZURE_PLATFORM_IP}/32", *sorted(_local_addresses(hub))]
        nl.set_addresses("lo", wanted_lo, lo.addresses)
        if not lo.up:
            nl.set_up("lo")
        nl.ensure_table_before_local(
            names.ENDPOINT_TABLE, names.ENDPOINT_RULE_PREF, names.LOCAL_RULE_PREF
        )
        wanted = {n.hub_ifname for n in hub.nics}
        for name in links:
            if name.startswith("n") and name not in wanted:
                nl.delete_link(name)  # its NIC is gone; the peer goes with it
        for nic in hub.nics:
            if nic.hub_ifname not in links:
                nl.add_veth(nic.hub_ifname, names.NIC_IFNAME, nic.netns)
                if nl.link(nic.hub_ifname) is None:
                    # The VM still has an eth0 paired with a deleted hub namespace that
                    # lives on while something holds it (a DNS server socket, a process):
                    # replace that pair, the old hub is gone for good.
                    self._netlink(nic.netns).delete_link(names.NIC_IFNAME)
                    nl.add_veth(nic.hub_ifname, names.NIC_IFNAME, nic.netns)
            elif self._netlink(nic.netns).link(names.NIC_IFNAME) is None:
                # The VM's namespace was made again while something held the old one (a
                # process running in it): our end is still paired with the old eth0.
                nl.delete_link(nic.hub_ifname)
                nl.add_veth(nic.hub_ifname, names.NIC_IFNAME, nic.netns)
        made = [n.hub_ifname for n in hub.nics if n.hub_ifname not in links]
        for name in [n for n in links if n.startswith("n") and n not in wanted]:
            del links[name]
        for name in made:  # just made: asked for alone (a new veth has no address yet)
            found = nl.link(name)
            if found is None:
                raise privileged.InterfaceNotFound(f"{name} missing in {hub.netns}")
            links[name] = found
        for nic in hub.nics:
            link = links[nic.hub_ifname]
            nl.set_addresses(nic.hub_ifname, [f"{names.GATEWAY}/32"], link.addresses)
            if not link.up:
                nl.set_up(nic.hub_ifname)
        routes = nl.routes()
        for nic in hub.nics:
            index = links[nic.hub_ifname].index
            for ip in nic.ips:
                if routes.get(f"{ip}/32", (None, None))[0] != index:
                    nl.replace_route(f"{ip}/32", nic.hub_ifname)
        wanted_routes = {f"{ip}/32" for n in hub.nics for ip in n.ips}
        nic_indexes = {link.index for name, link in links.items() if name.startswith("n")}
        for dst, (oif, _gw) in routes.items():
            if oif in nic_indexes and dst not in wanted_routes:
                nl.delete_route(dst)
        self.kernel.write_netns_etc(hub.netns, "resolv.conf", RESOLV_CONF)
        for nic in hub.nics:
            self._nic(nic)
        return links

    def _nic(self, nic: NicPlan) -> None:
        nl = self._netlink(nic.netns)
        links = nl.links()
        if not links["lo"].up:
            nl.set_up("lo")
        self._address(nl, names.NIC_IFNAME, [f"{ip}/32" for ip in nic.ips])
        routes = nl.routes()
        if f"{names.GATEWAY}/32" not in routes:
            nl.replace_route(f"{names.GATEWAY}/32", names.NIC_IFNAME)
        if routes.get("0.0.0.0/0", (None, None))[1] != names.GATEWAY:
            nl.replace_route("0.0.0.0/0", names.NIC_IFNAME, gateway=names.GATEWAY)
        self.kernel.write_netns_etc(nic.netns, "resolv.conf", RESOLV_CONF)

    def _remove_stale_links(
        self, desired: Plan, listed: dict[str, dict[str, privileged.Link]]
    ) -> dict[str, dict[str, tuple[int, str | None]]]:
        """Delete link veths and endpoint routes the plan does not want, from one listing
        per hub (taken here for hubs `listed` lacks, kept up to date); returns each
        hub's endpoint routes that stay."""
        veths = [x for x in desired.links if not x.local]
        wanted = {(x.consumer_netns, x.consumer_ifname) for x in veths} | {
            (x.provider_netns, x.provider_ifname) for x in veths
        }
        stale: list[tuple[str, str]] = []
        for hub in desired.hubs:
            if hub.netns not in listed:
                listed[hub.netns] = self._netlink(hub.netns).links()
            for name in listed[hub.netns]:
                is_link = name.startswith("k") and name[1:-1].isdigit()
                if is_link and (hub.netns, name) not in wanted:
                    stale.append((hub.netns, name))
        # Pair veths no link uses (their links went while we were away; the rules already
        # reset what is left of those links' flows: their marks are not live).
        for netns, name in stale:
            self._netlink(netns).delete_link(name)
            listed[netns].pop(name, None)
        # (A deleted veth's peer may still be listed in the other hub: `_link` trusts a
        # listing only when both ends of a link are there, up and addressed.)
        # Endpoint routes without a link (their veth went, so did they) or of an
        # endpoint that is no longer linked; wrong ones are replaced by `_link`.
        routes = {(x.consumer_netns, f"{x.pe_ip}/32") for x in veths}
        kept: dict[str, dict[str, tuple[int, str | None]]] = {}
        for hub in desired.hubs:
            nl = self._netlink(hub.netns)
            kept[hub.netns] = {}
            for dst, via in nl.routes(table=names.ENDPOINT_TABLE).items():
                if (hub.netns, dst) not in routes:
                    nl.delete_route(dst, table=names.ENDPOINT_TABLE)
                else:
                    kept[hub.netns][dst] = via
        self._links = {x.slot: x for x in desired.links}
        return kept

    def _write_index(self, desired: Plan) -> None:
        """`<data-dir>/dataplane.json`: which namespace is which NIC (for `privatelink exec`)."""
        if self.data_dir is None:
            return
        nics = {
            key(n.nic_id): {"id": n.nic_id, "netns": n.netns, "ips": list(n.ips), "hub": h.netns}
            for h in desired.hubs
            for n in h.nics
        }
        hubs = {key(h.vnet_id): {"id": h.vnet_id, "netns": h.netns} for h in desired.hubs}
        sites = {
            s.name.lower(): {
                "name": s.name,
                "netns": names.site_netns(self.prefix, s.name),
                "address_space": list(s.address_space),
            }
            for s in self._sites
            if s.name.lower() in desired.fabric.sites
        }
        inet = names.inet_netns(self.prefix)
        internet = inet if any(n.netns == inet for n in desired.fabric.nodes) else None
        payload = {
            "prefix": self.prefix,
            "nics": nics,
            "vnets": hubs,
            "sites": sites,
            "internet": internet,
        }
        path = self.data_dir / "dataplane.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        tmp.replace(path)


def _same_wire(a: LinkPlan | None, b: LinkPlan | None) -> bool:
    """Whether two link plans are the same pair veth and endpoint route (ports may differ)."""
    if a is None or b is None:
        return False
    return (a.link_key, a.consumer_netns, a.provider_netns, a.local, a.pe_ip, a.pair) == (
        b.link_key,
        b.consumer_netns,
        b.provider_netns,
        b.local,
        b.pe_ip,
        b.pair,
    )


def cleanup(prefix: str) -> list[str]:
    """Remove every namespace this prefix owns (their veths and nft tables go with them)
    and their /etc/netns files, ending the VPN daemons we started in them; returns the
    namespaces removed."""
    removed = []
    for netns in privileged.list_netns():
        if names.is_ours(prefix, netns):
            if netns.startswith(f"{prefix}-x-"):
                privileged.stop_charons_in(netns)
                privileged.remove_run_dir(IPSEC_RUN_DIR / netns)
            privileged.delete_netns(netns)
            removed.append(netns)
    for netns in privileged.list_netns_etc():
        if names.is_ours(prefix, netns):
            privileged.remove_netns_etc(netns)
    return removed
