"""The portal's browser tests' world (tests/browser): a provider service in the default
tenant with a manual connection from a consumer endpoint in a tenant of its own, and the
users who look at it. Built through azure-mgmt-network and the admin API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from arm_bodies import Rule, lb_body, pls_body, provider_vnet_body
from identities import ROLES, Identity, create_tenant

LOCATION = "eastus"


@dataclass
class Scene:
    """What the tests look at: the provider's users (a Network Contributor and a Reader),
    the consumer's user, and the connection the consumer asked for."""

    url: str
    user: dict[str, Any]
    reader: dict[str, Any]
    consumer_user: dict[str, Any]
    service: str
    service_id: str
    alias: str
    endpoint_id: str
    message: str
    consumer: Identity | None = None  # the consumer tenant's admin (SDK calls)

    def ask(self, name: str, message: str) -> str:
        """The consumer asks for another connection (a manual endpoint `name`): its id."""
        assert self.consumer is not None
        sub = self.consumer.subscription_id
        subnet = (
            f"/subscriptions/{sub}/resourceGroups/consumer/providers/Microsoft.Network/"
            "virtualNetworks/cvnet/subnets/pe"
        )
        body = {
            "location": LOCATION,
            "properties": {
                "subnet": {"id": subnet},
                "manualPrivateLinkServiceConnections": [
                    {
                        "name": "conn",
                        "properties": {
                            "privateLinkServiceId": self.service_id,
                            "requestMessage": message,
                        },
                    }
                ],
            },
        }
        made = (
            self.consumer.network(sub)
            .private_endpoints.begin_create_or_update("consumer", name, body)
            .result()
        )
        return str(made.id)


def _user(admin: Identity, role: str, scope: str, tenant: str = "default") -> dict[str, Any]:
    user = (
        admin.http()
        .post(
            f"/privatelink/admin/tenants/{tenant}/users", json={"name": f"u{uuid.uuid4().hex[:6]}"}
        )
        .json()
    )
    sub = scope.split("/")[2]
    admin.authorization(sub).role_assignments.create(
        scope,
        str(uuid.uuid4()),
        {
            "properties": {
                "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/"
                f"roleDefinitions/{ROLES[role]}",
                "principalId": user["object_id"],
                "principalType": "User",
            }
        },
    )
    return dict(user)


@contextmanager
def build_scene(portal_server: Any) -> Iterator[Scene]:
    """A provider service (default tenant) with a manual connection from a consumer
    endpoint in a tenant of its own, and a provider user with Reader on the provider's
    subscription."""
    creds = portal_server.credentials
    admin = Identity.from_json(dict(creds, url=portal_server.url, ca_file=portal_server.ca_file))
    sub = creds["subscription_id"]
    net = admin.network(sub)
    rg = "provider"
    base = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network"
    admin.http().put(
        f"/subscriptions/{sub}/resourcegroups/{rg}",
        params={"api-version": "2022-09-01"},
        json={"location": LOCATION},
    ).raise_for_status()
    net.virtual_networks.begin_create_or_update(rg, "vnet", provider_vnet_body(LOCATION)).result()
    net.load_balancers.begin_create_or_update(
        rg,
        "lb",
        lb_body(
            f"{base}/loadBalancers/lb",
            f"{base}/virtualNetworks/vnet/subnets/frontend",
            LOCATION,
            rules=[Rule("http", "fe", "be")],
        ),
    ).result()
    service = net.private_link_services.begin_create_or_update(
        rg,
        "pls-web",
        pls_body(
            f"{base}/loadBalancers/lb/frontendIPConfigurations/fe",
            f"{base}/virtualNetworks/vnet/subnets/nat",
            LOCATION,
            visibility=["*"],
        ),
    ).result()
    consumer = create_tenant(admin, f"cons{uuid.uuid4().hex[:6]}")
    csub = consumer.subscription_id
    cnet = consumer.network(csub)
    consumer.http().put(
        f"/subscriptions/{csub}/resourcegroups/consumer",
        params={"api-version": "2022-09-01"},
        json={"location": LOCATION},
    ).raise_for_status()
    cnet.virtual_networks.begin_create_or_update(
        "consumer",
        "cvnet",
        {
            "location": LOCATION,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.8.0.0/16"]},
                "subnets": [{"name": "pe", "properties": {"addressPrefix": "10.8.1.0/24"}}],
            },
        },
    ).result()
    message = "Contoso web tier, please approve"
    endpoint = cnet.private_endpoints.begin_create_or_update(
        "consumer",
        "pe-web",
        {
            "location": LOCATION,
            "properties": {
                "subnet": {
                    "id": f"/subscriptions/{csub}/resourceGroups/consumer/providers/"
                    "Microsoft.Network/virtualNetworks/cvnet/subnets/pe"
                },
                "manualPrivateLinkServiceConnections": [
                    {
                        "name": "conn",
                        "properties": {
                            "privateLinkServiceId": service.id,
                            "requestMessage": message,
                        },
                    }
                ],
            },
        },
    ).result()
    user = _user(admin, "Network Contributor", f"/subscriptions/{sub}")
    reader = _user(admin, "Reader", f"/subscriptions/{sub}")
    consumer_user = _user(consumer, "Reader", f"/subscriptions/{csub}", tenant=consumer.name)
    yield Scene(
        portal_server.url,
        user,
        reader,
        consumer_user,
        "pls-web",
        service.id,
        service.alias,
        endpoint.id,
        message,
        consumer,
    )
    consumer.close()
    admin.close()


def sign_in(page: Any, url: str, name: str, password: str) -> None:
    """Open the portal and sign in on the server's sign-in page."""
    page.goto(f"{url}/portal/")
    page.get_by_label("Sign-in name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
