"""The authenticated caller, as the core sees it (no tokens, no HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: Called with (subscription id, tenant id, owner's object id) when a subscription comes
#: to exist (first use by a tenant admin, the admin API, the server's default one); the
#: server makes the owner its `Owner` there.
SubscriptionCreated = Callable[[str, str, str], object]


def no_owner(_subscription: str, _tenant: str, _owner: str) -> None:
    """The default `SubscriptionCreated`: nothing to record."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's tenant, object id and client (application) id."""

    tenant_id: str
    object_id: str
    client_id: str
