"""Tenants, principals and RBAC over the wire: the seed's provider/consumer separation.

The real server over HTTPS, driven by the unmodified azure-mgmt-network,
azure-mgmt-authorization and azure-mgmt-monitor SDKs, with principals made as a user
makes them: tenants through the admin API (`privatelink tenant create`), service
principals through Microsoft Graph (as `az ad sp create-for-rbac` does), roles through
Microsoft.Authorization.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.mgmt.monitor import MonitorManagementClient
from identities import Identity, assign, create_principal

pytestmark = pytest.mark.integration

LOCATION = "eastus"
APPROVAL = "Microsoft.Network/privateLinkServices/privateEndpointConnectionsApproval/action"


@pytest.fixture
def admin(world: Any) -> Identity:
    """The default tenant's admin (what credentials.json holds)."""
    identity: Identity = world.admin()
    return identity


@pytest.fixture
def principals(admin: Identity) -> Iterator[list[Identity]]:
    """Principals a test made (closed afterwards)."""
    made: list[Identity] = []
    yield made
    for p in made:
        p.close()


def _new_principal(admin: Identity, made: list[Identity]) -> Identity:
    p = create_principal(admin)
    made.append(p)
    return p


def _forbidden(fn: Any, code: str = "AuthorizationFailed") -> HttpResponseError:
    with pytest.raises(HttpResponseError) as info:
        fn()
    err = info.value
    assert err.status_code == 403, f"{err.status_code}: {err}"
    assert err.error is not None and err.error.code == code, str(err)
    return err


def _wrong_tenant(fn: Any) -> None:
    with pytest.raises(ClientAuthenticationError) as info:
        fn()
    assert info.value.status_code == 401
    assert info.value.error is not None
    assert info.value.error.code == "InvalidAuthenticationTokenTenant"


def _status(pe: Any) -> str:
    conns = pe.manual_private_link_service_connections or pe.private_link_service_connections
    return str(conns[0].private_link_service_connection_state.status)


def _visible(client: Any, alias: str, rg: str | None = None) -> bool:
    ops = client.private_link_services
    body = {"privateLinkServiceAlias": alias}
    if rg is None:
        poller = ops.begin_check_private_link_service_visibility(LOCATION, body)
    else:  # a caller whose role is on one resource group asks there
        poller = ops.begin_check_private_link_service_visibility_by_resource_group(
            LOCATION, rg, body
        )
    return bool(poller.result().visible)


def _approve(client: Any, rg: str, pls: str, conn: str, status: str = "Approved") -> Any:
    return client.private_link_services.update_private_endpoint_connection(
        rg,
        pls,
        conn,
        {"name": conn, "properties": {"privateLinkServiceConnectionState": {"status": status}}},
    )


# --- the seed's workflow across tenants --------------------------------------------------------


def test_consumer_in_another_tenant_requests_provider_approves(world: Any, helpers: Any) -> None:
    provider = world.provider()
    fabrikam = world.new_tenant()
    consumer = fabrikam.consumer(fabrikam.identity.subscription_id)
    name = helpers.unique("pls")
    pls = provider.create_pls(name, visibility=[consumer.sub], fqdns=["svc.contoso.example"])

    # The consumer (another tenant, another principal) finds it by alias and asks.
    assert _visible(consumer.client, pls.alias) is True
    pe = consumer.create_pe("pe-x", pls.alias, message="from fabrikam")
    assert _status(pe) == "Pending"

    # The provider sees the request with the consumer's endpoint id, and approves it.
    (conn,) = provider.client.private_link_services.list_private_endpoint_connections(
        provider.rg, name
    )
    assert conn.private_endpoint.id.lower() == pe.id.lower()
    assert conn.private_link_service_connection_state.description == "from fabrikam"
    _approve(provider.client, provider.rg, name, conn.name)
    assert _status(consumer.client.private_endpoints.get(consumer.rg, "pe-x")) == "Approved"

    # Neither can read the other's resources: each subscription belongs to its tenant.
    _wrong_tenant(lambda: world.client(consumer.sub).private_endpoints.get(consumer.rg, "pe-x"))
    other_side = fabrikam.client(provider.sub)
    _wrong_tenant(lambda: other_side.private_link_services.get(provider.rg, name))
    # ... nor act on the other's side of the connection.
    _wrong_tenant(lambda: _approve(other_side, provider.rg, name, conn.name, "Rejected"))
    _wrong_tenant(
        lambda: other_side.private_link_services.begin_delete_private_endpoint_connection(
            provider.rg, name, conn.name
        ).result()
    )
    assert _status(consumer.client.private_endpoints.get(consumer.rg, "pe-x")) == "Approved"

    # The provider rejects; the consumer sees it.
    _approve(provider.client, provider.rg, name, conn.name, "Rejected")
    assert _status(consumer.client.private_endpoints.get(consumer.rg, "pe-x")) == "Rejected"
    consumer.client.private_endpoints.begin_delete(consumer.rg, "pe-x").result()
    provider.client.private_link_services.begin_delete(provider.rg, name).result()


def test_subscriptions_are_listed_per_principal(world: Any, admin: Identity) -> None:
    fabrikam = world.new_tenant()
    mine = {s.lower() for s in _subscription_ids(fabrikam.identity)}
    assert fabrikam.identity.subscription_id.lower() in mine
    assert admin.subscription_id.lower() not in mine
    assert fabrikam.identity.subscription_id.lower() not in {
        s.lower() for s in _subscription_ids(admin)
    }
    with fabrikam.identity.http() as http:
        tenants = http.get("/tenants", params={"api-version": "2022-12-01"}).json()["value"]
    assert [t["tenantId"] for t in tenants] == [fabrikam.identity.tenant_id]
    assert tenants[0]["displayName"] == fabrikam.identity.name


def _subscription_ids(identity: Identity) -> list[str]:
    """GET /subscriptions as `identity`, following nextLink as the SDKs do."""
    ids: list[str] = []
    with identity.http() as http:
        url: str | None = "/subscriptions?api-version=2022-12-01"
        while url:
            reply = http.get(url)
            assert reply.status_code == 200, reply.text
            ids += [s["subscriptionId"] for s in reply.json()["value"]]
            url = reply.json().get("nextLink")
            assert len(ids) < 100_000, "nextLink loop"
    return ids


def test_unknown_subscription_is_created_only_by_a_put_of_the_default_admin(
    world: Any, admin: Identity, principals: list[Identity]
) -> None:
    nobody = _new_principal(admin, principals)
    sub = helpers_new_sub()
    group = {"location": LOCATION}
    for who in (nobody, admin):
        # A read never creates a subscription, whoever asks (issue 11).
        with pytest.raises(HttpResponseError) as info:
            list(who.network(sub).virtual_networks.list_all())
        assert info.value.status_code == 404
        assert info.value.error is not None and info.value.error.code == "SubscriptionNotFound"
    # A write by anyone but the default tenant's admin does not either.
    with nobody.http() as http:
        reply = http.put(
            f"/subscriptions/{sub}/resourceGroups/rg?api-version=2022-12-01", json=group
        )
    assert reply.status_code == 404, reply.text
    assert reply.json()["error"]["code"] == "SubscriptionNotFound"
    assert sub not in _subscription_ids(admin)
    # The default admin's first write creates it, with the admin as Owner.
    with admin.http() as http:
        reply = http.put(
            f"/subscriptions/{sub}/resourceGroups/rg?api-version=2022-12-01", json=group
        )
    assert reply.status_code == 201, reply.text
    assert list(admin.network(sub).virtual_networks.list_all()) == []
    owners = [
        a
        for a in admin.authorization(sub).role_assignments.list_for_scope(f"/subscriptions/{sub}")
        if a.role_definition_id.lower().endswith("8e3af657-a8ff-443c-a75c-2fe8c4bcb635")
    ]
    assert owners
    assert sub in _subscription_ids(admin)


def helpers_new_sub() -> str:
    return str(uuid.uuid4())


# --- roles ----------------------------------------------------------------------------


def test_reader_reads_and_is_refused_every_write(
    world: Any, admin: Identity, principals: list[Identity], helpers: Any
) -> None:
    provider = world.provider()
    consumer = world.consumer()
    name = helpers.unique("pls")
    provider.create_pls(name, visibility=[consumer.sub])
    pe = consumer.create_pe("pe", provider.pls_id(name))
    reader = _new_principal(admin, principals)
    assign(admin, f"/subscriptions/{provider.sub}/resourceGroups/{provider.rg}", "Reader", reader)
    as_reader = reader.network(provider.sub)

    assert as_reader.private_link_services.get(provider.rg, name).name == name
    assert [p.name for p in as_reader.private_link_services.list(provider.rg)] == [name]
    (conn,) = as_reader.private_link_services.list_private_endpoint_connections(provider.rg, name)
    err = _forbidden(
        lambda: as_reader.private_link_services.begin_create_or_update(
            provider.rg, name, provider.pls_body(visibility=["*"])
        ).result()
    )
    assert reader.object_id in str(err.message)
    assert "Microsoft.Network/privateLinkServices/write" in str(err.message)
    _forbidden(lambda: _approve(as_reader, provider.rg, name, conn.name))
    _forbidden(lambda: as_reader.private_link_services.begin_delete(provider.rg, name).result())
    _forbidden(lambda: as_reader.virtual_networks.begin_delete(provider.rg, provider.vnet).result())
    # Nothing changed.
    got = provider.client.private_link_services.get(provider.rg, name)
    assert got.visibility.subscriptions == [consumer.sub]
    assert _status(consumer.client.private_endpoints.get(consumer.rg, "pe")) == "Pending"
    assert pe.id


def test_network_contributor_on_one_group_cannot_touch_another(
    world: Any, admin: Identity, principals: list[Identity], helpers: Any
) -> None:
    sub = admin.subscription_id
    mine, theirs = helpers.unique("rg-mine"), helpers.unique("rg-theirs")
    netc = _new_principal(admin, principals)
    assign(admin, f"/subscriptions/{sub}/resourceGroups/{mine}", "Network Contributor", netc)
    as_netc = netc.network(sub)
    body = {
        "location": LOCATION,
        "properties": {"addressSpace": {"addressPrefixes": ["10.9.0.0/16"]}},
    }
    as_netc.virtual_networks.begin_create_or_update(mine, "v", body).result()
    _forbidden(lambda: as_netc.virtual_networks.begin_create_or_update(theirs, "v", body).result())
    admin.network(sub).virtual_networks.begin_create_or_update(theirs, "v", body).result()
    _forbidden(lambda: as_netc.virtual_networks.get(theirs, "v"))
    # A list at the subscription shows only what the caller may read.
    listed = {v.id.lower() for v in as_netc.virtual_networks.list_all()}
    assert any(f"/resourcegroups/{mine.lower()}/" in i for i in listed)
    assert not any(f"/resourcegroups/{theirs.lower()}/" in i for i in listed)
    # Network Contributor may not hand out roles.
    _forbidden(lambda: assign(netc, f"/subscriptions/{sub}/resourceGroups/{mine}", "Reader", netc))


def test_custom_role_with_only_the_approval_action(
    world: Any, admin: Identity, principals: list[Identity], helpers: Any
) -> None:
    provider = world.provider()
    consumer = world.consumer()
    name = helpers.unique("pls")
    provider.create_pls(name, visibility=[consumer.sub])
    consumer.create_pe("pe", provider.pls_id(name))
    (conn,) = provider.client.private_link_services.list_private_endpoint_connections(
        provider.rg, name
    )
    role = str(uuid.uuid4())
    scope = f"/subscriptions/{provider.sub}"
    admin.authorization(provider.sub).role_definitions.create_or_update(
        scope,
        role,
        {
            "properties": {
                "roleName": f"approver-{role[:8]}",
                "description": "approves private endpoint connections",
                "type": "CustomRole",
                "permissions": [{"actions": [APPROVAL], "notActions": []}],
                "assignableScopes": [scope],
            }
        },
    )
    approver = _new_principal(admin, principals)
    assign(admin, provider.pls_id(name), role, approver)
    as_approver = approver.network(provider.sub)

    approved = _approve(as_approver, provider.rg, name, conn.name)
    assert approved.private_link_service_connection_state.status == "Approved"
    assert _status(consumer.client.private_endpoints.get(consumer.rg, "pe")) == "Approved"
    # ... and nothing else.
    _forbidden(lambda: as_approver.private_link_services.get(provider.rg, name))
    _forbidden(
        lambda: as_approver.private_link_services.begin_create_or_update(
            provider.rg, name, provider.pls_body()
        ).result()
    )
    _forbidden(lambda: as_approver.virtual_networks.get(provider.rg, provider.vnet))


# --- visibility and connections --------------------------------------------------------------


def test_empty_visibility_means_rbac_holders_only(
    world: Any, admin: Identity, principals: list[Identity], helpers: Any
) -> None:
    provider = world.provider()
    name = helpers.unique("pls")
    pls = provider.create_pls(name, visibility=[])
    # A principal of the same tenant with a network of its own, but no role on the service.
    stranger = _new_principal(admin, principals)
    sub = provider.sub
    rg = helpers.unique("rg-stranger")
    assign(admin, f"/subscriptions/{sub}/resourceGroups/{rg}", "Network Contributor", stranger)
    consumer = world.as_identity(stranger).consumer(sub, rg=rg)
    assert _visible(consumer.client, pls.alias, rg) is False
    helpers.expect_error(
        lambda: consumer.create_pe("pe", pls.alias), 400, "PrivateLinkServiceNotFound"
    )
    helpers.expect_error(
        lambda: consumer.create_pe("pe", pls.id), 400, "PrivateLinkServiceNotFound"
    )
    # Reader on the service: it finds it and may request a manual connection.
    assign(admin, provider.pls_id(name), "Reader", stranger)
    assert _visible(consumer.client, pls.alias, rg) is True
    assert _status(consumer.create_pe("pe", pls.alias)) == "Pending"


def test_automatic_connection_needs_the_approval_right(
    world: Any, admin: Identity, principals: list[Identity], helpers: Any
) -> None:
    provider = world.provider()
    name = helpers.unique("pls")
    fabrikam = world.new_tenant()
    consumer = fabrikam.consumer(fabrikam.identity.subscription_id)
    provider.create_pls(name, visibility=[consumer.sub])
    err = _forbidden(
        lambda: consumer.create_pe("pe-auto", provider.pls_id(name), manual=False),
        "LinkedAuthorizationFailed",
    )
    assert APPROVAL in str(err.message)
    assert list(consumer.client.private_endpoints.list(consumer.rg)) == []
    # Manual works; auto-approval lets automatic connections through as well.
    assert _status(consumer.create_pe("pe-manual", provider.pls_id(name))) == "Pending"
    provider.create_pls(name, visibility=[consumer.sub], auto_approval=[consumer.sub])
    assert _status(consumer.create_pe("pe-auto", provider.pls_id(name), manual=False)) == (
        "Approved"
    )
    # The provider's own admin holds the right: its automatic connection is approved.
    own = world.consumer(provider.sub, prefix="10.1.0.0/16", subnet="10.1.1.0/24")
    assert _status(own.create_pe("pe-own", provider.pls_id(name), manual=False)) == "Approved"


def test_joining_a_subnet_needs_the_join_right(
    world: Any, admin: Identity, principals: list[Identity], helpers: Any
) -> None:
    shared = world.consumer(admin.subscription_id)  # a VNet in the admin's group
    netc = _new_principal(admin, principals)
    rg = helpers.unique("rg-netc")
    assign(admin, f"/subscriptions/{shared.sub}/resourceGroups/{rg}", "Network Contributor", netc)
    client = netc.network(shared.sub)
    err = _forbidden(
        lambda: client.network_interfaces.begin_create_or_update(
            rg,
            "nic",
            {
                "location": LOCATION,
                "properties": {
                    "ipConfigurations": [
                        {"name": "ip", "properties": {"subnet": {"id": shared.subnet}}}
                    ]
                },
            },
        ).result(),
        "LinkedAuthorizationFailed",
    )
    assert "Microsoft.Network/virtualNetworks/subnets/join/action" in str(err.message)
    with pytest.raises(HttpResponseError):
        client.network_interfaces.get(rg, "nic")


def test_templates_check_each_resource(
    world: Any, admin: Identity, principals: list[Identity], helpers: Any
) -> None:
    sub = admin.subscription_id
    rg = helpers.unique("rg-tpl")
    reader = _new_principal(admin, principals)
    assign(admin, f"/subscriptions/{sub}/resourceGroups/{rg}", "Reader", reader)
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [
            {
                "type": "Microsoft.Network/virtualNetworks",
                "apiVersion": "2023-09-01",
                "name": "v",
                "location": LOCATION,
                "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}},
            }
        ],
    }
    with reader.http() as http:
        reply = http.put(
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Resources/"
            "deployments/d?api-version=2022-09-01",
            json={"properties": {"mode": "Incremental", "template": template}},
        )
    assert reply.status_code == 403, reply.text
    assert reply.json()["error"]["code"] == "AuthorizationFailed"


# --- the activity log -----------------------------------------------------------------------


def test_activity_log_shows_who_approved(
    world: Any, admin: Identity, principals: list[Identity], helpers: Any
) -> None:
    provider = world.provider()
    fabrikam = world.new_tenant()
    consumer = fabrikam.consumer(fabrikam.identity.subscription_id)
    name = helpers.unique("pls")
    pls = provider.create_pls(name, visibility=[consumer.sub])
    consumer.create_pe("pe", pls.alias)
    (conn,) = provider.client.private_link_services.list_private_endpoint_connections(
        provider.rg, name
    )
    _approve(provider.client, provider.rg, name, conn.name)
    # A refused attempt is recorded too (a Reader of the provider's tenant) ...
    reader = _new_principal(admin, principals)
    assign(admin, provider.pls_id(name), "Reader", reader)
    _forbidden(
        lambda: _approve(reader.network(provider.sub), provider.rg, name, conn.name, "Rejected")
    )
    # ... but not another tenant's: its token never reaches the provider's subscription.
    _wrong_tenant(
        lambda: _approve(fabrikam.client(provider.sub), provider.rg, name, conn.name, "Rejected")
    )

    monitor = admin.sdk(MonitorManagementClient, provider.sub)
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    events = list(
        monitor.activity_logs.list(
            filter=f"eventTimestamp ge '{start}' and resourceUri eq '{pls.id}'",
        )
    )
    approvals = [
        e
        for e in events
        if e.operation_name.value
        == "Microsoft.Network/privateLinkServices/privateEndpointConnections/write"
        and e.status.value == "Succeeded"
    ]
    assert approvals, [(e.operation_name.value, e.status.value) for e in events]
    assert approvals[0].caller.lower() in {admin.oid().lower(), admin.client_id.lower()} or (
        approvals[0].claims and approvals[0].claims.get("appid") == admin.client_id
    )
    assert approvals[0].correlation_id
    assert approvals[0].resource_id.lower().startswith(pls.id.lower())
    refused = [e for e in events if e.status.value == "Failed"]
    assert [e.caller.lower() for e in refused] == [reader.oid().lower()]
    assert refused[0].sub_status.value == "Forbidden"


# --- Microsoft Graph -------------------------------------------------------------------------


def test_graph_principals_belong_to_their_tenant(
    world: Any, admin: Identity, principals: list[Identity]
) -> None:
    made = _new_principal(admin, principals)
    assert made.oid()  # it signs in: the secret from addPassword works at once
    graph = admin.graph()
    found = graph.get(
        "/graph/v1.0/servicePrincipals",
        params={"$filter": f"displayName eq '{made.name}'"},
    ).json()["value"]
    assert [sp["appId"] for sp in found] == [made.client_id]
    resolved = graph.post(
        "/graph/v1.0/directoryObjects/getByIds",
        json={"ids": [made.object_id], "types": ["servicePrincipal"]},
    ).json()["value"]
    assert [o["id"] for o in resolved] == [made.object_id]

    # Only the tenant's admin creates principals.
    refused = made.graph().post("/graph/v1.0/applications", json={"displayName": "nope"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "Authorization_RequestDenied"
    # Another tenant does not see them; an ARM token is not a Graph token.
    other = world.new_tenant().identity
    elsewhere = other.graph().get(f"/graph/v1.0/servicePrincipals/{made.object_id}")
    assert elsewhere.status_code == 404
    with admin.http() as arm_token:
        wrong = arm_token.get("/graph/v1.0/servicePrincipals")
    assert wrong.status_code == 401

    # Deleted, it can no longer sign in.
    assert graph.delete(f"/graph/v1.0/servicePrincipals/{made.object_id}").status_code == 204
    stale = Identity(
        url=made.url,
        ca_file=made.ca_file,
        tenant_id=made.tenant_id,
        client_id=made.client_id,
        client_secret=made.client_secret,
    )
    principals.append(stale)
    with pytest.raises(ClientAuthenticationError):
        stale.token()


def test_tenants_is_authenticated_not_a_500(world: Any, admin: Identity) -> None:
    # Issue 11, defect 5: GET /tenants used to answer 500 (it sat outside the gate).
    with admin.http() as http:
        reply = http.get("/tenants", params={"api-version": "2022-12-01"})
    assert reply.status_code == 200
    assert [t["tenantId"] for t in reply.json()["value"]] == [admin.tenant_id]
    anonymous = world.server.anonymous()
    try:
        refused = anonymous.get("/tenants", params={"api-version": "2022-12-01"})
    finally:
        anonymous.close()
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "AuthenticationFailed"
