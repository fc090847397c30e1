"""The fabric: what connects hubs to each other and to the world beyond private link.

Private endpoint links (desired.py) join two hubs for one service's connections. The
fabric is everything else that carries traffic between namespaces, planned here as a
pure function of the stored resources:

- a *connected peering* (both sides `Connected`) is one veth between the two networks'
  hubs, a "wire", with each hub routing the other's synced address space into it;
- the *internet* is one namespace (`names.inet_netns`) holding the public range's last
  host address (the "client" `privatelink exec --internet` speaks from); a hub whose
  network has public load balancer frontends has a wire to it ("uplink"): the internet
  routes each frontend's address into the hub, the hub routes the public range back;
- a *VPN gateway* is a namespace of its own with its public IP (a wire to the
  internet) and its private IP (a wire to its network's hub), where strongSwan answers
  the tunnels of its connections (`tunnels`); the hub routes each connection's
  on-premises prefixes to it;
- an *on-premises site* (an admin object, core/site.py) is a router namespace with its
  gateway IP on a wire to the internet; its strongSwan dials every gateway whose
  connection's local network gateway names that IP. Its hosts are namespaces that
  `privatelink exec --site` makes on demand, behind the router.
- *gateway transit*: a network peered with the gateway's network, with
  `useRemoteGateways` on its side and `allowGatewayTransit` on the other, routes the
  on-premises prefixes over the peering, and the gateway's tunnels carry its space too.

A wire takes its two interface names and its /30 from a small integer the store hands
out by the wire's key (`names.wire_*`), so names and addresses survive a restart. What a
hub's nft table must know of its wires is its `HubFabric`: which interfaces are
peerings, which sources each may carry new flows from (anti-spoofing: the peer's space,
or anything when this side allows forwarded traffic), and which directions may open
flows (`allowVirtualNetworkAccess` of each side).

Peering is not transitive: a hub routes only its direct peers' spaces, and its table
drops anything that would cross from one peering into another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from privatelink.core.connection import VirtualNetworkGatewayConnection
from privatelink.core.ids import key
from privatelink.core.load_balancer import LoadBalancer
from privatelink.core.local_network_gateway import LocalNetworkGateway
from privatelink.core.network_interface import NetworkInterface
from privatelink.core.public_ip_address import PublicIPAddress
from privatelink.core.resource import Resource
from privatelink.core.site import Site
from privatelink.core.virtual_network import VirtualNetwork
from privatelink.core.virtual_network_gateway import VirtualNetworkGateway
from privatelink.core.virtual_network_peering import CONNECTED, VirtualNetworkPeering
from privatelink.dataplane import names
from privatelink.dataplane.ipsec import IpsecEndpoint

ANY_SOURCE = "0.0.0.0/0"


@dataclass(frozen=True)
class Wire:
    """A veth between two of our namespaces, each end with an address of one /30."""

    key: str
    slot: int
    a_netns: str
    a_ifname: str
    a_addr: str
    b_netns: str
    b_ifname: str
    b_addr: str


@dataclass(frozen=True)
class Route:
    """A route in a namespace's main table: `dst` via `via` on `ifname`."""

    netns: str
    dst: str
    ifname: str
    via: str
    src: str | None = None  # the source address the namespace's own sockets use


@dataclass(frozen=True)
class PeerPort:
    """One peering wire as its hub's table sees it.

    `sources`: the prefixes new flows coming in on it may come from (ANY_SOURCE when
    this side allows forwarded traffic); `allow_in`/`allow_out`: whether flows may be
    opened from the peer into this network, and from this network to the peer.
    """

    ifname: str
    sources: tuple[str, ...]
    allow_in: bool
    allow_out: bool


@dataclass(frozen=True)
class HubFabric:
    """What one hub's table needs to know of the fabric.

    `peers` are its peerings' and its gateway's wires (`transit`: those a flow may cross
    into another wire: the gateway's, for gateway transit); `uplinks` its wires to the
    internet, which carry only flows the internet opened to a public frontend.
    """

    peers: tuple[PeerPort, ...] = ()
    transit: tuple[str, ...] = ()
    uplinks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Node:
    """A fabric namespace that is neither a hub nor a NIC (internet, gateway, site):
    `addresses` are its own /32s on `lo`; it forwards between its wires."""

    netns: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tunnels:
    """The IPsec endpoints strongSwan serves in one namespace (a gateway or a site).

    `connections` maps each endpoint's name to the connection resource it realizes (on
    a gateway: the status the data plane reports back)."""

    netns: str
    owner: str  # the gateway's id, or "site:<name>"
    endpoints: tuple[IpsecEndpoint, ...]
    connections: tuple[tuple[str, str], ...] = ()  # (endpoint name, connection id)


NO_FABRIC = HubFabric()


@dataclass(frozen=True)
class Fabric:
    """The fabric's desired state: wires and routes, and each hub's part (by VNet key)."""

    wires: tuple[Wire, ...] = ()
    routes: tuple[Route, ...] = ()
    hubs: Mapping[str, HubFabric] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)
    nodes: tuple[Node, ...] = ()
    tunnels: tuple[Tunnels, ...] = ()
    sites: tuple[str, ...] = ()  # names of the sites (their hosts' namespaces are kept)


EMPTY = Fabric()


def peering_key(vnet_a: str, vnet_b: str) -> str:
    """The wire key of the peering between two networks (either order)."""
    first, second = sorted((key(vnet_a), key(vnet_b)))
    return f"peer {first} {second}"


@dataclass(frozen=True)
class _Pair:
    """Both sides of a connected peering, `a` of the network whose key sorts first."""

    wire_key: str
    a: VirtualNetworkPeering
    b: VirtualNetworkPeering


@dataclass
class _World:
    """The resources the fabric reads, by kind (from one pass over the world)."""

    vnets: dict[str, VirtualNetwork] = field(default_factory=dict)
    peerings: dict[tuple[str, str], VirtualNetworkPeering] = field(default_factory=dict)
    public_ips: dict[str, PublicIPAddress] = field(default_factory=dict)
    lbs: list[LoadBalancer] = field(default_factory=list)
    nics: list[NetworkInterface] = field(default_factory=list)
    gateways: list[VirtualNetworkGateway] = field(default_factory=list)
    local_gateways: dict[str, LocalNetworkGateway] = field(default_factory=dict)
    connections: list[VirtualNetworkGatewayConnection] = field(default_factory=list)

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> _World:
        w = cls()
        for r in resources:
            if isinstance(r, VirtualNetwork):
                w.vnets[r.key] = r
            elif isinstance(r, VirtualNetworkPeering):
                if r.peering_state == CONNECTED:
                    w.peerings[(key(r.vnet_id), key(r.remote_vnet_id))] = r
            elif isinstance(r, PublicIPAddress):
                w.public_ips[r.key] = r
            elif isinstance(r, LoadBalancer):
                if r.is_public:
                    w.lbs.append(r)
            elif isinstance(r, NetworkInterface):
                if not r.managed_by and r.ip_configurations:
                    w.nics.append(r)
            elif isinstance(r, VirtualNetworkGateway):
                w.gateways.append(r)
            elif isinstance(r, LocalNetworkGateway):
                w.local_gateways[r.key] = r
            elif isinstance(r, VirtualNetworkGatewayConnection):
                w.connections.append(r)
        return w

    def pairs(self) -> list[_Pair]:
        """Connected peerings (both sides Connected, both networks there), sorted."""
        found = []
        for (local, remote), side in sorted(self.peerings.items()):
            other = self.peerings.get((remote, local))
            if (
                local < remote
                and other is not None
                and local in self.vnets
                and remote in self.vnets
            ):
                found.append(_Pair(peering_key(local, remote), side, other))
        return found

    def public_frontends(self) -> dict[str, list[str]]:
        """VNet key -> the addresses of its public load balancer frontends (a public load
        balancer's network is that of its backend pool's NICs)."""
        by_pool: dict[str, str] = {}
        for nic in self.nics:
            vnet = _vnet_of_subnet(nic.ip_configurations[0].subnet_id)
            for config in nic.ip_configurations:
                for pool in config.pool_ids:
                    by_pool.setdefault(key(pool), vnet)
        found: dict[str, list[str]] = {}
        for lb in self.lbs:
            behind = next(
                (
                    by_pool[k]
                    for p in lb.pools
                    if (k := key(lb.child_id("backendAddressPools", p.name))) in by_pool
                ),
                None,
            )
            if behind is None or behind not in self.vnets:
                continue  # no backend yet: nothing to reach
            for fe in lb.frontends:
                if fe.public_ip_address:
                    found.setdefault(behind, []).append(fe.public_ip_address)
        return found


def _vnet_of_subnet(subnet_id: str) -> str:
    return key(subnet_id.rsplit("/subnets/", 1)[0])


@dataclass(frozen=True)
class _Gateway:
    """A realizable gateway: its network, addresses and connections with their sites."""

    gateway: VirtualNetworkGateway
    vnet: VirtualNetwork
    public_ip: str
    private_ip: str
    connections: tuple[tuple[VirtualNetworkGatewayConnection, LocalNetworkGateway], ...]


def _gateways(w: _World) -> list[_Gateway]:
    found = []
    for gw in w.gateways:
        if not gw.ip_configurations:
            continue
        config = gw.ip_configurations[0]
        vnet = w.vnets.get(_vnet_of_subnet(config.subnet_id))
        pip = w.public_ips.get(key(config.public_ip_id))
        if vnet is None or pip is None or not pip.ip_address or not config.private_ip:
            continue
        conns = []
        for c in w.connections:
            if key(c.virtual_network_gateway1_id) == gw.key:
                lng = w.local_gateways.get(key(c.local_network_gateway2_id))
                if lng is not None and lng.gateway_ip_address:
                    conns.append((c, lng))
        found.append(_Gateway(gw, vnet, pip.ip_address, config.private_ip, tuple(conns)))
    return found


def _transit_peers(w: _World, gw: _Gateway) -> list[_Pair]:
    """Connected peerings of the gateway's network whose other side uses remote gateways
    while the gateway's side allows gateway transit."""
    found = []
    for pair in w.pairs():
        for here, there in ((pair.a, pair.b), (pair.b, pair.a)):
            if (
                key(here.vnet_id) == gw.vnet.key
                and here.allow_gateway_transit
                and there.use_remote_gateways
            ):
                found.append(pair)
    return found


def wire_keys(resources: Iterable[Resource], sites: Iterable[Site] = ()) -> set[str]:
    """The keys of every wire the resources and sites want (what the store gives slots to)."""
    w = _World.of(resources)
    return _wire_keys(w, list(sites))


def _wire_keys(w: _World, sites: list[Site]) -> set[str]:
    keys = {p.wire_key for p in w.pairs()}
    keys |= {f"inet {vnet}" for vnet in w.public_frontends()}
    for gw in _gateways(w):
        keys |= {f"gwhub {gw.gateway.key}", f"gwinet {gw.gateway.key}"}
    keys |= {f"site {s.name.lower()}" for s in sites}
    return keys


def _port(ifname: str, side: VirtualNetworkPeering, other: VirtualNetworkPeering) -> PeerPort:
    sources = (ANY_SOURCE,) if side.allow_forwarded_traffic else side.remote_address_space
    return PeerPort(
        ifname=ifname,
        sources=tuple(sources),
        allow_in=other.allow_virtual_network_access,
        allow_out=side.allow_virtual_network_access,
    )


def plan(
    resources: Iterable[Resource],
    slots: Mapping[str, int],
    prefix: str = names.DEFAULT_PREFIX,
    sites: Iterable[Site] = (),
    public_range: str = "198.18.0.0/15",
) -> Fabric:
    """The fabric the resources and sites want. A wire without a slot (over the limit)
    is left out, and what needed it named in `problems`."""
    w = _World.of(resources)
    site_list = sorted(sites, key=lambda s: s.name.lower())
    public = str(IPv4Network(public_range))
    client = str(IPv4Address(int(IPv4Network(public_range).broadcast_address) - 1))
    inet = names.inet_netns(prefix)
    wires: list[Wire] = []
    routes: list[Route] = []
    ports: dict[str, list[PeerPort]] = {}
    transit: dict[str, list[str]] = {}
    uplinks: dict[str, list[str]] = {}
    nodes: dict[str, Node] = {}
    tunnels: list[Tunnels] = []
    problems: dict[str, str] = {}

    def wire(wire_key: str, a_ns: str, b_ns: str, *owners: str) -> Wire | None:
        slot = slots.get(wire_key)
        if slot is None:
            for owner in owners:
                problems[owner] = f"no wire is free for it (at most {names.MAX_WIRES} on a host)"
            return None
        a_addr, b_addr = names.wire_addresses(slot)
        made = Wire(
            wire_key,
            slot,
            a_ns,
            names.wire_ifname(slot, "a"),
            a_addr,
            b_ns,
            names.wire_ifname(slot, "b"),
            b_addr,
        )
        wires.append(made)
        return made

    def hub(vnet_key: str) -> str:
        return names.hub_netns(prefix, w.vnets[vnet_key].id)

    # Peerings.
    pair_wires: dict[tuple[str, str], Wire] = {}  # (vnet, its peer) -> the wire
    for pair in w.pairs():
        a_vnet, b_vnet = key(pair.a.vnet_id), key(pair.b.vnet_id)
        made = wire(pair.wire_key, hub(a_vnet), hub(b_vnet), pair.a.key, pair.b.key)
        if made is None:
            continue
        pair_wires[(a_vnet, b_vnet)] = pair_wires[(b_vnet, a_vnet)] = made
        # Each hub routes the space its own side last synced (Azure's behaviour).
        routes += [
            Route(made.a_netns, p, made.a_ifname, made.b_addr) for p in pair.a.remote_address_space
        ]
        routes += [
            Route(made.b_netns, p, made.b_ifname, made.a_addr) for p in pair.b.remote_address_space
        ]
        ports.setdefault(a_vnet, []).append(_port(made.a_ifname, pair.a, pair.b))
        ports.setdefault(b_vnet, []).append(_port(made.b_ifname, pair.b, pair.a))

    def end(made: Wire, vnet: str) -> tuple[str, str]:
        """(this network's end, the other end's address) of a peering wire."""
        if made.a_netns == hub(vnet):
            return made.a_ifname, made.b_addr
        return made.b_ifname, made.a_addr

    # Public frontends: the hub's uplink to the internet.
    for vnet, addresses in sorted(w.public_frontends().items()):
        made = wire(f"inet {vnet}", hub(vnet), inet, vnet)
        if made is None:
            continue
        nodes[inet] = Node(inet, (client,))
        routes += [
            Route(inet, f"{ip}/32", made.b_ifname, made.a_addr, client)
            for ip in sorted(set(addresses))
        ]
        routes.append(Route(made.a_netns, public, made.a_ifname, made.b_addr))
        uplinks.setdefault(vnet, []).append(made.a_ifname)

    # VPN gateways and the sites that dial them.
    sites_by_ip = {s.gateway_ip: s for s in site_list}
    site_tunnels: dict[str, list[IpsecEndpoint]] = {}
    for gw in _gateways(w):
        gw_ns = names.gateway_netns(prefix, gw.gateway.id)
        to_hub = wire(f"gwhub {gw.gateway.key}", hub(gw.vnet.key), gw_ns, gw.gateway.key)
        to_inet = wire(f"gwinet {gw.gateway.key}", gw_ns, inet, gw.gateway.key)
        if to_hub is None or to_inet is None:
            continue
        nodes[inet] = Node(inet, (client,))
        routes.append(Route(inet, f"{gw.public_ip}/32", to_inet.b_ifname, to_inet.a_addr, client))
        routes.append(Route(gw_ns, public, to_inet.a_ifname, to_inet.b_addr, gw.public_ip))
        peers = _transit_peers(w, gw)
        # What the tunnels carry on the Azure side: the network, and peers in transit.
        local_ts = list(gw.vnet.address_prefixes)
        for pair in peers:
            here = pair.a if key(pair.a.vnet_id) == gw.vnet.key else pair.b
            local_ts += [p for p in here.remote_address_space if p not in local_ts]
        routes += [Route(gw_ns, p, to_hub.b_ifname, to_hub.a_addr, gw.private_ip) for p in local_ts]
        anchors = _anchors(local_ts, gw.private_ip)
        nodes[gw_ns] = Node(gw_ns, (gw.public_ip, gw.private_ip, *anchors))
        onprem: list[str] = []
        endpoints = []
        links = []
        for conn, lng in gw.connections:
            onprem += [p for p in lng.address_prefixes if p not in onprem]
            name = conn.key
            endpoints.append(
                IpsecEndpoint(
                    name=name,
                    local_address=gw.public_ip,
                    remote_address=lng.gateway_ip_address,
                    local_ts=tuple(local_ts),
                    remote_ts=tuple(lng.address_prefixes),
                    psk=conn.shared_key,
                    initiator=False,
                )
            )
            links.append((endpoints[-1].conn, conn.id))
            site = sites_by_ip.get(lng.gateway_ip_address)
            if site is not None:
                site_tunnels.setdefault(site.name.lower(), []).append(
                    IpsecEndpoint(
                        name=name,
                        local_address=site.gateway_ip,
                        remote_address=gw.public_ip,
                        local_ts=tuple(site.address_space),
                        remote_ts=tuple(local_ts),
                        psk=site.shared_key,
                        initiator=True,
                    )
                )
        tunnels.append(Tunnels(gw_ns, gw.gateway.id, tuple(endpoints), tuple(links)))
        # The hub routes on-premises prefixes to the gateway's private side.
        hub_ns = to_hub.a_netns
        routes += [Route(hub_ns, p, to_hub.a_ifname, to_hub.b_addr) for p in onprem]
        ports.setdefault(gw.vnet.key, []).append(
            PeerPort(to_hub.a_ifname, tuple(onprem), allow_in=True, allow_out=True)
        )
        transit.setdefault(gw.vnet.key, []).append(to_hub.a_ifname)
        for pair in peers:
            there = pair.b if key(pair.a.vnet_id) == gw.vnet.key else pair.a
            made = pair_wires.get((gw.vnet.key, key(there.vnet_id)))
            if made is None:
                continue
            far = key(there.vnet_id)
            ifname, via = end(made, far)
            routes += [Route(hub(far), p, ifname, via) for p in onprem]
            # The remote network accepts flows from on-premises over the peering.
            ports[far] = [
                replace_sources(p, onprem) if p.ifname == ifname else p for p in ports.get(far, [])
            ]

    for site in site_list:
        site_ns = names.site_netns(prefix, site.name)
        made = wire(f"site {site.name.lower()}", site_ns, inet, f"site:{site.name.lower()}")
        if made is None:
            continue
        nodes[inet] = Node(inet, (client,))
        nodes[site_ns] = Node(site_ns, (site.gateway_ip, *_anchors(site.address_space)))
        routes.append(Route(inet, f"{site.gateway_ip}/32", made.b_ifname, made.a_addr, client))
        routes.append(Route(site_ns, public, made.a_ifname, made.b_addr, site.gateway_ip))
        found = site_tunnels.get(site.name.lower(), [])
        tunnels.append(Tunnels(site_ns, f"site:{site.name.lower()}", tuple(found)))

    vnets = set(ports) | set(uplinks)
    hubs = {
        vnet: HubFabric(
            peers=tuple(sorted(ports.get(vnet, []), key=lambda p: p.ifname)),
            transit=tuple(sorted(transit.get(vnet, []))),
            uplinks=tuple(sorted(uplinks.get(vnet, []))),
        )
        for vnet in vnets
    }
    return Fabric(
        tuple(wires),
        tuple(routes),
        hubs,
        problems,
        tuple(nodes[n] for n in sorted(nodes)),
        tuple(tunnels),
        tuple(s.name.lower() for s in site_list),
    )


def _anchors(prefixes: Iterable[str], own: str = "") -> tuple[str, ...]:
    """An address of the namespace inside each traffic selector it does not have one in
    yet: the prefix's network address, which no VM holds (Azure reserves a subnet's first
    four). strongSwan's user-space ESP routes a tunnel only from a local address inside
    its local selector."""
    found = []
    for prefix in prefixes:
        net = IPv4Network(prefix)
        if own and IPv4Address(own) in net:
            continue
        found.append(str(net.network_address))
    return tuple(found)


def replace_sources(port: PeerPort, extra: Iterable[str]) -> PeerPort:
    """A peering port that also takes new flows from `extra` prefixes (gateway transit)."""
    if ANY_SOURCE in port.sources:
        return port
    more = tuple(p for p in extra if p not in port.sources)
    return PeerPort(port.ifname, port.sources + more, port.allow_in, port.allow_out)
