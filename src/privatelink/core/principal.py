"""The authenticated caller, as the core sees it (no tokens, no HTTP)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's tenant, object id and client (application) id."""

    tenant_id: str
    object_id: str
    client_id: str
