"""Deterministic, bounded kernel names derived from resource ids.

Namespaces are `<prefix>-v-<hash>` (a VNet's hub) and `<prefix>-n-<hash>` (a NIC, i.e.
a "VM"); interfaces live only inside our namespaces, so their names need to be unique
per namespace only and stay within the kernel's 15 characters. A connection's mark
comes from its link slot, and the veth its connections share between two hubs takes
its names and /30 from the pair's slot (small integers the store hands out, each kept
while its connection or pair lives).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from ipaddress import IPv4Address

from privatelink.core.ids import key

DEFAULT_PREFIX = "pl"
IFNAMSIZ = 15
GATEWAY = "169.254.0.1"  # every hub-side NIC veth holds it: the NICs' default gateway
AZURE_PLATFORM_IP = "168.63.129.16"  # health probes (and DNS) come from here, as in Azure
# The relay of PROXY-protocol services listens here in a provider hub; nft redirects
# their new flows to it (dataplane/proxy), and nothing reaches it otherwise.
PROXY_PORT = 15001
LINK_BASE = int(IPv4Address("169.254.64.0"))
MAX_PAIRS = (256 - 64) * 64  # a /30 per pair of hubs in 169.254.64.0 - 169.254.255.255
# Fabric wires (peerings, and the gateways' and sites' veths): a /30 each in
# 169.254.1.0 - 169.254.63.255 (169.254.0.0/24 holds the NICs' gateway).
WIRE_BASE = int(IPv4Address("169.254.1.0"))
MAX_WIRES = 63 * 64
# Approved connections per host: a slot is only a conntrack mark (slot + 1) now that
# connections between two hubs share one veth, so the limit is no longer the /30s.
MAX_SLOTS = 65536
TABLE = "privatelink"
# Named counter in every hub's table: new flows refused because the hub's conntrack
# table was at its limit (the reconciler reads and resets it).
REFUSED_COUNTER = "refused"
# A hub routes each live endpoint IP into its link from its own routing table, looked
# up before `local` (the endpoint IP stays local so that without a live link the input
# chain answers with a reset). The kernel's rule 0 for `local` moves behind it.
ENDPOINT_TABLE = 100
ENDPOINT_RULE_PREF = 500
LOCAL_RULE_PREF = 1000
_PREFIX = re.compile(r"[a-z][a-z0-9]{0,7}")


def check_prefix(prefix: str) -> str:
    """A namespace prefix: 1-8 lower-case letters/digits, starting with a letter."""
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"invalid namespace prefix {prefix!r}: 1-8 of [a-z0-9], starting with a letter"
        )
    return prefix


def prefix_for(data_dir: str) -> str:
    """The default namespace prefix of a server: derived from its data directory, so two
    servers on one host never sweep each other's namespaces."""
    return DEFAULT_PREFIX + hashlib.sha256(data_dir.encode()).hexdigest()[:5]


def digest(resource_id: str, length: int = 10) -> str:
    """A short stable hash of a resource id (case-insensitive)."""
    return hashlib.sha256(key(resource_id).encode()).hexdigest()[:length]


def hub_netns(prefix: str, vnet_id: str) -> str:
    """The namespace routing a virtual network."""
    return f"{prefix}-v-{digest(vnet_id)}"


def nic_netns(prefix: str, nic_id: str) -> str:
    """The namespace of a NIC (its "VM")."""
    return f"{prefix}-n-{digest(nic_id)}"


def is_ours(prefix: str, netns: str) -> bool:
    """True for namespaces this prefix owns (what `cleanup` sweeps)."""
    return netns.startswith((f"{prefix}-v-", f"{prefix}-n-", f"{prefix}-x-"))


# The fabric's namespaces (dataplane/fabric.py) are `<prefix>-x-...`: the internet, VPN
# gateways, on-premises sites and their hosts.


def inet_netns(prefix: str) -> str:
    """The namespace that stands for the internet (public IPs live only inside it)."""
    return f"{prefix}-x-inet"


def gateway_netns(prefix: str, gateway_id: str) -> str:
    """The namespace of a virtual network gateway (its charon runs there)."""
    return f"{prefix}-x-g{digest(gateway_id)}"


def site_netns(prefix: str, site: str) -> str:
    """The router of an on-premises site (its VPN device runs there)."""
    return f"{prefix}-x-s{digest('site:' + site)}"


def site_tag(site: str) -> str:
    """Six hex digits naming a site in its hosts' namespace names."""
    return digest("site:" + site, 6)


def host_netns(prefix: str, site: str, ip: str) -> str:
    """A host of an on-premises site (made by `privatelink exec --site`): the site's tag
    first, so that the data plane keeps a live site's hosts and sweeps a deleted one's."""
    return f"{prefix}-x-h{site_tag(site)}{digest('ip:' + ip, 6)}"


def host_prefix(prefix: str) -> str:
    """What every site host's namespace name starts with."""
    return f"{prefix}-x-h"


def site_host_ifname(ip: str) -> str:
    """The site router's end of a host's veth (the host's end is `eth0`)."""
    return f"h{digest('ip:' + ip, 12)}"


def nic_hub_ifname(nic_id: str) -> str:
    """The hub-side end of a NIC's veth."""
    return f"n{digest(nic_id, 12)}"


NIC_IFNAME = "eth0"


def link_ifname(pair: int, side: str) -> str:
    """The end of a pair of hubs' shared veth: side 'c' in the consumer hub, 'p' in the
    provider hub (`pair`: the pair's slot)."""
    return f"k{pair}{side}"


def pair_key(consumer_vnet: str, provider_vnet: str) -> str:
    """What a pair of hubs' slot is stored by: the two networks' keys, in direction."""
    return f"{consumer_vnet} > {provider_vnet}"


@lru_cache(maxsize=MAX_PAIRS)  # pure, and asked for every link of every plan
def link_addresses(pair: int) -> tuple[str, str]:
    """(consumer, provider) addresses of a pair of hubs' /30."""
    if not 0 <= pair < MAX_PAIRS:
        raise ValueError(f"pair slot {pair} out of range")
    base = LINK_BASE + pair * 4
    return str(IPv4Address(base + 1)), str(IPv4Address(base + 2))


def wire_ifname(slot: int, side: str) -> str:
    """An end of a fabric wire: side 'a' or 'b' (`slot`: the wire's slot)."""
    return f"w{slot}{side}"


def is_wire_ifname(ifname: str) -> bool:
    """True for the name of a fabric wire's end (what a sweep of stale wires deletes)."""
    return len(ifname) > 2 and ifname[0] == "w" and ifname[-1] in "ab" and ifname[1:-1].isdigit()


@lru_cache(maxsize=MAX_WIRES)
def wire_addresses(slot: int) -> tuple[str, str]:
    """(a, b) addresses of a wire's /30."""
    if not 0 <= slot < MAX_WIRES:
        raise ValueError(f"wire slot {slot} out of range")
    base = WIRE_BASE + slot * 4
    return str(IPv4Address(base + 1)), str(IPv4Address(base + 2))


def link_mark(slot: int) -> int:
    """Conntrack mark of a link's flows (0 means no link)."""
    return slot + 1


def chain_name(kind: str, resource_id: str) -> str:
    """An nft chain name for a resource (bounded, stable)."""
    return f"{kind}_{digest(resource_id, 12)}"


assert len(nic_hub_ifname("x")) <= IFNAMSIZ and len(link_ifname(MAX_PAIRS, "c")) <= IFNAMSIZ
