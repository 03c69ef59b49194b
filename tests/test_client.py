"""ShopifyClient against a Shopify-like GraphQL server on 127.0.0.1 (real HTTP, aiohttp.web)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from shopify_export.client import MAX_THROTTLED_RETRIES, PACING_MARGIN, ShopifyClient
from shopify_export.config import ConnectionSettings
from shopify_export.errors import ApiError, InvalidCursorError
from shopify_export.failures import UnsupportedFieldError
from shopify_export.models import Page

TOKEN = "shpat_test_secret_0123456789abcdef"
PCD_MESSAGE = (
    "This app is not approved to access the Customer object. See "
    "https://partners.shopify.com/123/apps/456/customer_data for more details."
)

Reply = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


def customer(number: int) -> dict[str, Any]:
    """Return a customer node in the 2026-04 shape."""
    return {
        "id": f"gid://shopify/Customer/{number}",
        "legacyResourceId": str(number),
        "firstName": "Zoë",
        "lastName": f"Müller {number}",
        "defaultEmailAddress": {
            "emailAddress": f"c{number}@example.com",
            "marketingState": "SUBSCRIBED",
        },
        "defaultPhoneNumber": None,
        "state": "ENABLED",
        "tags": ["vip", "=cmd"],
        "note": "line one\nline two",
        "verifiedEmail": True,
        "taxExempt": False,
        "locale": "en",
        "createdAt": "2025-01-02T10:00:00Z",
        "updatedAt": "2026-03-04T08:15:00Z",
        "numberOfOrders": "3",
        "amountSpent": {"amount": "129.90", "currencyCode": "USD"},
        "defaultAddress": {"address1": "1 Main St", "city": "Ottawa", "zip": "K1A 0B1"},
    }


def encode_cursor(number: int) -> str:
    raw = json.dumps({"last_id": number, "last_value": str(number)})
    return base64.b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> int | None:
    try:
        return int(json.loads(base64.b64decode(cursor, validate=True))["last_id"])
    except (ValueError, KeyError, TypeError):
        return None


def throttled_body(requested: Any, available: Any, maximum: Any, rate: Any) -> dict[str, Any]:
    return {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": None,
                "throttleStatus": {
                    "maximumAvailable": maximum,
                    "currentlyAvailable": available,
                    "restoreRate": rate,
                },
            }
        },
    }


def graphql_error(message: str, code: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "locations": [{"line": 2, "column": 3}]}
    if code is not None:
        error["extensions"] = {"code": code, **extra}
    return {"data": None, "errors": [error]}


class FakeTime:
    """Clock and sleep for the client (and the server's bucket) that advance only on sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class Store:
    """A Shopify-like store: customers paged by id with opaque cursors and a leaky bucket.

    ``script`` maps a request's 0-based number to the reply it gets instead of the normal
    response, and ``always`` replaces every response.
    With ``clock`` set, requests draw ``requested`` points from a bucket of ``bucket_size``
    points refilled at ``restore_rate`` points per second, and get THROTTLED when it is short.
    """

    ids: list[int]
    clock: Callable[[], float] | None = None
    bucket_size: float = 2000.0
    restore_rate: float = 100.0
    requested: Callable[[int], float] = lambda first: 12.0
    actual: Callable[[int], float] = lambda first: 6.0
    max_cost: float = 1000.0
    legacy: bool = False
    script: dict[int, Reply] = field(default_factory=dict)
    always: Reply | None = None
    bodies: list[dict[str, Any]] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)
    tokens: list[str | None] = field(default_factory=list)
    throttled: int = 0
    level: float = 0.0
    level_at: float | None = None

    def variables(self, index: int) -> dict[str, Any]:
        return self.bodies[index].get("variables") or {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        number = len(self.bodies)
        self.bodies.append(body)
        self.peers.add(request.transport.get_extra_info("peername")[:2])
        token = request.headers.get("X-Shopify-Access-Token")
        self.tokens.append(token)
        if token != TOKEN:
            return web.json_response({"errors": "[API] Invalid API key or access token"}, 401)
        reply = self.script.get(number, self.always)
        if reply is not None:
            return await reply(request, body)
        if "customersCount" in body["query"]:
            data: dict[str, Any] = {
                "customersCount": {"count": len(self.ids), "precision": "EXACT"}
            }
            return web.json_response({"data": data, "extensions": self.charge(1.0, 1.0)})
        return self.page(body)

    def page(self, body: dict[str, Any]) -> web.Response:
        query = body["query"]
        if self.legacy and "defaultEmailAddress" in query:
            return web.json_response(
                graphql_error(
                    "Field 'defaultEmailAddress' doesn't exist on type 'Customer'",
                    "undefinedField",
                    typeName="Customer",
                    fieldName="defaultEmailAddress",
                )
            )

        variables = body.get("variables") or {}
        first = variables["first"]
        requested = self.requested(first)
        if requested > self.max_cost:
            error = {
                "message": f"Query cost is {requested:g}, which exceeds the single query max "
                f"cost limit ({self.max_cost:g}).\n\nSee https://shopify.dev for more.",
                "extensions": {
                    "code": "MAX_COST_EXCEEDED",
                    "cost": requested,
                    "maxCost": self.max_cost,
                },
            }
            return web.json_response({"errors": [error]})

        extensions = self.charge(requested, self.actual(first))
        if "errors" in extensions:
            self.throttled += 1
            return web.json_response(extensions)

        after = variables.get("after")
        start = 0
        if after is not None:
            last = decode_cursor(after)
            if last is None:
                return web.json_response(
                    graphql_error("Invalid cursor for current pagination sort.", "BAD_REQUEST")
                )
            start = next((i for i, n in enumerate(self.ids) if n > last), len(self.ids))
        remaining = self.ids[start:]
        search = variables.get("query")
        if search:
            floor = int(search.removeprefix("id:>"))
            remaining = [n for n in remaining if n > floor]

        chosen = remaining[:first]
        nodes = [customer(n) for n in chosen]
        if self.legacy:
            for node in nodes:
                node.pop("defaultEmailAddress")
                node.pop("defaultPhoneNumber")
                node.update(email="x@example.com", phone=None)

        info = {
            "hasNextPage": len(remaining) > first,
            "endCursor": encode_cursor(chosen[-1]) if chosen else None,
        }
        data = {"customers": {"nodes": nodes, "pageInfo": info}}
        return web.json_response({"data": data, "extensions": extensions})

    def charge(self, requested: float, actual: float) -> dict[str, Any]:
        """Return the cost extensions of a request (a THROTTLED body when the bucket is short)."""
        if self.clock is None:
            available = self.bucket_size - actual
        else:
            now = self.clock()
            if self.level_at is None:
                self.level = self.bucket_size
            else:
                refill = self.restore_rate * (now - self.level_at)
                self.level = min(self.bucket_size, self.level + refill)
            self.level_at = now
            if requested > self.level:
                return throttled_body(requested, self.level, self.bucket_size, self.restore_rate)
            self.level -= actual
            available = self.level
        return {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": {
                    "maximumAvailable": self.bucket_size,
                    "currentlyAvailable": available,
                    "restoreRate": self.restore_rate,
                },
            }
        }


class Server:
    """Runs a Store on 127.0.0.1 inside the test's event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        app = web.Application()
        app.router.add_post("/admin/api/{version}/graphql.json", store.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None)
        self.port = 0

    async def __aenter__(self) -> Server:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.runner.cleanup()

    def settings(self, api_version: str = "2026-04", **overrides: Any) -> ConnectionSettings:
        values: dict[str, Any] = {
            "store_name": "demo",
            "api_url": f"http://127.0.0.1:{self.port}/admin/api/{api_version}/graphql.json",
            "token": TOKEN,
            "api_version": api_version,
            "request_timeout": 5.0,
            "max_retries": 3,
            "retry_delay": 0.01,
            "retry_max_delay": 0.05,
        }
        values.update(overrides)
        return ConnectionSettings(**values)


@dataclass
class Run:
    """What one export through the client produced."""

    pages: list[Page]
    notices: list[str]
    error: BaseException | None
    last_customer_id: int | None

    @property
    def ids(self) -> list[int]:
        return [int(node["legacyResourceId"]) for page in self.pages for node in page.nodes]


async def export(
    server: Server,
    *,
    after: str | None = None,
    last_customer_id: int | None = None,
    page_size: int = 250,
    fake_time: FakeTime | None = None,
    api_version: str = "2026-04",
    **overrides: Any,
) -> Run:
    notices: list[str] = []
    pages: list[Page] = []
    error: BaseException | None = None
    timing: dict[str, Any] = {}
    if fake_time is not None:
        timing = {"sleep": fake_time.sleep, "clock": fake_time.clock}
    client = ShopifyClient(
        server.settings(api_version, **overrides), on_notice=notices.append, **timing
    )
    async with client:
        try:
            async for page in client.pages(
                after=after, last_customer_id=last_customer_id, page_size=page_size
            ):
                pages.append(page)
        except ApiError as exc:
            error = exc
    return Run(pages, notices, error, client.last_customer_id)


def run_export(store: Store, **kwargs: Any) -> tuple[Run, Server]:
    async def main() -> tuple[Run, Server]:
        async with Server(store) as server:
            return await export(server, **kwargs), server

    return asyncio.run(main())


def reply_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    async def reply(request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        return web.json_response(body, status=status, headers=headers)

    return reply


def reply_text(text: str, status: int, content_type: str = "text/html") -> Reply:
    async def reply(request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        return web.Response(text=text, status=status, content_type=content_type)

    return reply


async def reply_dropped(request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
    request.transport.close()
    return web.Response()


async def reply_truncated(request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = 4000
    await response.prepare(request)
    await response.write(b'{"data":{"customers":{"nodes":[{"id":"gid://shop')
    request.transport.close()
    return response


async def reply_late(request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
    await asyncio.sleep(1.0)
    return web.json_response({"data": None})


MAINTENANCE_PAGE = "<html><head><title>Down for maintenance</title></head><body>x</body></html>"
INTERNAL_ERROR = {
    "errors": [
        {
            "message": "Internal error. Looks like something went wrong on our end.\n"
            "Request ID: 0f1e2d3c-4b5a (include this in support requests).",
            "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": "0f1e2d3c-4b5a"},
        }
    ]
}


# --- paging and the connection -----------------------------------------------------------


def test_pages_all_customers_on_one_connection() -> None:
    store = Store(ids=list(range(1, 1001)))

    async def main() -> tuple[int | None, Run]:
        async with Server(store) as server:
            notices: list[str] = []
            client = ShopifyClient(server.settings(), on_notice=notices.append)
            async with client:
                count = await client.count_customers()
                pages = [page async for page in client.pages(after=None, last_customer_id=None)]
            return count, Run(pages, notices, None, client.last_customer_id)

    count, result = asyncio.run(main())
    assert count == 1000
    assert result.ids == list(range(1, 1001))
    assert [len(page.nodes) for page in result.pages] == [250, 250, 250, 250]
    assert result.pages[-1].has_next_page is False
    assert result.last_customer_id == 1000
    assert len(store.bodies) == 5
    assert len(store.peers) == 1
    assert result.notices == []


def test_pages_sends_token_and_page_variables() -> None:
    store = Store(ids=list(range(1, 6)))
    result, _ = run_export(store, page_size=2)
    assert result.ids == [1, 2, 3, 4, 5]
    assert store.tokens == [TOKEN] * 3
    assert store.variables(0) == {"first": 2, "after": None, "query": None}
    assert store.variables(1)["after"] == result.pages[0].end_cursor
    assert "sortKey: ID" in store.bodies[0]["query"]
    assert all(page.page_size == 2 for page in result.pages)


def test_pages_empty_store() -> None:
    result, _ = run_export(Store(ids=[]))
    assert len(result.pages) == 1
    assert result.pages[0].nodes == []
    assert result.pages[0].end_cursor is None
    assert result.last_customer_id is None


def test_pages_resume_from_cursor() -> None:
    store = Store(ids=list(range(1, 11)))
    result, _ = run_export(store, after=encode_cursor(4), last_customer_id=4, page_size=3)
    assert result.ids == [5, 6, 7, 8, 9, 10]
    assert store.variables(0)["query"] is None
    assert result.last_customer_id == 10


def test_pages_resume_from_id_without_cursor() -> None:
    store = Store(ids=list(range(1, 11)))
    result, _ = run_export(store, last_customer_id=7)
    assert result.ids == [8, 9, 10]
    assert store.variables(0) == {"first": 250, "after": None, "query": "id:>7"}


def test_pages_ids_beyond_2_to_53() -> None:
    big = 2**60
    store = Store(ids=[big + 1, big + 2, big + 3])
    result, _ = run_export(store, page_size=2)
    assert result.ids == [big + 1, big + 2, big + 3]
    assert result.last_customer_id == big + 3


# --- rate limit --------------------------------------------------------------------------


def test_pacing_avoids_throttling_at_bound() -> None:
    fake_time = FakeTime()
    store = Store(
        ids=list(range(1, 25)),
        clock=fake_time.clock,
        bucket_size=50.0,
        restore_rate=10.0,
        requested=lambda first: 30.0,
        actual=lambda first: 20.0,
    )
    result, _ = run_export(store, page_size=2, fake_time=fake_time)
    assert result.error is None
    assert result.ids == list(range(1, 25))
    assert store.throttled == 0
    # 12 pages: the full bucket pays for two, then each page waits (30 - 10) / 10 = 2 s. The
    # pacing margin of 1 point adds 0.1 s once, before the second page.
    assert fake_time.sleeps == pytest.approx([PACING_MARGIN / 10] + [2.0] * 10)
    assert sum(fake_time.sleeps) <= 20.0 / 0.97


def test_pacing_real_clock_small_bucket() -> None:
    store = Store(
        ids=list(range(1, 41)),
        clock=time.monotonic,
        bucket_size=60.0,
        restore_rate=1000.0,
        requested=lambda first: 50.0,
        actual=lambda first: 40.0,
    )
    started = time.monotonic()
    result, _ = run_export(store, page_size=2)
    elapsed = time.monotonic() - started
    assert result.error is None
    assert len(result.ids) == 40
    assert store.throttled == 0
    # 20 pages: the first two use the initial 60 points, the other 18 wait 30 ms each.
    assert elapsed >= 18 * 0.03 * 0.9
    assert elapsed < 18 * 0.03 + 1.5


def test_throttled_waits_and_retries_same_cursor() -> None:
    fake_time = FakeTime()
    store = Store(ids=list(range(1, 7)))
    store.script[1] = reply_json(throttled_body(752, 310, 2000.0, 100.0))
    result = run_export(store, page_size=3, fake_time=fake_time)[0]
    assert result.error is None
    assert result.ids == [1, 2, 3, 4, 5, 6]
    assert len(store.bodies) == 3
    assert store.variables(2) == store.variables(1)
    assert store.variables(1)["after"] == encode_cursor(3)
    # (752 - 310) / 100 points per second
    assert fake_time.sleeps == pytest.approx([4.42])
    assert any("throttled" in notice for notice in result.notices)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]}, 1.0),
        (throttled_body(752, 310, 2000.0, 0), 1.0),
        (throttled_body(None, None, None, None), 1.0),
        (throttled_body("x", 0, 2000.0, -5), 1.0),
        (throttled_body(1_000_000, 0, 2000.0, 1.0), 60.0),
        (throttled_body(50, 100, 2000.0, 100.0), 1.0),
    ],
    ids=["no-extensions", "zero-rate", "nulls", "garbage", "huge-wait", "enough-points"],
)
def test_throttled_missing_values_bounded(body: dict[str, Any], expected: float) -> None:
    fake_time = FakeTime()
    store = Store(ids=[1, 2], script={0: reply_json(body)})
    result = run_export(store, fake_time=fake_time)[0]
    assert result.error is None
    assert result.ids == [1, 2]
    assert fake_time.sleeps[0] == pytest.approx(expected)


def test_throttled_retries_are_bounded() -> None:
    fake_time = FakeTime()
    store = Store(ids=[1], always=reply_json(throttled_body(100, 0, 1000.0, 50.0)))
    result = run_export(store, fake_time=fake_time, max_retries=2)[0]
    assert isinstance(result.error, ApiError)
    assert result.error.retryable is True
    assert "throttled" in str(result.error)
    assert len(store.bodies) == MAX_THROTTLED_RETRIES + 1


def test_throttled_does_not_use_retry_budget() -> None:
    fake_time = FakeTime()
    throttled = reply_json(throttled_body(100, 0, 1000.0, 50.0))
    store = Store(ids=[1, 2], script={n: throttled for n in range(5)})
    store.script[5] = reply_text("oops", 503, "text/plain")
    result = run_export(store, fake_time=fake_time, max_retries=1)[0]
    assert result.error is None
    assert result.ids == [1, 2]


# --- query cost --------------------------------------------------------------------------


def test_max_cost_shrinks_page_and_keeps_size() -> None:
    store = Store(ids=list(range(1, 601)), requested=lambda first: 5.0 * first + 2)
    result = run_export(store)[0]
    assert result.error is None
    assert result.ids == list(range(1, 601))
    # floor(250 * 1000 / 1252) = 199
    assert [store.variables(i)["first"] for i in range(len(store.bodies))] == [
        250,
        199,
        199,
        199,
        199,
    ]
    assert store.variables(1)["after"] is None
    assert all(page.page_size == 199 for page in result.pages)
    assert any("199" in notice for notice in result.notices)


def test_max_cost_resume_keeps_reduced_size() -> None:
    store = Store(ids=list(range(1, 301)), requested=lambda first: 5.0 * first + 2)
    result = run_export(store, page_size=199)[0]
    assert {store.variables(i)["first"] for i in range(len(store.bodies))} == {199}
    assert result.notices == []


def test_max_cost_without_numbers_halves() -> None:
    error = {"errors": [{"message": "too costly", "extensions": {"code": "MAX_COST_EXCEEDED"}}]}
    store = Store(ids=[1, 2, 3], script={0: reply_json(error)})
    result = run_export(store, page_size=100)[0]
    assert result.ids == [1, 2, 3]
    assert store.variables(1)["first"] == 50


def test_max_cost_at_one_customer_fails() -> None:
    store = Store(ids=[1], requested=lambda first: 2000.0)
    result = run_export(store, page_size=1)[0]
    assert isinstance(result.error, ApiError)
    assert result.error.retryable is False
    assert "2000" in str(result.error)


# --- transient failures ------------------------------------------------------------------

TRANSIENT_FAULTS: dict[str, Reply] = {
    "429": reply_json({"errors": "Too Many Requests"}, 429, {"Retry-After": "0.05"}),
    "500": reply_json({"errors": "Internal Server Error"}, 500),
    "502-html": reply_text(MAINTENANCE_PAGE, 502),
    "503-json": reply_json({"errors": "Service Unavailable"}, 503),
    "504": reply_text("Gateway Timeout", 504, "text/plain"),
    "520": reply_text("", 520, "text/plain"),
    "200-html": reply_text(MAINTENANCE_PAGE, 200),
    "invalid-json": reply_text('{"data": {"customers": ', 200, "application/json"),
    "no-data": reply_json({"data": None}),
    "no-keys": reply_json({"extensions": {}}),
    "no-customers": reply_json({"data": {"customers": None}}),
    "truncated": reply_truncated,
    "dropped": reply_dropped,
    "internal-error": reply_json(INTERNAL_ERROR),
    "timeout-code": reply_json(graphql_error("Timeout", "TIMEOUT")),
    "timeout-message": reply_json(graphql_error("Request timed out, try a smaller query")),
    "read-timeout": reply_late,
}


# Faults after which the server keeps the connection open for the retry.
CONNECTION_KEPT = {name for name in TRANSIENT_FAULTS if name not in ("truncated", "dropped")}
CONNECTION_KEPT.discard("read-timeout")


@pytest.mark.parametrize("fault", sorted(TRANSIENT_FAULTS))
def test_transient_failure_recovered(fault: str) -> None:
    store = Store(ids=list(range(1, 8)), script={1: TRANSIENT_FAULTS[fault]})
    result = run_export(store, page_size=3, request_timeout=0.3)[0]
    assert result.error is None
    assert result.ids == list(range(1, 8))
    assert store.variables(2) == store.variables(1)
    assert len(result.notices) == 1
    assert "retry 1 of 3" in result.notices[0]
    assert "\n" not in result.notices[0]
    assert "<" not in result.notices[0]
    if fault in CONNECTION_KEPT:
        assert len(store.peers) == 1


def test_retry_after_is_honoured() -> None:
    fake_time = FakeTime()
    store = Store(ids=[1], script={0: TRANSIENT_FAULTS["429"]})
    result = run_export(store, fake_time=fake_time)[0]
    assert result.ids == [1]
    assert fake_time.sleeps == [0.05]


def test_backoff_is_jittered_exponential() -> None:
    fake_time = FakeTime()
    fault = TRANSIENT_FAULTS["503-json"]
    store = Store(ids=[1], script={n: fault for n in range(4)})
    result = run_export(
        store, fake_time=fake_time, max_retries=4, retry_delay=1.0, retry_max_delay=5.0
    )[0]
    assert result.ids == [1]
    assert len(fake_time.sleeps) == 4
    for attempt, delay in enumerate(fake_time.sleeps):
        assert 0.0 <= delay <= min(5.0, 2.0**attempt)


def test_retry_budget_resets_after_success() -> None:
    fault = TRANSIENT_FAULTS["500"]
    store = Store(ids=list(range(1, 5)), script={0: fault, 1: fault, 3: fault, 4: fault})
    result = run_export(store, page_size=2, max_retries=2)[0]
    assert result.error is None
    assert result.ids == [1, 2, 3, 4]


def test_retry_budget_exhausted_is_retryable() -> None:
    async def headers_reply(request: web.Request, payload: dict[str, Any]) -> web.Response:
        return web.json_response(
            {"errors": "Service Unavailable"}, status=503, headers={"X-Request-Id": "req-42"}
        )

    store = Store(ids=[1, 2, 3], script={n: headers_reply for n in range(1, 9)})
    result = run_export(store, page_size=2, max_retries=3)[0]
    error = result.error
    assert isinstance(error, ApiError)
    assert error.retryable is True
    assert error.request_id == "req-42"
    assert error.status == 503
    assert "4 times" in str(error)
    assert "HTTP 503" in str(error)
    assert "req-42" in str(error)
    assert len(store.bodies) == 1 + 4
    assert result.ids == [1, 2]


def test_connection_refused_exhausts_budget() -> None:
    async def main() -> Run:
        async with Server(Store(ids=[1])) as server:
            port = server.port
        server.port = port
        return await export(server, max_retries=2)

    result = asyncio.run(main())
    assert isinstance(result.error, ApiError)
    assert result.error.retryable is True
    assert "3 times" in str(result.error)
    assert "no connection to 127.0.0.1" in str(result.error)
    assert len(result.notices) == 2


# --- permanent failures ------------------------------------------------------------------

PERMANENT_FAULTS: dict[str, tuple[Reply, str]] = {
    "401": (
        reply_json({"errors": "[API] Invalid API key or access token (unrecognized login)"}, 401),
        "check SHOPIFY_ACCESS_TOKEN",
    ),
    "402": (reply_json({"errors": "Unavailable Shop"}, 402), "frozen or unpaid"),
    "403": (reply_text("Forbidden", 403, "text/plain"), "read_customers"),
    "404": (
        reply_json({"errors": "Not Found"}, 404),
        "check the store name and SHOPIFY_API_VERSION",
    ),
    "423": (reply_text(MAINTENANCE_PAGE, 423), "locked"),
    "400": (reply_json({"errors": "Bad Request"}, 400), "SHOPIFY_API_URL"),
    "430": (reply_text("Security rejection", 430, "text/plain"), "HTTP 430"),
    "redirect": (
        reply_text("", 301, "text/plain"),
        "redirects are not followed",
    ),
    "access-denied": (
        reply_json(
            graphql_error(
                "Access denied for customers field. Required access: `read_customers` access "
                "scope.",
                "ACCESS_DENIED",
            )
        ),
        "read_customers",
    ),
    "not-approved": (
        reply_json(graphql_error(PCD_MESSAGE)),
        "protected customer data",
    ),
    "validation": (
        reply_json(
            graphql_error(
                "Field 'numberOfOrders' doesn't exist on type 'Customer'",
                "undefinedField",
                fieldName="numberOfOrders",
            )
        ),
        "API version 2026-04 does not support 'numberOfOrders'",
    ),
    "shop-inactive": (
        reply_json(graphql_error("Shop is under review.", "SHOP_INACTIVE")),
        "reactivate",
    ),
    "other-graphql": (
        reply_json(graphql_error("you must provide one of first or last")),
        "you must provide one of first or last",
    ),
}


@pytest.mark.parametrize("fault", sorted(PERMANENT_FAULTS))
def test_permanent_failure_fails_at_once(fault: str) -> None:
    reply, guidance = PERMANENT_FAULTS[fault]
    fake_time = FakeTime()
    store = Store(ids=[1, 2], script={0: reply})
    result = run_export(store, fake_time=fake_time)[0]
    error = result.error
    assert isinstance(error, ApiError)
    assert error.retryable is False
    assert guidance in str(error)
    assert "\n" not in str(error)
    assert "<html" not in str(error)
    assert len(str(error)) < 600
    assert len(store.bodies) == 1
    assert fake_time.sleeps == []
    assert result.pages == []


def test_permanent_status_is_kept() -> None:
    store = Store(ids=[1], script={0: PERMANENT_FAULTS["401"][0]})
    error = run_export(store)[0].error
    assert isinstance(error, ApiError)
    assert error.status == 401


def test_redirect_does_not_send_token() -> None:
    target = Store(ids=[1])

    async def main() -> tuple[Run, Store]:
        async with Server(target) as other:
            location = other.settings().api_url

            async def redirect(request: web.Request, payload: dict[str, Any]) -> web.Response:
                return web.Response(status=302, headers={"Location": location})

            async with Server(Store(ids=[1], script={0: redirect})) as server:
                return await export(server), target

    result, target = asyncio.run(main())
    assert isinstance(result.error, ApiError)
    assert "redirect" in str(result.error)
    assert target.bodies == []


# --- rejected cursors, protected data, API versions ---------------------------------------


def test_rejected_cursor_restarts_after_last_id() -> None:
    store = Store(ids=list(range(1, 11)))
    result = run_export(store, after="stale-cursor", last_customer_id=4, page_size=2)[0]
    assert result.error is None
    assert result.ids == [5, 6, 7, 8, 9, 10]
    assert store.variables(0)["after"] == "stale-cursor"
    assert store.variables(1) == {"first": 2, "after": None, "query": "id:>4"}
    assert all(store.variables(i)["query"] == "id:>4" for i in range(1, len(store.bodies)))
    assert len(result.notices) == 1
    assert "restarting after customer id 4" in result.notices[0]
    assert result.last_customer_id == 10


def test_rejected_cursor_mid_export_restarts() -> None:
    rejected = reply_json(
        graphql_error("Invalid cursor for current pagination sort.", "BAD_REQUEST")
    )
    store = Store(ids=list(range(1, 11)), script={2: rejected})
    result = run_export(store, page_size=3)[0]
    assert result.ids == list(range(1, 11))
    assert store.variables(3) == {"first": 3, "after": None, "query": "id:>6"}


def test_rejected_cursor_without_last_id() -> None:
    store = Store(ids=list(range(1, 11)))
    result = run_export(store, after="stale-cursor")[0]
    error = result.error
    assert isinstance(error, InvalidCursorError)
    assert "start a new export" in str(error)
    assert "shopify-export export demo" in str(error)
    assert len(store.bodies) == 1


def test_rejected_cursor_twice_without_progress_fails() -> None:
    rejected = reply_json(
        graphql_error("Invalid cursor for current pagination sort.", "BAD_REQUEST")
    )

    async def empty_page(request: web.Request, payload: dict[str, Any]) -> web.Response:
        info = {"hasNextPage": True, "endCursor": encode_cursor(99)}
        data = {"customers": {"nodes": [], "pageInfo": info}}
        return web.json_response({"data": data})

    store = Store(ids=[1], script={0: rejected, 1: empty_page, 2: rejected})
    result = run_export(store, after="c", last_customer_id=5)[0]
    assert isinstance(result.error, InvalidCursorError)
    assert len(store.bodies) == 3


def test_repeated_cursor_fails_retryable() -> None:
    async def same_cursor(request: web.Request, payload: dict[str, Any]) -> web.Response:
        info = {"hasNextPage": True, "endCursor": encode_cursor(1)}
        data = {"customers": {"nodes": [], "pageInfo": info}}
        return web.json_response({"data": data})

    store = Store(ids=[1, 2], script={1: same_cursor})
    result = run_export(store, page_size=1)[0]
    assert isinstance(result.error, ApiError)
    assert result.error.retryable is True
    assert "after customer id 1" in str(result.error)
    assert len(store.bodies) == 2


def test_protected_data_keeps_page() -> None:
    async def redacted(request: web.Request, payload: dict[str, Any]) -> web.Response:
        nodes = [customer(n) for n in (1, 2)]
        errors = []
        for index, node in enumerate(nodes):
            node["defaultEmailAddress"] = None
            node["firstName"] = None
            for name in ("defaultEmailAddress", "firstName"):
                path = ["customers", "nodes", index, name]
                errors.append({"message": PCD_MESSAGE, "path": path})
        errors.append(
            {"message": PCD_MESSAGE, "path": ["customers", "nodes", 1, "defaultAddress", "zip"]}
        )
        info = {"hasNextPage": False, "endCursor": encode_cursor(2)}
        data = {"customers": {"nodes": nodes, "pageInfo": info}}
        return web.json_response({"data": data, "errors": errors})

    store = Store(ids=[1, 2], script={0: redacted})
    result = run_export(store)[0]
    assert result.error is None
    assert result.ids == [1, 2]
    assert result.pages[0].redacted == {
        "defaultEmailAddress": PCD_MESSAGE,
        "firstName": PCD_MESSAGE,
        "defaultAddress.zip": PCD_MESSAGE,
    }
    assert result.pages[0].nodes[0]["defaultEmailAddress"] is None
    assert len(store.bodies) == 1


def test_legacy_version_uses_email_fields() -> None:
    store = Store(ids=[1, 2, 3], legacy=True)

    async def main() -> tuple[int | None, Run]:
        async with Server(store) as server:
            client = ShopifyClient(server.settings("2025-01"))
            async with client:
                count = await client.count_customers()
                pages = [page async for page in client.pages(after=None, last_customer_id=None)]
            return count, Run(pages, [], None, client.last_customer_id)

    count, result = asyncio.run(main())
    assert count == 3
    assert result.ids == [1, 2, 3]
    count_query, page_query = store.bodies[0]["query"], store.bodies[1]["query"]
    assert "customersCount {" in count_query
    assert "limit" not in count_query
    assert "emailMarketingConsent" in page_query
    assert "defaultEmailAddress" not in page_query


def test_served_version_mismatch_noticed() -> None:
    async def fell_forward(request: web.Request, payload: dict[str, Any]) -> web.Response:
        info = {"hasNextPage": False, "endCursor": encode_cursor(1)}
        data = {"customers": {"nodes": [customer(1)], "pageInfo": info}}
        return web.json_response({"data": data}, headers={"X-Shopify-API-Version": "2025-10"})

    result = run_export(Store(ids=[1], script={0: fell_forward}), api_version="2025-04")[0]
    assert result.ids == [1]
    assert len(result.notices) == 1
    assert "served API version 2025-10 instead of 2025-04" in result.notices[0]


def test_current_version_uses_default_email_fields() -> None:
    store = Store(ids=[1])

    async def main() -> None:
        async with Server(store) as server, ShopifyClient(server.settings()) as client:
            assert await client.count_customers() == 1
            assert [page async for page in client.pages(after=None, last_customer_id=None)]

    asyncio.run(main())
    assert "customersCount(limit: null)" in store.bodies[0]["query"]
    assert "defaultEmailAddress" in store.bodies[1]["query"]
    assert "emailMarketingConsent" not in store.bodies[1]["query"]


def test_missing_contact_field_switches_to_legacy() -> None:
    store = Store(ids=[1, 2, 3], legacy=True)
    result = run_export(store, page_size=2)[0]
    assert result.error is None
    assert result.ids == [1, 2, 3]
    assert "defaultEmailAddress" in store.bodies[0]["query"]
    assert all("emailMarketingConsent" in body["query"] for body in store.bodies[1:])
    assert len(result.notices) == 1
    assert "defaultEmailAddress" in result.notices[0]


def test_count_falls_back_without_limit() -> None:
    rejected = reply_json(
        graphql_error(
            "Field 'customersCount' doesn't accept argument 'limit'",
            "argumentNotAccepted",
            argumentName="limit",
        )
    )
    store = Store(ids=[1, 2], script={0: rejected})

    async def main() -> int | None:
        async with Server(store) as server, ShopifyClient(server.settings()) as client:
            return await client.count_customers()

    assert asyncio.run(main()) == 2
    assert "limit" not in store.bodies[1]["query"]


def test_unsupported_field_error_names_field() -> None:
    reply, _ = PERMANENT_FAULTS["validation"]
    result = run_export(Store(ids=[1], script={0: reply}), api_version="2025-04")[0]
    assert isinstance(result.error, UnsupportedFieldError)
    assert result.error.field == "numberOfOrders"
    assert "version 2025-04 does not support 'numberOfOrders'" in str(result.error)
    assert "SHOPIFY_API_VERSION=2026-04" in str(result.error)


# --- secrets and logging -----------------------------------------------------------------


def test_token_never_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def echo_token(request: web.Request, payload: dict[str, Any]) -> web.Response:
        token = request.headers["X-Shopify-Access-Token"]
        return web.json_response({"errors": f"bad token {token}"}, status=503)

    async def echo_token_fatal(request: web.Request, payload: dict[str, Any]) -> web.Response:
        token = request.headers["X-Shopify-Access-Token"]
        return web.json_response({"errors": f"[API] Invalid token {token}"}, status=401)

    store = Store(ids=list(range(1, 6)), script={1: echo_token, 3: echo_token_fatal})
    result = run_export(store, page_size=2)[0]
    assert isinstance(result.error, ApiError)
    assert TOKEN not in str(result.error)
    assert TOKEN not in repr(result.error.args)
    assert all(TOKEN not in notice for notice in result.notices)
    assert TOKEN not in caplog.text
    assert "X-Shopify-Access-Token" not in caplog.text
    assert result.error.__cause__ is None or TOKEN not in str(result.error.__cause__)


def test_debug_log_per_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="shopify_export.client")
    store = Store(ids=list(range(1, 6)), script={1: TRANSIENT_FAULTS["500"]})
    run_export(store, page_size=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "shopify_export.client"]
    request_lines = [line for line in lines if line.startswith("Customers first=")]
    assert len(request_lines) == len(store.bodies) == 4
    assert "first=2 after=no: ok in" in request_lines[0]
    assert "cost requested 12.0, actual 6.0" in request_lines[0]
    assert "bucket 1994.0/2000.0, restore 100.0/s" in request_lines[0]
    assert (
        ": transient (HTTP 500 Internal Server Error: Internal Server Error) in"
        in (request_lines[1])
    )
    assert "back-off" in request_lines[2]
    gql_records = [r for r in caplog.records if r.name.startswith("gql")]
    assert gql_records == []


# --- cost per page -----------------------------------------------------------------------


def sandbox_export(
    config: Any, api_version: str = "2026-04", url_version: str | None = None
) -> tuple[Run, Any, float]:
    """Export every customer of a sandbox store; return the run, its stats and the seconds."""
    server_module = pytest.importorskip("shopify_export.sandbox.server")

    async def main(server: Any) -> Run:
        settings = ConnectionSettings(
            store_name="demo",
            api_url=server.url(url_version or api_version),
            token=server.token,
            api_version=api_version,
            request_timeout=0.5,
            retry_delay=0.01,
            retry_max_delay=0.05,
        )
        notices: list[str] = []
        client = ShopifyClient(settings, on_notice=notices.append)
        async with client:
            pages = [page async for page in client.pages(after=None, last_customer_id=None)]
        return Run(pages, notices, None, client.last_customer_id)

    with server_module.SandboxServer(config) as server:
        started = time.monotonic()
        result = asyncio.run(main(server))
        elapsed = time.monotonic() - started
        return result, server.stats, elapsed


def test_sandbox_paced_export_near_bound() -> None:
    from shopify_export.sandbox import SandboxConfig

    config = SandboxConfig(
        customers=3000, bucket_size=300.0, restore_rate=2000.0, cost_per_customer=0.5
    )
    result, stats, elapsed = sandbox_export(config)
    ids = [int(node["legacyResourceId"]) for page in result.pages for node in page.nodes]
    assert len(ids) == 3000
    assert len(set(ids)) == 3000
    assert ids == sorted(ids)
    assert stats.throttled == 0
    assert stats.connections == 1
    bound = (stats.cost_charged - config.bucket_size) / config.restore_rate
    assert elapsed >= bound
    # A loose ceiling: the benchmark measures efficiency; this only catches waits far too long.
    assert elapsed < bound * 1.5 + 1.0


def test_sandbox_faults_recovered() -> None:
    from shopify_export.sandbox import Fault, SandboxConfig

    kinds = [
        "http_429",
        "http_502_html",
        "html_200",
        "truncated_json",
        "drop_connection",
        "internal_error",
        "throttled",
        "max_cost",
        "invalid_cursor",
        "hang",
    ]
    faults = [Fault(kind, page=number) for number, kind in enumerate(kinds, start=2)]
    config = SandboxConfig(customers=2600, faults=faults, retry_after=0.01, hang_seconds=3.0)
    result, stats, elapsed = sandbox_export(config)
    ids = [int(node["legacyResourceId"]) for page in result.pages for node in page.nodes]
    assert len(ids) == 2600
    assert len(set(ids)) == 2600
    assert sum(stats.faults_fired.values()) == len(kinds)
    assert result.pages[-1].page_size < 250
    assert len(result.notices) == len(kinds)
    # Only the hang (0.5 s request timeout) and the throttle (12 points at 100 per second)
    # take noticeable time.
    assert elapsed < 3.0


def test_sandbox_legacy_version() -> None:
    from shopify_export.sandbox import SandboxConfig

    result, stats, _ = sandbox_export(SandboxConfig(customers=300), api_version="2025-01")
    nodes = [node for page in result.pages for node in page.nodes]
    assert len(nodes) == 300
    assert "email" in nodes[0]
    assert "defaultEmailAddress" not in nodes[0]
    assert stats.query_errors == 0


@pytest.mark.parametrize(
    ("kind", "guidance"),
    [
        ("http_401", "SHOPIFY_ACCESS_TOKEN"),
        ("http_402", "frozen or unpaid"),
        ("http_403", "read_customers"),
        ("access_denied", "read_customers"),
        ("http_404", "SHOPIFY_API_VERSION"),
        ("http_423", "locked"),
    ],
)
def test_sandbox_permanent_fault_fails(kind: str, guidance: str) -> None:
    sandbox = pytest.importorskip("shopify_export.sandbox")
    config = sandbox.SandboxConfig(customers=600, faults=[sandbox.Fault(kind, page=2)])
    with pytest.raises(ApiError) as caught:
        sandbox_export(config)
    assert caught.value.retryable is False
    assert guidance in str(caught.value)
    assert "\n" not in str(caught.value)


def test_sandbox_validation_error_fails_once() -> None:
    sandbox = pytest.importorskip("shopify_export.sandbox")
    config = sandbox.SandboxConfig(customers=600, faults=[sandbox.Fault("validation_error", 2, 0)])
    with pytest.raises(UnsupportedFieldError) as caught:
        sandbox_export(config)
    assert "version 2026-04 does not support 'defaultEmailAddress'" in str(caught.value)
    assert "SHOPIFY_API_URL" in str(caught.value)


def test_sandbox_older_endpoint_switches_to_legacy() -> None:
    sandbox = pytest.importorskip("shopify_export.sandbox")
    config = sandbox.SandboxConfig(customers=300)
    result, stats, _ = sandbox_export(config, url_version="2025-01")
    nodes = [node for page in result.pages for node in page.nodes]
    assert len(nodes) == 300
    assert "email" in nodes[0]
    assert stats.query_errors == 1
    assert any("has no Customer.defaultEmailAddress" in notice for notice in result.notices)
