"""The admin API (auth, validation, routes generations) and AdminClient, in process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sipfleet.node.admin_api import build_app
from sipfleet.node.admin_client import AdminClient, AdminError
from sipfleet.node.admin_types import Access, NodeState, RouteEntry, ShardState, TransferRequest
from sipfleet.node.auth.policy import AccessPolicy
from sipfleet.node.config import Config
from sipfleet.node.node import Node
from sipfleet.node.presentation import SenderDisplay

TOKEN = "t0ken"
GROUP = "sip:conf3@example.com"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    node = Node(Config("main", "main", "example.com", "127.0.0.10", 5060, 8080, TOKEN))
    async with TestClient(TestServer(build_app(node, TOKEN))) as client:
        yield client


async def test_public_paths_need_no_token(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 503  # SIP listeners not started
    metrics = await client.get("/metrics")
    assert "sipfleet_node_rate_limited_total" in await metrics.text()
    spec = await (await client.get("/openapi.json")).json()
    assert "/v1/transfers/{id}" in spec["paths"]


async def test_openapi_schemas_are_the_contract_types(client: TestClient) -> None:
    """The served document's schemas come from admin_types, and the answers fit them."""
    spec = await (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    generated = NodeState.model_json_schema(ref_template="#/components/schemas/{model}")
    nested = generated.pop("$defs")
    assert schemas["NodeState"] == generated
    assert all(schemas[name] == schema for name, schema in nested.items())
    assert schemas["TransferRequest"]["properties"]["rate"]["exclusiveMinimum"] == 0
    for path in spec["paths"].values():  # every reference resolves
        for ref in _refs(path):
            assert ref.removeprefix("#/components/schemas/") in schemas, ref
    await client.post("/v1/shards", json={"group": GROUP, "capacity": 3}, headers=AUTH)
    state = await (await client.get("/v1/state", headers=AUTH)).json()
    assert NodeState.model_validate(state).shards[0] == ShardState(
        group=GROUP,
        uri="sip:conf3-main@127.0.0.10:5060",
        members=0,
        capacity=3,
        draining=False,
        sender_display=SenderDisplay.AUTO,  # the server's --sender-display
        access=Access(policy="open"),  # no credentials here: the server's default
    )


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Bearer t0ken0", "t0ken", "Basic x"])
async def test_everything_else_needs_the_token(client: TestClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for method, path in [
        ("GET", "/v1/state"),
        ("POST", "/v1/drain"),
        ("PUT", "/v1/routes"),
        ("GET", "/v1/transfers"),
        ("POST", "/v1/shards"),
    ]:
        response = await client.request(method, path, headers=headers, json={})
        assert response.status == 401, (method, path)
        assert (await response.json())["error"]


async def test_shards_are_idempotent(client: TestClient) -> None:
    body = {"group": GROUP, "capacity": 10}
    first = await client.post("/v1/shards", json=body, headers=AUTH)
    assert first.status == 201
    shard = await first.json()
    assert shard["uri"] == "sip:conf3-main@127.0.0.10:5060"
    assert (shard["members"], shard["capacity"], shard["draining"]) == (0, 10, False)
    again = await client.post("/v1/shards", json={"group": GROUP, "capacity": 20}, headers=AUTH)
    assert again.status == 200 and (await again.json())["capacity"] == 20
    state = await (await client.get("/v1/state", headers=AUTH)).json()
    assert [s["uri"] for s in state["shards"]] == [shard["uri"]]
    assert (state["name"], state["role"], state["sip"]) == (
        "main",
        "main",
        {"host": "127.0.0.10", "port": 5060, "advertised": None},
    )
    gone = await client.delete("/v1/shards", json={"group": GROUP}, headers=AUTH)
    assert gone.status == 200
    missing = await client.delete("/v1/shards", json={"group": GROUP}, headers=AUTH)
    assert missing.status == 404


@pytest.mark.parametrize(
    "body",
    [
        {"group": "conf3", "capacity": 1},
        {"group": GROUP, "capacity": 0},
        {"group": GROUP, "capacity": "10"},
        {"group": GROUP},
        {"group": GROUP, "capacity": 1, "access": {"policy": "closed"}},
        {"group": GROUP, "capacity": 1, "access": {"algorithms": ["MD5", "SHA-256"]}},
        {"group": GROUP, "capacity": 1, "access": {"allow": ["alice@example.com"]}},
        {"group": GROUP, "capacity": 1, "sender_display": "loud"},
    ],
)
async def test_bad_shard_requests(client: TestClient, body: dict[str, object]) -> None:
    response = await client.post("/v1/shards", json=body, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["error"]


async def test_a_shard_takes_the_access_policy_it_is_given() -> None:
    node = Node(Config("main", "main", "example.com", "127.0.0.10", 5060, 8080, TOKEN))
    async with TestClient(TestServer(build_app(node, TOKEN))) as client:
        access = {"policy": "allowlist", "allow": ["sip:alice@Example.com"], "algorithms": ["MD5"]}
        body = {"group": GROUP, "capacity": 10, "access": access}
        assert (await client.post("/v1/shards", json=body, headers=AUTH)).status == 201
        policy = node.admission.policies[GROUP]
        assert policy == AccessPolicy("allowlist", frozenset({"sip:alice@example.com"}), ("MD5",))
        await client.delete("/v1/shards", json={"group": GROUP}, headers=AUTH)
        assert GROUP not in node.admission.policies


async def test_a_shard_takes_the_sender_display_it_is_given() -> None:
    node = Node(Config("main", "main", "example.com", "127.0.0.10", 5060, 8080, TOKEN))
    async with TestClient(TestServer(build_app(node, TOKEN))) as client:
        url = str(client.make_url("")).rstrip("/")
        async with AdminClient(url, TOKEN) as admin:
            await admin.ensure_shard(GROUP, 10)
            assert (await admin.state()).shards[0].sender_display is SenderDisplay.AUTO
            await admin.ensure_shard(GROUP, 10, sender_display=SenderDisplay.CPIM)
            assert node.shards[GROUP].sender_display is SenderDisplay.CPIM
            await admin.ensure_shard(GROUP, 10)  # not given: kept
            assert node.shards[GROUP].sender_display is SenderDisplay.CPIM
            assert (await admin.state()).shards[0].sender_display is SenderDisplay.CPIM
            body = {"group": GROUP, "capacity": 10, "sender_display": "display-name"}
            assert (await client.post("/v1/shards", json=body, headers=AUTH)).status == 200
            assert node.shards[GROUP].sender_display is SenderDisplay.DISPLAY_NAME


async def test_invalid_json_is_400(client: TestClient) -> None:
    response = await client.post("/v1/shards", data=b"{nope", headers=AUTH)
    assert response.status == 400
    assert "JSON" in (await response.json())["error"]


async def test_route_generations(client: TestClient) -> None:
    table = {GROUP: [{"server": "main", "uri": "sip:conf3-main@127.0.0.10:5060"}]}
    assert (
        await client.put("/v1/routes", json={"generation": 2, "groups": table}, headers=AUTH)
    ).status == 200
    assert (
        await client.put("/v1/routes", json={"generation": 2, "groups": {}}, headers=AUTH)
    ).status == 200
    stale = await client.put("/v1/routes", json={"generation": 1, "groups": table}, headers=AUTH)
    assert stale.status == 409
    state = await (await client.get("/v1/state", headers=AUTH)).json()
    assert state["routes_generation"] == 2
    assert state["routes"]["groups"] == {
        GROUP: [
            {
                "server": "main",
                "uri": "sip:conf3-main@127.0.0.10:5060",
                "state": "active",
                "free": 0,
            }
        ]
    }
    bad = await client.put(
        "/v1/routes", json={"generation": 3, "groups": {GROUP: []}}, headers=AUTH
    )
    assert bad.status == 400


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"group": GROUP, "target": "sip:x@h", "count": 1}, 404),  # no shard here
        ({"group": GROUP, "target": "sip:x@h"}, 400),  # neither count nor members
        ({"group": GROUP, "target": "sip:x@h", "count": 1, "members": ["sip:a@b"]}, 400),
        ({"group": GROUP, "target": "x", "count": 1}, 400),
        ({"group": GROUP, "target": "sip:x@h", "count": 1, "method": "teleport"}, 400),
        ({"group": GROUP, "target": "sip:x@h", "count": 1, "rate": 0}, 400),
    ],
)
async def test_transfer_validation(
    client: TestClient, body: dict[str, object], status: int
) -> None:
    response = await client.post("/v1/transfers", json=body, headers=AUTH)
    assert response.status == status, await response.text()


async def test_transfer_without_members_conflicts(client: TestClient) -> None:
    await client.post("/v1/shards", json={"group": GROUP, "capacity": 10}, headers=AUTH)
    response = await client.post(
        "/v1/transfers", headers=AUTH, json={"group": GROUP, "target": "sip:x@h", "count": 1}
    )
    assert response.status == 409
    assert (await client.get("/v1/transfers/nope", headers=AUTH)).status == 404


async def test_admin_client(client: TestClient) -> None:
    url = str(client.make_url("")).rstrip("/")
    async with AdminClient(url, TOKEN) as admin:
        assert await admin.health() is True
        assert await admin.ready() is False
        shard = await admin.ensure_shard(GROUP, 5)
        assert shard.capacity == 5
        ack = await admin.put_routes(1, {GROUP: [RouteEntry("main", shard.uri)]})
        assert ack.generation == 1
        assert (await admin.routes()).groups == {GROUP: (RouteEntry("main", shard.uri),)}
        with pytest.raises(AdminError) as stale:
            await admin.put_routes(0, {})
        assert stale.value.status == 409 and "older" in stale.value.message
        assert (await admin.drain()).draining is True
        assert (await admin.state()).shards[0].draining is True
        assert await admin.transfers() == []
        with pytest.raises(AdminError) as conflict:  # nobody to move
            await admin.start_transfer(TransferRequest(GROUP, "sip:x@h", count=1))
        assert conflict.value.status == 409
        with pytest.raises(AdminError) as missing:
            await admin.transfer("nope")
        assert missing.value.status == 404
        assert (await admin.delete_shard(GROUP)).group == GROUP
    async with AdminClient(url, "wrong") as intruder:
        with pytest.raises(AdminError) as denied:
            await intruder.state()
        assert denied.value.status == 401
    async with AdminClient("http://127.0.0.1:9", TOKEN, timeout=2) as nowhere:
        with pytest.raises(AdminError) as unreachable:
            await nowhere.state()
        assert unreachable.value.status == 0
