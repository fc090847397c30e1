"""The reconciler: one loop that makes the kernel match the store.

API writes and probe verdicts only mark the reconciler dirty; a single thread reads a
snapshot, computes the plan (desired.py) and applies it: namespaces and veths first,
then each hub's nft table as one transaction, then the removal of what is stale
(conntrack entries of dead links before their veths). Success reports provisioning
states back (Updating -> Succeeded); failure reports Failed with the reason and is
retried with back-off. Nothing is applied before the first full snapshot is read.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privatelink.core.ids import key
from privatelink.core.private_link_service import APPROVED
from privatelink.dataplane import names, nft, privileged
from privatelink.dataplane.desired import (
    HubPlan,
    LinkPlan,
    NicPlan,
    Plan,
    Snapshot,
    connection_key,
    plan,
)
from privatelink.dataplane.health import Prober
from privatelink.dataplane.privileged import KernelError, Netlink
from privatelink.store.repository import utc_now
from privatelink.store.sql import SqlRepository

log = logging.getLogger("privatelink.dataplane")

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
}
PENDING_STATES = ("Updating", "Failed")
# `ip netns exec` (and so `privatelink exec`) bind-mounts /etc/netns/<ns>/resolv.conf over
# /etc/resolv.conf: every program in a VNet's namespaces asks the VNet's DNS server.
RESOLV_CONF = (
    "# Written by privatelink: the private DNS server of this virtual network.\n"
    f"nameserver {names.AZURE_PLATFORM_IP}\n"
)
FULL_RESYNC_SECONDS = 300.0  # a full check repairs drift (someone deleting our veths)


@dataclass
class SyncReport:
    """What one sync did."""

    seconds: float
    hubs: int
    links: int
    error: str | None = None


class Reconciler:
    """Applies the desired state of a repository onto this host's kernel."""

    def __init__(
        self,
        repo: SqlRepository,
        prefix: str,
        data_dir: Path | None = None,
        kernel: Any = privileged,
    ) -> None:
        """`kernel` is the privileged module (tests pass a fake with the same functions)."""
        self.repo = repo
        self.kernel = kernel
        self.prefix = names.check_prefix(prefix)
        self.data_dir = data_dir
        self.prober = Prober(self.mark_dirty)
        self._dirty = threading.Event()
        self._generation_lock = threading.Lock()
        self._wanted = 0  # bumped by mark_dirty
        self._done = 0  # the generation the last successful sync covered
        self._stop = threading.Event()
        self._applied: dict[str, str] = {}
        self._prepared: set[str] = set()
        self._thread: threading.Thread | None = None
        self._handles: dict[str, Netlink] = {}
        self._hub_sigs: dict[str, object] = {}
        self._links: dict[int, LinkPlan] = {}
        self._full_due = 0.0
        self.last: SyncReport | None = None
        self.syncs = 0
        self._listeners: list[Callable[[], None]] = []

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
        """Start the sync loop (the first sync runs at once)."""
        self._dirty.set()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop (kernel state stays: flows survive a restart)."""
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.prober.stop()
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
            # Wake up at least every FULL_RESYNC_SECONDS: the full pass repairs drift.
            self._dirty.wait(timeout=backoff or FULL_RESYNC_SECONDS)
            if self._stop.is_set():
                return
            self._dirty.clear()
            with self._generation_lock:
                generation = self._wanted
            report = self.sync_once()
            if not report.error:
                self._done = generation
            self._notify()
            if report.error:
                backoff = min(max(backoff * 2, 0.5), 30.0)
                log.warning("sync failed (retry in %.1fs): %s", backoff, report.error)
            else:
                backoff = 0.0
            time.sleep(0.01)  # coalesce bursts of writes into one sync

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every change marked so far has been applied (tests, the demo)."""
        deadline = time.monotonic() + timeout
        with self._generation_lock:
            target = self._wanted
        while time.monotonic() < deadline:
            if self._done >= target:
                return True
            time.sleep(0.005)
        return False

    # --- one sync ------------------------------------------------------------------

    def sync_once(self) -> SyncReport:
        """Read, plan, apply, report. Never raises (a failure is reported and retried)."""
        try:
            return self._sync()
        except Exception as exc:  # e.g. the database is unreachable: report, retry later
            log.exception("sync failed before it could report")
            self._full_due = 0.0
            self.last = SyncReport(0.0, 0, 0, f"sync failed: {exc}")
            return self.last

    def _sync(self) -> SyncReport:
        began = time.monotonic()
        started = utc_now()
        resources = self.repo.snapshot()
        snapshot = Snapshot.of(resources)
        # Only approved connections take a link slot (and so count against MAX_SLOTS).
        conn_keys = {
            connection_key(s.id, c.name)
            for s in snapshot.services
            for c in s.connections
            if c.status == APPROVED
        }
        try:
            slots = self.repo.link_slots(conn_keys, names.MAX_SLOTS)
            desired = plan(snapshot, slots, self.prober.verdicts(), self.prefix)
            full = time.monotonic() >= self._full_due
            self.apply(desired, full=full)
            if full:
                self._full_due = time.monotonic() + FULL_RESYNC_SECONDS
            self.prober.track(desired.health_checks)
            self._write_index(desired)
            error = None
        except KernelError as exc:
            error = exc.message
            desired = None
            self._full_due = 0.0  # after a failure, check everything next time
            for netns in list(self._handles):
                self._forget(netns)
        except Exception as exc:  # a bug must not kill the loop; report it on resources
            log.exception("sync failed")
            error = f"internal error while applying network state: {exc}"
            desired = None
            self._full_due = 0.0
        problems = dict(desired.problems) if desired else {}
        states = {}
        for r in resources:
            if r.provisioning_state not in PENDING_STATES:
                continue
            failed = error or problems.get(r.key)
            states[r.key] = (r.etag, "Failed" if failed else "Succeeded")
        self.repo.set_provisioning_states(states)
        failures = {r.key: error for r in resources} if error else problems
        self.repo.complete_operations(started, failures, utc_now())
        self.syncs += 1
        self.last = SyncReport(
            time.monotonic() - began,
            len(desired.hubs) if desired else 0,
            len(desired.links) if desired else 0,
            error,
        )
        return self.last

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
        self._applied.pop(netns, None)
        self._prepared.discard(netns)
        self._hub_sigs.pop(netns, None)

    def apply(self, desired: Plan, full: bool = True) -> None:
        """Make the kernel match a plan.

        A full pass checks every namespace, interface, address and route; an
        incremental pass (the normal case) touches only hubs whose NICs or addresses
        changed and links that appeared or vanished, then the nft tables that changed.
        """
        existing = {n for n in self.kernel.list_netns() if names.is_ours(self.prefix, n)}
        wanted = {h.netns for h in desired.hubs} | {n.netns for h in desired.hubs for n in h.nics}
        if wanted - existing:
            full = True  # a namespace (re)appears: its hub's veths and routes need checking
        for netns in sorted(wanted - existing):
            self.kernel.create_netns(netns)
            self._forget(netns)
        for hub in desired.hubs:
            sig = (hub.nics, hub.pe_ips, tuple(ip for s in hub.services for ip in s.nat_ips))
            if full or self._hub_sigs.get(hub.netns) != sig:
                self._hub(hub)
                self._hub_sigs[hub.netns] = sig
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
        if full:
            self._remove_stale_links(desired)
        else:
            for slot in list(self._links):
                if not _same_wire(links.get(slot), self._links[slot]):
                    self._remove_link(self._links.pop(slot), wanted)
        for slot, link in links.items():
            if full or not _same_wire(self._links.get(slot), link):
                self._link(link)
            self._links[slot] = link
        # The dying links' entries are deleted: a new packet of such a flow has mark 0
        # and meets the rules for unmarked packets. Drop the reset rule again.
        for hub in desired.hubs:
            if hub.netns in dying:
                self._apply_nft(hub, frozenset())
        for netns in sorted(existing - wanted):
            self._forget(netns)
            self.kernel.delete_netns(netns)
            self.kernel.remove_netns_etc(netns)
        if full:
            # Files of namespaces that vanished without us (or before a crash).
            for netns in self.kernel.list_netns_etc():
                if names.is_ours(self.prefix, netns) and netns not in wanted:
                    self.kernel.remove_netns_etc(netns)

    def _apply_nft(self, hub: HubPlan, dying: frozenset[int]) -> None:
        text = nft.render(hub, dying)
        if self._applied.get(hub.netns) != text:
            self.kernel.apply_nft(hub.netns, text)
            self._applied[hub.netns] = text

    def _remove_link(self, gone: LinkPlan, wanted: set[str]) -> None:
        """Cut a link's flows in both hubs, then delete its veth pair."""
        for netns in {gone.consumer_netns, gone.provider_netns} & wanted:
            self.kernel.conntrack_delete_mark(netns, gone.mark)
        if gone.local:
            return
        if gone.consumer_netns in wanted:
            self._netlink(gone.consumer_netns).delete_link(gone.consumer_ifname)
        if gone.provider_netns in wanted:
            self._netlink(gone.provider_netns).delete_link(gone.provider_ifname)

    def _link(self, link: LinkPlan) -> None:
        if link.local:
            return  # endpoint and service in one network: NAT inside the hub, no veth
        nl = self._netlink(link.consumer_netns)
        # Single-interface queries: listing every link per link would be O(n^2) at 1000s.
        if nl.link(link.consumer_ifname) is None:
            nl.add_veth(link.consumer_ifname, link.provider_ifname, link.provider_netns)
        self._link_address(nl, link.consumer_ifname, f"{link.consumer_addr}/30")
        provider = self._netlink(link.provider_netns)
        self._link_address(provider, link.provider_ifname, f"{link.provider_addr}/30")
        # Last, once both ends are up: the PE ip now goes into the link, to the provider
        # end's address (the provider hub answers ARP for that one only). The route goes
        # with the veth when the link is removed.
        nl.replace_route(
            f"{link.pe_ip}/32",
            link.consumer_ifname,
            gateway=link.provider_addr,
            table=names.ENDPOINT_TABLE,
        )

    def _link_address(self, nl: Netlink, ifname: str, address: str) -> None:
        # A link's address only ever comes from its slot: adding is enough (no listing).
        link = nl.link(ifname)
        if link is None:
            raise privileged.InterfaceNotFound(f"{ifname} missing in {nl.netns}")
        nl.add_address(ifname, address)
        if not link.up:
            nl.set_up(ifname)

    def _address(self, nl: Netlink, ifname: str, addresses: list[str]) -> None:
        link = nl.links().get(ifname)
        if link is None:
            raise privileged.InterfaceNotFound(f"{ifname} missing in {nl.netns}")
        nl.set_addresses(ifname, addresses, link.addresses)
        if not link.up:
            nl.set_up(ifname)

    def _hub(self, hub: HubPlan) -> None:
        nl = self._netlink(hub.netns)
        links = nl.links()
        lo = links["lo"]
        # PE and NAT addresses are local to the hub so that, when no live flow NATs
        # them, the input chain answers with a TCP reset instead of "unreachable".
        local = {f"{ip}/32" for ip in hub.pe_ips} | {
            f"{ip}/32" for s in hub.services for ip in s.nat_ips
        }
        # 168.63.129.16: health probes come from it and the VNet's DNS server listens on it.
        wanted_lo = ["127.0.0.1/8", f"{names.AZURE_PLATFORM_IP}/32", *sorted(local)]
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
        links = nl.links()
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

    def _remove_stale_links(self, desired: Plan) -> None:
        veths = [x for x in desired.links if not x.local]
        wanted = {(x.consumer_netns, x.consumer_ifname) for x in veths} | {
            (x.provider_netns, x.provider_ifname) for x in veths
        }
        stale: list[tuple[str, str, int]] = []
        for hub in desired.hubs:
            for name in self._netlink(hub.netns).links():
                is_link = name.startswith("k") and name[1:-1].isdigit()
                if is_link and (hub.netns, name) not in wanted:
                    stale.append((hub.netns, name, names.link_mark(int(name[1:-1]))))
        # Cut the flows first (rules already say the link is dead), then drop the veths.
        for netns, _name, mark in stale:
            self.kernel.conntrack_delete_mark(netns, mark)
        for netns, name, _mark in stale:
            self._netlink(netns).delete_link(name)
        # Endpoint routes without a link (their veth went, so did they) or of an
        # endpoint that is no longer linked; wrong ones are replaced by `_link`.
        routes = {(x.consumer_netns, f"{x.pe_ip}/32") for x in veths}
        for hub in desired.hubs:
            nl = self._netlink(hub.netns)
            for dst in nl.routes(table=names.ENDPOINT_TABLE):
                if (hub.netns, dst) not in routes:
                    nl.delete_route(dst, table=names.ENDPOINT_TABLE)
        self._links = {x.slot: x for x in desired.links}

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
        payload = {"prefix": self.prefix, "nics": nics, "vnets": hubs}
        path = self.data_dir / "dataplane.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        tmp.replace(path)


def _same_wire(a: LinkPlan | None, b: LinkPlan | None) -> bool:
    """Whether two link plans are the same veth and endpoint route (ports may differ)."""
    if a is None or b is None:
        return False
    return (a.link_key, a.consumer_netns, a.provider_netns, a.local, a.pe_ip) == (
        b.link_key,
        b.consumer_netns,
        b.provider_netns,
        b.local,
        b.pe_ip,
    )


def cleanup(prefix: str) -> list[str]:
    """Remove every namespace this prefix owns (their veths and nft tables go with them)
    and their /etc/netns files; returns the namespaces removed."""
    removed = []
    for netns in privileged.list_netns():
        if names.is_ours(prefix, netns):
            privileged.delete_netns(netns)
            removed.append(netns)
    for netns in privileged.list_netns_etc():
        if names.is_ours(prefix, netns):
            privileged.remove_netns_etc(netns)
    return removed
