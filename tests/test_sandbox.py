"""The sandbox store over real HTTP on 127.0.0.1: paging, filters, cursors, cost, faults,
API versions, redaction, stats, its data and its command line."""

from __future__ import annotations

import base64
import functools
import gzip
import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from shopify_export.sandbox import (
    FAULT_KINDS,
    Fault,
    SandboxConfig,
    SandboxServer,
    customer,
    customer_id,
    customer_ids,
    decode_cursor,
    encode_cursor,
    index_after,
    parse_fault,
)
from shopify_export.sandbox.command import sandbox as sandbox_command
from shopify_export.sandbox.schema import api_version

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "shpat_sandbox_token"

PAGE = """
query CustomersPage($first: Int!, $after: String, $query: String) {
  customers(first: $first, after: $after, query: $query, sortKey: ID) {
    nodes { id legacyResourceId firstName defaultAddress { city zip } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
# Every Customer field the sandbox serves in 2026-04, so a node must equal customer().
FULL_NODE = """
  id legacyResourceId firstName lastName displayName email phone
  defaultEmailAddress {
    emailAddress marketingState marketingOptInLevel marketingUpdatedAt validFormat
    marketingUnsubscribeUrl openTrackingLevel
  }
  defaultPhoneNumber {
    phoneNumber marketingState marketingOptInLevel marketingUpdatedAt marketingCollectedFrom
  }
  emailMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt }
  smsMarketingConsent {
    marketingState marketingOptInLevel consentUpdatedAt consentCollectedFrom
  }
  validEmailAddress verifiedEmail state tags note taxExempt locale createdAt updatedAt
  numberOfOrders amountSpent { amount currencyCode } lifetimeDuration canDelete
  dataSaleOptOut multipassIdentifier productSubscriberStatus
  defaultAddress {
    id firstName lastName name company address1 address2 city province provinceCode
    country countryCode countryCodeV2 zip phone formattedArea latitude longitude timeZone
    coordinatesValidated
  }
"""
FULL_PAGE = (
    "query Full($after: String) { customers(first: 250, after: $after) { nodes {"
    + FULL_NODE
    + "} pageInfo { hasNextPage endCursor } } }"
)


class Client:
    """A keep-alive HTTP/1.1 client for one sandbox endpoint."""

    def __init__(self, url: str, token: str = TOKEN, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        self.path = parts.path
        self.token = token
        host = parts.hostname or "127.0.0.1"
        self.connection = http.client.HTTPConnection(host, parts.port, timeout=timeout)

    def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, str], bytes]:
        if body is None:
            body = json.dumps({"query": query, "variables": variables or {}}).encode()
        headers = {"Content-Type": content_type, "X-Shopify-Access-Token": self.token}
        self.connection.request("POST", self.path, body=body, headers=headers)
        response = self.connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        status, _, raw = self.post(query, variables)
        assert status == 200, raw[:300]
        result: dict[str, Any] = json.loads(raw)
        return result

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def start() -> Iterator[Any]:
    """Start sandbox stores; each is stopped when the test ends."""
    servers: list[SandboxServer] = []

    def run(**settings: Any) -> SandboxServer:
        settings.setdefault("customers", 600)
        server = SandboxServer(SandboxConfig(**settings)).start()
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.stop()


def all_pages(client: Client, document: str = PAGE, **variables: Any) -> list[dict[str, Any]]:
    """Page through ``customers`` with ``after`` cursors; return every node."""
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        result = client.query(document, {**variables, "after": after})
        connection = result["data"]["customers"]
        nodes.extend(connection["nodes"])
        if not connection["pageInfo"]["hasNextPage"]:
            return nodes
        after = connection["pageInfo"]["endCursor"]


def gid(number: int) -> str:
    """Return the GID of a customer id."""
    return f"gid://shopify/Customer/{number}"


def schema_dir() -> Path | None:
    """Return the folder of the real Shopify schemas, or None when it is not present."""
    for folder in (Path("/work/shared/shopify"), REPO_ROOT.parent / "shared" / "shopify"):
        if (folder / "admin_2026-04.graphql.gz").exists():
            return folder
    return None


# Paging, filters and cursors.


def test_pages_cover_every_customer_once(start: Any) -> None:
    server = start(customers=1234)
    client = Client(server.url())
    nodes = all_pages(client, first=250)
    expected = customer_ids(server.config)
    assert [int(node["legacyResourceId"]) for node in nodes] == expected
    assert [node["id"] for node in nodes] == [gid(n) for n in expected]
    assert server.stats.customer_pages == 5
    assert server.stats.customers_served == 1234


def test_pages_odd_size_and_last_page(start: Any) -> None:
    server = start(customers=100)
    client = Client(server.url())
    nodes = all_pages(client, first=33)
    assert len(nodes) == 100
    before_last = encode_cursor(customer_ids(server.config)[-2])
    last = client.query(PAGE, {"first": 33, "after": before_last})
    assert len(last["data"]["customers"]["nodes"]) == 1
    assert last["data"]["customers"]["pageInfo"]["hasNextPage"] is False
    empty = client.query(PAGE, {"first": 33, "after": encode_cursor(10**15)})
    assert empty["data"]["customers"] == {
        "nodes": [],
        "pageInfo": {"hasNextPage": False, "endCursor": None},
    }


def test_nodes_equal_generated_customers(start: Any) -> None:
    server = start(customers=700)
    nodes = all_pages(Client(server.url()), FULL_PAGE)
    assert len(nodes) == 700
    for index, node in enumerate(nodes):
        assert node == customer(server.config, index), index


def test_edges_carry_cursors(start: Any) -> None:
    server = start(customers=10)
    query = """{ customers(first: 4) { edges { cursor node { id } } pageInfo {
        hasNextPage hasPreviousPage startCursor endCursor } } }"""
    result = Client(server.url()).query(query)
    edges = result["data"]["customers"]["edges"]
    ids = customer_ids(server.config)
    assert [edge["cursor"] for edge in edges] == [encode_cursor(n) for n in ids[:4]]
    assert [edge["node"]["id"] for edge in edges] == [gid(n) for n in ids[:4]]
    info = result["data"]["customers"]["pageInfo"]
    assert info == {
        "hasNextPage": True,
        "hasPreviousPage": False,
        "startCursor": encode_cursor(ids[0]),
        "endCursor": encode_cursor(ids[3]),
    }


def test_last_before_and_reverse(start: Any) -> None:
    server = start(customers=20)
    client = Client(server.url())
    ids = customer_ids(server.config)
    query = "query Back($before: String) { customers(last: 3, before: $before) { nodes { id } } }"
    last = client.query(query, {"before": encode_cursor(ids[10])})
    assert [node["id"] for node in last["data"]["customers"]["nodes"]] == [
        gid(n) for n in ids[7:10]
    ]
    reverse = client.query("{ customers(first: 3, reverse: true) { nodes { id } } }")
    assert [node["id"] for node in reverse["data"]["customers"]["nodes"]] == [
        gid(n) for n in ids[:-4:-1]
    ]


def test_id_filter_greater(start: Any) -> None:
    server = start(customers=300)
    client = Client(server.url())
    ids = customer_ids(server.config)
    after = all_pages(client, first=100, query=f"id:>{ids[149]}")
    assert [int(node["legacyResourceId"]) for node in after] == ids[150:]
    inclusive = all_pages(client, first=100, query=f"id:>={ids[149]} state:enabled")
    assert [int(node["legacyResourceId"]) for node in inclusive] == ids[149:]
    between = all_pages(client, first=100, query=f"id:>{ids[149] - 1} id:<{ids[152]}")
    assert [int(node["legacyResourceId"]) for node in between] == ids[149:152]


def test_count_honours_id_filter(start: Any) -> None:
    server = start(customers=300)
    client = Client(server.url())
    ids = customer_ids(server.config)
    query = "query Count($q: String) { customersCount(limit: null, query: $q) { count precision } }"
    assert client.query(query)["data"]["customersCount"] == {"count": 300, "precision": "EXACT"}
    filtered = client.query(query, {"q": f"id:>{ids[99]}"})
    assert filtered["data"]["customersCount"]["count"] == 200
    capped = client.query("{ customersCount(limit: 50) { count precision } }")
    assert capped["data"]["customersCount"] == {"count": 50, "precision": "AT_LEAST"}


def test_count_capped_before_2025_07(start: Any) -> None:
    server = start(customers=12_000)
    result = Client(server.url("2025-04")).query("{ customersCount { count precision } }")
    assert result["data"]["customersCount"] == {"count": 10_000, "precision": "AT_LEAST"}


def test_cursor_shape_and_round_trip() -> None:
    cursor = encode_cursor(8808624750849)
    assert json.loads(base64.b64decode(cursor)) == {
        "last_id": 8808624750849,
        "last_value": "8808624750849",
    }
    assert decode_cursor(cursor) == 8808624750849
    for bad in ("", "not base64!", base64.b64encode(b"[1]").decode(), encode_cursor(5)[:-4]):
        assert decode_cursor(bad) is None, bad
    title_sort = base64.b64encode(b'{"last_id":5,"last_value":"Grove Store"}').decode()
    assert decode_cursor(title_sort) is None


def test_invalid_cursor_envelope(start: Any) -> None:
    server = start(customers=10)
    status, _, raw = Client(server.url()).post(PAGE, {"first": 5, "after": "garbage"})
    assert status == 200
    assert json.loads(raw) == {
        "data": None,
        "errors": [
            {
                "message": "Invalid cursor for current pagination sort.",
                "locations": [{"line": 3, "column": 3}],
                "path": ["customers"],
                "extensions": {"code": "BAD_REQUEST"},
            }
        ],
    }


def test_cursors_survive_new_server(start: Any) -> None:
    first = start(customers=500, seed=7)
    page = Client(first.url()).query(PAGE, {"first": 100})
    cursor = page["data"]["customers"]["pageInfo"]["endCursor"]
    first.stop()
    second = start(customers=500, seed=7)
    rest = all_pages(Client(second.url()), first=250, after=None)
    resumed = Client(second.url()).query(PAGE, {"first": 250, "after": cursor})
    assert resumed["data"]["customers"]["nodes"] == rest[100:350]


def test_page_size_errors(start: Any) -> None:
    server = start(customers=10)
    client = Client(server.url())
    missing = client.query("{ customers { nodes { id } } }")
    assert missing == {
        "data": None,
        "errors": [
            {
                "message": "you must provide one of first or last",
                "locations": [{"line": 1, "column": 3}],
                "path": ["customers"],
            }
        ],
    }
    too_many = client.query(PAGE, {"first": 251})
    assert too_many["data"] is None
    assert "250" in too_many["errors"][0]["message"]
    sort = client.query("{ customers(first: 5, sortKey: NAME) { nodes { id } } }")
    assert sort["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_literals_aliases_fragments(start: Any) -> None:
    server = start(customers=5)
    query = """
    query Named($withNote: Boolean = false) {
      people: customers(first: 2) {
        kind: __typename
        list: nodes { ...Who ... on Customer { note @include(if: $withNote) } }
      }
      total: customersCount { n: count }
    }
    fragment Who on Customer { gid: id __typename defaultAddress { town: city } }
    """
    result = Client(server.url()).query(query)
    first = customer(server.config, 0)
    assert result["data"]["people"]["kind"] == "CustomerConnection"
    assert result["data"]["people"]["list"][0] == {
        "gid": first["id"],
        "__typename": "Customer",
        "defaultAddress": {"town": first["defaultAddress"]["city"]},
    }
    assert result["data"]["total"] == {"n": 5}
    with_note = Client(server.url()).query(query, {"withNote": True})
    assert "note" in with_note["data"]["people"]["list"][0]


def test_latency_delays_responses(start: Any) -> None:
    server = start(customers=5, latency=0.25)
    client = Client(server.url())
    started = time.monotonic()
    client.query(PAGE, {"first": 1})
    assert time.monotonic() - started >= 0.25


def test_graphql_content_type(start: Any) -> None:
    server = start(customers=3)
    body = b"{ customers(first: 1) { nodes { id } } }"
    status, _, raw = Client(server.url()).post("", body=body, content_type="application/graphql")
    assert status == 200
    assert len(json.loads(raw)["data"]["customers"]["nodes"]) == 1


# Cost and the leaky bucket.


def test_cost_extension_shape(start: Any) -> None:
    server = start(customers=600)
    result = Client(server.url()).query(PAGE, {"first": 250})
    cost = result["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 12
    assert cost["actualQueryCost"] == 12
    status = cost["throttleStatus"]
    assert status["maximumAvailable"] == 2000.0
    assert isinstance(status["maximumAvailable"], float)
    assert isinstance(status["currentlyAvailable"], int)
    assert 1985 <= status["currentlyAvailable"] <= 1990
    assert status["restoreRate"] == 100.0
    small = Client(server.url()).query(PAGE, {"first": 1})
    assert small["extensions"]["cost"]["requestedQueryCost"] == 2


def test_actual_cost_follows_nodes(start: Any) -> None:
    server = start(customers=30, cost_per_customer=1.0)
    result = Client(server.url()).query(PAGE, {"first": 100})
    assert result["extensions"]["cost"]["requestedQueryCost"] == 102
    assert result["extensions"]["cost"]["actualQueryCost"] == 32
    assert server.stats.cost_charged == 32


def test_bucket_throttles_and_restores(start: Any) -> None:
    server = start(customers=500, bucket_size=50.0, restore_rate=100.0, cost_per_customer=1.0)
    client = Client(server.url())
    assert "data" in client.query(PAGE, {"first": 40})
    status, headers, raw = client.post(PAGE, {"first": 40})
    throttled = json.loads(raw)
    assert status == 200
    assert "Retry-After" not in headers
    assert "data" not in throttled
    assert throttled["errors"] == [
        {
            "message": "Throttled",
            "extensions": {
                "code": "THROTTLED",
                "documentation": "https://shopify.dev/api/usage/rate-limits",
            },
        }
    ]
    cost = throttled["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 42
    assert cost["actualQueryCost"] is None
    assert cost["throttleStatus"]["currentlyAvailable"] < 42
    time.sleep(0.45)
    assert "data" in client.query(PAGE, {"first": 40})
    stats = server.stats
    assert stats.throttled == 1
    assert stats.customer_pages == 2
    assert stats.cost_charged == 84


def test_max_cost_exceeded_envelope(start: Any) -> None:
    server = start(customers=500, cost_per_customer=5.0)
    result = Client(server.url()).query(PAGE, {"first": 250})
    assert set(result) == {"errors"}
    error = result["errors"][0]
    assert error["message"].startswith(
        "Query cost is 1252, which exceeds the single query max cost limit (1000)."
    )
    assert error["extensions"] == {
        "code": "MAX_COST_EXCEEDED",
        "cost": 1252,
        "maxCost": 1000,
        "documentation": "https://shopify.dev/api/usage/rate-limits",
    }
    assert server.stats.max_cost_errors == 1
    assert server.stats.cost_charged == 0


# Faults.


def expect_fault(kind: str, status: int, headers: dict[str, str], raw: bytes) -> None:
    """Assert that a response is the one the fault ``kind`` must produce."""
    text = raw.decode("utf-8", "replace")
    if kind.startswith("http_") and kind[5:8].isdigit():
        assert status == int(kind[5:8])
    else:
        assert status == 200
    if kind == "http_429":
        assert float(headers["Retry-After"]) == pytest.approx(0.05)

    # Bodies that are not JSON.
    if kind in ("http_502_html", "html_200"):
        assert headers["Content-Type"].startswith("text/html")
        assert "<html" in text
        return
    if kind == "truncated_json":
        assert text.startswith('{"data":{"customers":')
        with pytest.raises(ValueError):
            json.loads(text)
        return

    # REST-style bodies: {"errors": "<message>"}.
    payload = json.loads(text)
    messages = {
        "http_401": "[API] Invalid API key or access token",
        "http_403": "[API] This app is not approved to access REST endpoints",
        "http_402": "Unavailable Shop",
        "http_404": "Not Found",
        "http_429": "Exceeded",
    }
    if kind in messages:
        assert payload["errors"].startswith(messages[kind])
        return
    if kind.startswith("http_5") or kind == "http_423":
        assert isinstance(payload["errors"], str)
        return

    # GraphQL envelopes: {"errors": [{"message", "extensions": {"code"}}]}.
    codes = {
        "internal_error": "INTERNAL_SERVER_ERROR",
        "throttled": "THROTTLED",
        "max_cost": "MAX_COST_EXCEEDED",
        "access_denied": "ACCESS_DENIED",
        "validation_error": "undefinedField",
        "invalid_cursor": "BAD_REQUEST",
    }
    error = payload["errors"][0]
    assert error["extensions"]["code"] == codes[kind]
    if kind == "internal_error":
        assert error["extensions"]["requestId"] in error["message"]
        assert headers["X-Request-Id"] == error["extensions"]["requestId"]
    if kind == "throttled":
        assert payload["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 0
        assert payload["extensions"]["cost"]["actualQueryCost"] is None
    if kind == "access_denied":
        assert payload["data"] is None
        assert error["path"] == ["customers"]
    if kind == "validation_error":
        assert error["path"] == ["query CustomersPage", "customers", "nodes", "defaultEmailAddress"]


@pytest.mark.parametrize("kind", [k for k in FAULT_KINDS if k not in ("drop_connection", "hang")])
def test_fault_response_and_recovery(start: Any, kind: str) -> None:
    server = start(customers=800, faults=[Fault(kind, page=2)], retry_after=0.05)
    client = Client(server.url())
    first = client.query(PAGE, {"first": 250})
    cursor = first["data"]["customers"]["pageInfo"]["endCursor"]
    status, headers, raw = client.post(PAGE, {"first": 250, "after": cursor})
    expect_fault(kind, status, headers, raw)
    assert server.stats.faults_fired == {kind: 1}
    client.close()
    client = Client(server.url())
    if kind == "throttled":
        time.sleep(0.15)
    again = client.query(PAGE, {"first": 250, "after": cursor})
    assert again["data"]["customers"]["nodes"][0]["legacyResourceId"] == str(
        customer_ids(server.config)[250]
    )
    assert server.stats.customer_pages == 2


def test_fault_drop_connection(start: Any) -> None:
    server = start(customers=300, faults=[Fault("drop_connection")])
    client = Client(server.url())
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        client.post(PAGE, {"first": 10})
    client.close()
    assert "data" in Client(server.url()).query(PAGE, {"first": 10})
    assert server.stats.faults_fired == {"drop_connection": 1}


def test_fault_hang_times_out(start: Any) -> None:
    server = start(customers=300, faults=[Fault("hang")], hang_seconds=0.6)
    client = Client(server.url(), timeout=0.2)
    with pytest.raises((socket.timeout, TimeoutError)):
        client.post(PAGE, {"first": 10})
    client.close()
    assert "data" in Client(server.url()).query(PAGE, {"first": 10})
    assert server.stats.customer_pages == 1


def test_fault_hang_answers_late(start: Any) -> None:
    server = start(customers=300, faults=[Fault("hang")], hang_seconds=0.3)
    started = time.monotonic()
    result = Client(server.url()).query(PAGE, {"first": 10})
    assert time.monotonic() - started >= 0.3
    assert len(result["data"]["customers"]["nodes"]) == 10


def test_fault_waits_for_its_page(start: Any) -> None:
    server = start(customers=900, faults=[Fault("http_500", page=3, times=2)])
    client = Client(server.url())
    ids = customer_ids(server.config)
    statuses = []
    after: str | None = None
    for _ in range(6):
        status, _, raw = client.post(PAGE, {"first": 250, "after": after})
        statuses.append(status)
        if status == 200:
            info = json.loads(raw)["data"]["customers"]["pageInfo"]
            after = info["endCursor"]
    assert statuses == [200, 200, 500, 500, 200, 200]
    assert after is not None
    assert decode_cursor(after) == ids[-1]


def test_fault_always_repeats(start: Any) -> None:
    server = start(customers=300, faults=[Fault("internal_error", page=1, times=0)])
    client = Client(server.url())
    for _ in range(3):
        result = client.query(PAGE, {"first": 10})
        assert result["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert server.stats.faults_fired == {"internal_error": 3}
    count = client.query("{ customersCount { count } }")
    assert count["data"]["customersCount"]["count"] == 300


def test_max_cost_fault_persists(start: Any) -> None:
    server = start(customers=1000, faults=[Fault("max_cost", page=2, times=0)])
    client = Client(server.url())
    after = client.query(PAGE, {"first": 250})["data"]["customers"]["pageInfo"]["endCursor"]
    for _ in range(2):
        rejected = client.query(PAGE, {"first": 250, "after": after})
        assert rejected["errors"][0]["extensions"]["cost"] == 1252
        page = client.query(PAGE, {"first": 199, "after": after})
        assert page["extensions"]["cost"]["requestedQueryCost"] == 997
        after = page["data"]["customers"]["pageInfo"]["endCursor"]
    assert server.stats.max_cost_errors == 2


def test_invalid_cursor_fault_spares_restarts(start: Any) -> None:
    server = start(customers=600, faults=[Fault("invalid_cursor", page=2, times=0)])
    client = Client(server.url())
    ids = customer_ids(server.config)
    page = client.query(PAGE, {"first": 250})
    cursor = page["data"]["customers"]["pageInfo"]["endCursor"]
    rejected = client.query(PAGE, {"first": 250, "after": cursor})
    assert rejected["errors"][0]["message"] == "Invalid cursor for current pagination sort."
    restarted = client.query(PAGE, {"first": 250, "query": f"id:>{decode_cursor(cursor)}"})
    assert restarted["data"]["customers"]["nodes"][0]["legacyResourceId"] == str(ids[250])


def test_parse_fault_spec() -> None:
    assert parse_fault("http_502_html@3x2") == Fault("http_502_html", 3, 2)
    assert parse_fault("throttled@5") == Fault("throttled", 5, 1)
    assert parse_fault("hang") == Fault("hang", 1, 1)
    assert parse_fault("http_500x0") == Fault("http_500", 1, 0)
    for bad in ("nope@1", "http_500@0", "http_500@x", ""):
        with pytest.raises(ValueError):
            parse_fault(bad)


# Versions, authentication and request errors.


def test_version_field_differences(start: Any) -> None:
    server = start(customers=20)
    new_query = "query N { customers(first: 2) { nodes { defaultEmailAddress { emailAddress } } } }"
    old_query = """{ customers(first: 2) { nodes { email phone
        emailMarketingConsent { marketingState } smsMarketingConsent { marketingState } } } }"""
    old = Client(server.url("2025-01"))
    status, _, raw = old.post(new_query)
    assert status == 200
    assert json.loads(raw) == {
        "errors": [
            {
                "message": "Field 'defaultEmailAddress' doesn't exist on type 'Customer'",
                "locations": [{"line": 1, "column": 41}],
                "path": ["query N", "customers", "nodes", "defaultEmailAddress"],
                "extensions": {
                    "code": "undefinedField",
                    "typeName": "Customer",
                    "fieldName": "defaultEmailAddress",
                },
            }
        ]
    }
    legacy = old.query(old_query)["data"]["customers"]["nodes"][0]
    assert legacy["email"] == customer(server.config, 0)["email"]
    for version in ("2025-04", "2026-04", "unstable"):
        client = Client(server.url(version))
        assert "data" in client.query(new_query), version
        status, headers, _ = client.post(old_query)
        assert status == 200
        assert "X-Shopify-API-Deprecated-Reason" in headers
        assert headers["X-Shopify-API-Version"] == version


def test_unknown_argument_before_2025_07(start: Any) -> None:
    server = start(customers=5)
    result = Client(server.url("2025-04")).query("{ customersCount(limit: null) { count } }")
    message = "Field 'customersCount' doesn't accept argument 'limit'"
    assert result["errors"][0]["message"] == message
    assert result["errors"][0]["extensions"]["code"] == "argumentNotAccepted"


def test_wrong_token_401(start: Any) -> None:
    server = start(customers=5)
    status, _, raw = Client(server.url(), token="shpat_wrong").post(PAGE, {"first": 1})
    assert status == 401
    assert json.loads(raw) == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
    }


def test_request_errors(start: Any) -> None:
    server = start(customers=5)
    for version in ("2026-4", "latest", "2026-13"):
        status, _, raw = Client(server.url(version)).post(PAGE, {"first": 1})
        assert status == 404, version
        assert json.loads(raw) == {"errors": "Not Found"}
    client = Client(server.url())
    assert client.post("", body=b"{not json")[0] == 400
    assert client.post("", body=b'{"variables": {}}')[0] == 400
    assert client.post("", body=b'{"query": "{ shop }"}', content_type="text/plain")[0] == 400
    syntax = client.query("{ customers(first: 1) { nodes { id }")
    assert syntax["errors"][0]["message"].startswith("Parse error")
    mutation = client.query('mutation { customerDelete(input: {id: "1"}) { shop { id } } }')
    assert "data" not in mutation
    bad_variable = client.query(PAGE, {"first": "many"})
    assert bad_variable["errors"][0]["message"].startswith("Variable $first")
    introspection = client.query("{ __schema { types { name } } }")
    assert "does not support __schema" in introspection["errors"][0]["message"]
    unknown = client.query("{ customers(first: 1) { nodes { __secret } } }")
    assert unknown["errors"][0]["extensions"]["code"] == "undefinedField"
    assert server.stats.query_errors == 5


# Redaction and stats.


def test_redaction_envelope(start: Any) -> None:
    server = start(customers=10, redact=frozenset({"email", "name"}))
    query = """{ customers(first: 3) {
        nodes { id firstName defaultEmailAddress { emailAddress } state }
        edges { node { lastName } } } }"""
    status, _, raw = Client(server.url()).post(query)
    result = json.loads(raw)
    assert status == 200
    nodes = result["data"]["customers"]["nodes"]
    assert [node["firstName"] for node in nodes] == [None, None, None]
    assert [node["defaultEmailAddress"] for node in nodes] == [None, None, None]
    assert nodes[0]["state"] == customer(server.config, 0)["state"]
    assert result["data"]["customers"]["edges"][2] == {"node": {"lastName": None}}
    errors = result["errors"]
    assert len(errors) == 3 * 2 + 3
    assert errors[0]["message"].startswith("This app is not approved to access the Customer")
    assert errors[0]["path"] == ["customers", "nodes", 0, "firstName"]
    assert errors[0]["locations"] == [{"line": 2, "column": 20}]
    assert errors[1]["path"] == ["customers", "nodes", 0, "defaultEmailAddress"]
    assert errors[-1]["path"] == ["customers", "edges", 2, "node", "lastName"]
    assert server.stats.redaction_errors == 9


def test_stats_counts_and_endpoints(start: Any) -> None:
    server = start(customers=600, faults=[Fault("http_503", page=4)])
    client = Client(server.url())
    all_pages(client, first=250)
    status, _, _ = client.post(PAGE, {"first": 250})
    assert status == 503
    other = Client(server.url())
    all_pages(other, first=250)
    stats = server.stats
    assert stats.requests == 7
    assert stats.customer_pages == 6
    assert stats.customers_served == 1200
    assert stats.connections == 2
    assert stats.faults_fired == {"http_503": 1}
    assert stats.statuses == {"200": 6, "503": 1}
    assert stats.cost_charged == 2 * (12 + 12 + 11)
    assert stats.prefetched_pages >= 3

    host = urlsplit(server.base_url)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=5)
    connection.request("GET", "/sandbox/stats")
    served = json.loads(connection.getresponse().read())
    assert served["customers_served"] == 1200
    assert served["faults_fired"] == {"http_503": 1}
    connection.request("POST", "/sandbox/reset-stats")
    assert json.loads(connection.getresponse().read())["requests"] == 0
    assert server.stats.customers_served == 0


def test_prefetch_serves_same_pages(start: Any) -> None:
    server = start(customers=2000)
    nodes = all_pages(Client(server.url()), FULL_PAGE)
    assert server.stats.prefetched_pages >= 6
    assert [node["id"] for node in nodes] == [customer(server.config, i)["id"] for i in range(2000)]
    assert nodes[1999] == customer(server.config, 1999)


def test_server_stops_during_hang(start: Any) -> None:
    server = start(customers=10, faults=[Fault("hang", times=0)], hang_seconds=30)
    client = Client(server.url(), timeout=10)
    sock = socket.create_connection((urlsplit(server.base_url).hostname, server.port))
    body = json.dumps({"query": PAGE, "variables": {"first": 1}})
    head = (
        f"POST {client.path} HTTP/1.1\r\nHost: sandbox\r\nContent-Type: application/json\r\n"
        f"X-Shopify-Access-Token: {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall((head + body).encode())
    time.sleep(0.1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    sock.close()


# Data.


def test_ids_increase_and_invert() -> None:
    config = SandboxConfig(customers=5000, seed=3)
    ids = customer_ids(config)
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False))
    assert len({b - a for a, b in zip(ids, ids[1:], strict=False)}) > 100
    for index in (0, 1, 2, 2500, 4999):
        assert customer_id(config, index) == ids[index]
        assert index_after(config, ids[index]) == index + 1
        assert index_after(config, ids[index] - 1) == index
    assert index_after(config, 0) == 0
    assert index_after(config, ids[-1] + 10**6) == 5000


def test_data_deterministic_and_private() -> None:
    config = SandboxConfig(customers=100, seed=11)
    first = customer(config, 42)
    assert customer(config, 42) == first
    assert customer(SandboxConfig(customers=100, seed=12), 42) != first
    first["tags"].append("changed")
    first["amountSpent"]["amount"] = "0"
    assert customer(config, 42) != first
    with pytest.raises(IndexError):
        customer(config, 100)


def test_hostile_data_present() -> None:
    config = SandboxConfig(customers=5000)
    customers = [customer(config, index) for index in range(5000)]
    texts = [
        value
        for item in customers
        for value in (item["firstName"], item["lastName"], item["note"], *item["tags"])
        if isinstance(value, str)
    ]
    companies = [c["defaultAddress"]["company"] for c in customers if c["defaultAddress"]]

    assert any(len(item["tags"]) == 250 for item in customers)
    assert any(item["note"] and len(item["note"]) == 64 * 1024 for item in customers)
    assert any("\x00" in text for text in texts)
    assert any("\n" in text for text in texts)
    assert any('"' in text and "," in text for text in texts)
    assert any(text.startswith(("=", "+", "-", "@", "\t", "\r")) for text in texts)
    assert any(company and company.startswith(("=", "@")) for company in companies)
    assert any("\u0600" <= ch <= "\u06ff" for text in texts for ch in text)
    assert any("\u05d0" <= ch <= "\u05ea" for text in texts for ch in text)
    assert any("\u4e00" <= ch <= "\u9fff" for text in texts for ch in text)
    assert any(ord(ch) > 0xFFFF for text in texts for ch in text)
    assert any(c["defaultAddress"] and c["defaultAddress"]["zip"] == "02134" for c in customers)
    assert any((c["phone"] or "").startswith("+1415") for c in customers)

    empty = customer(config, 1)
    nullable = ("firstName", "lastName", "email", "phone", "note", "defaultAddress")
    assert all(empty[name] is None for name in nullable)
    assert empty["tags"] == []

    missing = sum(c["email"] is None for c in customers) / len(customers)
    assert 0.03 < missing < 0.2
    size = sum(len(json.dumps(c, ensure_ascii=False).encode()) for c in customers) / 5000
    assert 1000 < size < 2500


def test_ids_beyond_2_53(start: Any) -> None:
    server = start(customers=300, id_start=2**53 + 1)
    nodes = all_pages(Client(server.url()), first=250)
    ids = customer_ids(server.config)
    assert ids[0] > 2**53
    assert [int(node["legacyResourceId"]) for node in nodes] == ids
    assert [node["id"] for node in nodes][-1] == f"gid://shopify/Customer/{ids[-1]}"


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        SandboxConfig(customers=10, id_start=2**63 - 100)
    with pytest.raises(ValueError):
        SandboxConfig(redact=frozenset({"address", "birthday"}))
    with pytest.raises(ValueError):
        SandboxConfig(customers=-1)


# Schema against Shopify's real schemas.


@functools.lru_cache(maxsize=2)
def real_schema_file(name: str) -> Any:
    """Return the text of a real schema file, or the introspection result for a JSON file."""
    folder = schema_dir()
    assert folder is not None
    with gzip.open(folder / name, "rt") as opened:
        return json.load(opened) if name.endswith(".json.gz") else opened.read()


def real_fields(version: str, type_name: str) -> dict[str, str]:
    """Return the field names and named types of a type in a real schema, or skip."""
    from graphql import ObjectTypeDefinitionNode, parse
    from graphql.language import ListTypeNode, NonNullTypeNode

    if schema_dir() is None:
        pytest.skip("Shopify's schema files are not present")
    if version == "2025-01":
        data = real_schema_file("admin_2025-01.introspection.json.gz")
        types = data.get("data", data)["__schema"]["types"]
        found = next(item for item in types if item["name"] == type_name)
        fields = {}
        for item in found["fields"]:
            type_ref = item["type"]
            while type_ref.get("ofType"):
                type_ref = type_ref["ofType"]
            fields[item["name"]] = type_ref["name"]
        return fields

    # Parsing the whole 2026-04 SDL takes seconds; the one type's block is enough.
    text = real_schema_file("admin_2026-04.graphql.gz")
    start = text.index(f"\ntype {type_name} ")
    block = text[start : text.index("\n}", start) + 2]
    definition = parse(block).definitions[0]
    assert isinstance(definition, ObjectTypeDefinitionNode)
    fields = {}
    for field_node in definition.fields or ():
        type_node = field_node.type
        while isinstance(type_node, (ListTypeNode, NonNullTypeNode)):
            type_node = type_node.type
        fields[field_node.name.value] = type_node.name.value  # type: ignore[attr-defined]
    return fields


@pytest.mark.parametrize("version", ["2026-04", "2025-01"])
def test_sandbox_schema_matches_shopify(version: str) -> None:
    from graphql import GraphQLObjectType, get_named_type

    schema = api_version(version).schema
    checked = []
    for type_name, object_type in schema.type_map.items():
        if not isinstance(object_type, GraphQLObjectType) or type_name.startswith("__"):
            continue
        real = real_fields(version, type_name)
        for name, definition in object_type.fields.items():
            assert name in real, f"{type_name}.{name}"
            assert get_named_type(definition.type).name == real[name], f"{type_name}.{name}"
        checked.append(type_name)
    assert "MailingAddress" in checked
    assert ("CustomerEmailAddress" in checked) == (version >= "2025-04")


# Command line.


def test_command_rejects_remote_host() -> None:
    result = CliRunner().invoke(sandbox_command, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 2
    assert "loopback" in result.output


def test_command_rejects_bad_fault() -> None:
    result = CliRunner().invoke(sandbox_command, ["serve", "--fail", "explode@2"])
    assert result.exit_code == 2
    assert "Unknown fault kind 'explode'" in result.output
    result = CliRunner().invoke(sandbox_command, ["serve", "--redact", "name,shoe"])
    assert result.exit_code == 2
    assert "shoe" in result.output


def test_command_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shopify_export.sandbox.command",
            "serve",
            "--port",
            "0",
            "--customers",
            "42",
            "--fail",
            "http_502_html@1x1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(3)]
        assert lines[0] == "Sandbox store serving 42 customers"
        assert lines[1].startswith("export SHOPIFY_API_URL=http://127.0.0.1:")
        assert lines[1].endswith("/admin/api/2026-04/graphql.json")
        assert lines[2] == f"export SHOPIFY_ACCESS_TOKEN={TOKEN}"
        client = Client(lines[1].split("=", 1)[1])
        assert client.post(PAGE, {"first": 50})[0] == 502
        assert len(client.query(PAGE, {"first": 50})["data"]["customers"]["nodes"]) == 42
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_command_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(sandbox_command, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in result.output
