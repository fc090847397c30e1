"""On-premises sites without a server process: the rules (core/site.py), the store's
sites and their hold on the public range, the admin routes in-process (api/site.py) and
the `privatelink site` commands over a mocked transport (cli/site.py).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from pl_world import REGION, S1, World, arm_id
from sqlalchemy import select

from privatelink.api import errors as api_errors
from privatelink.api.site import build_site_router
from privatelink.cli import site as site_cli
from privatelink.cli.az import ServerCredentials
from privatelink.cli.main import main
from privatelink.core import errors
from privatelink.core import public_ip_address as pipm
from privatelink.core import site as sitem
from privatelink.core.limits import Limits
from privatelink.identity.admin import AdminGate
from privatelink.identity.credentials import ensure_client, ensure_signing_key
from privatelink.identity.tokens import TokenIssuer, server_audiences
from privatelink.server import ensure_default_tenant
from privatelink.store.directory import SqlDirectory
from privatelink.store.sql import SqlRepository, ips, sites

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

LIMITS = Limits()  # public range 198.18.0.0/15
FIRST_HOST = "198.18.0.1"
LAST_HOST = "198.19.255.252"  # the last two hosts (.253, .254) are the data plane's
KEY = "s3cret!Key"
BASE = "https://127.0.0.1:9443"
ARM_SCOPE = "https://management.azure.com/.default"


def make_site(
    name: str = "branch1",
    space: tuple[str, ...] = ("192.168.0.0/16",),
    gateway: str = FIRST_HOST,
    key: str = KEY,
) -> sitem.Site:
    return sitem.validate(name, list(space), gateway, key, LIMITS, created="2026-01-01T00:00:00Z")


def refused(error: type[errors.ArmError], fn: Callable[[], object]) -> errors.ArmError:
    with pytest.raises(errors.ArmError) as info:
        fn()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    return info.value


# --- the rules --------------------------------------------------------------------------------


def test_a_valid_site_is_canonical() -> None:
    site = sitem.validate(
        "Branch-1_a",
        [" 10.1.0.0/16", "192.168.0.0/24", "10.1.0.0/16"],
        " 198.18.0.7 ",
        KEY,
        LIMITS,
        created="t",
    )
    assert site == sitem.Site(
        name="Branch-1_a",
        address_space=("10.1.0.0/16", "192.168.0.0/24"),  # a repeated prefix counts once
        gateway_ip="198.18.0.7",
        shared_key=KEY,
        created="t",
    )
    assert site.key == "branch-1_a"


@pytest.mark.parametrize("name", ["a", "9", "A-b_c", "a" * 40, "a-", "a_"])
def test_good_names(name: str) -> None:
    assert make_site(name=name).name == name


@pytest.mark.parametrize(
    "name", ["", "-a", "_a", "a" * 41, "a.b", "a b", "a/b", "ä", "a\x00", None, 5]
)
def test_bad_names(name: Any) -> None:
    exc = refused(errors.InvalidSiteName, lambda: make_site(name=name))
    assert exc.status == 400 and exc.code == "InvalidSiteName"


@pytest.mark.parametrize(
    ("space", "why"),
    [
        ([], "give 1 to 16 prefixes; got 0"),
        ("192.168.0.0/16", "give a list"),
        (None, "give a list"),
        ([5], "every prefix must be a string"),
        (["192.168.0.1/16"], "is not an IPv4 prefix"),  # host bits
        (["192.168.0.0"], "is not an IPv4 prefix"),  # no length
        (["fd00::/8"], "is not an IPv4 prefix"),
        (["nonsense"], "is not an IPv4 prefix"),
        (["198.18.0.0/24"], "overlaps the public range 198.18.0.0/15"),
        (["0.0.0.0/0"], "overlaps the public range"),
        (["198.0.0.0/8"], "overlaps the public range"),
        (["10.0.0.0/8", "10.1.0.0/16"], "10.1.0.0/16 overlaps 10.0.0.0/8"),
        (["169.254.1.0/24"], "overlaps 169.254.0.0/16"),
        (["127.0.0.0/8"], "overlaps 127.0.0.0/8"),
        (["224.0.0.0/24"], "overlaps 224.0.0.0/4"),
        (["255.255.255.255/32"], "overlaps 240.0.0.0/4"),
        (["0.0.0.0/8"], "overlaps 0.0.0.0/8"),
        ([f"10.{i}.0.0/16" for i in range(17)], "give 1 to 16 prefixes; got 17"),
    ],
)
def test_bad_address_spaces(space: Any, why: str) -> None:
    exc = refused(
        errors.InvalidSiteAddressSpace,
        lambda: sitem.validate("s", space, FIRST_HOST, KEY, LIMITS),
    )
    assert exc.code == "InvalidSiteAddressSpace" and exc.status == 400
    assert why in exc.message


def test_sixteen_disjoint_prefixes_are_fine() -> None:
    space = tuple(f"10.{i}.0.0/16" for i in range(16))
    assert make_site(space=space).address_space == space


@pytest.mark.parametrize("gateway", [FIRST_HOST, "198.18.200.9", "198.19.0.0", LAST_HOST])
def test_good_gateway_ips(gateway: str) -> None:
    assert make_site(gateway=gateway).gateway_ip == gateway


@pytest.mark.parametrize("gateway", ["", "x", "198.18.0", "::1", "01.2.3.4", "1.2.3.4/32", None])
def test_gateway_ip_must_be_ipv4(gateway: Any) -> None:
    exc = refused(errors.InvalidSiteGatewayIp, lambda: make_site(gateway=gateway))
    assert exc.code == "InvalidSiteGatewayIp" and exc.status == 400


@pytest.mark.parametrize(
    "gateway",
    [
        "198.18.0.0",  # the network address
        "198.19.255.253",  # the data plane's "internet" side
        "198.19.255.254",
        "198.19.255.255",  # broadcast
        "198.17.255.255",
        "10.0.0.1",
    ],
)
def test_gateway_ip_must_be_an_allocatable_public_address(gateway: str) -> None:
    exc = refused(errors.SiteGatewayIpOutsidePublicRange, lambda: make_site(gateway=gateway))
    assert exc.code == "SiteGatewayIpOutsidePublicRange" and exc.status == 400
    assert "198.18.0.1 to 198.19.255.252" in exc.message


def test_gateway_ip_follows_the_configured_range() -> None:
    limits = Limits(public_ip_range="203.0.113.0/24")
    site = sitem.validate("s", ["10.0.0.0/8"], "203.0.113.252", KEY, limits)
    assert site.gateway_ip == "203.0.113.252"
    refused(
        errors.SiteGatewayIpOutsidePublicRange,
        lambda: sitem.validate("s", ["10.0.0.0/8"], "203.0.113.253", KEY, limits),
    )
    refused(
        errors.SiteGatewayIpOutsidePublicRange,
        lambda: sitem.validate("s", ["10.0.0.0/8"], FIRST_HOST, KEY, limits),
    )
    # 198.18.0.0/15 is an ordinary network once it is not the public range.
    assert sitem.validate("s", ["198.18.0.0/16"], "203.0.113.1", KEY, limits)


PRINTABLE_ALLOWED = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "-~")


@pytest.mark.parametrize("key", ["a", "a" * 128, PRINTABLE_ALLOWED, "Abc123!@#$%^&*()_+={}[]|\\"])
def test_good_shared_keys(key: str) -> None:
    assert make_site(key=key).shared_key == key


@pytest.mark.parametrize(
    "key", ["", "a" * 129, "a b", "a-b", "a~b", "tab\there", "é", "a\nb", "\x7f", None, 12]
)
def test_bad_shared_keys(key: Any) -> None:
    exc = refused(errors.InvalidSharedKey, lambda: make_site(key=key))
    assert exc.code == "InvalidSharedKey" and exc.status == 400
    assert "except space, hyphen (-) and tilde (~)" in exc.message
    if isinstance(key, str) and key:
        assert key not in exc.message  # a secret is never echoed


def test_rules_are_checked_in_order() -> None:
    # A bad name wins over everything after it, and so on down the list.
    refused(errors.InvalidSiteName, lambda: sitem.validate("-", [], "x", "", LIMITS))
    refused(errors.InvalidSiteAddressSpace, lambda: sitem.validate("s", [], "x", "", LIMITS))
    refused(
        errors.InvalidSiteGatewayIp, lambda: sitem.validate("s", ["10.0.0.0/8"], "x", "", LIMITS)
    )


# --- the store --------------------------------------------------------------------------------


def _site_rows(repo: SqlRepository) -> list[tuple[Any, ...]]:
    with repo.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(sites)).all())


def _range_rows(repo: SqlRepository) -> list[tuple[Any, ...]]:
    with repo.engine.connect() as conn:
        return sorted(
            (r.ip, r.num, r.owner, r.owner_id)
            for r in conn.execute(select(ips).where(ips.c.subnet == pipm.RANGE_KEY)).all()
        )


def test_put_get_list_delete(world: World) -> None:
    repo = world.repo
    assert repo.list_sites() == [] and repo.sites_version() == 0
    b = make_site("Branch", gateway="198.18.0.9")
    a = make_site("alpha", space=("10.8.0.0/16", "172.16.0.0/12"), gateway="198.18.0.3")
    repo.put_site(b)
    repo.put_site(a)
    assert repo.get_site("branch") == b and repo.get_site("BRANCH") == b
    assert repo.get_site("alpha") == a
    assert repo.get_site("nope") is None and repo.get_site("a\x00") is None
    assert repo.list_sites() == [b, a]  # creation order, not name order
    assert repo.sites_version() == 2
    assert _range_rows(repo) == [
        ("198.18.0.3", 0xC6120003, "site:alpha", "site alpha"),
        ("198.18.0.9", 0xC6120009, "site:branch", "site Branch"),
    ]
    assert repo.delete_site("BRANCH") is True
    assert repo.get_site("Branch") is None and repo.list_sites() == [a]
    assert _range_rows(repo) == [("198.18.0.3", 0xC6120003, "site:alpha", "site alpha")]
    assert repo.sites_version() == 3
    assert repo.delete_site("branch") is False and repo.delete_site("a\x00") is False
    assert repo.sites_version() == 3  # nothing deleted, nothing changed


def test_a_taken_name_writes_nothing(world: World) -> None:
    world.repo.put_site(make_site("Branch", gateway="198.18.0.5"))
    before = world.snapshot(), _site_rows(world.repo)
    exc = refused(
        errors.SiteAlreadyExists,
        lambda: world.repo.put_site(make_site("BRANCH", gateway="198.18.0.6")),
    )
    assert (exc.status, exc.code) == (409, "SiteAlreadyExists")
    assert (world.snapshot(), _site_rows(world.repo)) == before  # not even the ips row


def test_a_held_gateway_ip_writes_nothing(world: World) -> None:
    world.repo.put_site(make_site("one", gateway="198.18.0.5"))
    before = world.snapshot(), _site_rows(world.repo)
    exc = refused(
        errors.SiteGatewayIpInUse,
        lambda: world.repo.put_site(make_site("two", gateway="198.18.0.5")),
    )
    assert (exc.status, exc.code) == (409, "SiteGatewayIpInUse")
    assert "site one" in exc.message
    assert (world.snapshot(), _site_rows(world.repo)) == before


def _create_pip(world: World, name: str) -> pipm.PublicIPAddress:
    pip_id = arm_id(S1, "publicIPAddresses", name)
    world.run(pipm.create_or_update, pipm.PublicIPAddress(id=pip_id, name=name, location=REGION))
    return world.typed(pip_id, pipm.PublicIPAddress)


def test_a_public_ip_address_cannot_be_a_site_gateway(world: World) -> None:
    pip = _create_pip(world, "pip1")
    assert pip.ip_address == FIRST_HOST
    before = world.snapshot(), _site_rows(world.repo)
    exc = refused(errors.SiteGatewayIpInUse, lambda: world.repo.put_site(make_site()))
    assert pip.id in exc.message
    assert (world.snapshot(), _site_rows(world.repo)) == before


def test_public_ip_allocation_skips_site_addresses(world: World) -> None:
    world.repo.put_site(make_site("s1", gateway=FIRST_HOST))
    world.repo.put_site(make_site("s3", gateway="198.18.0.3"))
    got = [_create_pip(world, f"pip{i}").ip_address for i in range(3)]
    assert got == ["198.18.0.2", "198.18.0.4", "198.18.0.5"]
    world.repo.delete_site("s1")  # its address is free again
    assert _create_pip(world, "pip9").ip_address == FIRST_HOST


def test_an_older_database_gets_the_sites_table(tmp_path: Path) -> None:
    repo = SqlRepository.sqlite_in(tmp_path)
    with repo.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE sites")  # a database from before sites
    repo.dispose()
    again = SqlRepository.sqlite_in(tmp_path)
    try:
        assert again.list_sites() == []
        again.put_site(make_site())
        assert again.get_site("branch1") == make_site()
    finally:
        again.dispose()


# --- the admin routes, in-process --------------------------------------------------------


class Api:
    """The site router in a TestClient, with the default admin's token."""

    def __init__(
        self, http: TestClient, token: str, issuer: TokenIssuer, repo: SqlRepository
    ) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}
        self.issuer = issuer
        self.repo = repo
        self.pokes = 0

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        kw.setdefault("headers", self.headers)
        return self.http.request(method, f"/privatelink/admin{path}", json=body, **kw)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    repo = SqlRepository.sqlite_in(tmp_path)
    directory = SqlDirectory(repo.engine)
    client = ensure_client(tmp_path / "data")
    ensure_default_tenant(directory, client)
    arm, graph = server_audiences("127.0.0.1", 9443)
    issuer = TokenIssuer(
        ensure_signing_key(tmp_path / "data"), directory, arm_audiences=arm, graph_audiences=graph
    )
    app = FastAPI()
    api_errors.install(app)
    holder: list[Api] = []

    def poke() -> None:
        holder[0].pokes += 1

    gate = AdminGate(issuer, directory, client.tenant_id)
    app.include_router(build_site_router(gate, repo, LIMITS, on_change=poke))
    token = issuer.issue(client.tenant_id, client.client_id, client.client_secret, ARM_SCOPE)
    with TestClient(app, base_url=BASE) as http:
        holder.append(Api(http, str(token["access_token"]), issuer, repo))
        yield holder[0]
    repo.dispose()


BODY = {"addressSpace": ["192.168.0.0/16"], "gatewayIp": "198.18.0.10", "sharedKey": KEY}


def test_api_create_show_list_delete(api: Api) -> None:
    reply = api.call("PUT", "/sites/Branch1", BODY)
    assert reply.status_code == 201, reply.text
    site = reply.json()
    assert sorted(site) == ["addressSpace", "created", "gatewayIp", "name"]  # no key
    assert site["name"] == "Branch1" and site["addressSpace"] == ["192.168.0.0/16"]
    assert site["gatewayIp"] == "198.18.0.10" and site["created"].endswith("Z")
    assert KEY not in reply.text
    assert api.repo.get_site("branch1") is not None
    assert api.repo.get_site("branch1").shared_key == KEY  # type: ignore[union-attr]
    assert api.pokes == 1
    assert api.call("GET", "/sites/BRANCH1").json() == site
    listed = api.call("GET", "/sites")
    assert listed.status_code == 200 and listed.json() == {"value": [site]}
    reply = api.call("DELETE", "/sites/branch1")
    assert (reply.status_code, reply.content) == (204, b"")
    assert api.pokes == 2
    assert api.call("GET", "/sites").json() == {"value": []}


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/sites/nope", 404, "SiteNotFound"),
        ("DELETE", "/sites/nope", 404, "SiteNotFound"),
        ("PUT", "/sites/taken", 409, "SiteAlreadyExists"),
        ("PUT", "/sites/TAKEN", 409, "SiteAlreadyExists"),
    ],
)
def test_api_not_found_and_conflict(
    api: Api, method: str, path: str, status: int, code: str
) -> None:
    assert api.call("PUT", "/sites/taken", dict(BODY, gatewayIp="198.18.0.20")).status_code == 201
    pokes = api.pokes
    reply = api.call(method, path, dict(BODY, gatewayIp="198.18.0.21"))
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == code
    assert api.pokes == pokes  # nothing changed: the data plane is left alone


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/sites/-bad", BODY, "InvalidSiteName"),
        ("/sites/" + "a" * 41, BODY, "InvalidSiteName"),
        ("/sites/s", None, "InvalidRequestContent"),
        ("/sites/s", [BODY], "InvalidRequestContent"),
        ("/sites/s", {k: v for k, v in BODY.items() if k != "sharedKey"}, "InvalidRequestContent"),
        ("/sites/s", dict(BODY, addressSpace=[]), "InvalidRequestContent"),
        ("/sites/s", dict(BODY, bgp=True), "InvalidRequestContent"),
        ("/sites/s", dict(BODY, addressSpace=["198.18.0.0/16"]), "InvalidSiteAddressSpace"),
        ("/sites/s", dict(BODY, addressSpace="10.0.0.0/8"), "InvalidSiteAddressSpace"),
        ("/sites/s", dict(BODY, gatewayIp="10.0.0.1"), "SiteGatewayIpOutsidePublicRange"),
        ("/sites/s", dict(BODY, gatewayIp=5), "InvalidSiteGatewayIp"),
        ("/sites/s", dict(BODY, sharedKey="with space"), "InvalidSharedKey"),
        ("/sites/s", dict(BODY, sharedKey=["x"]), "InvalidSharedKey"),
    ],
)
def test_api_bad_requests(api: Api, path: str, body: Any, code: str) -> None:
    reply = api.call("PUT", path, body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == code
    assert api.repo.list_sites() == [] and api.pokes == 0


def test_api_invalid_json_is_400(api: Api) -> None:
    reply = api.http.put(
        "/privatelink/admin/sites/s",
        content=b"{not json",
        headers=dict(api.headers, **{"content-type": "application/json"}),
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "InvalidRequestContent"


def test_api_gateway_ip_in_use_is_409(api: Api) -> None:
    assert api.call("PUT", "/sites/one", BODY).status_code == 201
    reply = api.call("PUT", "/sites/two", BODY)
    assert reply.status_code == 409
    assert reply.json()["error"]["code"] == "SiteGatewayIpInUse"


def test_api_only_for_the_default_admin(api: Api, tmp_path: Path) -> None:
    for method, path in (("GET", "/sites"), ("PUT", "/sites/s"), ("DELETE", "/sites/s")):
        reply = api.call(method, path, BODY, headers={})
        assert reply.status_code == 401, path
        assert reply.json()["error"]["code"] == "AuthenticationFailed"
        assert "www-authenticate" in reply.headers
    directory = SqlDirectory(api.repo.engine)
    tenant, admin, secret = directory.create_tenant("other")
    token = api.issuer.issue(tenant.tenant_id, admin.app_id, secret, ARM_SCOPE)["access_token"]
    reply = api.call("PUT", "/sites/s", BODY, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "AuthorizationFailed"
    assert api.repo.list_sites() == []


# --- the CLI, over a mocked transport ----------------------------------------------------


SERVER = {
    "url": BASE,
    "ca_file": "/ca.pem",
    "tenant_id": "11111111-1111-1111-1111-111111111111",
    "client_id": "22222222-2222-2222-2222-222222222222",
    "client_secret": "s1",
}


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[httpx.Request]]:
    """`privatelink site ...` against a handler recording each admin request."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "credentials.json").write_text(json.dumps(SERVER))
    monkeypatch.setenv("PRIVATELINK_DATA_DIR", str(data_dir))
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/v2.0/token"):
            return httpx.Response(200, json={"access_token": "tok", "token_type": "Bearer"})
        assert request.headers["authorization"] == "Bearer tok"
        seen.append(request)
        path, method = request.url.path, request.method
        if path == "/privatelink/admin/sites":
            return httpx.Response(200, json={"value": [{"name": "a"}]})
        if method == "DELETE" and path.endswith("/gone"):
            return httpx.Response(
                404, json={"error": {"code": "SiteNotFound", "message": "no such site"}}
            )
        if method == "DELETE":
            return httpx.Response(204)
        if method == "PUT":
            return httpx.Response(201, json={"name": "a", "echo": json.loads(request.content)})
        return httpx.Response(200, json={"name": "a"})

    def client(data_dir: Path | None) -> Any:
        resolved = site_cli.resolve_data_dir(data_dir)
        return site_cli.AdminClient(
            resolved, ServerCredentials.load(resolved), transport=httpx.MockTransport(handler)
        )

    monkeypatch.setattr(site_cli, "_client", client)
    yield seen


def _run(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(main, ["site", *args], input=stdin)


def test_cli_create_sends_the_site(cli: list[httpx.Request]) -> None:
    result = _run(
        "create",
        "a",
        "--address-space",
        "192.168.0.0/16",
        "--address-space",
        "10.9.0.0/16",
        "--gateway-ip",
        "198.18.0.9",
        "--shared-key",
        KEY,
    )
    assert result.exit_code == 0, result.output
    (request,) = cli
    assert (request.method, request.url.path) == ("PUT", "/privatelink/admin/sites/a")
    assert json.loads(request.content) == {
        "addressSpace": ["192.168.0.0/16", "10.9.0.0/16"],
        "gatewayIp": "198.18.0.9",
        "sharedKey": KEY,
    }
    assert json.loads(result.output)["name"] == "a"


@pytest.mark.parametrize(("stdin", "key"), [("k1\n", "k1"), ("k2\r\n", "k2"), ("k3", "k3")])
def test_cli_create_reads_the_key_from_stdin(
    cli: list[httpx.Request], stdin: str, key: str
) -> None:
    args = ["create", "a", "--address-space", "10.0.0.0/8", "--gateway-ip", FIRST_HOST]
    result = _run(*args, "--shared-key-stdin", stdin=stdin)
    assert result.exit_code == 0, result.output
    assert json.loads(cli[0].content)["sharedKey"] == key


@pytest.mark.parametrize("extra", [[], ["--shared-key", "k", "--shared-key-stdin"]])
def test_cli_create_wants_one_key_source(cli: list[httpx.Request], extra: list[str]) -> None:
    args = ["create", "a", "--address-space", "10.0.0.0/8", "--gateway-ip", FIRST_HOST]
    result = _run(*args, *extra, stdin="k\n")
    assert result.exit_code == 2
    assert "exactly one of --shared-key and --shared-key-stdin" in result.output
    assert cli == []


def test_cli_list_show_delete(cli: list[httpx.Request]) -> None:
    listed = _run("list")
    assert listed.exit_code == 0 and json.loads(listed.output) == [{"name": "a"}]
    shown = _run("show", "a")
    assert shown.exit_code == 0 and json.loads(shown.output) == {"name": "a"}
    deleted = _run("delete", "a")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.output) == {"name": "a", "deleted": True}
    assert [(r.method, r.url.path) for r in cli] == [
        ("GET", "/privatelink/admin/sites"),
        ("GET", "/privatelink/admin/sites/a"),
        ("DELETE", "/privatelink/admin/sites/a"),
    ]


def test_cli_errors_are_one_line(cli: list[httpx.Request]) -> None:
    result = _run("delete", "gone")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: SiteNotFound: no such site"
