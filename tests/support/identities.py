"""Principals for tests: a tenant admin, new tenants and subscriptions, new service principals,
role assignments.

Everything goes through the server's public surfaces, as a user would: the admin API
behind `privatelink tenant create`, Microsoft Graph (as `az ad sp create-for-rbac` does)
and Microsoft.Authorization through the unmodified azure-mgmt-authorization SDK.
"""

from __future__ import annotations

import gc
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from azure.identity import ClientSecretCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.network import NetworkManagementClient

ARM_SCOPE = "https://management.azure.com/.default"

ROLES = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Network Contributor": "4d97b98b-1d4f-4787-a291-c67834d212e7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
}


@dataclass
class Identity:
    """One service principal's credentials against one server, with SDK clients for it."""

    url: str
    ca_file: str
    tenant_id: str
    client_id: str
    client_secret: str
    object_id: str = ""
    subscription_id: str = ""
    name: str = ""
    _credential: ClientSecretCredential | None = field(default=None, repr=False)
    _clients: list[Any] = field(default_factory=list, repr=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Identity:
        """From the JSON `privatelink tenant create` prints (credentials.json's fields)."""
        return cls(
            url=raw["url"],
            ca_file=raw["ca_file"],
            tenant_id=raw["tenant_id"],
            client_id=raw["client_id"],
            client_secret=raw["client_secret"],
            object_id=raw.get("object_id", ""),
            subscription_id=raw.get("subscription_id", "") or "",
            name=raw.get("name", ""),
        )

    @property
    def credential(self) -> ClientSecretCredential:
        if self._credential is None:
            self._credential = ClientSecretCredential(
                self.tenant_id,
                self.client_id,
                self.client_secret,
                authority=self.url,
                disable_instance_discovery=True,
                connection_verify=self.ca_file,
            )
        return self._credential

    def _sdk(self, cls: type, subscription: str | None) -> Any:
        client = cls(
            self.credential,
            subscription or self.subscription_id,
            base_url=self.url,
            connection_verify=self.ca_file,
            polling_interval=0,
            retry_total=0,
        )
        self._clients.append(client)
        return client

    def network(self, subscription: str | None = None) -> NetworkManagementClient:
        """azure-mgmt-network as this principal."""
        client: NetworkManagementClient = self._sdk(NetworkManagementClient, subscription)
        return client

    def authorization(self, subscription: str | None = None) -> AuthorizationManagementClient:
        """azure-mgmt-authorization as this principal."""
        client: AuthorizationManagementClient = self._sdk(
            AuthorizationManagementClient, subscription
        )
        return client

    def sdk(self, cls: type, subscription: str | None = None) -> Any:
        """Any azure-mgmt-* client class as this principal."""
        return self._sdk(cls, subscription)

    def oid(self) -> str:
        """The principal's object id (from its token when the credentials lack it)."""
        if not self.object_id:
            claims = jwt.decode(self.token(), options={"verify_signature": False})
            self.object_id = str(claims["oid"])
        return self.object_id

    def token(self, scope: str = ARM_SCOPE) -> str:
        return self.credential.get_token(scope).token

    def http(self, scope: str = ARM_SCOPE) -> httpx.Client:
        """httpx with this principal's bearer token for `scope` (ARM by default)."""
        client = httpx.Client(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=self.ca_file),
            headers={"Authorization": f"Bearer {self.token(scope)}"},
            timeout=30,
            trust_env=False,
        )
        self._clients.append(client)
        return client

    def graph(self) -> httpx.Client:
        """httpx on the server's Microsoft Graph, with a Graph token."""
        return self.http(f"{self.url}/graph/.default")

    def close(self) -> None:
        while self._clients:
            self._clients.pop().close()
        gc.collect()
        if self._credential is not None:
            self._credential.close()
            self._credential = None


def create_tenant(admin: Identity, name: str | None = None) -> Identity:
    """A new tenant (with its admin and subscription) through the admin API."""
    name = name or f"t{uuid.uuid4().hex[:10]}"
    with admin.http() as http:
        reply = http.post("/privatelink/admin/tenants", json={"name": name})
    assert reply.status_code in (200, 201), reply.text
    return Identity.from_json(reply.json())


def create_subscription(admin: Identity, tenant: str, name: str | None = None) -> str:
    """A new subscription in `tenant` (name or id) through the admin API, as
    `privatelink subscription create --tenant` makes it: the tenant's admin is Owner.

    `admin` is the default tenant's admin (only it may call the admin API). A tenant's
    admin never creates subscriptions by using a new GUID: only the default tenant's admin
    does, and only with a write (a PUT).
    """
    body = {"tenant": tenant} | ({"display_name": name} if name else {})
    with admin.http() as http:
        reply = http.post("/privatelink/admin/subscriptions", json=body)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["subscription_id"])


def create_principal(tenant_admin: Identity, name: str | None = None) -> Identity:
    """A new service principal in the admin's tenant, made through Graph as az does."""
    name = name or f"sp-{uuid.uuid4().hex[:10]}"
    graph = tenant_admin.graph()
    app = graph.post("/graph/v1.0/applications", json={"displayName": name})
    assert app.status_code == 201, app.text
    sp = graph.post("/graph/v1.0/servicePrincipals", json={"appId": app.json()["appId"]})
    assert sp.status_code == 201, sp.text
    secret = graph.post(
        f"/graph/v1.0/applications/{app.json()['id']}/addPassword",
        json={"passwordCredential": {"displayName": "test"}},
    )
    assert secret.status_code == 200, secret.text
    return Identity(
        url=tenant_admin.url,
        ca_file=tenant_admin.ca_file,
        tenant_id=tenant_admin.tenant_id,
        client_id=app.json()["appId"],
        client_secret=secret.json()["secretText"],
        object_id=sp.json()["id"],
        subscription_id=tenant_admin.subscription_id,
        name=name,
    )


def assign(owner: Identity, scope: str, role: str, principal: Identity) -> str:
    """Assign a role (name from ROLES, or a GUID) at `scope` through azure-mgmt-authorization."""
    guid = ROLES.get(role, role)
    subscription = scope.split("/")[2]
    client = owner.authorization(subscription)
    name = str(uuid.uuid4())
    client.role_assignments.create(
        scope,
        name,
        {
            "properties": {
                "roleDefinitionId": (
                    f"/subscriptions/{subscription}/providers/Microsoft.Authorization/"
                    f"roleDefinitions/{guid}"
                ),
                "principalId": principal.object_id,
                "principalType": "ServicePrincipal",
            }
        },
    )
    return name
