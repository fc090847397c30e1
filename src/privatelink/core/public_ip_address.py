"""Public IP addresses: Standard, static, IPv4 addresses from the server's public range.

The range is `Limits.public_ip_range` (198.18.0.0/15 by default, a benchmarking range
that never belongs to the host). Addresses are handed out from its first host upward,
one per public IP, unique across the whole server (every subscription): they are held
in the store's IP index under one pseudo-subnet key (`RANGE_KEY`), so the lowest free
one is an indexed lookup. The range's last two host addresses are `reserved`: the data
plane uses them for its "internet" namespace. An address is stable for its public IP's
life: a PUT's `ipAddress` is ignored, as Azure ignores it for an allocated address.

Who uses a public IP (a load balancer frontend, a VPN gateway) indexes it under
`USER_KIND`; one user at a time, and none when it is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network

from privatelink.core import errors
from privatelink.core.ids import ResourceId, key
from privatelink.core.limits import Limits
from privatelink.core.resource import (
    Changes,
    Context,
    Resource,
    StateView,
    get_typed,
    normalize_location,
    pick,
)

TYPE = "Microsoft.Network/publicIPAddresses"
#: The IP index's pseudo-subnet key of the public range (no real subnet key looks so).
RANGE_KEY = "publicipaddresses/range"
#: The index kind under which a resource files the public IP it uses.
USER_KIND = "publicip"
STANDARD = "Standard"
BASIC = "Basic"
REGIONAL = "Regional"
GLOBAL = "Global"
STATIC = "Static"
DYNAMIC = "Dynamic"
IPV4 = "IPv4"
IPV6 = "IPv6"
RESERVED_AT_END = 2  # the last two host addresses: the data plane's "internet" side
IDLE_TIMEOUT_MIN = 4  # minutes, Azure's range for a public IP
IDLE_TIMEOUT_MAX = 30
ZONES = ("1", "2", "3")


@dataclass(frozen=True, kw_only=True)
class PublicIPAddress(Resource):
    """A Standard, static, IPv4 public IP; `ip_address` is set once, when it is made."""

    sku: str = STANDARD
    sku_tier: str = REGIONAL
    allocation: str = STATIC
    ip_version: str = IPV4
    ip_address: str = ""
    idle_timeout_in_minutes: int = IDLE_TIMEOUT_MIN
    zones: tuple[str, ...] = ()
    resource_guid: str = ""


# --- the public range -------------------------------------------------------------------------


def public_range(limits: Limits) -> IPv4Network:
    """The configured public range (validated when the limits were built)."""
    return IPv4Network(limits.public_ip_range)


def range_hosts(limits: Limits) -> tuple[int, int]:
    """(first, last) addresses, as integers, that public IPs are allocated from: the
    range's first host up to the last host before the `reserved` ones."""
    net = public_range(limits)
    return int(net.network_address) + 1, int(net.broadcast_address) - 1 - RESERVED_AT_END


def reserved(limits: Limits) -> tuple[str, ...]:
    """The range's last two host addresses (198.19.255.253 and .254 by default), never
    given to a public IP: the data plane's "internet" namespace uses them."""
    last_host = int(public_range(limits).broadcast_address) - 1
    return tuple(str(IPv4Address(last_host - i)) for i in range(RESERVED_AT_END - 1, -1, -1))


def allocate(view: StateView, limits: Limits) -> str:
    """The lowest free address of the public range (an indexed lookup)."""
    first, last = range_hosts(limits)
    found = view.lowest_free_ip(RANGE_KEY, first, last)
    if found is None:
        raise errors.PublicIPCountLimitReached(range=limits.public_ip_range)
    return str(IPv4Address(found))


# --- validation ---------------------------------------------------------------------------------


def check(desired: PublicIPAddress) -> PublicIPAddress:
    """The body's own rules: Standard, Regional, Static, IPv4, idle timeout, zones.

    Basic is refused with Azure's own answer since its retirement (no new Basic public
    IPs since 31 March 2025); Dynamic with Standard as Azure refuses it.
    """
    sku = pick(desired.sku or STANDARD, (BASIC, STANDARD), "sku.name")
    if sku == BASIC:
        raise errors.BasicSkuPublicIPAddressesRetired(id=desired.id)
    tier = pick(desired.sku_tier or REGIONAL, (REGIONAL, GLOBAL), "sku.tier")
    if tier == GLOBAL:
        raise errors.UnsupportedProperty(
            name="sku.tier",
            why="Global public IPs belong to cross-region load balancers; use Regional.",
        )
    version = pick(desired.ip_version or IPV4, (IPV4, IPV6), "publicIPAddressVersion")
    if version == IPV6:
        raise errors.UnsupportedProperty(
            name="publicIPAddressVersion", why="public IPs are IPv4 only; use IPv4."
        )
    allocation = pick(desired.allocation or STATIC, (DYNAMIC, STATIC), "publicIPAllocationMethod")
    if allocation != STATIC:
        raise errors.StandardSkuPublicIPAddressesMustBeStatic(id=desired.id)
    timeout = desired.idle_timeout_in_minutes
    if not IDLE_TIMEOUT_MIN <= timeout <= IDLE_TIMEOUT_MAX:
        raise errors.InvalidPublicIPIdleTimeout(
            value=timeout, low=IDLE_TIMEOUT_MIN, high=IDLE_TIMEOUT_MAX
        )
    zones = tuple(dict.fromkeys(desired.zones))
    for zone in zones:
        if zone not in ZONES:
            raise errors.InvalidRequestContent(
                f"zones: '{errors.clip(zone)}' is not an availability zone; use 1, 2 or 3."
            )
    return replace(
        desired,
        location=normalize_location(desired.location),
        sku=sku,
        sku_tier=tier,
        ip_version=version,
        allocation=allocation,
        zones=tuple(sorted(zones)),
    )


def create_or_update(view: StateView, ctx: Context, desired: PublicIPAddress) -> Changes:
    """PUT a public IP: a new one gets the lowest free address of the public range; an
    existing one keeps its address, sku, version and zones (tags and idle timeout change)."""
    pip = check(desired)
    existing = get_typed(view, pip.id, PublicIPAddress)
    if existing is not None:
        if existing.location != pip.location:
            raise errors.ResourceLocationMismatch(
                id=existing.id,
                location=pip.location,
                ref="its existing location",
                other=existing.location,
            )
        if existing.zones != pip.zones:
            raise errors.PublicIPAddressPropertyCannotChange(id=existing.id, field="zones")
        pip = replace(
            existing,
            tags=pip.tags,
            idle_timeout_in_minutes=pip.idle_timeout_in_minutes,
            provisioning_state=ctx.initial_state,
        )
    else:
        pip = replace(
            pip,
            ip_address=allocate(view, ctx.limits),
            resource_guid=ctx.new_guid(),
            provisioning_state=ctx.initial_state,
        )
    changes = Changes()
    changes.put(pip)
    return changes


def delete(view: StateView, ctx: Context, pip_id: str) -> Changes:
    """DELETE a public IP (refused while a frontend or a gateway uses it)."""
    changes = Changes()
    pip = get_typed(view, pip_id, PublicIPAddress)
    if pip is None:
        return changes
    user = user_of(view, pip)
    if user is not None:
        raise errors.PublicIPAddressCannotBeDeleted(id=pip.id, user=user)
    changes.delete(pip.id)
    return changes


# --- users --------------------------------------------------------------------------------------


def user_of(view: StateView, pip: PublicIPAddress) -> str | None:
    """The id of the IP configuration that uses the public IP (a load balancer frontend,
    a gateway's ipConfiguration), or None."""
    for user in view.referrers(pip.key, USER_KIND, 0, 1):
        # Users name the configuration holding each public IP (`public_ip_configs`).
        configs = getattr(user, "public_ip_configs", None)
        found = configs().get(pip.key) if callable(configs) else None
        return str(found) if found else user.id
    return None


def resolve(view: StateView, ref: str, referrer: str) -> PublicIPAddress:
    """A public IP reference that must exist (400 InvalidResourceReference)."""
    try:
        rid = ResourceId.parse(ref)
    except errors.ArmError:
        raise errors.InvalidResourceId(ref, expected="publicIPAddresses") from None
    if not rid.is_type("publicIPAddresses"):
        raise errors.InvalidResourceId(ref, expected="publicIPAddresses")
    pip = get_typed(view, ref, PublicIPAddress)
    if pip is None:
        raise errors.InvalidResourceReference(ref=ref, id=referrer)
    return pip


def claim(
    view: StateView, pip: PublicIPAddress, owner_id: str, config_id: str, claimed: dict[str, str]
) -> None:
    """Check that `config_id` of `owner_id` may use `pip`: no other resource uses it, and
    no other configuration of this request (`claimed`: public IP key -> config id)."""
    other = claimed.get(pip.key)
    if other is not None and other.lower() != config_id.lower():
        raise errors.PublicIPAddressInUse(pip=pip.id, user=other, id=config_id)
    for user in view.referrers(pip.key, USER_KIND):
        if user.key != key(owner_id):
            raise errors.PublicIPAddressInUse(pip=pip.id, user=user_of(view, pip), id=config_id)
    claimed[pip.key] = config_id


def references(pip: PublicIPAddress) -> list[tuple[str, str]]:
    """Index entries: none (its users file it)."""
    return []


def ip_usages(pip: PublicIPAddress) -> list[tuple[str, str]]:
    """The address it holds in the public range."""
    return [(RANGE_KEY, pip.ip_address)] if pip.ip_address else []
