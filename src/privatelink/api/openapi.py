"""The served OpenAPI document (`/openapi.json`): what the ARM API really accepts.

FastAPI alone knows the ARM routes only by their path parameters' names: the routes
read raw JSON (`Body(None)`, parsed by `arm.parse_body` so that errors are ARM errors,
never FastAPI's 422) and `api-version` is checked by a dependency. `install` replaces
`app.openapi` with FastAPI's document post-processed once, from the sources the server
validates with:

* `api-version` on every ARM operation: required, as a pattern matching exactly the
  dated versions `arm.valid_api_version` accepts (the activity log: its own list);
* path parameters with the patterns of `core.ids`, `core.resource` and `core.private_dns`
  (subscription GUID, resource group and resource names, regions, zone names, record
  types per verb, role GUIDs, authorization scopes);
* request bodies: the JSON schema of the wire model each route parses (the resource
  kinds' `wire` from `app.state.kinds`, the child and action routes from `BODIES`), with
  the value rules the core enforces (regions, IPv4 prefixes and addresses, enums, port
  ranges: `FIELD_RULES`), the fields the handlers require (`REQUIRED`, `PUT_REQUIRED`)
  and those they refuse as unsupported (`UNSUPPORTED`, described as null) written onto
  the matching fields; the same models describe the resources in success responses;
* responses: the success statuses of each verb and the ARM error body for 4xx (the 422
  FastAPI lists is never sent: `errors.install` turns validation errors into 400s).

The document is anonymous, like FastAPI's default and like Azure's own published REST
specs: it holds the route table and the body shapes, nothing about any tenant's data.
"""

from __future__ import annotations

import calendar
import copy
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from privatelink.api import (
    activity_log,
    arm,
    authorization,
    connection,
    crud,
    load_balancer,
    local_network_gateway,
    network_interface,
    private_dns,
    private_dns_zone_group,
    private_endpoint,
    private_link_service,
    public_ip_address,
    resource_manager,
    virtual_network,
    virtual_network_gateway,
    virtual_network_peering,
)
from privatelink.api.paths import is_arm_path
from privatelink.core import ids, ip_configuration
from privatelink.core import load_balancer as core_lb
from privatelink.core import private_dns as core_dns
from privatelink.core import private_link_service as core_pls
from privatelink.core import resource as core_resource
from privatelink.core import virtual_network as core_vnet

Schema = dict[str, Any]
REF = "#/components/schemas/{model}"
PARAMS = "#/components/parameters/"

# --- value patterns -----------------------------------------------------------------------
# The validators' own compiled patterns where they are plain regexes (module-private there;
# tests/unit/test_openapi.py checks that what these patterns draw, the validators accept).

GUID = f"^{ids._GUID.pattern}$"
NAME = f"^{ids._NAME.pattern}$"  # no trailing period: the last character is a word one
# ids._RG plus "not ending in a period", without a look-ahead (generators need none).
RESOURCE_GROUP = r"^[-\w._()]{0,89}[-\w_()]$"
LOCATION = f"^{core_resource._LOCATION.pattern}$"
_DNS_LABEL = core_dns._LABEL.pattern
ZONE = f"^({_DNS_LABEL}\\.)+{_DNS_LABEL}$"
RECORD_NAME = f"^(@|(\\*|{_DNS_LABEL})(\\.{_DNS_LABEL})*)$"
_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = f"^({_OCTET}\\.){{3}}{_OCTET}$"
IPV4_PREFIX = f"^({_OCTET}\\.){{3}}{_OCTET}/(3[0-2]|[12]?\\d)$"
# A Microsoft.Network id (of a resource or a child): what references point at.
NETWORK_ID = (
    f"^/subscriptions/{ids._GUID.pattern}/resourceGroups/{RESOURCE_GROUP[1:-1]}"
    f"/providers/Microsoft\\.Network(/[A-Za-z]+/{ids._NAME.pattern})+$"
)
# An authorization scope as the `{scope}` path segment carries it (no leading slash).
SCOPE = (
    f"^subscriptions/{ids._GUID.pattern}(/resourceGroups/{RESOURCE_GROUP[1:-1]}"
    f"(/providers/Microsoft\\.Network(/[A-Za-z]+/{ids._NAME.pattern})+)?)?$"
)


def api_version_pattern(oldest: str, latest: str) -> str:
    """A regex matching exactly the real dates from `oldest` to `latest` (ISO, inclusive),
    each optionally followed by `-preview`: what `arm.valid_api_version` accepts."""
    first, last = date.fromisoformat(oldest), date.fromisoformat(latest)
    # year -> {day-range regex -> months with it}
    years: dict[int, dict[str, list[str]]] = {}
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        low = first.day if (year, month) == (first.year, first.month) else 1
        high = calendar.monthrange(year, month)[1]
        if (year, month) == (last.year, last.month):
            high = min(high, last.day)
        years.setdefault(year, {}).setdefault(_two_digits(low, high), []).append(f"{month:02d}")
        month += 1
        if month > 12:
            year, month = year + 1, 1
    # Years with the same months and days (most non-leap years) share one alternative.
    same: dict[str, list[str]] = {}
    for year, groups in years.items():
        body = "|".join(f"(?:{'|'.join(ms)})-(?:{days})" for days, ms in groups.items())
        same.setdefault(body, []).append(str(year))
    alternatives = [f"(?:{'|'.join(ys)})-(?:{body})" for body, ys in same.items()]
    return f"^(?:{'|'.join(alternatives)})(?:-preview)?$"


def _two_digits(low: int, high: int) -> str:
    """A regex for the two-digit numbers low..high (1 <= low <= high <= 99)."""
    parts = []
    for tens in range(low // 10, high // 10 + 1):
        first = low % 10 if tens == low // 10 else 0
        last = high % 10 if tens == high // 10 else 9
        parts.append(f"{tens}{first}" if first == last else f"{tens}[{first}-{last}]")
    return "|".join(parts)


# --- the value rules of body fields -------------------------------------------------------

_STRING_IPV4 = {"type": "string", "pattern": IPV4}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_RULE_PORT = {"type": "integer", "minimum": 0, "maximum": 65535}  # 0: HA ports (protocol All)

# (wire model, field alias) -> what the core accepts there. Applied to the model and its
# subclasses; on an optional field, to its non-null branch; on a list, to its items.
FIELD_RULES: dict[tuple[type[BaseModel], str], Schema] = {
    (arm.TrackedWire, "location"): {"type": "string", "pattern": LOCATION},
    (resource_manager.ResourceGroupWire, "location"): {"type": "string", "pattern": LOCATION},
    (arm.SubResource, "id"): {"type": "string", "pattern": NETWORK_ID},
    (arm.IpConfigurationProperties, "privateIPAddress"): _STRING_IPV4,
    (arm.IpConfigurationProperties, "privateIPAllocationMethod"): {
        "enum": [ip_configuration.DYNAMIC, ip_configuration.STATIC]
    },
    (arm.IpConfigurationProperties, "privateIPAddressVersion"): {"enum": ["IPv4"]},
    (private_endpoint.EndpointIpConfigurationProperties, "privateIPAddress"): _STRING_IPV4,
    (virtual_network.AddressSpace, "addressPrefixes"): {"type": "string", "pattern": IPV4_PREFIX},
    (virtual_network.SubnetProperties, "addressPrefix"): {
        "type": "string",
        "pattern": IPV4_PREFIX,
    },
    (virtual_network.SubnetProperties, "addressPrefixes"): {
        "type": "string",
        "pattern": IPV4_PREFIX,
    },
    (virtual_network.SubnetProperties, "privateLinkServiceNetworkPolicies"): {
        "enum": list(core_vnet.POLICY_VALUES)
    },
    (virtual_network.SubnetProperties, "privateEndpointNetworkPolicies"): {
        "enum": list(core_vnet.POLICY_VALUES)
    },
    (load_balancer.Sku, "name"): {"enum": [core_lb.STANDARD, core_lb.BASIC]},
    (load_balancer.ProbeProperties, "protocol"): {"enum": list(core_lb.PROBE_PROTOCOLS)},
    (load_balancer.ProbeProperties, "port"): _PORT,
    (load_balancer.RuleProperties, "protocol"): {"enum": list(core_lb.PROTOCOLS)},
    (load_balancer.RuleProperties, "frontendPort"): _RULE_PORT,
    (load_balancer.RuleProperties, "backendPort"): _RULE_PORT,
    (load_balancer.RuleProperties, "loadDistribution"): {"enum": list(core_lb.DISTRIBUTIONS)},
    (load_balancer.BackendAddressProperties, "ipAddress"): _STRING_IPV4,
    (private_link_service.SubscriptionList, "subscriptions"): {
        "anyOf": [{"type": "string", "pattern": GUID}, {"const": core_pls.EVERYONE}]
    },
    (private_link_service.ConnectionState, "status"): {"enum": list(core_pls.STATUSES)},
    (private_link_service.PrivateLinkServiceProperties, "accessMode"): {
        "enum": list(core_pls.ACCESS_MODES)
    },
    (private_dns.RecordSetProperties, "ttl"): {
        "type": "integer",
        "minimum": 0,
        "maximum": core_dns.MAX_TTL,
    },
    (private_dns.ARecordWire, "ipv4Address"): _STRING_IPV4,
    (authorization.RoleAssignmentProperties, "principalId"): {"type": "string", "pattern": GUID},
    (local_network_gateway.LocalNetworkGatewayProperties, "gatewayIpAddress"): _STRING_IPV4,
    (local_network_gateway.LocalNetworkAddressSpace, "addressPrefixes"): {
        "type": "string",
        "pattern": IPV4_PREFIX,
    },
    (connection.ConnectionResetSharedKeyWire, "keyLength"): {
        "type": "integer",
        "minimum": 1,
        "maximum": 128,
    },
}


# Fields the wire models read only to refuse them (`arm.reject_unsupported` and the like in
# the route modules: a non-empty value is a 400 UnsupportedProperty). Described as null.
UNSUPPORTED: dict[type[BaseModel], tuple[str, ...]] = {
    virtual_network.VirtualNetworkWire: ("extendedLocation",),
    virtual_network.VirtualNetworkProperties: ("enableDdosProtection",),
    virtual_network_peering.PeeringProperties: (
        "localSubnetNames",
        "remoteSubnetNames",
        "remoteBgpCommunities",
    ),
    virtual_network.DhcpOptions: ("dnsServers",),
    virtual_network.SubnetProperties: (
        "networkSecurityGroup",
        "routeTable",
        "natGateway",
        "delegations",
        "serviceEndpoints",
    ),
    load_balancer.LoadBalancerProperties: ("inboundNatRules", "inboundNatPools", "outboundRules"),
    load_balancer.FrontendProperties: ("publicIPPrefix",),
    network_interface.NetworkInterfaceProperties: ("networkSecurityGroup", "enableIPForwarding"),
    network_interface.IpConfigurationProperties: (
        "publicIPAddress",
        "loadBalancerInboundNatRules",
        "applicationSecurityGroups",
    ),
    private_endpoint.PrivateEndpointWire: ("extendedLocation",),
    private_link_service.PrivateLinkServiceWire: ("extendedLocation",),
    private_dns.RecordSetProperties: (
        "aaaaRecords",
        "cnameRecord",
        "mxRecords",
        "ptrRecords",
        "srvRecords",
        "txtRecords",
    ),
    public_ip_address.PublicIPAddressWire: ("extendedLocation",),
    public_ip_address.PublicIPAddressProperties: (
        "dnsSettings",
        "ipTags",
        "publicIPPrefix",
        "servicePublicIPAddress",
        "natGateway",
        "linkedPublicIPAddress",
        "deleteOption",
    ),
    virtual_network_gateway.VirtualNetworkGatewayWire: ("extendedLocation",),
    virtual_network_gateway.VirtualNetworkGatewayProperties: (
        "vpnClientConfiguration",
        "natRules",
        "gatewayDefaultSite",
        "virtualNetworkGatewayPolicyGroups",
        "autoScaleConfiguration",
        "vNetExtendedLocationResourceId",
    ),
    local_network_gateway.LocalNetworkGatewayProperties: ("fqdn", "bgpSettings"),
    connection.VirtualNetworkGatewayConnectionProperties: (
        "authorizationKey",
        "virtualNetworkGateway2",
        "peer",
        "tunnelProperties",
        "gatewayCustomBgpIpAddresses",
        "ipsecPolicies",
        "trafficSelectorPolicies",
        "certificateAuthentication",
        "routingConfiguration",
    ),
    authorization.PermissionWire: ("condition", "conditionVersion"),
    authorization.RoleAssignmentProperties: (
        "condition",
        "conditionVersion",
        "delegatedManagedIdentityResourceId",
    ),
}
# Fields the handlers require (their "... is required" / "Every ... needs a name" 400s),
# wherever the model appears: responses always carry them too.
REQUIRED: dict[type[BaseModel], tuple[str, ...]] = {
    arm.SubResource: ("id",),
    load_balancer.FrontendWire: ("name",),
    load_balancer.PoolWire: ("name",),
    load_balancer.ProbeWire: ("name",),
    load_balancer.RuleWire: ("name",),
    network_interface.IpConfigurationWire: ("name",),
    private_link_service.NatIpConfigurationWire: ("name",),
    private_link_service.ConnectionWire: ("properties",),
    private_link_service.ConnectionProperties: ("privateLinkServiceConnectionState",),
    private_link_service.ConnectionState: ("status",),
    private_link_service.VisibilityRequest: ("privateLinkServiceAlias",),
    private_endpoint.LinkConnectionWire: ("name", "properties"),
    private_endpoint.LinkConnectionProperties: ("privateLinkServiceId",),
    private_endpoint.EndpointIpConfigurationWire: ("name",),
    private_endpoint.PrivateEndpointProperties: ("subnet",),
    private_dns.LinkProperties: ("virtualNetwork",),
    virtual_network_gateway.GatewayIpConfigurationWire: ("name",),
    connection.ConnectionSharedKeyWire: ("value",),
    connection.ConnectionResetSharedKeyWire: ("keyLength",),
    authorization.RoleAssignmentWire: ("properties",),
    authorization.RoleAssignmentProperties: ("roleDefinitionId", "principalId"),
    authorization.RoleDefinitionWire: ("properties",),
}
# What a PUT (not a PATCH) body must have besides: a tracked resource's region, and the
# properties of the kinds that have no default for them.
PUT_REQUIRED: dict[type[BaseModel], tuple[str, ...]] = {
    arm.TrackedWire: ("location",),
    resource_manager.ResourceGroupWire: ("location",),
    load_balancer.LoadBalancerWire: ("properties",),
    network_interface.NetworkInterfaceWire: ("properties",),
    private_link_service.PrivateLinkServiceWire: ("properties",),
    private_endpoint.PrivateEndpointWire: ("properties",),
    private_dns.LinkWire: ("properties",),
    virtual_network.SubnetWire: ("properties",),
    virtual_network_gateway.VirtualNetworkGatewayWire: ("properties",),
    local_network_gateway.LocalNetworkGatewayWire: ("properties",),
    connection.VirtualNetworkGatewayConnectionWire: ("properties",),
}

_UNSUPPORTED_FIELD: Schema = {
    "type": "null",
    "description": "Not supported by privatelink: leave it unset (400 UnsupportedProperty).",
}


def _require(model: Schema, props: Schema, alias: str) -> None:
    """`alias` must be present and not null."""
    if alias not in model.setdefault("required", []):
        model["required"].append(alias)
    field = props[alias]
    if "anyOf" in field:
        branches = [b for b in field["anyOf"] if b.get("type") != "null"]
        rest = {k: v for k, v in field.items() if k not in ("anyOf", "default")}
        props[alias] = (
            {**branches[0], **rest} if len(branches) == 1 else {**rest, "anyOf": branches}
        )


def _put_body(model: type[BaseModel], ref: Schema) -> Schema:
    """A PUT body: the model, plus what a PUT must have (`PUT_REQUIRED`)."""
    required = [a for k in model.__mro__ for a in PUT_REQUIRED.get(k, ())]
    if not required:
        return ref
    present = {alias: {"not": {"type": "null"}} for alias in required}
    return {"allOf": [ref, {"required": required, "properties": present}]}


def _non_null(field: Schema) -> Iterator[Schema]:
    """The branches of a field schema that are not `null`."""
    branches = field.get("anyOf", [field])
    yield from (b for b in branches if b.get("type") != "null")


def _apply_rule(field: Schema, rule: Schema) -> None:
    for branch in _non_null(field):
        target = branch.get("items", branch) if branch.get("type") == "array" else branch
        if "$ref" in target:
            continue
        if "enum" in rule or "anyOf" in rule or "const" in rule:
            target.pop("type", None)
        target.update(copy.deepcopy(rule))


class _WithRules(GenerateJsonSchema):
    """Pydantic's JSON schema of the wire models, with `FIELD_RULES` written in."""

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        out = super().model_schema(schema)
        props = out.get("properties", {})
        for klass in schema["cls"].__mro__:
            for (owner, alias), rule in FIELD_RULES.items():
                if owner is klass and alias in props:
                    _apply_rule(props[alias], rule)
            for alias in UNSUPPORTED.get(klass, ()):
                if alias in props:
                    props[alias] = dict(_UNSUPPORTED_FIELD)
            for alias in REQUIRED.get(klass, ()):
                if alias in props:
                    _require(out, props, alias)
        return out


# --- bodies --------------------------------------------------------------------------------

_PLS = crud.GROUP_PATH + "/privateLinkServices/{name}"
_SHARED_KEY = crud.GROUP_PATH + "/connections/{name}/sharedKey"
_ZONE = crud.GROUP_PATH + "/privateDnsZones/{zone}"
_AUTH = "/providers/Microsoft.Authorization"
_DEPLOYMENT = "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Resources"

# (method, path) -> the wire model its handler parses, besides the resource kinds' PUTs.
BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("put", crud.GROUP_PATH + "/virtualNetworks/{vnet}/subnets/{name}"): (
        virtual_network.SubnetWire
    ),
    ("put", _PLS + "/privateEndpointConnections/{connection}"): private_link_service.ConnectionWire,
    (
        "post",
        crud.SUB_PATH + "/locations/{location}/checkPrivateLinkServiceVisibility",
    ): private_link_service.VisibilityRequest,
    (
        "post",
        crud.GROUP_PATH + "/locations/{location}/checkPrivateLinkServiceVisibility",
    ): private_link_service.VisibilityRequest,
    (
        "put",
        crud.GROUP_PATH + "/privateEndpoints/{endpoint}/privateDnsZoneGroups/{name}",
    ): private_dns_zone_group.ZoneGroupWire,
    ("put", _SHARED_KEY): connection.ConnectionSharedKeyWire,
    ("post", _SHARED_KEY + "/reset"): connection.ConnectionResetSharedKeyWire,
    ("put", _ZONE): private_dns.ZoneWire,
    ("patch", _ZONE): private_dns.ZoneWire,
    ("put", _ZONE + "/virtualNetworkLinks/{name}"): private_dns.LinkWire,
    ("patch", _ZONE + "/virtualNetworkLinks/{name}"): private_dns.LinkWire,
    ("put", _ZONE + "/{record_type}/{name}"): private_dns.RecordSetWire,
    ("patch", _ZONE + "/{record_type}/{name}"): private_dns.RecordSetWire,
    ("put", "/subscriptions/{subscription}/resourceGroups/{group}"): (
        resource_manager.ResourceGroupWire
    ),
    ("put", "/{scope}" + _AUTH + "/roleDefinitions/{role_id}"): authorization.RoleDefinitionWire,
    ("put", _AUTH + "/roleDefinitions/{role_id}"): authorization.RoleDefinitionWire,
    ("put", "/{scope}" + _AUTH + "/roleAssignments/{name}"): authorization.RoleAssignmentWire,
    ("put", _AUTH + "/roleAssignments/{name}"): authorization.RoleAssignmentWire,
}

# Routes whose successful answer is the resource their body describes (rendered through
# the same wire model): their GET and collection GET are described with it too.
RENDERED = {
    crud.GROUP_PATH + "/virtualNetworks/{vnet}/subnets/{name}",
    _SHARED_KEY,
    _PLS + "/privateEndpointConnections/{connection}",
    crud.GROUP_PATH + "/privateEndpoints/{endpoint}/privateDnsZoneGroups/{name}",
    _ZONE,
    _ZONE + "/virtualNetworkLinks/{name}",
    _ZONE + "/{record_type}/{name}",
}

# A deployment's body is a template, not a wire model; its resources are the deployable
# kinds' bodies (written into `_deployment_schema`).
DEPLOYMENT_BODIES = {
    ("put", _DEPLOYMENT + "/deployments/{name}"),
    ("post", _DEPLOYMENT + "/deployments/{name}/validate"),
}

ERROR_SCHEMAS: dict[str, Schema] = {
    "ErrorDetail": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "minLength": 1},
            "message": {"type": "string"},
            "target": {"type": "string"},
            "details": {"type": "array", "items": {"$ref": REF.format(model="ErrorDetail")}},
        },
    },
    "ErrorResponse": {
        "description": "ARM's error body: every 4xx of the ARM API has it.",
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"$ref": REF.format(model="ErrorDetail")}},
    },
}

# --- parameters ----------------------------------------------------------------------------

_RECORD_TYPES = list(core_dns.SUPPORTED_RECORD_TYPES)


def _path_parameter(name: str, path: str, method: str) -> Schema | None:
    """The schema of a path parameter where we know its rule, else None."""
    if name == "subscription":
        return {"type": "string", "pattern": GUID}
    if name == "group":
        return {"type": "string", "pattern": RESOURCE_GROUP, "maxLength": 90}
    if name == "location":
        return {"type": "string", "pattern": LOCATION}
    if name == "zone":
        return {"type": "string", "pattern": ZONE, "maxLength": 253}
    if name == "record_type":
        # Read: A, the zone's SOA; a list also ALL/recordsets; writes: the supported ones.
        if method == "get":
            extra = ["SOA"] if path.endswith("{name}") else ["SOA", "ALL", "recordsets"]
            return {"enum": _RECORD_TYPES + extra}
        return {"enum": _RECORD_TYPES}
    if name == "name" and "/{record_type}/" in path:
        return {"type": "string", "pattern": RECORD_NAME, "maxLength": 253}
    if name == "scope":
        return {"type": "string", "pattern": SCOPE}
    if name in ("role_id", "operation_id") or (name == "name" and "/roleAssignments/" in path):
        return {"type": "string", "pattern": GUID}
    if name == "event_type":
        return {"enum": ["management"]}
    if name == "name" and "/deployments/" in path:
        return {"type": "string", "pattern": NAME, "maxLength": 64}
    if name in ("name", "vnet", "endpoint", "connection", "child", "rule"):
        return {"type": "string", "pattern": NAME, "maxLength": 80}
    return None


def _query_parameters(path: str, method: str) -> list[Schema]:
    """The optional query parameters a route reads (paging, filters)."""
    if method != "get":
        return []
    out: list[Schema] = []
    last = path.rstrip("/").rsplit("/", 1)[-1]
    collection = not last.startswith("{") or path.endswith("/{record_type}")
    if collection:
        out.append(_query("$skipToken", {"type": "string"}))
    if path.endswith(("/roleAssignments", "/roleDefinitions", "/resources")) or "/eventtypes/" in (
        path
    ):
        out.append(_query("$filter", {"type": "string"}))
    if "/eventtypes/" in path:
        out.append(_query("$select", {"type": "string"}))
    if path.endswith("/privateDnsZones"):
        out.append(_query("$top", {"type": "integer", "minimum": 1}))
    if path.endswith("/{record_type}"):
        out.append(_query("$recordsetnamesuffix", {"type": "string"}))
    return out


def _query(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _is_arm(path: str) -> bool:
    return is_arm_path(path) or path.startswith("/{scope}/providers/")


def _is_activity_log(path: str) -> bool:
    return "/providers/Microsoft.Insights/" in path


# --- building ------------------------------------------------------------------------------

SUCCESS: dict[str, tuple[str, ...]] = {
    "get": ("200",),
    "head": ("204",),
    "put": ("200", "201"),
    "patch": ("200",),
    "delete": ("200", "202", "204"),
    "post": ("200",),
}


def describe(spec: Schema, kinds: dict[Any, crud.ResourceKind]) -> Schema:
    """FastAPI's generated document (not modified) -> the described one."""
    out = copy.deepcopy(spec)
    bodies = dict(BODIES)
    rendered = set(RENDERED)
    for kind in kinds.values():
        path = f"{crud.GROUP_PATH}/{kind.segment}/{{name}}"
        bodies[("put", path)] = kind.wire
        rendered.add(path)
    models = sorted({*bodies.values(), *(k.wire for k in kinds.values())}, key=_model_key)
    refs, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template=REF, schema_generator=_WithRules
    )
    ref_of = {model: refs[(model, "validation")] for model in models}
    components = out.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(defs.get("$defs", {}))
    schemas.update(copy.deepcopy(ERROR_SCHEMAS))
    schemas["Deployment"] = _deployment_schema(kinds, ref_of)
    components["parameters"] = {
        "ApiVersion": _api_version(
            {
                "type": "string",
                "pattern": api_version_pattern(arm.OLDEST_API_VERSION, arm.LATEST_API_VERSION),
            },
            f"A dated version from {arm.OLDEST_API_VERSION} to {arm.LATEST_API_VERSION} "
            "(a real calendar date), optionally with -preview.",
        ),
        "ActivityLogApiVersion": _api_version(
            {"enum": list(activity_log.API_VERSIONS)}, "The activity log's own versions."
        ),
    }
    resources = {p: ref_of[m] for (method, p), m in bodies.items() if p in rendered}
    for path, operations in out.get("paths", {}).items():
        for method, op in operations.items():
            op.get("responses", {}).pop("422", None)
            if not _is_arm(path):
                continue
            _describe_operation(path, method, op, bodies, ref_of, resources)
    return out


def _model_key(model: type[BaseModel]) -> str:
    return f"{model.__module__}.{model.__qualname__}"


def _api_version(schema: Schema, text: str) -> Schema:
    return {
        "name": "api-version",
        "in": "query",
        "required": True,
        "description": text,
        "schema": schema,
    }


def _describe_operation(
    path: str,
    method: str,
    op: Schema,
    bodies: dict[tuple[str, str], type[BaseModel]],
    ref_of: dict[type[BaseModel], Schema],
    resources: dict[str, Schema],
) -> None:
    params = [p for p in op.get("parameters", []) if p.get("in") != "query"]
    for param in params:
        if param.get("in") == "path":
            rule = _path_parameter(param["name"], path, method)
            if rule is not None:
                param["schema"] = rule
    version = "ActivityLogApiVersion" if _is_activity_log(path) else "ApiVersion"
    params.append({"$ref": PARAMS + version})
    params.extend(_query_parameters(path, method))
    op["parameters"] = params
    body: Schema | None = None
    if (method, path) in bodies:
        model = bodies[(method, path)]
        body = _put_body(model, ref_of[model]) if method == "put" else ref_of[model]
    elif (method, path) in DEPLOYMENT_BODIES:
        body = {"$ref": REF.format(model="Deployment")}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    elif "requestBody" in op:
        # A route that takes no body (e.g. a refused root-level write): say so.
        del op["requestBody"]
    resource = resources.get(path)
    collection_of = next((r for p, r in resources.items() if p.rsplit("/", 1)[0] == path), None)
    responses: Schema = {}
    for status in SUCCESS.get(method, ("200",)):
        content: Schema | None = None
        if resource is not None and method in ("get", "put", "patch") and status != "204":
            content = resource
        elif collection_of is not None and method == "get":
            content = {
                "type": "object",
                "required": ["value"],
                "properties": {
                    "value": {"type": "array", "items": collection_of},
                    "nextLink": {"type": "string"},
                },
            }
        # No body: HEAD; 202/204; a DELETE's 200 (empty for record sets, the role for
        # role definitions).
        if method in ("head", "delete") or status in ("202", "204"):
            responses[status] = {"description": "Accepted" if status == "202" else "No content"}
        else:
            responses[status] = {
                "description": "OK" if status == "200" else "Created",
                "content": {"application/json": {"schema": content or {}}},
            }
    error = {"$ref": REF.format(model="ErrorResponse")}
    responses["4XX"] = {"description": "ARM error"}
    if method != "head":  # a HEAD answer has no body
        responses["4XX"]["content"] = {"application/json": {"schema": error}}
    op["responses"] = responses


def _deployment_schema(
    kinds: dict[Any, crud.ResourceKind], ref_of: dict[type[BaseModel], Schema]
) -> Schema:
    """A deployment body: an inline template whose resources are the deployable kinds."""
    resources: list[Schema] = []
    deployable = [(k.arm_type, k.wire) for k in kinds.values() if k.entry.deployable]
    deployable.append((virtual_network.SUBNET_TYPE, virtual_network.SubnetWire))
    for arm_type, wire in deployable:
        resources.append(
            {
                "allOf": [
                    ref_of[wire],
                    {
                        "type": "object",
                        "required": ["type", "apiVersion", "name"],
                        "properties": {
                            "type": {"const": arm_type},
                            "apiVersion": {"type": "string"},
                            "name": {"type": "string"},
                            "dependsOn": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                ]
            }
        )
    return {
        "type": "object",
        "required": ["properties"],
        "properties": {
            "location": {"type": "string", "pattern": LOCATION},
            "properties": {
                "type": "object",
                "required": ["template"],
                "properties": {
                    "mode": {"enum": ["Incremental"]},
                    "parameters": {"type": "object"},
                    "template": {
                        "type": "object",
                        "properties": {
                            "$schema": {"type": "string"},
                            "contentVersion": {"type": "string"},
                            "parameters": {"type": "object"},
                            "variables": {"type": "object"},
                            "resources": {"type": "array", "items": {"anyOf": resources}},
                            "outputs": {"type": "object"},
                        },
                    },
                },
            },
        },
    }


def install(app: FastAPI) -> None:
    """Serve the described document at the app's `openapi_url` (built once, lazily).

    FastAPI rebuilds its own document when routes are added; the description follows.
    """
    generate: Callable[[], Schema] = app.openapi
    cache: list[tuple[Schema, Schema]] = []

    def openapi() -> Schema:
        base = generate()
        if not cache or cache[0][0] is not base:
            cache[:] = [(base, describe(base, app.state.kinds))]
        return cache[0][1]

    app.openapi = openapi  # type: ignore[method-assign]


def undescribed(spec: Schema) -> list[str]:
    """ARM operations whose request body has no schema (for tests: every body is described)."""
    out = []
    for path, operations in spec.get("paths", {}).items():
        for method, op in operations.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            schema = body.get("schema", {})
            ref = schema.get("$ref") or schema.get("allOf", [{}])[0].get("$ref")
            if _is_arm(path) and "requestBody" in op and not ref:
                out.append(f"{method.upper()} {path}")
    return out
