"""What the relay needs from a plan: its hubs, their PROXY services and their links.

Pure: computed from a `desired.Plan` and the connections' LinkIDs; the relay
(`relay.py`) swaps it in whole. The backend choice (`choose`) follows the kernel
path's rules: the same healthy members of the load-balancing rule of the frontend
port, spread by the rule's distribution mode over the same fields as its nft `jhash`
(the hash function differs: nft's is seeded per rule, so no two paths would agree on
one flow anyway; what both keep is which flows stick together).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from privatelink.dataplane.desired import Plan


@dataclass(frozen=True)
class Route:
    """One frontend port of a PROXY service: its load-balancing rule as the relay runs it."""

    backend_port: int
    backends: tuple[str, ...]  # the healthy members, as the rule's nft chain has them
    distribution: str  # Default (5-tuple), SourceIP, SourceIPProtocol


@dataclass(frozen=True)
class Service:
    """A PROXY service in its provider hub."""

    chain: str
    nat_ips: tuple[str, ...]
    routes: Mapping[int, Route]  # by frontend port


@dataclass(frozen=True)
class Link:
    """An approved connection of a PROXY service, as its provider hub sees its flows."""

    link_key: str
    link_id: int  # the connection's linkIdentifier: the header's TLV
    pe_ip: str
    service: str  # its service's chain
    consumer_netns: str  # where the client's real address is known (its conntrack)
    local: bool  # endpoint and service in one network: the peer address is the client's


@dataclass(frozen=True)
class Hub:
    """A provider hub with PROXY services: what the relay there serves."""

    netns: str
    services: Mapping[str, Service]  # by chain
    remote: Mapping[tuple[str, str], Link]  # (pair address the flows come from, PE ip)
    local: Mapping[str, Link]  # by PE ip, for endpoints in the service's own network

    def link(self, peer_ip: str, pe_ip: str) -> Link | None:
        """The link a redirected flow belongs to, by where it came from and went to."""
        found = self.remote.get((peer_ip, pe_ip))
        return found if found is not None else self.local.get(pe_ip)


@dataclass(frozen=True)
class ProxyConfig:
    """Everything the relay serves; `live`: every live link of the plan, PROXY or not
    (a flow stays while its link lives, even when its service turned the flag off)."""

    hubs: Mapping[str, Hub] = field(default_factory=dict)
    live: frozenset[str] = frozenset()


EMPTY = ProxyConfig()


def link_id_of(link_identifier: str) -> int | None:
    """A stored linkIdentifier as the header's uint32 (None when it is not one)."""
    try:
        value = int(link_identifier)
    except ValueError:
        return None
    return value if 0 <= value <= 0xFFFFFFFF else None


def proxy_config(plan: Plan, link_ids: Mapping[str, int]) -> ProxyConfig:
    """The relay's view of `plan`; `link_ids`: LinkID by connection key (a link without
    one is left out: its flows get a reset, never a header without its TLV)."""
    hubs: dict[str, Hub] = {}
    for hub in plan.hubs:
        proxied = [s for s in hub.services if s.proxy]
        if not proxied:
            continue
        rules = {r.chain: r for r in hub.rules}
        services = {}
        for s in proxied:
            routes = {}
            for proto, port, chain in s.ports:
                rule = rules.get(chain)
                if proto == "tcp" and rule is not None:
                    routes[port] = Route(rule.backend_port, rule.backends, rule.distribution)
            services[s.chain] = Service(s.chain, s.nat_ips, routes)
        remote: dict[tuple[str, str], Link] = {}
        local: dict[str, Link] = {}
        for x in hub.links_in:
            link_id = link_ids.get(x.link_key)
            if x.service_chain not in services or link_id is None:
                continue
            link = Link(x.link_key, link_id, x.pe_ip, x.service_chain, x.consumer_netns, x.local)
            if x.local:
                local[x.pe_ip] = link
            else:
                remote[(x.consumer_addr, x.pe_ip)] = link
        hubs[hub.netns] = Hub(hub.netns, services, remote, local)
    return ProxyConfig(hubs=hubs, live=frozenset(x.link_key for x in plan.links))


def _hash(*parts: object) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def choose(route: Route, src: str, sport: int, dst: str, dport: int) -> str | None:
    """The backend of a new flow (None: no healthy member), by the rule's distribution
    mode: the 5-tuple (protocol is TCP), the source address, or source and protocol."""
    if not route.backends:
        return None
    if route.distribution == "SourceIP":
        h = _hash(src)
    elif route.distribution == "SourceIPProtocol":
        h = _hash(src, "tcp")
    else:
        h = _hash(src, sport, dst, dport)
    return route.backends[h % len(route.backends)]


def nat_ip(service: Service, src: str, sport: int) -> str | None:
    """The NAT IP a flow leaves from, by the same fields as the kernel path's SNAT
    (`jhash ip saddr . th sport`)."""
    if not service.nat_ips:
        return None
    return service.nat_ips[_hash(src, sport) % len(service.nat_ips)]
