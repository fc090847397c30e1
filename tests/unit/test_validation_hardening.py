"""Issue 11: validators match whole values; api-versions are real dates; echoes are bounded."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from fastapi import Body, FastAPI
from starlette.requests import Request

from privatelink.api import errors as api_errors
from privatelink.api.arm import (
    InvalidApiVersion,
    MultipleApiVersions,
    check_api_version,
    valid_api_version,
)
from privatelink.core import errors
from privatelink.core.alias import looks_like_alias
from privatelink.core.authorization import parse_role_definition_id
from privatelink.core.ids import is_guid, valid_name, valid_resource_group
from privatelink.core.private_dns import normalize_record_name, normalize_zone_name
from privatelink.core.resource import normalize_location
from privatelink.dataplane.names import check_prefix
from privatelink.identity.admin import TENANT_NAME

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

GUID = "11111111-1111-4111-8111-111111111111"


@pytest.mark.parametrize(
    "check, value",
    [
        (is_guid, GUID),
        (valid_name, "vnl"),
        (valid_resource_group, "rg1"),
        (lambda v: TENANT_NAME.fullmatch(v) is not None, "contoso"),
    ],
)
def test_trailing_newline_is_refused(check: object, value: str) -> None:
    assert callable(check)
    assert check(value)
    for suffix in ("\n", "\r\n", "\nx", " "):
        assert not check(value + suffix), repr(value + suffix)


def test_location_with_trailing_newline_is_refused() -> None:
    assert normalize_location("East US") == "eastus"
    with pytest.raises(errors.InvalidLocation):
        normalize_location("eastus\n")


def test_other_validators_are_full_matches() -> None:
    with pytest.raises(ValueError):
        check_prefix("pl\n")
    zone = normalize_zone_name("privatelink.blob.core.windows.net")
    with pytest.raises(errors.ArmError):
        normalize_zone_name(zone + "\n")
    with pytest.raises(errors.ArmError):
        normalize_record_name("www\n", zone)
    assert not looks_like_alias(f"a.{GUID}.eastus.azure.privatelinkservice\nx")
    with pytest.raises(errors.ArmError):
        parse_role_definition_id(f"/providers/Microsoft.Authorization/roleDefinitions/{GUID}\n/")


@pytest.mark.parametrize(
    "value, ok",
    [
        ("2026-03-01", True),
        ("2024-02-29", True),
        ("2023-11-01-preview", True),
        ("2020-13-45", False),
        ("2023-02-29", False),
        ("2020-00-10", False),
        ("2020-01-01\n", False),
        ("2020-01-01-preview\n", False),
        ("1999-01-01", False),
        ("2999-01-01", False),
    ],
)
def test_api_version_is_a_served_calendar_date(value: str, ok: bool) -> None:
    assert valid_api_version(value) is ok


def _request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query.encode()})


def test_repeated_api_version_is_refused() -> None:
    assert check_api_version(_request("api-version=2026-03-01")) == "2026-03-01"
    with pytest.raises(MultipleApiVersions) as info:
        check_api_version(_request("api-version=2026-03-01&api-version=2015-06-15"))
    assert info.value.code == "InvalidApiVersionParameter"
    with pytest.raises(InvalidApiVersion):
        check_api_version(_request("api-version=2020-13-45"))


def test_echoed_values_are_truncated() -> None:
    long = "n" * 20_000
    message = errors.InvalidResourceName(name=long).message
    assert "n" * 200 + "..." in message
    assert "n" * 201 not in message
    assert len(message) < 500
    assert "vnl" in errors.InvalidResourceName(name="vnl").message
    # Other fields (e.g. resource ids, which may be long yet valid) are bounded more loosely.
    rid = "/subscriptions/" + "x" * 600
    assert rid in errors.ResourceNotFound(id=rid).message
    assert len(errors.ResourceNotFound(id=rid * 100).message) < errors.MAX_FIELD + 100
    assert len(errors.InvalidResourceId("/" + long).message) < errors.MAX_FIELD + 100


def test_a_body_that_is_not_json_is_invalid_request_content() -> None:
    """The framework's own 400 for an unparsable body carries ARM's code, not `HttpError`."""
    app = FastAPI()
    api_errors.install(app)

    @app.put("/thing")
    def put(body: Any = Body(None)) -> dict[str, Any]:
        return {"body": body}

    with TestClient(app) as client:
        resp = client.put(
            "/thing", content=b'{"location": ', headers={"Content-Type": "application/json"}
        )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "InvalidRequestContent"
