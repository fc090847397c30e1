"""networkInterfaces on the wire."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from privatelink.api import arm, crud
from privatelink.api.arm import ChildWire, SubResource, TrackedWire, Wire
from privatelink.api.lean_route import LeanRoute
from privatelink.core import errors, registry
from privatelink.core import network_interface as core
from privatelink.core.resource import StateView

TYPE = "Microsoft.Network/networkInterfaces"


class IpConfigurationProperties(arm.IpConfigurationProperties):
    load_balancer_backend_address_pools: list[SubResource] | None = None
    load_balancer_inbound_nat_rules: list[SubResource] | None = None
    public_ip_address: SubResource | None = Field(default=None, alias="publicIPAddress")
    application_security_groups: list[SubResource] | None = None


class IpConfigurationWire(ChildWire):
    properties: IpConfigurationProperties | None = None


class NetworkInterfaceProperties(Wire):
    ip_configurations: list[IpConfigurationWire] | None = None
    network_security_group: SubResource | None = None
    enable_ip_forwarding: bool | None = Field(default=None, alias="enableIPForwarding")
    private_link_service: SubResource | None = None
    private_endpoint: SubResource | None = None
    primary: bool | None = None
    provisioning_state: str | None = None
    nic_type: str | None = None


class NetworkInterfaceWire(TrackedWire):
    properties: NetworkInterfaceProperties | None = None


def to_domain(rid: str, name: str, wire: NetworkInterfaceWire) -> core.NetworkInterface:
    """The desired NIC from a PUT body."""
    props = wire.properties or NetworkInterfaceProperties()
    arm.reject_unsupported(
        {
            "networkSecurityGroup": props.network_security_group,
            "enableIPForwarding": props.enable_ip_forwarding,
        }
    )
    configs = []
    for c in props.ip_configurations or []:
        if not c.name:
            raise errors.InvalidRequestContent("Every ipConfiguration needs a name.")
        p = c.properties or IpConfigurationProperties()
        where = f"{rid}/ipConfigurations/{c.name}"
        arm.reject_unsupported(
            {
                "publicIPAddress": p.public_ip_address,
                "loadBalancerInboundNatRules": p.load_balancer_inbound_nat_rules,
                "applicationSecurityGroups": p.application_security_groups,
            }
        )
        configs.append(
            core.NicIpConfiguration(
                **arm.ip_configuration_fields(c.name, p, where),
                pool_ids=tuple(x.id for x in p.load_balancer_backend_address_pools or [] if x.id),
            )
        )
    return core.NetworkInterface(
        id=rid,
        name=name,
        location=wire.location or "",
        tags=wire.tags or {},
        ip_configurations=tuple(configs),
    )


def render(view: StateView, nic: core.NetworkInterface) -> dict[str, Any]:
    """A NIC as ARM JSON; a managed NIC points back at its service or endpoint."""
    owner = nic.managed_by or ""
    props = NetworkInterfaceProperties(
        ip_configurations=[
            IpConfigurationWire(
                id=f"{nic.id}/ipConfigurations/{c.name}",
                name=c.name,
                type=f"{TYPE}/ipConfigurations",
                etag=nic.etag,
                properties=IpConfigurationProperties(
                    **arm.ip_configuration_wire(c, nic.provisioning_state),
                    primary=bool(c.primary),
                    load_balancer_backend_address_pools=[SubResource(id=p) for p in c.pool_ids]
                    or None,
                ),
            )
            for c in nic.ip_configurations
        ],
        private_link_service=SubResource(id=owner)
        if "/privatelinkservices/" in owner.lower()
        else None,
        private_endpoint=SubResource(id=owner) if "/privateendpoints/" in owner.lower() else None,
        primary=True,
        provisioning_state=nic.provisioning_state,
        nic_type="Standard",
    )
    return arm.dump(
        NetworkInterfaceWire(
            id=nic.id,
            name=nic.name,
            type=TYPE,
            location=nic.location,
            tags=nic.tags,
            etag=nic.etag,
            properties=props,
        )
    )


router = APIRouter(route_class=LeanRoute)

KIND = crud.ResourceKind(
    entry=registry.require(TYPE),
    wire=NetworkInterfaceWire,
    to_domain=to_domain,
    render=render,
)
KINDS = (KIND,)
crud.register(router, KIND)
