"""networkInterfaces on the wire."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from privatelink.api import arm, crud
from privatelink.api.arm import SubResource, Wire
from privatelink.core import errors
from privatelink.core import network_interface as core
from privatelink.core.ip_configuration import check_allocation_method
from privatelink.core.resource import StateView

TYPE = "Microsoft.Network/networkInterfaces"


class IpConfigurationProperties(Wire):
    private_ip_address: str | None = Field(default=None, alias="privateIPAddress")
    private_ip_allocation_method: str | None = Field(
        default=None, alias="privateIPAllocationMethod"
    )
    private_ip_address_version: str | None = Field(default=None, alias="privateIPAddressVersion")
    subnet: SubResource | None = None
    primary: bool | None = None
    load_balancer_backend_address_pools: list[SubResource] | None = None
    load_balancer_inbound_nat_rules: list[SubResource] | None = None
    public_ip_address: SubResource | None = Field(default=None, alias="publicIPAddress")
    application_security_groups: list[SubResource] | None = None
    provisioning_state: str | None = None


class IpConfigurationWire(Wire):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    etag: str | None = None
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


class NetworkInterfaceWire(Wire):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    location: str | None = None
    tags: dict[str, str] | None = None
    etag: str | None = None
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
        if p.subnet is None or not p.subnet.id:
            raise errors.InvalidRequestContent(f"{where}: subnet.id is required.")
        method = check_allocation_method(
            p.private_ip_allocation_method or ("Static" if p.private_ip_address else "Dynamic"),
            where,
        )
        configs.append(
            core.NicIpConfiguration(
                name=c.name,
                subnet_id=p.subnet.id,
                private_ip=p.private_ip_address if method == "Static" else None,
                allocation=method,
                ip_version=p.private_ip_address_version or "IPv4",
                primary=p.primary,
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
                    private_ip_address=c.private_ip,
                    private_ip_allocation_method=c.allocation,
                    private_ip_address_version=c.ip_version,
                    subnet=SubResource(id=c.subnet_id),
                    primary=bool(c.primary),
                    load_balancer_backend_address_pools=[SubResource(id=p) for p in c.pool_ids]
                    or None,
                    provisioning_state=nic.provisioning_state,
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


router = APIRouter()

crud.register(
    router,
    crud.ResourceKind(
        segment="networkInterfaces",
        arm_type=TYPE,
        cls=core.NetworkInterface,
        wire=NetworkInterfaceWire,
        to_domain=to_domain,
        render=render,
        create_or_update=core.create_or_update,
        delete=core.delete,
    ),
)
