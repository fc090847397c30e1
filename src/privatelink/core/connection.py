"""Connections (Microsoft.Network/connections): site-to-site IPsec tunnels.

A connection ties a VPN gateway (`virtual_network_gateway1_id`) to an on-premises site
(`local_network_gateway2_id`) with a pre-shared key, over IKEv2. It is above both
gateway modules: it owns the rule that ties them (the site's prefixes keep clear of the
gateway's network), so the PUT of a site is `create_or_update_local_network_gateway`
here, which re-checks the connections using it.

The key is a secret: a connection's GET never shows it (Azure made reading it a right of
its own, `Microsoft.Network/connections/sharedKey/action`); it is read and set through
`connections/{name}/sharedkey` (`set_shared_key`, `reset_shared_key`). A PUT without a
key keeps the one stored, and a new connection without one gets a generated key, as in
Azure.

`connection_status` and the byte counters are the data plane's to report
(`with_status`); a PUT keeps them, and a new connection is `Unknown` until then.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from privatelink.core import errors
from privatelink.core import local_network_gateway as lngm
from privatelink.core import virtual_network_gateway as vngm
from privatelink.core.ids import ResourceId, key
from privatelink.core.resource import (
    Changes,
    Context,
    Resource,
    StateView,
    get_typed,
    normalize_location,
    pick,
    require,
)
from privatelink.core.virtual_network import VirtualNetwork

TYPE = "Microsoft.Network/connections"
IPSEC = "IPsec"
CONNECTION_TYPES = (IPSEC, "Vnet2Vnet", "ExpressRoute", "VPNClient")
IKEV2 = "IKEv2"
IKEV1 = "IKEv1"
PROTOCOLS = (IKEV2, IKEV1)
DEFAULT_MODE = "Default"
MODES = (DEFAULT_MODE, "ResponderOnly", "InitiatorOnly")
UNKNOWN = "Unknown"
CONNECTING = "Connecting"
CONNECTED = "Connected"
NOT_CONNECTED = "NotConnected"
#: Azure's connectionStatus values (read-only; the data plane reports them).
STATUSES = (UNKNOWN, CONNECTING, CONNECTED, NOT_CONNECTED)
DPD_DEFAULT = 45  # seconds, Azure's default dead peer detection timeout
DPD_RANGE = (9, 3600)
ROUTING_WEIGHT_RANGE = (0, 32000)
KEY_LENGTH_RANGE = (1, 128)
GENERATED_KEY_LENGTH = 32


@dataclass(frozen=True, kw_only=True)
class VirtualNetworkGatewayConnection(Resource):
    """A site-to-site IPsec connection (IKEv2, pre-shared key, no BGP)."""

    connection_type: str = IPSEC
    virtual_network_gateway1_id: str = ""
    local_network_gateway2_id: str = ""
    shared_key: str = ""  # in a PUT: "" = not given (keep, or generate for a new one)
    connection_protocol: str = IKEV2
    connection_mode: str = DEFAULT_MODE
    routing_weight: int = 0
    dpd_timeout_seconds: int = DPD_DEFAULT
    connection_status: str = UNKNOWN  # the data plane's
    ingress_bytes_transferred: int = 0  # the data plane's
    egress_bytes_transferred: int = 0  # the data plane's
    resource_guid: str = ""


# --- the shared key ---------------------------------------------------------------------------


def check_shared_key(connection_id: str, value: str) -> str:
    """A valid shared key, Azure's rule (VPN Gateway FAQ): 1-128 printable ASCII
    characters except space, hyphen and tilde (what an on-premises site's key takes too)."""
    low, high = KEY_LENGTH_RANGE
    if not low <= len(value) <= high or not all(
        0x21 <= ord(c) <= 0x7E and c not in "-~" for c in value
    ):
        raise errors.InvalidSharedKey(id=connection_id)
    return value


def generate_key(ctx: Context, length: int = GENERATED_KEY_LENGTH) -> str:
    """A fresh key of `length` letters and digits, from the context's GUID source (random
    in the server, deterministic in tests)."""
    digits = ""
    while len(digits) < length:
        digits += ctx.new_guid().replace("-", "")
    return digits[:length]


def _check_range(value: int, bounds: tuple[int, int], field: str) -> None:
    if not bounds[0] <= value <= bounds[1]:
        raise errors.InvalidRequestContent(
            f"{field} must be {bounds[0]} to {bounds[1]}; got {value}."
        )


def check(desired: VirtualNetworkGatewayConnection) -> VirtualNetworkGatewayConnection:
    """The body's own rules: IPsec over IKEv2 in Default mode, ranges, the key if given."""
    conn_type = pick(desired.connection_type, CONNECTION_TYPES, "connectionType")
    if conn_type != IPSEC:
        raise errors.UnsupportedProperty(
            name="connectionType",
            why=f"'{conn_type}' connections are not served; use IPsec (site-to-site).",
        )
    protocol = pick(desired.connection_protocol or IKEV2, PROTOCOLS, "connectionProtocol")
    if protocol != IKEV2:
        raise errors.UnsupportedProperty(
            name="connectionProtocol", why="IKEv1 is not served; use IKEv2."
        )
    mode = pick(desired.connection_mode or DEFAULT_MODE, MODES, "connectionMode")
    if mode != DEFAULT_MODE:
        raise errors.UnsupportedProperty(
            name="connectionMode",
            why="the gateway both initiates and responds; use Default.",
        )
    _check_range(desired.dpd_timeout_seconds, DPD_RANGE, "dpdTimeoutSeconds")
    _check_range(desired.routing_weight, ROUTING_WEIGHT_RANGE, "routingWeight")
    if desired.shared_key:
        check_shared_key(desired.id, desired.shared_key)
    return replace(
        desired,
        location=normalize_location(desired.location),
        connection_type=conn_type,
        connection_protocol=protocol,
        connection_mode=mode,
    )


# --- references -------------------------------------------------------------------------------


def _typed_ref(ref: str, segment: str) -> None:
    try:
        rid = ResourceId.parse(ref)
    except errors.ArmError:
        raise errors.InvalidResourceId(ref, expected=segment) from None
    if not rid.is_type(segment):
        raise errors.InvalidResourceId(ref, expected=segment)


def resolve_gateway(view: StateView, ref: str, referrer: str) -> vngm.VirtualNetworkGateway:
    """virtualNetworkGateway1: a VPN gateway that exists (400 otherwise)."""
    if not ref:
        raise errors.InvalidRequestContent(
            f"Connection {referrer} needs properties.virtualNetworkGateway1.id."
        )
    _typed_ref(ref, "virtualNetworkGateways")
    gateway = get_typed(view, ref, vngm.VirtualNetworkGateway)
    if gateway is None:
        raise errors.InvalidResourceReference(ref=ref, id=referrer)
    return gateway


def resolve_site(view: StateView, ref: str, referrer: str) -> lngm.LocalNetworkGateway:
    """localNetworkGateway2: a site that exists (400 otherwise)."""
    if not ref:
        raise errors.InvalidRequestContent(
            f"Connection {referrer} needs properties.localNetworkGateway2.id (an IPsec "
            "connection joins a gateway to a local network gateway)."
        )
    _typed_ref(ref, "localNetworkGateways")
    site = get_typed(view, ref, lngm.LocalNetworkGateway)
    if site is None:
        raise errors.InvalidResourceReference(ref=ref, id=referrer)
    return site


def _network_of(view: StateView, gateway: vngm.VirtualNetworkGateway) -> VirtualNetwork:
    return require(view, gateway.virtual_network_id, VirtualNetwork)


# --- workflows --------------------------------------------------------------------------------


def create_or_update(
    view: StateView, ctx: Context, desired: VirtualNetworkGatewayConnection
) -> Changes:
    """PUT a connection: gateway and site exist, in its region, with networks apart; an
    existing connection keeps both references, its key unless one is given, and what
    the data plane reported."""
    conn = check(desired)
    gateway = resolve_gateway(view, conn.virtual_network_gateway1_id, conn.id)
    site = resolve_site(view, conn.local_network_gateway2_id, conn.id)
    for ref in (gateway, site):
        if ref.location != conn.location:
            raise errors.ResourceLocationMismatch(
                id=conn.id, location=conn.location, ref=ref.id, other=ref.location
            )
    lngm.check_prefixes(site, _network_of(view, gateway), gateway.id, conn.id)
    existing = get_typed(view, conn.id, VirtualNetworkGatewayConnection)
    if existing is not None:
        if existing.location != conn.location:
            raise errors.ResourceLocationMismatch(
                id=existing.id,
                location=conn.location,
                ref="its existing location",
                other=existing.location,
            )
        for field, old, new in (
            ("virtualNetworkGateway1", existing.virtual_network_gateway1_id, gateway.id),
            ("localNetworkGateway2", existing.local_network_gateway2_id, site.id),
        ):
            if key(old) != key(new):
                raise errors.ConnectionReferenceCannotChange(
                    id=existing.id, field=field, old=old, new=new
                )
        conn = replace(
            conn,
            id=existing.id,
            name=existing.name,
            shared_key=conn.shared_key or existing.shared_key,
            connection_status=existing.connection_status,
            ingress_bytes_transferred=existing.ingress_bytes_transferred,
            egress_bytes_transferred=existing.egress_bytes_transferred,
            resource_guid=existing.resource_guid,
        )
    else:
        conn = replace(
            conn,
            shared_key=conn.shared_key or generate_key(ctx),
            connection_status=UNKNOWN,
            ingress_bytes_transferred=0,
            egress_bytes_transferred=0,
            resource_guid=ctx.new_guid(),
        )
    conn = replace(
        conn,
        virtual_network_gateway1_id=gateway.id,
        local_network_gateway2_id=site.id,
        provisioning_state=ctx.initial_state,
    )
    changes = Changes()
    changes.put(conn)
    return changes


def delete(view: StateView, ctx: Context, connection_id: str) -> Changes:
    """DELETE a connection (its gateway and site may go after it)."""
    changes = Changes()
    if get_typed(view, connection_id, VirtualNetworkGatewayConnection) is not None:
        changes.delete(connection_id)
    return changes


def set_shared_key(view: StateView, ctx: Context, connection_id: str, value: str) -> Changes:
    """PUT connections/{name}/sharedkey: the connection's new key."""
    conn = require(view, connection_id, VirtualNetworkGatewayConnection)
    changes = Changes()
    changes.put(
        replace(
            conn,
            shared_key=check_shared_key(conn.id, value),
            provisioning_state=ctx.initial_state,
        )
    )
    return changes


def reset_shared_key(view: StateView, ctx: Context, connection_id: str, length: int) -> Changes:
    """POST connections/{name}/sharedkey/reset: a generated key of `length` (1-128)."""
    conn = require(view, connection_id, VirtualNetworkGatewayConnection)
    _check_range(length, KEY_LENGTH_RANGE, "keyLength")
    changes = Changes()
    changes.put(
        replace(conn, shared_key=generate_key(ctx, length), provisioning_state=ctx.initial_state)
    )
    return changes


def create_or_update_local_network_gateway(
    view: StateView, ctx: Context, desired: lngm.LocalNetworkGateway
) -> Changes:
    """PUT a site: its own rules, then its prefixes against the network of each gateway
    a connection joins it to."""
    site = lngm.prepare(view, ctx, desired)
    for conn in view.referrers(site.key, lngm.CONNECTION_KIND):
        if not isinstance(conn, VirtualNetworkGatewayConnection):
            continue
        gateway = get_typed(view, conn.virtual_network_gateway1_id, vngm.VirtualNetworkGateway)
        if gateway is not None:
            lngm.check_prefixes(site, _network_of(view, gateway), gateway.id, conn.id)
    changes = Changes()
    changes.put(site)
    return changes


def with_status(
    conn: VirtualNetworkGatewayConnection, status: str, ingress: int, egress: int
) -> VirtualNetworkGatewayConnection:
    """The connection as the data plane reports it: its tunnel's status and byte counts."""
    if status not in STATUSES:
        raise ValueError(f"connection status must be one of {', '.join(STATUSES)}; got {status!r}")
    if ingress < 0 or egress < 0:
        raise ValueError("byte counts cannot be negative")
    return replace(
        conn,
        connection_status=status,
        ingress_bytes_transferred=ingress,
        egress_bytes_transferred=egress,
    )


def connections_of_gateway(
    view: StateView, gateway_id: str
) -> list[VirtualNetworkGatewayConnection]:
    """The connections of a gateway, oldest first (one indexed query)."""
    found = view.referrers(key(gateway_id), vngm.CONNECTION_KIND)
    return [c for c in found if isinstance(c, VirtualNetworkGatewayConnection)]


def references(conn: VirtualNetworkGatewayConnection) -> list[tuple[str, str]]:
    """Index entries: its gateway and its site (which then cannot go)."""
    return [
        (vngm.CONNECTION_KIND, key(conn.virtual_network_gateway1_id)),
        (lngm.CONNECTION_KIND, key(conn.local_network_gateway2_id)),
    ]
