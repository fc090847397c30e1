"""GETs answered on the event loop (issue 11, API speed): inline store reads, lean routes,
and the JSON codecs, each checked against the way it replaced.

* `SqlRepository.read_inline` runs a small read on the calling thread on its own
  read-only SQLite connection and refuses (`InlineReadRefused`) whatever it cannot
  promise: a database that is not a local file, a read over its byte budget, a failed
  connection. `api.reading.read` then reads in a worker thread: same answer.
* `LeanRoute` answers qualifying routes without FastAPI's dependency machinery: the
  router's dependencies still run, once each and in order; anything else takes FastAPI's
  way.
"""

from __future__ import annotations

import asyncio
import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pl_world import S1, World, make_vnet, vnet_id
from sqlalchemy.exc import OperationalError

from privatelink.api import lean_route, reading
from privatelink.api.arm import ArmJSONResponse
from privatelink.api.gate import ArmGate
from privatelink.core import actions
from privatelink.core import private_link_service as plsm
from privatelink.core import virtual_network as vnm
from privatelink.core.resource import Changes, StateView
from privatelink.server import build
from privatelink.service import ControlPlane
from privatelink.store import codec, inline
from privatelink.store.repository import InlineReadRefused
from privatelink.store.sql import INLINE_READ_BUDGET, SqlRepository

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

ARM_SCOPE = "https://management.azure.com/.default"


def _big_vnet(subnets: int = 600) -> vnm.VirtualNetwork:
    """A VNet whose stored document is over the inline budget."""
    return make_vnet(
        name="big",
        prefixes=("10.0.0.0/8",),
        subnets=tuple(
            vnm.Subnet(f"s{i:04d}", f"10.{i // 256}.{i % 256}.0/24") for i in range(subnets)
        ),
    )


def _put(world: World, vnet: vnm.VirtualNetwork) -> vnm.VirtualNetwork:
    """Store `vnet`; returns it as stored (with its etag)."""
    with world.repo.write() as uow:
        written = uow.apply(Changes(puts=[vnet]))
    stored = written[vnet.key]
    assert isinstance(stored, vnm.VirtualNetwork)
    return stored


# --- the store ---------------------------------------------------------------------------


def test_an_inline_read_is_the_ordinary_read_on_this_thread(world: World) -> None:
    vnet = _put(world, make_vnet())
    threads: list[int] = []

    def read(view: StateView) -> Any:
        threads.append(threading.get_ident())
        return view.get(vnet.id), view.get(vnet_id("missing"))

    assert world.repo.read_inline(read) == (world.get(vnet.id), None)
    assert threads == [threading.get_ident()]


def test_a_read_over_the_budget_is_refused_and_the_ordinary_read_serves_it(
    world: World,
) -> None:
    big = _big_vnet()
    _put(world, big)
    with world.repo.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT length(body) FROM resources").scalar_one()
    assert stored > INLINE_READ_BUDGET
    with pytest.raises(InlineReadRefused):
        world.repo.read_inline(lambda view: view.get(big.id))
    plane = ControlPlane(world.repo)
    assert asyncio.run(reading.read(plane, lambda view: view.get(big.id))) == world.get(big.id)
    # A small read right after still runs inline: the refusal left nothing open.
    small = _put(world, make_vnet(name="small"))
    assert world.repo.read_inline(lambda view: view.get(small.id)) == small


def test_the_budget_counts_every_document_a_read_decodes(world: World) -> None:
    vnets = [_put(world, make_vnet(name=f"v{i}", subnets=())) for i in range(3)]
    with world.repo.engine.connect() as conn:
        size = conn.exec_driver_sql("SELECT max(length(body)) FROM resources").scalar_one()
    reader = inline.InlineReader(
        world.repo.url, lambda conn, raw: _view(conn, raw, budget=2 * size)
    )
    try:
        assert reader.run(lambda view: [view.get(v.id) for v in vnets[:2]]) == vnets[:2]
        with pytest.raises(InlineReadRefused):
            reader.run(lambda view: [view.get(v.id) for v in vnets])
    finally:
        reader.close()


def _view(conn: Any, raw: Any, budget: int) -> StateView:
    from privatelink.store.sql import SqlView

    return SqlView(conn, budget, raw)


def test_inline_reads_see_committed_writes_only(world: World) -> None:
    vnet = _put(world, make_vnet())
    with world.repo.write() as uow:  # open and not yet committed: WAL readers do not wait
        written = uow.apply(Changes(puts=[make_vnet(prefixes=("10.9.0.0/16",), subnets=())]))
        assert world.repo.read_inline(lambda view: view.get(vnet.id)) == vnet
    assert world.repo.read_inline(lambda view: view.get(vnet.id)) == written[vnet.key]


def test_inline_connections_cannot_write(world: World) -> None:
    def write(view: StateView) -> None:
        view._raw.execute("DELETE FROM resources")  # type: ignore[attr-defined]

    _put(world, make_vnet())
    with pytest.raises(InlineReadRefused):  # SQLite: attempt to write a readonly database
        world.repo.read_inline(write)
    assert world.get(vnet_id()) is not None


def test_a_closed_store_reopens_its_inline_connection(world: World) -> None:
    vnet = _put(world, make_vnet())
    assert world.repo.read_inline(lambda view: view.get(vnet.id)) == vnet
    world.repo.dispose()  # the server's stop closes every inline connection
    got = None
    for _ in range(2):  # the first read after may find its connection closed: refused
        try:
            got = world.repo.read_inline(lambda view: view.get(vnet.id))
            break
        except InlineReadRefused:
            continue
    assert got == vnet


def test_connections_of_finished_threads_are_closed(world: World) -> None:
    vnet = _put(world, make_vnet())
    reader = world.repo._inline
    assert reader is not None

    def read_once() -> None:
        world.repo.read_inline(lambda view: view.get(vnet.id))

    for _ in range(3):
        t = threading.Thread(target=read_once)
        t.start()
        t.join()
    read_once()  # opens this thread's connection and closes the finished threads'
    assert list(reader._open) == [threading.get_ident()]


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("sqlite:////var/lib/privatelink/privatelink.db", True),
        ("sqlite:///relative.db", True),
        ("sqlite://", False),
        ("sqlite:///:memory:", False),
        ("sqlite:///file::memory:?cache=shared", False),
        ("postgresql+psycopg://u:p@db.example/privatelink", False),
    ],
)
def test_only_a_sqlite_file_reads_inline(url: str, local: bool) -> None:
    assert inline.local_sqlite_file(url) is local


def test_a_database_that_is_not_a_file_never_reads_inline(tmp_path: Path) -> None:
    repo = SqlRepository("sqlite://")
    try:
        with pytest.raises(InlineReadRefused):
            repo.read_inline(lambda view: view.get(vnet_id()))
    finally:
        repo.dispose()


def test_a_failing_inline_read_is_refused_not_raised(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(view: StateView) -> None:
        raise OperationalError("SELECT", {}, Exception("disk I/O error"))

    with pytest.raises(InlineReadRefused):
        world.repo.read_inline(broken)
    _put(world, make_vnet())
    assert world.repo.read_inline(lambda view: view.get(vnet_id())) is not None


# --- the codecs ----------------------------------------------------------------------------


def test_stored_documents_decode_as_before(service_world: World) -> None:
    """`validate_json` on the text gives what `validate_python(json.loads(text))` gave."""
    with service_world.repo.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT type, body FROM resources").all()
    assert {t for t, _ in rows} >= {
        "microsoft.network/virtualnetworks",
        "microsoft.network/loadbalancers",
        "microsoft.network/privatelinkservices",
        "microsoft.network/networkinterfaces",
    }
    for resource_type, body in rows:
        adapter = codec._adapter(codec.TYPES[resource_type])
        assert codec.loads(resource_type, body) == adapter.validate_python(json.loads(body))


@pytest.mark.parametrize(
    "content",
    [
        {"a": "ünï\u2028</x>", "b": [1, 2.5, True, None], "c": {"d": (1, 2)}},
        {"ctl": '\x00\x01\t\n"\\', "big": 2**70, "neg": -1, "f": 0.25},
        [],
        "text",
    ],
)
def test_responses_are_starlettes_json(content: Any) -> None:
    assert ArmJSONResponse(content).body == JSONResponse(content).body


def test_numbers_keep_their_value() -> None:
    content = {"e": 1e-7, "big": 1.5e300, "z": -0.0}
    assert json.loads(ArmJSONResponse(content).body) == content  # "1e-7", not "1e-07"


def test_a_number_json_cannot_hold_becomes_null() -> None:
    assert ArmJSONResponse({"x": float("nan")}).body == b'{"x":null}'


# --- lean routes ------------------------------------------------------------------------------


CALLS: list[str] = []


async def first(request: Request) -> None:
    CALLS.append("first")
    if request.query_params.get("deny"):
        raise HTTPException(403, "denied")


async def second() -> str:
    CALLS.append("second")
    return "value"


def _lean_app(calls: list[str]) -> FastAPI:
    CALLS.clear()
    calls = CALLS
    router = APIRouter(route_class=lean_route.LeanRoute)

    @router.get("/things/{name}")
    async def get_thing(
        request: Request, name: str, got: str = Depends(second), again: str = Depends(second)
    ) -> Response:
        calls.append(f"endpoint {name} {got} {again} {threading.get_ident()}")
        return JSONResponse({"name": name})

    @router.get("/sync/{name}")
    def get_sync(name: str) -> Response:
        calls.append(f"sync {threading.get_ident()}")
        return JSONResponse({"name": name})

    @router.get("/query/{name}")
    async def with_query(name: str, n: int = Query(1)) -> Response:
        return JSONResponse({"n": n})

    @router.get("/plain/{name}")
    async def not_a_response(name: str) -> dict[str, str]:
        return {"name": name}

    app = FastAPI()
    app.include_router(router, dependencies=[Depends(first)])
    app.state.router = router
    return app


def test_a_lean_route_runs_the_routers_dependencies_once_each_in_order() -> None:
    app = _lean_app([])
    calls = CALLS
    with TestClient(app) as client:
        assert client.get("/things/a").json() == {"name": "a"}
        assert calls[:2] == ["first", "second"]
        assert calls[2].startswith("endpoint a value value ")
        assert len(calls) == 3  # `second` once, though two parameters ask for it
        calls.clear()
        assert client.get("/things/a?deny=1").status_code == 403
        assert calls == ["first"]  # a refusing dependency stops the request


def test_a_sync_endpoint_still_runs_in_the_thread_pool() -> None:
    app = _lean_app([])
    calls = CALLS
    with TestClient(app) as client:
        client.get("/things/a")
        loop_thread = calls[-1].rsplit(" ", 1)[1]
        assert client.get("/sync/b").json() == {"name": "b"}
        assert calls[-1].rsplit(" ", 1)[1] != loop_thread


def test_routes_that_do_not_qualify_take_fastapis_way() -> None:
    calls: list[str] = []
    app = _lean_app(calls)
    with TestClient(app) as client:
        assert client.get("/query/a?n=3").json() == {"n": 3}
        assert client.get("/query/a?n=x").status_code == 422  # FastAPI validated it
        assert client.get("/plain/a").json() == {"name": "a"}  # FastAPI serialized it
    routes = {r.path: r for r in app.state.router.routes}
    assert lean_route.lean_handler(routes["/things/{name}"].dependant) is not None
    assert lean_route.lean_handler(routes["/query/{name}"].dependant) is None
    assert lean_route.lean_handler(routes["/plain/{name}"].dependant) is None


def test_dependency_overrides_take_fastapis_way() -> None:
    calls: list[str] = []
    app = _lean_app(calls)

    async def overridden() -> str:
        return "override"

    app.dependency_overrides[second] = overridden
    with TestClient(app) as client:
        client.get("/things/a")
    assert "endpoint a override override" in CALLS[-1]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, str, dict[str, str]]]:
    server = build(tmp_path / "data", "127.0.0.1", 8443)
    c = server.client
    assert server.issuer is not None
    token = server.issuer.issue(c.tenant_id, c.client_id, c.client_secret, ARM_SCOPE)
    sub = json.loads(server.credentials_file.read_text())["subscription_id"]
    base = f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Network"
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    with TestClient(server.app, base_url="https://127.0.0.1:8443") as client:
        yield client, base, headers
    server.repo.dispose()


def test_the_apps_resource_gets_are_lean_and_read_inline(
    served: tuple[TestClient, str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, base, headers = served
    assert lean_route._included is not None, "FastAPI no longer exposes the included route"
    q = "?api-version=2026-03-01"
    body = {
        "location": "eastus",
        "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}},
    }
    assert client.put(f"{base}/virtualNetworks/v{q}", json=body, headers=headers).status_code == 201

    def no_thread(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a small GET went to the thread pool")

    monkeypatch.setattr(reading, "run_in_threadpool", no_thread)
    got = client.get(f"{base}/virtualNetworks/v{q}", headers=headers)
    assert got.status_code == 200 and got.json()["name"] == "v"
    # What the ARM dependency checks still holds on the lean path.
    assert client.get(f"{base}/virtualNetworks/v", headers=headers).status_code == 400
    assert client.get(f"{base}/virtualNetworks/v{q}").status_code == 401
    missing = client.get(f"{base}/virtualNetworks/nope{q}", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"


def test_a_large_resource_is_read_in_a_worker_thread(
    served: tuple[TestClient, str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, base, headers = served
    q = "?api-version=2026-03-01"
    subnets = [
        {"name": f"s{i:04d}", "properties": {"addressPrefix": f"10.{i // 256}.{i % 256}.0/24"}}
        for i in range(600)
    ]
    body = {
        "location": "eastus",
        "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/8"]}, "subnets": subnets},
    }
    put = client.put(f"{base}/virtualNetworks/big{q}", json=body, headers=headers)
    assert put.status_code == 201, put.text
    hops: list[int] = []
    real = reading.run_in_threadpool

    async def counted(fn: Any, *args: Any) -> Any:
        hops.append(1)
        return await real(fn, *args)

    monkeypatch.setattr(reading, "run_in_threadpool", counted)
    got = client.get(f"{base}/virtualNetworks/big{q}", headers=headers)
    assert got.status_code == 200
    assert len(got.json()["properties"]["subnets"]) == 600
    assert hops == [1]


# --- small per-request caches ------------------------------------------------------------------


def test_describe_is_the_same_with_and_without_its_cache() -> None:
    path = f"/subscriptions/{S1}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v"
    for method in ("GET", "PUT", "DELETE", "POST", "PATCH"):
        assert actions.describe(method, path) == actions._describe(method, path)
    long = path + "/subnets/" + "x" * 2000
    assert actions.describe("GET", long) == actions._describe("GET", long)


@pytest.mark.parametrize("where", ["path", "query", "encoded query"])
def test_the_gate_refuses_a_nul_anywhere_in_the_url(where: str) -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a URL with a NUL got past the gate")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def authenticate(request: Request) -> Any:
        raise AssertionError("authentication comes after the NUL check")

    gate = ArmGate(app, authenticate, "t", None, None, lambda t: t)  # type: ignore[arg-type]
    path = f"/subscriptions/{S1}/x"
    query = b"api-version=2026-03-01"
    if where == "path":
        path += "\x00y"
    elif where == "query":
        query += b"&a=\x00"
    else:
        query += b"&a=%00"
    scope = {"type": "http", "method": "GET", "path": path, "query_string": query, "headers": []}
    asyncio.run(gate(scope, None, send))
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"]["code"] == "InvalidRequestContent"


def test_an_inline_list_too_long_for_the_budget_is_refused_before_it_is_read(
    service_world: World,
) -> None:
    alias = service_world.pls().alias
    for i in range(5):
        service_world.create_pe(alias, name=f"pe{i}")
    service_id = service_world.pls().id
    # Room for 4 documents of the smallest size: 5 are refused by count, not decoded.
    reader = inline.InlineReader(service_world.repo.url, lambda c, raw: _view(c, raw, 4 * 256))
    try:
        with pytest.raises(InlineReadRefused, match="list outgrew"):
            reader.run(lambda view: plsm.connections_of(view, service_id))
        one = reader.run(lambda view: plsm.connections_of(view, service_id, 2, 1))
        assert one == list(service_world.connections()[2:3])
    finally:
        reader.close()
