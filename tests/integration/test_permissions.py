"""Microsoft.Authorization/permissions over the wire: what a principal may do at a scope.

The real server over HTTPS, asked through the unmodified azure-mgmt-authorization SDK
(`permissions.list_for_resource_group` / `list_for_resource`, api-version 2022-04-01) by
principals made through Microsoft Graph and given roles through Microsoft.Authorization.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from identities import Identity, assign, create_principal

pytestmark = pytest.mark.integration

LOCATION = "eastus"


@pytest.fixture
def admin(world: Any) -> Identity:
    """The default tenant's admin (Owner of its subscription)."""
    identity: Identity = world.admin()
    return identity


@pytest.fixture
def principals() -> Iterator[list[Identity]]:
    """Principals a test made (closed afterwards)."""
    made: list[Identity] = []
    yield made
    for p in made:
        p.close()


def _entries(permissions: Any) -> list[tuple[list[str], list[str], list[str], list[str]]]:
    return [(p.actions, p.not_actions, p.data_actions, p.not_data_actions) for p in permissions]


def test_reader_sees_its_reader_permissions(
    admin: Identity, principals: list[Identity], helpers: Any
) -> None:
    sub = admin.subscription_id
    rg = helpers.unique("rg-perm")
    body = {
        "location": LOCATION,
        "properties": {"addressSpace": {"addressPrefixes": ["10.42.0.0/16"]}},
    }
    admin.network(sub).virtual_networks.begin_create_or_update(rg, "v", body).result()
    reader = create_principal(admin)
    principals.append(reader)
    assign(admin, f"/subscriptions/{sub}", "Reader", reader)
    api = reader.authorization(sub).permissions
    reader_entry = [(["*/read"], [], [], [])]

    assert _entries(api.list_for_resource_group(rg)) == reader_entry
    # A top-level resource: the SDK sends the empty parentResourcePath as `//`.
    on_vnet = api.list_for_resource(rg, "Microsoft.Network", "", "virtualNetworks", "v")
    assert _entries(on_vnet) == reader_entry
    # A child resource: its parent's type and name as parentResourcePath.
    on_subnet = api.list_for_resource(
        rg, "Microsoft.Network", "virtualNetworks/v", "subnets", "default"
    )
    assert _entries(on_subnet) == reader_entry

    # The Owner who assigned the role sees Owner's.
    owner = _entries(admin.authorization(sub).permissions.list_for_resource_group(rg))
    assert owner == [(["*"], [], [], [])]


def test_a_role_elsewhere_does_not_show_and_no_role_is_refused(
    admin: Identity, principals: list[Identity], helpers: Any
) -> None:
    sub = admin.subscription_id
    mine, theirs = helpers.unique("rg-mine"), helpers.unique("rg-theirs")
    netc = create_principal(admin)
    nobody = create_principal(admin)
    principals.extend([netc, nobody])
    assign(admin, f"/subscriptions/{sub}/resourceGroups/{mine}", "Network Contributor", netc)
    api = netc.authorization(sub).permissions

    (entry,) = api.list_for_resource_group(mine)
    assert "Microsoft.Network/*" in entry.actions
    assert list(api.list_for_resource_group(theirs)) == []

    with pytest.raises(HttpResponseError) as info:
        list(nobody.authorization(sub).permissions.list_for_resource_group(mine))
    assert info.value.status_code == 403
    assert info.value.error is not None and info.value.error.code == "AuthorizationFailed"
