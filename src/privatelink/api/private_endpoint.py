"""privateEndpoints on the wire."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from privatelink.api import arm, crud
from privatelink.api.arm import ChildWire, SubResource, TrackedWire, Wire
from privatelink.api.lean_route import LeanRoute
from privatelink.api.private_link_service import ConnectionState
from privatelink.core import errors, registry
from privatelink.core import private_endpoint as core
from privatelink.core.resource import StateView

TYPE = core.TYPE
IP_CONFIGURATION_TYPE = f"{TYPE}/ipConfigurations"


class LinkConnectionProperties(Wire):
    private_link_service_id: str | None = None
    group_ids: list[str] | None = None
    request_message: str | None = None
    private_link_service_connection_state: ConnectionState | None = None
    provisioning_state: str | None = None


class LinkConnectionWire(ChildWire):
    properties: LinkConnectionProperties | None = None


class DnsConfigWire(Wire):
    fqdn: str | None = None
    ip_addresses: list[str] | None = None


class EndpointIpConfigurationProperties(Wire):
    group_id: str | None = None
    member_name: str | None = None
    private_ip_address: str | None = Field(default=None, alias="privateIPAddress")


class EndpointIpConfigurationWire(Wire):
    name: str | None = None
    type: str | None = None
    etag: str | None = None
    properties: EndpointIpConfigurationProperties | None = None


class PrivateEndpointProperties(Wire):
    subnet: SubResource | None = None
    private_link_service_connections: list[LinkConnectionWire] | None = None
    manual_private_link_service_connections: list[LinkConnectionWire] | None = None
    network_interfaces: list[SubResource] | None = None
    custom_dns_configs: list[DnsConfigWire] | None = None
    custom_network_interface_name: str | None = None
    ip_configurations: list[EndpointIpConfigurationWire] | None = None
    application_security_groups: list[SubResource] | None = None
    provisioning_state: str | None = None


class PrivateEndpointWire(TrackedWire):
    extended_location: dict[str, Any] | None = None
    properties: PrivateEndpointProperties | None = None


def _connections(items: list[LinkConnectionWire] | None) -> list[core.PrivateLinkServiceConnection]:
    out = []
    for item in items or []:
        p = item.properties or LinkConnectionProperties()
        if not item.name:
            raise errors.InvalidRequestContent(
                "Every private link service connection needs a name."
            )
        if not p.private_link_service_id:
            raise errors.InvalidRequestContent(
                f"Connection '{item.name}' needs properties.privateLinkServiceId (an alias or id)."
            )
        out.append(
            core.PrivateLinkServiceConnection(
                name=item.name,
                target=p.private_link_service_id,
                request_message=p.request_message,
                group_ids=tuple(g for g in p.group_ids or () if g),
            )
        )
    return out


def _ip_configurations(
    items: list[EndpointIpConfigurationWire] | None,
) -> tuple[core.EndpointIpConfiguration, ...]:
    out = []
    for item in items or []:
        if not item.name:
            raise errors.InvalidRequestContent("Every ipConfiguration needs a name.")
        p = item.properties or EndpointIpConfigurationProperties()
        out.append(
            core.EndpointIpConfiguration(
                name=item.name,
                private_ip=p.private_ip_address or None,
                group_id=p.group_id or "",
                member_name=p.member_name or "",
            )
        )
    return tuple(out)


def _security_groups(items: list[SubResource] | None) -> tuple[str, ...]:
    out = []
    for item in items or []:
        if not item.id:
            raise errors.InvalidRequestContent(
                "Every entry of applicationSecurityGroups needs an id."
            )
        out.append(item.id)
    return tuple(out)


def to_domain(rid: str, name: str, wire: PrivateEndpointWire) -> core.PrivateEndpoint:
    """The desired endpoint from a PUT body."""
    props = wire.properties or PrivateEndpointProperties()
    arm.reject_unsupported({"extendedLocation": wire.extended_location})
    if props.subnet is None or not props.subnet.id:
        raise errors.InvalidRequestContent("properties.subnet.id is required.")
    auto = _connections(props.private_link_service_connections)
    manual = _connections(props.manual_private_link_service_connections)
    return core.PrivateEndpoint(
        id=rid,
        name=name,
        location=wire.location or "",
        tags=wire.tags or {},
        subnet_id=props.subnet.id,
        connections=tuple(auto + manual),
        manual=bool(manual) and not auto,
        custom_nic_name=props.custom_network_interface_name or None,
        ip_configurations=_ip_configurations(props.ip_configurations),
        application_security_groups=_security_groups(props.application_security_groups),
    )


# `render` builds the JSON directly: it runs on every GET and list, and building the
# wire models (`PrivateEndpointWire`, `LinkConnectionWire`, ...) to dump them cost more
# than the rest of such a request. The output is what `arm.dump` of those models gave
# (camelCase names in field order, None left out; the two connection lists last, as
# they were added after the dump); tests/unit/test_api_speed.py compares. Fields that
# are never None are set directly (cheaper than `arm.present` on this path).


def _render_connection(
    endpoint: core.PrivateEndpoint, kind: str, c: core.PrivateLinkServiceConnection
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "privateLinkServiceId": c.target,
        "groupIds": list(c.group_ids),
    }
    if c.request_message is not None:
        props["requestMessage"] = c.request_message
    props["privateLinkServiceConnectionState"] = {
        "status": c.status,
        "description": c.description,
        "actionsRequired": c.actions_required,
    }
    props["provisioningState"] = endpoint.provisioning_state
    return {
        "id": f"{endpoint.id}/{kind}/{c.name}",
        "name": c.name,
        "type": f"{TYPE}/privateLinkServiceConnections",
        "etag": endpoint.etag,
        "properties": props,
    }


def render(view: StateView, endpoint: core.PrivateEndpoint) -> dict[str, Any]:
    """A private endpoint as ARM JSON."""
    manual = endpoint.manual
    kind = "manualPrivateLinkServiceConnections" if manual else "privateLinkServiceConnections"
    rendered = [_render_connection(endpoint, kind, c) for c in endpoint.connections]
    props: dict[str, Any] = {
        "subnet": {"id": endpoint.subnet_id},
        "networkInterfaces": [{"id": endpoint.nic_id}],
        "customDnsConfigs": [
            {"fqdn": d.fqdn, "ipAddresses": list(d.ip_addresses)}
            for d in endpoint.custom_dns_configs
        ],
    }
    if endpoint.custom_nic_name is not None:
        props["customNetworkInterfaceName"] = endpoint.custom_nic_name
    props["ipConfigurations"] = [
        arm.present(
            name=c.name,
            type=IP_CONFIGURATION_TYPE,
            etag=endpoint.etag,
            properties=arm.present(
                groupId=c.group_id, memberName=c.member_name, privateIPAddress=c.private_ip
            ),
        )
        for c in endpoint.ip_configurations
    ]
    props["applicationSecurityGroups"] = [{"id": a} for a in endpoint.application_security_groups]
    props["provisioningState"] = endpoint.provisioning_state
    props["privateLinkServiceConnections"] = [] if manual else rendered
    props["manualPrivateLinkServiceConnections"] = rendered if manual else []
    return arm.tracked(endpoint, TYPE, props)


router = APIRouter(route_class=LeanRoute)

KIND = crud.ResourceKind(
    entry=registry.require(TYPE),
    wire=PrivateEndpointWire,
    to_domain=to_domain,
    render=render,
)
KINDS = (KIND,)
crud.register(router, KIND)
