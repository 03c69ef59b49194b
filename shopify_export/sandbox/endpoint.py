"""The sandbox store's Admin GraphQL endpoint: request handling, cost, faults and stats.

``POST /admin/api/{version}/graphql.json`` serves ``customers`` and ``customersCount``
queries with Shopify's envelopes, charges query cost against a leaky bucket and injects the
configured faults. ``GET /sandbox/stats`` and ``POST /sandbox/reset-stats`` let a benchmark in
another process read and clear the counters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from graphql import VariableNode

from shopify_export.sandbox.config import Fault, SandboxConfig
from shopify_export.sandbox.data import customer_id, encode_cursor, prepare
from shopify_export.sandbox.query import (
    PageRequest,
    Plan,
    RootField,
    argument_values,
    build_plan,
    count_json,
    dumps,
    invalid_cursor_error,
    log_factor,
    page_parts,
    page_request,
)
from shopify_export.sandbox.schema import (
    Analysis,
    ApiVersion,
    QueryError,
    analyse,
    api_version,
    coerce_variables,
    graphql_error,
    is_valid_version,
)

log = logging.getLogger(__name__)

DEFAULT_API_VERSION = "2026-04"
JSON_TYPE = "application/json"
RATE_LIMITS_DOC = "https://shopify.dev/api/usage/rate-limits"

UNAUTHORIZED = "[API] Invalid API key or access token (unrecognized login or wrong password)"
FORBIDDEN = (
    "[API] This app is not approved to access REST endpoints with protected customer data. "
    "See https://shopify.dev/docs/apps/launch/protected-customer-data for more details."
)
BAD_BODY = {"errors": {"query": "Required parameter missing or invalid"}}
MAX_COST_MESSAGE = (
    "Query cost is {cost}, which exceeds the single query max cost limit ({limit}).\n\n"
    "See https://shopify.dev/docs/api/usage/rate-limits for more information on how the\n"
    "cost of a query is calculated.\n\n"
    "To query larger amounts of data with fewer limits, bulk operations should be used "
    "instead.\nSee https://shopify.dev/docs/api/usage/bulk-operations/queries for usage "
    "details.\n"
)
ACCESS_DENIED_MESSAGE = (
    "Access denied for customers field. Required access: `read_customers` access scope."
)
INTERNAL_ERROR_MESSAGE = (
    "Internal error. Looks like something went wrong on our end.\n"
    "Request ID: {request_id} (include this in support requests)."
)
BAD_GATEWAY_HTML = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    "<body><h1>502 Bad Gateway</h1><p>The server returned an invalid or incomplete "
    "response.</p></body></html>\n"
)
MAINTENANCE_HTML = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    "<title>Shop unavailable</title></head>\n<body><h1>We&rsquo;ll be back soon</h1>"
    "<p>This store is down for maintenance. Please try again in a few minutes.</p>"
    "</body></html>\n"
)

# JSON error responses of the HTTP-status faults: (status, body).
_STATUS_FAULTS: dict[str, tuple[int, Any]] = {
    "http_500": (500, {"errors": "Internal Server Error"}),
    "http_503": (503, {"errors": "Service Unavailable"}),
    "http_504": (504, {"errors": "Gateway Timeout"}),
    "http_401": (401, {"errors": UNAUTHORIZED}),
    "http_403": (403, {"errors": FORBIDDEN}),
    "http_404": (404, {"errors": "Not Found"}),
    "http_402": (402, {"errors": "Unavailable Shop"}),
    "http_423": (423, {"errors": "Locked"}),
}
_QUERY_CACHE_SIZE = 256


@dataclass
class Stats:
    """Counters of what the sandbox served since it started or since the last reset."""

    requests: int = 0
    graphql_requests: int = 0
    customer_pages: int = 0
    # Customer pages whose data was built ahead, while the client processed the page before.
    prefetched_pages: int = 0
    customers_served: int = 0
    count_requests: int = 0
    throttled: int = 0
    max_cost_errors: int = 0
    query_errors: int = 0
    redaction_errors: int = 0
    # Sum of the actual query costs charged to the bucket.
    cost_charged: int = 0
    # Distinct TCP connections that sent at least one request.
    connections: int = 0
    bytes_sent: int = 0
    faults_fired: dict[str, int] = field(default_factory=dict)
    # Number of responses per HTTP status, as strings so that the JSON form keeps the keys.
    statuses: dict[str, int] = field(default_factory=dict)
    # Points in the bucket when this snapshot was taken.
    bucket_available: float = 0.0

    def copy(self) -> Stats:
        """Return a snapshot that later requests do not change."""
        return dataclasses.replace(
            self, faults_fired=dict(self.faults_fired), statuses=dict(self.statuses)
        )

    def to_json(self) -> dict[str, Any]:
        """Return the counters as a JSON-ready dict."""
        return dataclasses.asdict(self)


class _Bucket:
    """Shopify's leaky bucket: ``size`` points, refilled at ``rate`` points per second."""

    def __init__(self, size: float, rate: float, clock: Callable[[], float]) -> None:
        self.size = size
        self.rate = rate
        self.clock = clock
        self.points = size
        self.updated = clock()

    def available(self) -> float:
        now = self.clock()
        self.points = min(self.size, self.points + (now - self.updated) * self.rate)
        self.updated = now
        return self.points

    def status(self) -> dict[str, Any]:
        return {
            "maximumAvailable": float(self.size),
            "currentlyAvailable": int(self.available()),
            "restoreRate": float(self.rate),
        }


@dataclass
class _Resolved:
    """A request whose query is valid, with its arguments resolved."""

    version: ApiVersion
    analysis: Analysis
    plan: Plan
    pages: list[PageRequest]
    counts: list[tuple[RootField, dict[str, Any]]]
    # (version, query, operation name, variables as canonical JSON): equal keys, equal data.
    key: tuple[str, str, str | None, str]
    inputs: dict[str, Any]


@dataclass
class _Prefetched:
    """The data of the page that a client paging forward will most likely request next."""

    key: tuple[str, str, str | None, str]
    parts: list[str]
    actual: int
    error_count: int


class SandboxStore:
    """State and request handlers of one sandbox store, for use from one event loop only.

    ``pages_served`` counts customer pages served successfully, and faults are placed by it.
    """

    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.stats = Stats()
        self.pages_served = 0
        self.bucket = _Bucket(config.bucket_size, config.restore_rate, clock)
        self._remaining = [fault.times for fault in config.faults]
        self._analyses: OrderedDict[tuple[str, str, str | None], Analysis | QueryError] = (
            OrderedDict()
        )
        self._plans: OrderedDict[tuple[Any, ...], Plan] = OrderedDict()
        self._transports: weakref.WeakSet[Any] = weakref.WeakSet()
        self._peers: set[Any] = set()
        self._closing: asyncio.Event | None = None
        self._prefetched: _Prefetched | None = None
        # Draw the customer templates and build the schemas now rather than on the first
        # request, which a client with a short timeout could otherwise give up on.
        prepare(config)
        api_version(DEFAULT_API_VERSION)

    # Application and small endpoints.

    def application(self) -> web.Application:
        """Return the aiohttp application that serves this store."""
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/admin/api/{version}/graphql.json", self.handle_graphql)
        app.router.add_get("/sandbox/stats", self.handle_stats)
        app.router.add_post("/sandbox/reset-stats", self.handle_reset_stats)
        app.router.add_route("*", "/{tail:.*}", self.handle_not_found)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._closing = asyncio.Event()

    async def _on_shutdown(self, app: web.Application) -> None:
        # Wakes requests held back by the hang fault, so that shutdown does not wait for them.
        if self._closing is not None:
            self._closing.set()

    def snapshot(self) -> Stats:
        """Return a copy of the counters, with the bucket's current level."""
        stats = self.stats.copy()
        stats.bucket_available = self.bucket.available()
        return stats

    def reset_stats(self) -> None:
        """Zero the counters; fault progress and the bucket stay as they are."""
        self.stats = Stats()
        self._transports = weakref.WeakSet()
        self._peers = set()

    async def handle_stats(self, request: web.Request) -> web.Response:
        """Serve ``GET /sandbox/stats``."""
        return web.json_response(self.snapshot().to_json())

    async def handle_reset_stats(self, request: web.Request) -> web.Response:
        """Serve ``POST /sandbox/reset-stats``."""
        self.reset_stats()
        return web.json_response(self.snapshot().to_json())

    async def handle_not_found(self, request: web.Request) -> web.Response:
        """Respond to any other path as Shopify does to an unknown one, with 404."""
        return self._json(404, {"errors": "Not Found"})

    # Responses.

    def _respond(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        statuses = self.stats.statuses
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        self.stats.bytes_sent += len(body)
        response = web.Response(status=status, body=body, headers=headers)
        response.content_type = content_type
        response.charset = "utf-8"
        return response

    def _json(
        self, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> web.Response:
        return self._respond(status, dumps(payload).encode(), JSON_TYPE, headers)

    def _fire(self, kind: str) -> None:
        fired = self.stats.faults_fired
        fired[kind] = fired.get(kind, 0) + 1
        log.debug("Sandbox fault %s fired on page %d", kind, self.pages_served + 1)

    def _count_connection(self, request: web.Request) -> None:
        transport = request.transport
        if transport is None:
            return
        try:
            if transport not in self._transports:
                self._transports.add(transport)
                self.stats.connections += 1
        except TypeError:
            # A transport without weak references: fall back to the peer address.
            peer = transport.get_extra_info("peername")
            if peer not in self._peers:
                self._peers.add(peer)
                self.stats.connections += 1

    # The GraphQL endpoint.

    async def handle_graphql(self, request: web.Request) -> web.StreamResponse:
        """Serve ``POST /admin/api/{version}/graphql.json``."""
        self.stats.requests += 1
        self._count_connection(request)
        version = request.match_info["version"]
        if not is_valid_version(version):
            log.debug("Sandbox rejected unknown API version %r with 404", version)
            return self._json(404, {"errors": "Not Found"})
        if request.headers.get("X-Shopify-Access-Token") != self.config.token:
            log.debug("Sandbox rejected a request with a wrong access token with 401")
            return self._json(401, {"errors": UNAUTHORIZED})
        body = await self._read_body(request)
        if body is None:
            log.debug("Sandbox rejected a request body that is not a GraphQL request with 400")
            return self._json(400, BAD_BODY)
        text, variables, operation_name = body
        self.stats.graphql_requests += 1
        if self.config.latency:
            await asyncio.sleep(self.config.latency)

        request_id = str(uuid.uuid4())
        headers = {"X-Request-Id": request_id, "X-Shopify-API-Version": version}
        try:
            resolved = self._resolve(version, text, operation_name, variables)
        except QueryError as error:
            self.stats.query_errors += 1
            log.debug("Sandbox request %s failed: %s", request_id, error)
            payload: dict[str, Any] = {"data": None} if error.null_data else {}
            payload["errors"] = error.errors
            return self._json(200, payload, headers)
        if resolved.analysis.uses_deprecated:
            headers["X-Shopify-API-Deprecated-Reason"] = (
                "https://shopify.dev/api/usage/versioning#deprecation-practices"
            )

        if resolved.pages:
            fault = self._take_fault(resolved)
            if fault is not None:
                if fault.kind == "hang":
                    if not await self._hang(request):
                        # The client has left or the server is stopping, so no one reads this.
                        return web.Response(status=504)
                else:
                    return await self._fault_response(fault, request, resolved, headers)
        response = self._answer(resolved, headers)
        following = self._following_inputs(resolved) if response.status == 200 else None
        if following is not None:
            # Send the response first, then build the next page while the client handles this
            # one, so that a client paging sequentially need not wait for the page to be built.
            try:
                await response.prepare(request)
                await response.write_eof()
            except ConnectionResetError:
                log.debug("Sandbox client closed the connection before the response was sent")
                return response
            asyncio.get_running_loop().call_soon(
                self._prefetch, version, text, operation_name, following
            )
        return response

    async def _read_body(
        self, request: web.Request
    ) -> tuple[str, dict[str, Any], str | None] | None:
        raw = await request.read()
        if request.content_type == "application/graphql":
            try:
                return raw.decode(), {}, None
            except UnicodeDecodeError:
                return None
        if request.content_type != JSON_TYPE:
            return None
        try:
            payload = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(payload, dict):
            return None
        text = payload.get("query")
        variables = payload.get("variables") or {}
        operation_name = payload.get("operationName")
        if not isinstance(text, str) or not text.strip() or not isinstance(variables, dict):
            return None
        if operation_name is not None and not isinstance(operation_name, str):
            return None
        return text, variables, operation_name

    def _analysis(self, version: ApiVersion, text: str, operation_name: str | None) -> Analysis:
        key = (version.name, text, operation_name)
        found = self._analyses.get(key)
        if found is None:
            try:
                found = analyse(version, text, operation_name)
            except QueryError as error:
                found = error
            self._analyses[key] = found
            if len(self._analyses) > _QUERY_CACHE_SIZE:
                self._analyses.popitem(last=False)
        if isinstance(found, QueryError):
            raise found
        return found

    def _resolve(
        self, version_name: str, text: str, operation_name: str | None, inputs: dict[str, Any]
    ) -> _Resolved:
        version = api_version(version_name)
        analysis = self._analysis(version, text, operation_name)
        variables = coerce_variables(version, analysis, inputs)
        plan_key = (
            version.name,
            text,
            operation_name,
            tuple(repr(variables.get(name)) for name in analysis.directive_variables),
        )
        plan = self._plans.get(plan_key)
        if plan is None:
            plan = build_plan(version, analysis, variables, self.config.redact)
            self._plans[plan_key] = plan
            if len(self._plans) > _QUERY_CACHE_SIZE:
                self._plans.popitem(last=False)

        pages = []
        counts = []
        for root in plan.fields:
            if root.name == "customers":
                args = argument_values(root, variables)
                pages.append(page_request(self.config, root, args))
            elif root.name == "customersCount":
                counts.append((root, argument_values(root, variables)))
            elif root.name != "__typename":
                message = f"The sandbox store does not support {root.name}, only customers queries"
                raise QueryError([graphql_error(message, root.locations, [root.key])])
        key = (version.name, text, operation_name, json.dumps(inputs, sort_keys=True))
        return _Resolved(version, analysis, plan, pages, counts, key, inputs)

    # Cost and the bucket.

    def _page_cost(self, size: int) -> int:
        if self.config.cost_per_customer is not None:
            return 2 + math.ceil(size * self.config.cost_per_customer)
        return 2 + log_factor(size)

    def _requested_cost(self, resolved: _Resolved, max_cost_model: bool) -> int:
        cost = len(resolved.counts)
        for page in resolved.pages:
            cost += 2 + 5 * page.page_size if max_cost_model else self._page_cost(page.page_size)
        return max(cost, 1)

    def _cost(self, requested: int, actual: int | None) -> dict[str, Any]:
        return {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": self.bucket.status(),
            }
        }

    def _throttled(self, requested: int, headers: dict[str, str]) -> web.Response:
        self.stats.throttled += 1
        error = graphql_error(
            "Throttled", extensions={"code": "THROTTLED", "documentation": RATE_LIMITS_DOC}
        )
        return self._json(
            200, {"errors": [error], "extensions": self._cost(requested, None)}, headers
        )

    def _max_cost_exceeded(self, requested: int, headers: dict[str, str]) -> web.Response:
        self.stats.max_cost_errors += 1
        limit = self.config.max_query_cost
        error = graphql_error(
            MAX_COST_MESSAGE.format(cost=requested, limit=limit),
            extensions={
                "code": "MAX_COST_EXCEEDED",
                "cost": requested,
                "maxCost": limit,
                "documentation": RATE_LIMITS_DOC,
            },
        )
        return self._json(200, {"errors": [error]}, headers)

    # Answers.

    def _answer(self, resolved: _Resolved, headers: dict[str, str]) -> web.Response:
        """Serve a valid request and charge its cost, or reject it for its cost."""
        max_cost_fault = self._max_cost_fault() if resolved.pages else None
        requested = self._requested_cost(resolved, max_cost_fault is not None)
        if requested > self.config.max_query_cost:
            if max_cost_fault is not None:
                self._consume(max_cost_fault)
            return self._max_cost_exceeded(requested, headers)
        if requested > self.bucket.available():
            return self._throttled(requested, headers)

        self.bucket.points -= requested
        prefetched = self._prefetched
        if prefetched is not None and prefetched.key == resolved.key:
            self._prefetched = None
            self.stats.prefetched_pages += 1
            body, actual, error_count = prefetched.parts, prefetched.actual, prefetched.error_count
        else:
            body, actual, error_count = self._execute(resolved)
        self.bucket.points = min(self.bucket.size, self.bucket.points + requested - actual)
        self.stats.redaction_errors += error_count
        self.stats.cost_charged += actual
        self.stats.count_requests += len(resolved.counts)
        for page in resolved.pages:
            self.stats.customer_pages += 1
            self.stats.customers_served += page.count
            self.pages_served += 1
        extensions = f',"extensions":{dumps(self._cost(requested, actual))}}}'
        return self._respond(200, "".join([*body, extensions]).encode(), JSON_TYPE, headers)

    def _execute(self, resolved: _Resolved) -> tuple[list[str], int, int]:
        """Write ``data`` (and ``errors``) of a valid request as the start of a JSON object.

        Returns the JSON text in pieces, without the closing brace, the actual query cost and
        the number of redaction errors.
        """
        parts = ['{"data":']
        errors: list[dict[str, Any]] = []
        actual = 0
        pages = iter(resolved.pages)
        counts = iter(resolved.counts)
        for position, root in enumerate(resolved.plan.fields):
            parts.append(("{" if position == 0 else ",") + dumps(root.key) + ":")
            if root.name == "customers":
                page = next(pages)
                page_parts(self.config, page, errors, parts)
                actual += self._page_cost(page.count)
            elif root.name == "customersCount":
                count_root, args = next(counts)
                parts.append(count_json(self.config, resolved.version, count_root, args))
                actual += 1
            else:
                parts.append('"QueryRoot"')
        parts.append("}" if resolved.plan.fields else "{}")
        if errors:
            parts.append(',"errors":' + dumps(errors))
        return parts, max(actual, 1), len(errors)

    def _following_inputs(self, resolved: _Resolved) -> dict[str, Any] | None:
        """Return the variables of the request for the next page, when they can be predicted.

        That is the case for one ``customers`` field paged forward with ``after: $variable``.
        """
        if len(resolved.pages) != 1 or resolved.counts:
            return None
        page = resolved.pages[0]
        if page.reverse or not page.has_next or page.count == 0:
            return None
        after = next(
            (arg.value for arg in page.root.node.arguments or () if arg.name.value == "after"),
            None,
        )
        if not isinstance(after, VariableNode):
            return None
        following = dict(resolved.inputs)
        following[after.name.value] = encode_cursor(customer_id(self.config, page.stop - 1))
        return following

    def _prefetch(
        self, version: str, text: str, operation_name: str | None, inputs: dict[str, Any]
    ) -> None:
        if self._closing is not None and self._closing.is_set():
            return
        try:
            resolved = self._resolve(version, text, operation_name, inputs)
        except QueryError:
            return
        body, actual, error_count = self._execute(resolved)
        self._prefetched = _Prefetched(resolved.key, body, actual, error_count)

    # Faults.

    def _eligible(self, position: int, fault: Fault) -> bool:
        return self.pages_served + 1 >= fault.page and (
            fault.times == 0 or self._remaining[position] > 0
        )

    def _consume(self, position: int) -> None:
        fault = self.config.faults[position]
        if fault.times:
            self._remaining[position] -= 1
        self._fire(fault.kind)

    def _max_cost_fault(self) -> int | None:
        for position, fault in enumerate(self.config.faults):
            if fault.kind == "max_cost" and self._eligible(position, fault):
                return position
        return None

    def _take_fault(self, resolved: _Resolved) -> Fault | None:
        """Return the fault that responds to this request, counting it as fired, or None."""
        has_cursor = any(page.has_cursor for page in resolved.pages)
        for position, fault in enumerate(self.config.faults):
            if fault.kind == "max_cost" or not self._eligible(position, fault):
                continue
            if fault.kind == "invalid_cursor" and not has_cursor:
                continue
            self._consume(position)
            return fault
        return None

    async def _hang(self, request: web.Request) -> bool:
        """Delay the request by ``hang_seconds``; return whether the client is still connected."""
        if self._closing is None:
            self._closing = asyncio.Event()
        try:
            await asyncio.wait_for(self._closing.wait(), self.config.hang_seconds)
        except asyncio.TimeoutError:
            pass
        transport = request.transport
        return not self._closing.is_set() and transport is not None and not transport.is_closing()

    async def _fault_response(
        self, fault: Fault, request: web.Request, resolved: _Resolved, headers: dict[str, str]
    ) -> web.StreamResponse:
        kind = fault.kind
        if kind == "drop_connection":
            return self._drop(request)
        if kind == "truncated_json":
            parts, actual, _ = self._execute(resolved)
            requested = self._requested_cost(resolved, False)
            parts.append(f',"extensions":{dumps(self._cost(requested, actual))}}}')
            body = "".join(parts).encode()
            return self._respond(200, body[: len(body) // 2], JSON_TYPE, headers)
        if kind == "throttled":
            self.bucket.available()
            self.bucket.points = 0.0
            return self._throttled(self._requested_cost(resolved, False), headers)
        if kind in ("internal_error", "access_denied", "validation_error", "invalid_cursor"):
            return self._json(200, self._fault_envelope(kind, resolved, headers), headers)
        return self._http_fault(kind, headers)

    def _http_fault(self, kind: str, headers: dict[str, str]) -> web.Response:
        """Return the response of a fault that Shopify's HTTP layer would send."""
        if kind in _STATUS_FAULTS:
            status, body = _STATUS_FAULTS[kind]
            return self._json(status, body, headers)
        if kind == "http_429":
            headers["Retry-After"] = str(float(self.config.retry_after))
            message = (
                "Exceeded 2 calls per second for api client. "
                "Reduce request rates to resume uninterrupted service."
            )
            return self._json(429, {"errors": message}, headers)
        if kind == "http_502_html":
            return self._respond(502, BAD_GATEWAY_HTML.encode(), "text/html", headers)
        return self._respond(200, MAINTENANCE_HTML.encode(), "text/html", headers)

    def _fault_envelope(
        self, kind: str, resolved: _Resolved, headers: dict[str, str]
    ) -> dict[str, Any]:
        """Return the GraphQL error envelope of a fault that Shopify sends with status 200."""
        root = resolved.pages[0].root
        if kind == "internal_error":
            request_id = headers["X-Request-Id"]
            error = graphql_error(
                INTERNAL_ERROR_MESSAGE.format(request_id=request_id),
                extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
            )
            return {"errors": [error]}

        if kind == "access_denied":
            error = graphql_error(
                ACCESS_DENIED_MESSAGE,
                root.locations,
                [root.key],
                {
                    "code": "ACCESS_DENIED",
                    "documentation": "https://shopify.dev/api/usage/access-scopes",
                    "requiredAccess": "`read_customers` access scope.",
                },
            )
            requested = self._requested_cost(resolved, False)
            return {"data": None, "errors": [error], "extensions": self._cost(requested, 0)}

        if kind == "validation_error":
            operation = resolved.analysis.operation
            top = f"query {operation.name.value}" if operation.name else "query"
            error = graphql_error(
                "Field 'defaultEmailAddress' doesn't exist on type 'Customer'",
                root.locations,
                [top, root.key, "nodes", "defaultEmailAddress"],
                {
                    "code": "undefinedField",
                    "typeName": "Customer",
                    "fieldName": "defaultEmailAddress",
                },
            )
            return {"errors": [error]}

        return {"data": None, "errors": invalid_cursor_error(root).errors}

    def _drop(self, request: web.Request) -> web.StreamResponse:
        """Close the connection without sending a response."""
        transport = request.transport
        if transport is not None:
            transport.close()
        self.stats.statuses["dropped"] = self.stats.statuses.get("dropped", 0) + 1
        return web.Response(status=500)
