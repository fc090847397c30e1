"""What the API-speed work changed must not change behaviour (docs/benchmarks.md, API speed).

- The token issuer remembers verified tokens: a remembered token still expires on time,
  with the same error; the memory is bounded; a token is remembered per audience class;
  a token that does not verify is never remembered.
- `route_filter.prefilter` answers "no match" only where FastAPI would: matching paths
  still route (a wrong method is still 405), routes added later are found.
- The private link service renderers build JSON by hand: it is the wire models' dump.
- So does the private endpoint renderer.
- The activity recorder's read path only adds `x-ms-correlation-request-id`.
- `serve` freezes what exists at start out of the garbage collector's full collections.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi import APIRouter, FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from privatelink import serving
from privatelink.api import activity_log, arm, route_filter
from privatelink.api import private_endpoint as pe_api
from privatelink.api import private_link_service as api
from privatelink.cli.main import main
from privatelink.core import private_endpoint as pe_core
from privatelink.core import private_link_service as core
from privatelink.identity.credentials import ClientCredentials, ensure_client, ensure_signing_key
from privatelink.identity.tokens import InvalidToken, StaticDirectory, TokenIssuer

with warnings.catch_warnings():
    # Starlette >= 1.x warns at import that it prefers httpx2 over httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

ARM_SCOPE = "https://management.azure.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


# --- the verified-token memory -------------------------------------------------------------


class Clock:
    """A settable clock (Unix seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def creds(tmp_path: Path) -> ClientCredentials:
    return ensure_client(tmp_path / "data")


def _issuer(
    tmp_path: Path, creds: ClientCredentials, clock: Clock, size: int = 1024
) -> TokenIssuer:
    return TokenIssuer(
        ensure_signing_key(tmp_path / "data"),
        StaticDirectory([creds]),
        clock=clock,
        verified_cache_size=size,
    )


def _token(issuer: TokenIssuer, creds: ClientCredentials, scope: str = ARM_SCOPE) -> str:
    got = issuer.issue(creds.tenant_id, creds.client_id, creds.client_secret, scope)
    return str(got["access_token"])


def test_a_remembered_token_still_expires_with_the_same_error(
    tmp_path: Path, creds: ClientCredentials
) -> None:
    clock = Clock(1_900_000_000)
    issuer = _issuer(tmp_path, creds, clock)
    token = _token(issuer, creds)
    assert issuer.verify(token).object_id == creds.object_id
    assert issuer.verified_tokens == 1
    assert issuer.verify(token).object_id == creds.object_id  # from memory
    clock.now += 3600 + 61  # past exp and the clock skew
    with pytest.raises(InvalidToken) as remembered:
        issuer.verify(token)
    assert issuer.verified_tokens == 0  # an expired token is forgotten
    with pytest.raises(InvalidToken) as fresh:
        _issuer(tmp_path, creds, clock).verify(token)  # never seen: the full check
    assert remembered.value.reason == fresh.value.reason == "expired"
    assert remembered.value.message == fresh.value.message


def test_the_memory_is_bounded_oldest_first(tmp_path: Path, creds: ClientCredentials) -> None:
    clock = Clock(1_900_000_000)
    issuer = _issuer(tmp_path, creds, clock, size=2)
    tokens = [_token(issuer, creds) for _ in range(3)]  # distinct (`uti`)
    assert len(set(tokens)) == 3
    for token in tokens:
        issuer.verify(token)
    assert issuer.verified_tokens == 2
    # The first was dropped; it still verifies (in full) and is remembered again.
    assert issuer.verify(tokens[0]).object_id == creds.object_id
    assert issuer.verified_tokens == 2


def test_size_zero_remembers_nothing(tmp_path: Path, creds: ClientCredentials) -> None:
    issuer = _issuer(tmp_path, creds, Clock(1_900_000_000), size=0)
    token = _token(issuer, creds)
    issuer.verify(token)
    issuer.verify(token)
    assert issuer.verified_tokens == 0


def test_remembered_per_audience_class(tmp_path: Path, creds: ClientCredentials) -> None:
    issuer = _issuer(tmp_path, creds, Clock(1_900_000_000))
    arm_token = _token(issuer, creds)
    issuer.verify(arm_token, "arm")
    with pytest.raises(InvalidToken) as info:
        issuer.verify(arm_token, "graph")  # remembered for ARM only
    assert info.value.reason == "wrong_audience"
    graph_token = _token(issuer, creds, GRAPH_SCOPE)
    issuer.verify(graph_token, "graph")
    with pytest.raises(InvalidToken):
        issuer.verify(graph_token, "arm")


def test_tokens_that_fail_are_not_remembered(tmp_path: Path, creds: ClientCredentials) -> None:
    clock = Clock(1_900_000_000)
    issuer = _issuer(tmp_path, creds, clock)
    token = _token(issuer, creds)
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    for _ in range(2):
        with pytest.raises(InvalidToken):
            issuer.verify(forged)
    early = _issuer(tmp_path, creds, Clock(clock.now + 3600))
    future = _token(early, creds)  # nbf an hour ahead of `issuer`'s clock
    with pytest.raises(InvalidToken) as info:
        issuer.verify(future)
    assert info.value.reason == "not_yet_valid"
    assert issuer.verified_tokens == 0
    clock.now += 3600
    assert issuer.verify(future).object_id == creds.object_id  # valid once its time comes


# --- the route filter ----------------------------------------------------------------------


def _router(seen: list[str]) -> APIRouter:
    router = APIRouter()

    @router.get("/things/{name}")
    def get_thing(name: str) -> dict[str, str]:
        seen.append(name)
        return {"name": name}

    @router.put("/things/{name}/parts/{part}")
    def put_part(name: str, part: str) -> dict[str, str]:
        return {"name": name, "part": part}

    return router


def test_prefilter_routes_as_fastapi_does() -> None:
    seen: list[str] = []
    router = route_filter.prefilter(_router(seen))
    assert route_filter.prefilter(router) is router  # once only, however often applied
    other = APIRouter()

    @other.get("/others/{name}")
    def get_other(name: str) -> dict[str, str]:
        return {"other": name}

    app = FastAPI()
    app.include_router(router)
    app.include_router(route_filter.prefilter(other))
    calls = 0
    original = router.matches

    def counting(scope: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(scope)

    router.matches = counting  # type: ignore[method-assign]
    with TestClient(app) as client:
        assert client.get("/things/a").json() == {"name": "a"}
        assert client.put("/things/a/parts/b").json() == {"name": "a", "part": "b"}
        assert client.get("/others/x").json() == {"other": "x"}  # past the filtered router
        assert client.get("/things/a/parts/b").status_code == 405  # path matches: FastAPI's
        assert client.get("/nothing/here").status_code == 404
        assert client.get("/things").status_code == 404
        # FastAPI still asks the router (through the filter): if it stopped asking, the
        # filter would be dead code and this test says so.
        assert calls >= 6

        @router.get("/late/{name}")
        def late(name: str) -> dict[str, str]:
            return {"late": name}

        assert client.get("/late/z").json() == {"late": "z"}  # the filter was rebuilt
    assert seen == ["a"]


def test_path_templates_are_exact() -> None:
    templates = route_filter.path_templates(_router([]).routes)
    assert templates is not None
    assert route_filter.fits(templates, "/things/a")
    assert route_filter.fits(templates, "/things/a/parts/b")
    assert not route_filter.fits(templates, "/things/a/")
    assert not route_filter.fits(templates, "/things/a/b")
    assert not route_filter.fits(templates, "/thing/a")
    assert not route_filter.fits(templates, "/things/")
    assert not route_filter.fits(templates, "things/a")


def test_converters_and_partial_segments_are_left_to_fastapi() -> None:
    router = APIRouter()

    @router.get("/files/{rest:path}")
    def files(rest: str) -> str:
        return rest

    assert route_filter.path_templates(router.routes) is None
    other = APIRouter()

    @other.get("/v{version}/x")
    def versioned(version: str) -> str:
        return version

    assert route_filter.path_templates(other.routes) is None


_SEGMENTS = st.sampled_from(["things", "parts", "a", "b", "", "x\n", "Things", "p.q", "%2F"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_SEGMENTS, min_size=0, max_size=5), st.booleans())
def test_fits_agrees_with_the_routes_expressions(segments: list[str], newline: bool) -> None:
    """The filter says "no" only where no route's own expression matches."""
    routes = _router([]).routes
    routes += _router_wide().routes
    templates = route_filter.path_templates(routes)
    assert templates is not None
    path = "/" + "/".join(segments) + ("\n" if newline else "")
    matched = any(r.path_regex.match(path) for r in routes if isinstance(r, Route))
    if matched:
        assert route_filter.fits(templates, path)
    elif not path.endswith("\n"):
        assert not route_filter.fits(templates, path)


def _router_wide() -> APIRouter:
    router = APIRouter()

    @router.get("/{a}/parts/{b}")
    def two(a: str, b: str) -> str:
        return a + b

    @router.get("/things")
    def bare() -> str:
        return ""

    return router


# --- the private link service renderers ----------------------------------------------------


def _reference_connection(
    service: core.PrivateLinkService, conn: core.PrivateEndpointConnection
) -> dict[str, Any]:
    """The renderer as it was: the wire models, dumped."""
    return arm.dump(
        api.ConnectionWire(
            id=service.connection_id(conn.name),
            name=conn.name,
            type=api.CONNECTION_TYPE,
            etag=conn.etag,
            properties=api.ConnectionProperties(
                private_endpoint=arm.SubResource(id=conn.private_endpoint_id),
                private_link_service_connection_state=api.ConnectionState(
                    status=conn.status,
                    description=conn.description,
                    actions_required=conn.actions_required,
                ),
                provisioning_state=conn.provisioning_state,
                link_identifier=conn.link_identifier,
                private_endpoint_location=conn.private_endpoint_location,
            ),
        )
    )


def _reference(
    service: core.PrivateLinkService, connections: list[core.PrivateEndpointConnection]
) -> dict[str, Any]:
    props = api.PrivateLinkServiceProperties(
        load_balancer_frontend_ip_configurations=[
            arm.SubResource(id=f) for f in service.frontend_ids
        ],
        ip_configurations=[
            api.NatIpConfigurationWire(
                id=f"{service.id}/ipConfigurations/{c.name}",
                name=c.name,
                type=f"{api.TYPE}/ipConfigurations",
                etag=service.etag,
                properties=api.NatIpConfigurationProperties(
                    **arm.ip_configuration_wire(c, service.provisioning_state),
                    primary=bool(c.primary),
                ),
            )
            for c in service.ip_configurations
        ],
        visibility=api.SubscriptionList(subscriptions=list(service.visibility)),
        auto_approval=api.SubscriptionList(subscriptions=list(service.auto_approval)),
        fqdns=list(service.fqdns),
        enable_proxy_protocol=service.enable_proxy_protocol,
        alias=service.alias,
        network_interfaces=[arm.SubResource(id=service.nic_id)],
        provisioning_state=service.provisioning_state,
        destination_ip_address=service.destination_ip_address or None,
        access_mode=service.access_mode or "Default",
    )
    body = arm.dump(
        api.PrivateLinkServiceWire(
            id=service.id,
            name=service.name,
            type=api.TYPE,
            location=service.location,
            tags=service.tags,
            etag=service.etag,
            properties=props,
        )
    )
    body["properties"]["privateEndpointConnections"] = [
        _reference_connection(service, c) for c in connections
    ]
    return body


SUB = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers"
PLS_ID = f"{SUB}/Microsoft.Network/privateLinkServices/pls"
SUBNET = f"{SUB}/Microsoft.Network/virtualNetworks/v/subnets/s"


class _Connections:
    """The one read `render` makes: a service's connections."""

    def __init__(self, connections: list[core.PrivateEndpointConnection]) -> None:
        self.connections = connections

    def referrers(
        self, target: str, kind: str, offset: int = 0, limit: int | None = None
    ) -> list[core.PrivateEndpointConnection]:
        assert (target, kind, offset, limit) == (PLS_ID.lower(), "connection", 0, None)
        return self.connections


def _services() -> list[tuple[core.PrivateLinkService, list[core.PrivateEndpointConnection]]]:
    bare = core.PrivateLinkService(id=PLS_ID, name="pls", location="eastus")
    full = core.PrivateLinkService(
        id=PLS_ID,
        name="pls",
        location="westeurope",
        tags={"env": "prod", "ünï": "cödé"},
        etag='W/"1f2e"',
        provisioning_state="Updating",
        frontend_ids=(f"{SUB}/Microsoft.Network/loadBalancers/lb/frontendIPConfigurations/fe",),
        ip_configurations=(
            core.NatIpConfiguration("a", SUBNET, primary=True),
            core.NatIpConfiguration("b", SUBNET, private_ip="10.0.1.9", allocation="Static"),
        ),
        visibility=("*",),
        auto_approval=("00000000-0000-0000-0000-000000000002",),
        fqdns=("a.example", "b.example"),
        enable_proxy_protocol=True,
        alias="pls.guid.eastus.azure.privatelinkservice",
        nic_id=f"{SUB}/Microsoft.Network/networkInterfaces/pls.nic.x",
    )
    connections = [
        core.PrivateEndpointConnection(
            id=full.connection_id("pe1.guid"),
            name="pe1.guid",
            location="westeurope",
            private_endpoint_id=f"{SUB}/Microsoft.Network/privateEndpoints/pe1",
            private_endpoint_location="eastus",
            link_identifier="536870913",
        ),
        core.PrivateEndpointConnection(
            id=full.connection_id("pe2.guid"),
            name="pe2.guid",
            location="westeurope",
            etag='W/"c2"',
            private_endpoint_id=f"{SUB}/Microsoft.Network/privateEndpoints/pe2",
            private_endpoint_location="westus",
            link_identifier="",
            status="Approved",
            description="approved by bench",
            actions_required="Recreate",
            provisioning_state="Updating",
        ),
    ]
    direct = replace(full, frontend_ids=(), destination_ip_address="10.0.2.9")
    return [(bare, []), (full, connections), (direct, connections)]


@pytest.mark.parametrize(
    ("service", "connections"), _services(), ids=["bare", "full", "direct-connect"]
)
def test_render_is_the_wire_models_dump(
    service: core.PrivateLinkService, connections: list[core.PrivateEndpointConnection]
) -> None:
    got = api.render(_Connections(connections), service)  # type: ignore[arg-type]
    # Same keys, same order, same values: the same bytes on the wire.
    assert json.dumps(got) == json.dumps(_reference(service, connections))
    for conn in connections:
        assert json.dumps(api.render_connection(service, conn)) == json.dumps(
            _reference_connection(service, conn)
        )


# --- the private endpoint renderer -------------------------------------------------------


def _reference_endpoint(endpoint: pe_core.PrivateEndpoint) -> dict[str, Any]:
    """The renderer as it was: the wire models, dumped."""
    kind = (
        "manualPrivateLinkServiceConnections"
        if endpoint.manual
        else "privateLinkServiceConnections"
    )
    connections = [
        pe_api.LinkConnectionWire(
            id=f"{endpoint.id}/{kind}/{c.name}",
            name=c.name,
            type=f"{pe_api.TYPE}/privateLinkServiceConnections",
            etag=endpoint.etag,
            properties=pe_api.LinkConnectionProperties(
                private_link_service_id=c.target,
                group_ids=list(c.group_ids),
                request_message=c.request_message,
                private_link_service_connection_state=api.ConnectionState(
                    status=c.status, description=c.description, actions_required=c.actions_required
                ),
                provisioning_state=endpoint.provisioning_state,
            ),
        )
        for c in endpoint.connections
    ]
    props = pe_api.PrivateEndpointProperties(
        subnet=arm.SubResource(id=endpoint.subnet_id),
        network_interfaces=[arm.SubResource(id=endpoint.nic_id)],
        custom_dns_configs=[
            pe_api.DnsConfigWire(fqdn=d.fqdn, ip_addresses=list(d.ip_addresses))
            for d in endpoint.custom_dns_configs
        ],
        custom_network_interface_name=endpoint.custom_nic_name,
        ip_configurations=[
            pe_api.EndpointIpConfigurationWire(
                name=c.name,
                type=pe_api.IP_CONFIGURATION_TYPE,
                etag=endpoint.etag,
                properties=pe_api.EndpointIpConfigurationProperties(
                    group_id=c.group_id,
                    member_name=c.member_name,
                    private_ip_address=c.private_ip,
                ),
            )
            for c in endpoint.ip_configurations
        ],
        application_security_groups=[
            arm.SubResource(id=a) for a in endpoint.application_security_groups
        ],
        provisioning_state=endpoint.provisioning_state,
    )
    body = arm.dump(
        pe_api.PrivateEndpointWire(
            id=endpoint.id,
            name=endpoint.name,
            type=pe_api.TYPE,
            location=endpoint.location,
            tags=endpoint.tags,
            etag=endpoint.etag,
            properties=props,
        )
    )
    rendered = [arm.dump(c) for c in connections]
    body["properties"]["privateLinkServiceConnections"] = [] if endpoint.manual else rendered
    body["properties"]["manualPrivateLinkServiceConnections"] = rendered if endpoint.manual else []
    return body


PE_ID = f"{SUB}/Microsoft.Network/privateEndpoints/pe"


def _endpoints() -> list[pe_core.PrivateEndpoint]:
    bare = pe_core.PrivateEndpoint(id=PE_ID, name="pe", location="eastus")
    auto = pe_core.PrivateEndpoint(
        id=PE_ID,
        name="pe",
        location="eastus",
        tags={"env": "prod", "ünï": "cödé"},
        etag='W/"0a1b"',
        subnet_id=SUBNET,
        connections=(
            pe_core.PrivateLinkServiceConnection(
                name="to-pls",
                target="pls.guid.eastus.azure.privatelinkservice",
                private_link_service_id=PLS_ID,
                request_message=None,
                status="Approved",
                description="Auto-Approved",
                remote_name="pe.guid",
            ),
        ),
        nic_id=f"{SUB}/Microsoft.Network/networkInterfaces/pe.nic.guid",
        custom_dns_configs=(
            pe_core.DnsConfig("a.example", ("10.0.0.4",)),
            pe_core.DnsConfig("b.example", ("10.0.0.4", "fd00::4")),
            pe_core.DnsConfig("c.example", ()),
        ),
    )
    manual = pe_core.PrivateEndpoint(
        id=PE_ID,
        name="pe",
        location="westeurope",
        tags={},
        provisioning_state="Updating",
        subnet_id=SUBNET,
        connections=(
            pe_core.PrivateLinkServiceConnection(
                name="manual",
                target=PLS_ID,
                request_message="",
                group_ids=("a", "b"),
                actions_required="Recreate",
            ),
            pe_core.PrivateLinkServiceConnection(
                name="second", target=PLS_ID, request_message="please ✓"
            ),
        ),
        manual=True,
        nic_id=f"{SUB}/Microsoft.Network/networkInterfaces/mynic",
        custom_nic_name="mynic",
        static_ip="10.0.0.9",
        ip_configurations=(pe_core.EndpointIpConfiguration("ipc", "10.0.0.9"),),
        application_security_groups=(f"{SUB}/Microsoft.Network/applicationSecurityGroups/a",),
    )
    untagged = pe_core.PrivateEndpoint(
        id=PE_ID,
        name="pe",
        location="eastus",
        tags=None,  # type: ignore[arg-type]
        provisioning_state="Failed",
        manual=True,
        custom_nic_name="",
    )
    return [bare, auto, manual, untagged]


def _same_as_reference(endpoint: pe_core.PrivateEndpoint) -> None:
    got = pe_api.render(None, endpoint)  # type: ignore[arg-type]
    # Same keys, same order, same values: the same bytes on the wire.
    assert json.dumps(got) == json.dumps(_reference_endpoint(endpoint))


@pytest.mark.parametrize("endpoint", _endpoints(), ids=["bare", "auto", "manual", "untagged"])
def test_endpoint_render_is_the_wire_models_dump(endpoint: pe_core.PrivateEndpoint) -> None:
    _same_as_reference(endpoint)


_TEXT = st.text(max_size=12)
_STATES = st.sampled_from(["Succeeded", "Updating", "Deleting", "Failed"]) | _TEXT
_CONNECTIONS = st.builds(
    pe_core.PrivateLinkServiceConnection,
    name=_TEXT,
    target=_TEXT,
    private_link_service_id=_TEXT,
    request_message=st.none() | _TEXT,
    group_ids=st.lists(_TEXT, max_size=3).map(tuple),
    status=st.sampled_from(["Pending", "Approved", "Rejected", "Disconnected"]) | _TEXT,
    description=_TEXT,
    actions_required=_TEXT,
    remote_name=_TEXT,
)
_DNS = st.builds(pe_core.DnsConfig, fqdn=_TEXT, ip_addresses=st.lists(_TEXT, max_size=3).map(tuple))
_ENDPOINTS = st.builds(
    pe_core.PrivateEndpoint,
    id=_TEXT,
    name=_TEXT,
    location=_TEXT,
    tags=st.none() | st.dictionaries(_TEXT, _TEXT, max_size=4),
    etag=_TEXT,
    provisioning_state=_STATES,
    subnet_id=_TEXT,
    connections=st.lists(_CONNECTIONS, max_size=3).map(tuple),
    manual=st.booleans(),
    nic_id=_TEXT,
    custom_nic_name=st.none() | _TEXT,
    static_ip=st.none() | _TEXT,
    ip_configurations=st.lists(
        st.builds(
            pe_core.EndpointIpConfiguration,
            name=_TEXT,
            private_ip=st.none() | _TEXT,
            group_id=_TEXT,
            member_name=_TEXT,
        ),
        max_size=2,
    ).map(tuple),
    application_security_groups=st.lists(_TEXT, max_size=3).map(tuple),
    custom_dns_configs=st.lists(_DNS, max_size=3).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(_ENDPOINTS)
def test_endpoint_render_agrees_with_the_reference(endpoint: pe_core.PrivateEndpoint) -> None:
    _same_as_reference(endpoint)


# --- the activity recorder's read path --------------------------------------------------


def test_reads_get_the_correlation_header_and_nothing_else() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        wrapped = activity_log._with_correlation(send, "corr-1")
        await wrapped({"type": "http.response.start", "status": 200, "headers": []})
        await wrapped({"type": "http.response.body", "body": b"{}"})
        own = [(b"x-ms-correlation-request-id", b"theirs")]
        await wrapped({"type": "http.response.start", "status": 200, "headers": own})

    asyncio.run(run())
    assert sent[0]["headers"] == [(b"x-ms-correlation-request-id", b"corr-1")]
    assert sent[1] == {"type": "http.response.body", "body": b"{}"}
    assert sent[2]["headers"] == [(b"x-ms-correlation-request-id", b"theirs")]  # kept


# --- serve's settings ----------------------------------------------------------------------


def test_serve_freezes_the_startup_heap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))

    def serve(config: Any, drain_timeout: float) -> bool:
        calls.append("serve")
        return True

    monkeypatch.setattr(serving, "serve", serve)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["serve", "--data-dir", str(tmp_path / "d"), "--port", str(port), "--dataplane", "off"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert calls == ["freeze", "serve"]
