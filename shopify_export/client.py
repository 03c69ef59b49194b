"""Shopify Admin GraphQL client: one keep-alive session, rate-limit pacing, retries, pager.

``ShopifyClient`` sends every request of an export through one gql ``Client`` on one
``AIOHTTPTransport``, so a single aiohttp session (and its keep-alive connection) serves the
whole job. Before each request it waits until Shopify's leaky bucket, estimated from the last
``extensions.cost.throttleStatus``, contains the cost of the next request. What follows a
failed request is decided by ``shopify_export.failures.classify_failure``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import (
    TransportError,
    TransportQueryError,
)

from shopify_export import __version__
from shopify_export.config import (
    ConnectionSettings,
    has_default_email_fields,
)
from shopify_export.errors import ApiError, InvalidCursorError
from shopify_export.failures import (
    _TRANSIENT_CODES,
    Failure,
    FailureKind,
    QueryCostError,
    UnsupportedFieldError,
    _number,
    _one_line,
    _raise_for_status,
    _request_id_suffix,
    _scrub,
    _times,
    classify_failure,
)
from shopify_export.models import Page
from shopify_export.page_json import PageDecoder
from shopify_export.queries import (
    CONTACT_FIELDS,
    CUSTOMER_COUNT,
    CUSTOMER_COUNT_LEGACY,
    CUSTOMERS,
    CUSTOMERS_LEGACY,
    Query,
    count_query,
    customers_query,
)
from shopify_export.records import legacy_id

log = logging.getLogger(__name__)

# gql logs every request and response body at DEBUG; customer data stays out of -v logs.
logging.getLogger("gql.transport.aiohttp").setLevel(logging.WARNING)

# Shopify serves at most 250 nodes per connection page.
MAX_PAGE_SIZE = 250
# THROTTLED responses retried in a row before the export fails. They do not use up max_retries.
MAX_THROTTLED_RETRIES = 50
# Wait used when a throttled response has no usable numbers, and the cap of any computed wait.
FALLBACK_WAIT = 1.0
MAX_WAIT = 60.0
# Points kept in the bucket beyond the next request's cost when pacing, in case the server
# rounds currentlyAvailable up. In steady state each request still waits actualQueryCost /
# restoreRate, so the margin delays the export once, by margin / restoreRate seconds.
PACING_MARGIN = 1.0

# Redirects are not followed: aiohttp would send X-Shopify-Access-Token to the new location.
_POST_ARGS: dict[str, Any] = {"allow_redirects": False}


class _PreparedRequest(GraphQLRequest):
    """A request whose query text was printed once, at import.

    ``GraphQLRequest.payload`` prints the document on every access, which costs about half a
    millisecond per page; this subclass sends the text stored in ``Query`` instead.
    """

    def __init__(self, query: Query, variables: dict[str, Any]) -> None:
        super().__init__(query.document, variable_values=variables)
        self._text = query.text

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"query": self._text}
        if self.variable_values:
            payload["variables"] = self.variable_values
        return payload


class _Bucket:
    """Estimate of Shopify's leaky bucket for this app and store.

    Each response's ``throttleStatus`` gives the points available when it was sent; between
    responses the bucket refills at ``restoreRate`` points per second up to ``maximumAvailable``.
    """

    def __init__(self) -> None:
        self.maximum: float | None = None
        self.available: float | None = None
        self.restore_rate: float | None = None
        self.observed_at = 0.0

    def observe(self, status: object, now: float) -> None:
        """Store the ``throttleStatus`` of a response that arrived at ``now``."""
        if not isinstance(status, Mapping):
            return
        available = _number(status.get("currentlyAvailable"))
        if available is None:
            return
        self.available = available
        self.maximum = _number(status.get("maximumAvailable"))
        self.restore_rate = _number(status.get("restoreRate"))
        self.observed_at = now

    def level(self, now: float) -> float | None:
        """Return the estimated points available at ``now``, or None before any observation."""
        if self.available is None:
            return None
        rate = self.restore_rate if self.restore_rate and self.restore_rate > 0 else 0.0
        level = self.available + rate * max(0.0, now - self.observed_at)
        if self.maximum is not None and self.maximum > 0:
            level = min(level, self.maximum)
        return level

    def wait_for(self, cost: float | None, now: float, margin: float = 0.0) -> float:
        """Return the seconds until the bucket contains ``cost + margin``, or 0 if unknown."""
        if cost is None or cost <= 0:
            return 0.0
        cost += margin
        level = self.level(now)
        if level is None:
            return 0.0
        if self.maximum is not None and self.maximum > 0:
            # A cost above the bucket size can never be met, so wait for a full bucket at most.
            cost = min(cost, self.maximum)
        missing = cost - level
        if missing <= 1e-9:
            return 0.0
        if not self.restore_rate or self.restore_rate <= 0:
            return FALLBACK_WAIT
        return min(missing / self.restore_rate, MAX_WAIT)


@dataclass
class _Response:
    """The data of a successful request and the protected fields Shopify left out.

    ``node_texts`` contains the JSON text of each customer node, when the data has nodes.
    """

    data: dict[str, Any]
    redacted: dict[str, str]
    node_texts: Sequence[str | bytes] | None = None


class ShopifyClient:
    """Async client for the customer export; use it as ``async with ShopifyClient(...)``.

    Args:
        settings: endpoint, token, API version, timeout and retry budget.
        sleep: coroutine function used for every wait (pacing, throttling, back-off).
        clock: monotonic clock in seconds, used for the rate-limit estimate.
        on_notice: receives one-line, user-facing notices: retries, throttling, a smaller page
            size, a restart after a rejected cursor, a switch to the older e-mail fields.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._clock = clock
        self._on_notice = on_notice
        self._bucket = _Bucket()
        # requestedQueryCost of the last response to each query, the estimate for its next send.
        self._costs: dict[str, float] = {}
        self._customers_query = customers_query(settings.api_version)
        self._count_query = count_query(settings.api_version)
        self._client: Client | None = None
        self._transport: AIOHTTPTransport | None = None
        self._decoder = PageDecoder()
        self._session: AsyncClientSession | None = None
        self._last_customer_id: int | None = None
        self._version_checked = False

    async def __aenter__(self) -> ShopifyClient:
        self._transport = AIOHTTPTransport(
            url=self._settings.api_url,
            headers={
                "X-Shopify-Access-Token": self._settings.token,
                "User-Agent": f"shopify-export/{__version__}",
                "Accept": "application/json",
            },
            ssl=True,
            json_deserialize=self._decoder.loads,
            client_session_args={
                "raise_for_status": _raise_for_status,
                "timeout": aiohttp.ClientTimeout(total=self._settings.request_timeout),
            },
        )
        # No schema: gql would validate every request against it. aiohttp's timeout fires
        # first; gql's own timeout is a backstop for a transport that ignores it.
        self._client = Client(
            transport=self._transport, execute_timeout=self._settings.request_timeout + 5.0
        )
        session = await self._client.connect_async()
        if not isinstance(session, AsyncClientSession):
            await self._client.close_async()
            raise TypeError("gql returned a synchronous session for an async transport")
        self._session = session
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None and self._session is not None:
            await self._client.close_async()
        self._session = None
        self._client = None
        self._transport = None

    @property
    def last_customer_id(self) -> int | None:
        """Largest customer id of the pages yielded so far (or the one ``pages`` started from)."""
        return self._last_customer_id

    async def count_customers(self) -> int | None:
        """Return the store's number of customers, or None when Shopify returns no count.

        Uses ``customersCount(limit: null)`` on 2025-07 and later, where the count is otherwise
        capped at 10,000, and ``customersCount`` without arguments on older versions.

        Raises:
            ApiError: when Shopify fails the request (see ``classify_failure``).
        """
        try:
            response = await self._execute(self._count_query, {}, has_cursor=False)
        except UnsupportedFieldError as error:
            if self._count_query is not CUSTOMER_COUNT:
                raise
            self._notice(
                f"API version {self._settings.api_version} rejected customersCount(limit: null) "
                f"({error.code or 'validation error'}); counting without the limit argument"
            )
            self._count_query = CUSTOMER_COUNT_LEGACY
            response = await self._execute(self._count_query, {}, has_cursor=False)
        count = response.data.get("customersCount")
        if not isinstance(count, Mapping):
            return None
        value = _number(count.get("count"))
        return int(value) if value is not None else None

    async def pages(
        self, *, after: str | None, last_customer_id: int | None, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncGenerator[Page, None]:
        """Yield every page of customers after ``after``, in ascending id order.

        With ``after`` None and ``last_customer_id`` set, paging starts after that id
        (``query: "id:>N"``); with both None it starts at the first customer. After each
        yielded page ``last_customer_id`` advances to the largest id of that page. When
        Shopify rejects a cursor, paging restarts after ``last_customer_id`` and keeps that
        search query for the rest of the job. When a page costs more than Shopify's maximum,
        the page size shrinks and stays shrunk; ``Page.page_size`` reports the size in use.

        Args:
            after: the ``endCursor`` of the last saved page, or None.
            last_customer_id: the largest customer id saved so far, or None.
            page_size: customers per request, 1 to 250.

        Raises:
            InvalidCursorError: when a cursor is rejected and no customer id is known.
            ApiError: when Shopify fails a request for good or the retry budget is spent.
        """
        size = max(1, min(MAX_PAGE_SIZE, page_size))
        cursor = after
        last_id = last_customer_id
        self._last_customer_id = last_id
        search = f"id:>{last_id}" if cursor is None and last_id is not None else None
        restarted_after: int | None = None

        while True:
            variables = {"first": size, "after": cursor, "query": search}
            try:
                response = await self._execute(
                    self._customers_query,
                    variables,
                    has_cursor=cursor is not None,
                    check=_is_customer_page,
                )
            except QueryCostError as error:
                size = self._shrink_page_size(size, error)
                continue
            except InvalidCursorError as error:
                if last_id is None:
                    raise InvalidCursorError(
                        f"{error}; no customer id is saved to restart from, so start a new "
                        f"export: shopify-export export {self._settings.store_name}",
                        code=error.code,
                        request_id=error.request_id,
                    ) from error
                if restarted_after == last_id:
                    raise
                self._notice(f"{error}; restarting after customer id {last_id}")
                restarted_after = last_id
                search = f"id:>{last_id}"
                cursor = None
                continue
            except UnsupportedFieldError as error:
                served = self._served_version()
                if (
                    self._customers_query is not CUSTOMERS
                    or error.field not in CONTACT_FIELDS
                    or (served is not None and has_default_email_fields(served))
                ):
                    raise
                self._notice(
                    f"API version {served or self._settings.api_version} has no "
                    f"Customer.{error.field}; reading e-mail and phone from the older email and "
                    "phone fields instead"
                )
                self._customers_query = CUSTOMERS_LEGACY
                continue

            page = _page_from(response, size)
            if page.nodes:
                newest = _customer_id(page.nodes[-1])
                if newest is not None and (last_id is None or newest > last_id):
                    last_id = newest
                    self._last_customer_id = last_id
            yield page
            if not page.has_next_page:
                return
            if page.end_cursor is None or page.end_cursor == cursor:
                raise ApiError(
                    "Shopify reported more customers but sent no new cursor to continue from; "
                    f"resume the job later to continue after customer id {last_id}",
                    retryable=True,
                )
            cursor = page.end_cursor

    def _shrink_page_size(self, size: int, error: QueryCostError) -> int:
        if size == 1:
            raise error
        new_size = math.floor(size * error.max_cost / error.cost) if error.cost > 0 else size
        if new_size >= size:
            new_size = size // 2
        new_size = max(1, new_size)
        # The cost of the smaller page is unknown until Shopify returns it, so the next request
        # is not paced. If the bucket is short, the THROTTLED response states the exact wait.
        self._costs.pop(self._customers_query.name, None)
        self._notice(
            f"Shopify rejected a page of {size} customers: query cost {error.cost:g} exceeds "
            f"the maximum {error.max_cost:g}; continuing with {new_size} customers per page"
        )
        return new_size

    async def _execute(
        self,
        query: Query,
        variables: dict[str, Any],
        *,
        has_cursor: bool,
        check: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> _Response:
        """Send one request, pacing before it and retrying throttled and transient failures.

        ``check`` returns whether the data of a successful response has the expected shape.
        A response that fails the check is retried as transient.

        Raises:
            ApiError: a fatal failure at once, or a retryable one when its budget is spent.
        """
        if self._session is None or self._transport is None:
            raise RuntimeError("ShopifyClient is used outside 'async with'")
        transient_failures = 0
        throttled_in_row = 0
        waits: list[str] = []
        just_throttled = False

        while True:
            # After a THROTTLED response the client has just waited for the requested cost.
            if not just_throttled:
                cost = self._costs.get(query.name)
                pacing = self._bucket.wait_for(cost, self._clock(), PACING_MARGIN)
                if pacing > 0:
                    waits.append(f"{pacing:.3f} s pacing")
                    await self._sleep(pacing)
            just_throttled = False

            self._transport.response_headers = None
            started = time.perf_counter()
            extensions: object = None
            try:
                result = await self._session.execute(
                    _PreparedRequest(query, variables),
                    get_execution_result=True,
                    extra_args=_POST_ARGS,
                )
            except TransportQueryError as exc:
                extensions = exc.extensions
                self._observe(query, extensions)
                redacted = _redacted_fields(exc)
                if redacted is not None and isinstance(exc.data, dict):
                    self._log_request(query, variables, "partial", started, extensions, waits)
                    return _Response(exc.data, redacted, self._node_texts(exc.data))
                failure = self._classify(exc, has_cursor)
            except AssertionError as exc:
                # gql asserts that a result without errors has data; {"data": null} trips it.
                failure = Failure(
                    FailureKind.TRANSIENT,
                    "a response without data or errors",
                    request_id=self._response_request_id(),
                )
                log.debug("gql rejected a response: %s", exc)
            except (TransportError, TimeoutError, asyncio.TimeoutError) as exc:
                failure = self._classify(exc, has_cursor)
            else:
                extensions = result.extensions
                self._observe(query, extensions)
                if isinstance(result.data, dict) and (check is None or check(result.data)):
                    self._log_request(query, variables, "ok", started, extensions, waits)
                    if not self._version_checked:
                        self._check_served_version()
                    return _Response(result.data, {}, self._node_texts(result.data))
                failure = Failure(
                    FailureKind.TRANSIENT,
                    "a response without the expected data",
                    request_id=self._response_request_id(),
                )

            outcome = f"{failure.kind.value} ({failure.description})"
            self._log_request(query, variables, outcome, started, extensions, waits)
            waits = []
            if failure.kind is FailureKind.FATAL:
                if failure.error is None:
                    raise ApiError(failure.description, request_id=failure.request_id)
                raise failure.error

            if failure.kind is FailureKind.THROTTLED:
                throttled_in_row += 1
                if throttled_in_row > MAX_THROTTLED_RETRIES:
                    raise ApiError(
                        f"Shopify throttled {throttled_in_row} requests in a row; the store's "
                        "rate limit is used up by other apps, try again later",
                        retryable=True,
                        code="THROTTLED",
                        request_id=failure.request_id,
                    )
                delay = self._throttled_wait(query)
                waits.append(f"{delay:.3f} s throttled")
                self._notice(
                    f"Shopify throttled the request{self._bucket_state(query)}; "
                    f"retrying in {_seconds(delay)}"
                )
                await self._sleep(delay)
                just_throttled = True
                continue

            throttled_in_row = 0
            transient_failures += 1
            if transient_failures > self._settings.max_retries:
                raise ApiError(
                    _scrub(
                        f"Shopify request failed {_times(transient_failures)} in a row, last "
                        f"with {failure.description}"
                        f"{_request_id_suffix(failure.request_id, failure.description)}",
                        self._settings.token,
                    ),
                    retryable=True,
                    status=failure.status,
                    request_id=failure.request_id,
                )
            delay = self._backoff(transient_failures - 1, failure.retry_after)
            waits.append(f"{delay:.3f} s back-off")
            self._notice(
                _scrub(
                    f"Shopify request failed with {failure.description}"
                    f"{_request_id_suffix(failure.request_id, failure.description)}; "
                    f"retry {transient_failures} of "
                    f"{self._settings.max_retries} in {_seconds(delay)}",
                    self._settings.token,
                )
            )
            await self._sleep(delay)

    def _classify(self, exc: BaseException, has_cursor: bool) -> Failure:
        failure = classify_failure(
            exc,
            has_cursor=has_cursor,
            api_version=self._settings.api_version,
            api_url=self._settings.api_url,
            store_name=self._settings.store_name,
            request_id=self._response_request_id(),
        )
        failure.description = _scrub(failure.description, self._settings.token)
        if failure.error is not None and self._settings.token in str(failure.error):
            failure.error.args = (_scrub(str(failure.error), self._settings.token),)
        return failure

    def _node_texts(self, data: Mapping[str, Any]) -> Sequence[str | bytes] | None:
        connection = data.get("customers")
        if not isinstance(connection, Mapping):
            return None
        return self._decoder.texts_of(connection.get("nodes"))

    def _observe(self, query: Query, extensions: object) -> None:
        cost = extensions.get("cost") if isinstance(extensions, Mapping) else None
        if not isinstance(cost, Mapping):
            return
        requested = _number(cost.get("requestedQueryCost"))
        if requested is not None:
            self._costs[query.name] = requested
        self._bucket.observe(cost.get("throttleStatus"), self._clock())

    def _served_version(self) -> str | None:
        headers = getattr(self._transport, "response_headers", None)
        return headers.get("X-Shopify-API-Version") if headers is not None else None

    def _check_served_version(self) -> None:
        # Shopify responds to a request for a retired version with the oldest supported one.
        self._version_checked = True
        served = self._served_version()
        if served and served != self._settings.api_version:
            self._notice(
                f"Shopify served API version {served} instead of {self._settings.api_version}, "
                f"which it no longer supports; set SHOPIFY_API_VERSION={served} or newer"
            )

    def _throttled_wait(self, query: Query) -> float:
        wait = self._bucket.wait_for(self._costs.get(query.name), self._clock())
        # Throttled although the last numbers show enough points, or no numbers at all.
        return wait if wait > 0 else FALLBACK_WAIT

    def _bucket_state(self, query: Query) -> str:
        cost = self._costs.get(query.name)
        if self._bucket.available is None or cost is None:
            return ""
        maximum = f"/{self._bucket.maximum:g}" if self._bucket.maximum else ""
        return f" ({self._bucket.available:g}{maximum} points available, {cost:g} needed)"

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = self._settings.retry_delay * 2 ** min(attempt, 60)
        return random.uniform(0.0, min(self._settings.retry_max_delay, ceiling))

    def _response_request_id(self) -> str | None:
        headers = getattr(self._transport, "response_headers", None)
        return headers.get("X-Request-Id") if headers is not None else None

    def _notice(self, message: str) -> None:
        if self._on_notice is None:
            log.warning("%s", message)
        else:
            # The caller shows the notice on stderr, so logging it as well would print it twice.
            self._on_notice(message)

    def _log_request(
        self,
        query: Query,
        variables: Mapping[str, Any],
        outcome: str,
        started: float,
        extensions: object,
        waits: list[str],
    ) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        cost = extensions.get("cost") if isinstance(extensions, Mapping) else None
        cost = cost if isinstance(cost, Mapping) else {}
        status = cost.get("throttleStatus")
        status = status if isinstance(status, Mapping) else {}
        request = query.name
        if "first" in variables:
            request += f" first={variables['first']} after={'yes' if variables['after'] else 'no'}"
            if variables.get("query"):
                request += f" query={variables['query']}"
        log.debug(
            "%s: %s in %.0f ms; cost requested %s, actual %s; bucket %s/%s, restore %s/s; "
            "waited %s",
            request,
            outcome,
            elapsed_ms,
            cost.get("requestedQueryCost", "-"),
            "-" if cost.get("actualQueryCost") is None else cost["actualQueryCost"],
            status.get("currentlyAvailable", "-"),
            status.get("maximumAvailable", "-"),
            status.get("restoreRate", "-"),
            ", ".join(waits) if waits else "0 s",
        )


def _redacted_fields(exc: TransportQueryError) -> dict[str, str] | None:
    """Return field -> message when every error only blanks fields inside customer nodes.

    That is Shopify's response for protected customer data the app is not approved for: the
    page is complete except for those fields. Returns None for any other error.
    """
    if not isinstance(exc.data, Mapping) or not _is_customer_page(exc.data):
        return None
    if not isinstance(exc.errors, list) or not exc.errors:
        return None
    redacted: dict[str, str] = {}
    for error in exc.errors:
        if not isinstance(error, Mapping):
            return None
        path = error.get("path")
        if not (
            isinstance(path, list)
            and len(path) >= 4
            and path[0] == "customers"
            and path[1] == "nodes"
            and isinstance(path[2], int)
        ):
            return None
        extensions = error.get("extensions")
        code = extensions.get("code") if isinstance(extensions, Mapping) else None
        if code in _TRANSIENT_CODES or code in ("THROTTLED", "MAX_COST_EXCEEDED"):
            return None
        field = ".".join(str(part) for part in path[3:] if not isinstance(part, int))
        if field not in redacted:
            redacted[field] = _one_line(str(error.get("message") or "no message"))
    return redacted


def _is_customer_page(data: Mapping[str, Any]) -> bool:
    connection = data.get("customers")
    return (
        isinstance(connection, Mapping)
        and isinstance(connection.get("nodes"), list)
        and isinstance(connection.get("pageInfo"), Mapping)
    )


def _page_from(response: _Response, size: int) -> Page:
    connection = response.data["customers"]
    info = connection["pageInfo"]
    return Page(
        nodes=connection["nodes"],
        end_cursor=info.get("endCursor"),
        has_next_page=bool(info.get("hasNextPage")),
        page_size=size,
        redacted=response.redacted,
        node_texts=response.node_texts,
    )


def _customer_id(node: Mapping[str, Any]) -> int | None:
    """Return the numeric id of a customer node from legacyResourceId or its GID."""
    value = node.get("legacyResourceId")
    if value is None:
        return legacy_id(node.get("id"))
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value >= 1 else f"{value:.2f} s"
