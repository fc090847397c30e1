"""Microsoft.Resources for `az`: cloud metadata, subscriptions, tenants, resource groups.

Subscriptions come to exist in three ways: the server's default subscription (created
at first start, listed in credentials.json), the admin API (`privatelink tenant create`,
`privatelink subscription create`), and a PUT by the default tenant's admin inside an
unknown subscription id (the gate, `api/gate.py`; a read never creates one). `GET
/subscriptions` pages like every other list (`page_size`, `$skipToken`).

Resource groups are implicit for network resources, as before; `az group create`
records one explicitly (location, tags), and deleting it deletes every network resource
in it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response

from privatelink.api import arm
from privatelink.api.arm import Wire
from privatelink.api.authorize import readable
from privatelink.api.deps import caller, control_plane, page_size, principal
from privatelink.api.lean_route import LeanRoute
from privatelink.core import errors
from privatelink.core.authorization import Access
from privatelink.core.ids import is_guid, valid_resource_group
from privatelink.core.principal import Principal
from privatelink.core.resource import normalize_location
from privatelink.service import ControlPlane

router = APIRouter(route_class=LeanRoute)  # behind the gate (bearer token)
public = APIRouter()  # no authentication (cloud discovery)

AUDIENCES = ["https://management.core.windows.net/", "https://management.azure.com/"]


class ResourceGroupNotFound(errors.NotFound):
    code = "ResourceGroupNotFound"
    template = "Resource group '{name}' could not be found."


class SubscriptionNotFound(errors.NotFound):
    code = "SubscriptionNotFound"
    template = "The subscription '{id}' could not be found."


class ResourceGroupWire(Wire):
    location: str | None = None
    tags: dict[str, str] | None = None
    managed_by: str | None = None


def cloud_metadata(base: str) -> dict[str, Any]:
    """The `/metadata/endpoints` document of this server, as Azure's clouds publish it."""
    return {
        "name": "privatelink",
        "portal": base,
        "resourceManager": f"{base}/",
        "authentication": {
            "loginEndpoint": f"{base}/",
            "audiences": AUDIENCES,
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "media": base,
        "graphAudience": "https://graph.windows.net/",
        "graph": "https://graph.windows.net/",
        # az calls Graph at `<this, without the trailing slash>/v1.0/...` and asks for tokens
        # with scope `<this>/.default`: the server serves its Graph subset there.
        "microsoftGraphResourceId": f"{base}/graph/",
        "gallery": base,
        "sqlManagement": base,
        "batch": "https://batch.core.windows.net/",
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "vmImageAliasDoc": f"{base}/vmimagealiases.json",
        "suffixes": {
            "acrLoginServer": "azurecr.io",
            "keyVaultDns": "vault.azure.net",
            "sqlServerHostname": "database.windows.net",
            "storage": "core.windows.net",
            "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
            "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
        },
    }


@public.get("/metadata/endpoints")
def metadata_endpoints(request: Request) -> Response:
    """Cloud discovery (`az cloud register --endpoint-resource-manager`): one object."""
    return arm.ok(cloud_metadata(arm.base_url(request)))


def _subscription(record: dict[str, Any]) -> dict[str, Any]:
    sid = record["subscription_id"]
    return {
        "id": f"/subscriptions/{sid}",
        "subscriptionId": sid,
        "displayName": record["display_name"],
        "state": "Enabled",
        "tenantId": record["tenant_id"],
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
    }


@router.get("/subscriptions")
def list_subscriptions(
    request: Request,
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
    size: int = Depends(page_size),
) -> Response:
    """The subscriptions of the caller's tenant on which it has some role, as in ARM.

    Paged: `page_size` items, then a `nextLink` whose `$skipToken` is the offset into
    this caller's list (ordered by id, so pages are stable while nothing is added).
    """
    tenant = who.principal.tenant_id.lower() if who.principal is not None else None
    records = [
        r
        for r in plane.repo.list_subscriptions()
        if (tenant is None or r["tenant_id"].lower() == tenant)
        and who.can_read_anything_under(f"/subscriptions/{r['subscription_id']}")
    ]
    return arm.page_slice(request, records, size, _subscription)


@router.get("/subscriptions/{subscription}")
def get_subscription(subscription: str, plane: ControlPlane = Depends(control_plane)) -> Response:
    """One subscription (the gate has answered 404 for an unknown one already)."""
    for record in plane.repo.list_subscriptions():
        if record["key"] == subscription.lower():
            return arm.ok(_subscription(record))
    raise SubscriptionNotFound(id=subscription)


@router.get("/tenants")
def list_tenants(request: Request, who: Principal = Depends(principal)) -> Response:
    """The caller's tenant, named as in the directory."""
    tid = who.tenant_id
    directory = getattr(request.app.state, "directory", None)
    tenant = directory.get_tenant(tid) if directory is not None else None
    return arm.ok(
        {
            "value": [
                {
                    "id": f"/tenants/{tid}",
                    "tenantId": tid,
                    "tenantCategory": "Home",
                    "displayName": tenant.display_name if tenant else "privatelink",
                    "defaultDomain": tenant.default_domain if tenant else "privatelink.local",
                    "domains": [tenant.default_domain] if tenant else ["privatelink.local"],
                }
            ]
        }
    )


def _group(record: dict[str, Any]) -> dict[str, Any]:
    sub = record["subscription"]
    name = record["name"]
    return {
        "id": f"/subscriptions/{sub}/resourceGroups/{name}",
        "name": name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": record["location"],
        "tags": json.loads(record["tags"]) if isinstance(record["tags"], str) else record["tags"],
        "properties": {"provisioningState": "Succeeded"},
    }


def _check_group(subscription: str, group: str) -> None:
    if not is_guid(subscription):
        raise errors.InvalidSubscriptionId(value=subscription)
    if not valid_resource_group(group):
        raise errors.InvalidResourceGroupName(name=group)


GROUP = "/subscriptions/{subscription}/resourceGroups/{group}"


@router.put(GROUP)
def create_or_update_group(
    subscription: str,
    group: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
) -> Response:
    """Create (201) or update (200) a resource group: synchronous."""
    _check_group(subscription, group)
    wire = arm.parse_body(ResourceGroupWire, body)
    location = normalize_location(wire.location)
    existing = plane.repo.get_resource_group(subscription, group)
    if existing is not None and existing["location"] != location:
        raise errors.ResourceLocationMismatch(
            id=f"/subscriptions/{subscription}/resourceGroups/{group}",
            location=location,
            ref="its existing location",
            other=existing["location"],
        )
    record, created = plane.repo.put_resource_group(subscription, group, location, wire.tags or {})
    return arm.ok(_group(record), status=201 if created else 200)


@router.get(GROUP)
def get_group(
    subscription: str, group: str, plane: ControlPlane = Depends(control_plane)
) -> Response:
    """A resource group created through the API."""
    _check_group(subscription, group)
    record = plane.repo.get_resource_group(subscription, group)
    if record is None:
        raise ResourceGroupNotFound(name=group)
    return arm.ok(_group(record))


@router.head(GROUP)
def group_exists(
    subscription: str, group: str, plane: ControlPlane = Depends(control_plane)
) -> Response:
    """`az group exists`: 204 or 404."""
    _check_group(subscription, group)
    found = plane.repo.get_resource_group(subscription, group) is not None
    return Response(status_code=204 if found else 404)


@router.delete(GROUP)
def delete_group(
    request: Request,
    subscription: str,
    group: str,
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """Delete a resource group and every network resource in it."""
    _check_group(subscription, group)
    record = plane.repo.get_resource_group(subscription, group)
    if record is None and not plane.repo.resources_in_group(subscription, group):
        return Response(status_code=204)
    op = plane.delete_resource_group(who, subscription, group)
    return arm.delete_response(request, op, str(record["location"]) if record else "")


@router.get("/subscriptions/{subscription}/resourceGroups")
def list_groups(
    request: Request, subscription: str, plane: ControlPlane = Depends(control_plane)
) -> Response:
    """Resource groups of a subscription (those the caller may read)."""
    arm.check_subscription(subscription)
    records = [_group(r) for r in plane.repo.list_resource_groups(subscription)]
    return arm.ok({"value": [g for g in records if readable(request, g["id"])]})


class UnsupportedFilter(errors.BadRequest):
    code = "InvalidFilterInQueryString"
    template = (
        "The $filter '{value}' is not supported: use clauses like resourceGroup eq 'rg', "
        "name eq 'n' or resourceType eq 'Microsoft.Network/virtualNetworks' joined by 'and'."
    )


_CLAUSE = re.compile(r"\s*(resourceGroup|name|resourceType|location)\s+eq\s+'([^']*)'\s*", re.I)


def parse_filter(value: str | None) -> dict[str, str]:
    """`a eq 'x' and b eq 'y'` -> {"a": "x", "b": "y"} (lower-case keys and values)."""
    if not value:
        return {}
    clauses: dict[str, str] = {}
    for part in re.split(r"\s+and\s+", value, flags=re.I):
        m = _CLAUSE.fullmatch(part)
        if not m:
            raise UnsupportedFilter(value=value[:200])
        clauses[m.group(1).lower()] = m.group(2).lower()
    return clauses


def _generic(resource: Any) -> dict[str, Any]:
    return {
        "id": resource.id,
        "name": resource.name,
        "type": resource.rid.type,
        "location": resource.location,
        "tags": resource.tags,
    }


def _resources(
    request: Request, plane: ControlPlane, subscription: str, group: str | None
) -> Response:
    arm.check_subscription(subscription)
    wanted = parse_filter(request.query_params.get("$filter"))
    if "resourcegroup" in wanted:
        if group is not None and group.lower() != wanted["resourcegroup"]:
            return arm.ok({"value": []})
        group = wanted["resourcegroup"]
    items = []
    for resource in plane.repo.resources_in_group(subscription, group):
        if "name" in wanted and resource.name.lower() != wanted["name"]:
            continue
        if "resourcetype" in wanted and resource.rid.type.lower() != wanted["resourcetype"]:
            continue
        if "location" in wanted and resource.location != wanted["location"]:
            continue
        if not readable(request, resource.id, f"{resource.rid.type}/read"):
            continue
        items.append(_generic(resource))
    return arm.ok({"value": items})


@router.get("/subscriptions/{subscription}/resources")
def list_resources(
    request: Request, subscription: str, plane: ControlPlane = Depends(control_plane)
) -> Response:
    """Generic resource listing with a simple $filter (az uses it to find resources)."""
    return _resources(request, plane, subscription, None)


@router.get(GROUP + "/resources")
def list_group_resources(
    request: Request, subscription: str, group: str, plane: ControlPlane = Depends(control_plane)
) -> Response:
    """The resources of a group."""
    _check_group(subscription, group)
    return _resources(request, plane, subscription, group)
