"""Classification of failed Shopify requests: throttled, transient or fatal.

``classify_failure`` is the one place that decides what the client does after a failed
request: wait for the leaky bucket, retry with back-off, or raise an ApiError whose message
states what to fix (token, scope, store name, API version).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any

import aiohttp
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)
from yarl import URL

from shopify_export.config import DEFAULT_API_VERSION, TOKEN_ENV
from shopify_export.errors import ApiError, InvalidCursorError

# Upper bound on an honoured Retry-After header, in seconds.
MAX_RETRY_AFTER = 300.0


# Quoted response text in messages is cut to this many characters.
EXCERPT_LENGTH = 200


# Single-query cost cap that Shopify applies when the error does not state its own.
_DEFAULT_MAX_COST = 1000.0


# GraphQL error codes that mean "send the same request again later".
_TRANSIENT_CODES = frozenset({"INTERNAL_SERVER_ERROR", "TIMEOUT", "SERVICE_UNAVAILABLE"})


# Static validation codes of Shopify's GraphQL server (graphql-ruby) for a schema mismatch.
_VALIDATION_CODES = frozenset(
    {
        "undefinedField",
        "argumentNotAccepted",
        "missingRequiredArguments",
        "undefinedType",
        "selectionMismatch",
        "argumentLiteralsIncompatible",
        "variableMismatch",
    }
)


_VALIDATION_MESSAGE = re.compile(r"doesn't exist on type|doesn't accept argument", re.IGNORECASE)


_NAMED_ARGUMENT = re.compile(r"argument '([^']+)'", re.IGNORECASE)


_NAMED_FIELD = re.compile(r"Field '([^']+)'", re.IGNORECASE)


_HTML_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


class QueryCostError(ApiError):
    """Raised when Shopify rejects a query whose cost exceeds the single-query maximum.

    The pager catches it and retries with a smaller page; it reaches the caller only when even
    one customer per page costs too much.
    """

    def __init__(self, message: str, *, cost: float, max_cost: float) -> None:
        super().__init__(message, code="MAX_COST_EXCEEDED")
        self.cost = cost
        self.max_cost = max_cost


class UnsupportedFieldError(ApiError):
    """Raised when the API version rejects a field or argument of the query (validation).

    ``field`` names the field or argument when Shopify's error names it.
    """

    def __init__(self, message: str, *, code: str | None, field: str | None) -> None:
        super().__init__(message, code=code)
        self.field = field


class FailureKind(Enum):
    """Action the client takes after a failed request."""

    THROTTLED = "throttled"  # wait for the bucket to refill, then send it again
    TRANSIENT = "transient"  # back off with jitter, then send it again
    FATAL = "fatal"  # raise Failure.error


@dataclass
class Failure:
    """A classified request failure.

    ``description`` states in one line what failed, for notices and the final error message.
    ``error`` is the exception to raise for FATAL failures.
    """

    kind: FailureKind
    description: str
    error: ApiError | None = None
    retry_after: float | None = None
    request_id: str | None = None
    status: int | None = None


class _HttpStatusError(Exception):
    """Response with a status outside 2xx, raised from aiohttp's raise_for_status hook.

    It contains only the status, a few response headers and a summary of the body, never the
    request, so that no exception can carry the access token header.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        body: str,
        *,
        retry_after: float | None,
        request_id: str | None,
        location: str | None,
    ) -> None:
        super().__init__(f"HTTP {status} {reason}".rstrip())
        self.status = status
        self.reason = reason
        self.body = body
        self.retry_after = retry_after
        self.request_id = request_id
        self.location = location


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    """Raise _HttpStatusError for any status outside 2xx, after reading the body.

    gql 4.4 turns a 4xx/5xx whose JSON body has an ``errors`` key into an ordinary GraphQL
    result and loses the status, so raising here keeps it. Reading the whole body lets aiohttp
    put the connection back into its keep-alive pool.
    """
    if response.status < 300:
        return
    try:
        body = await response.read()
    except (aiohttp.ClientError, asyncio.TimeoutError):
        body = b""
    headers = response.headers
    raise _HttpStatusError(
        response.status,
        response.reason or "",
        _summarize_body(body, headers.get("Content-Type", "")),
        retry_after=_parse_retry_after(headers.get("Retry-After")),
        request_id=headers.get("X-Request-Id"),
        location=headers.get("Location"),
    )


def classify_failure(
    exc: BaseException,
    *,
    has_cursor: bool,
    api_version: str,
    api_url: str,
    store_name: str,
    request_id: str | None = None,
) -> Failure:
    """Classify a failed request as throttled, transient or fatal.

    Transient: HTTP 429 (with its Retry-After), 5xx, bodies that are not a GraphQL result
    (HTML, truncated or invalid JSON), INTERNAL_SERVER_ERROR and timeout errors, dropped or
    refused connections and read timeouts. Throttled: a THROTTLED GraphQL error. Everything
    else is fatal, and the message of ``Failure.error`` states what to fix. MAX_COST_EXCEEDED,
    a rejected cursor and a field the API version lacks get their own ApiError subclasses,
    which the pager handles.

    Args:
        exc: what gql raised for the request.
        has_cursor: whether the request carried an ``after`` cursor.
        api_version: the API version in the URL, for messages.
        api_url: the endpoint, for messages.
        store_name: the shop handle, for messages.
        request_id: the X-Request-Id of the response, when one arrived.
    """
    cause: BaseException = exc
    if isinstance(exc, TransportConnectionFailed) and exc.__cause__ is not None:
        cause = exc.__cause__

    if isinstance(cause, _HttpStatusError):
        return _classify_status(
            cause.status,
            cause.reason,
            cause.body,
            retry_after=cause.retry_after,
            request_id=cause.request_id or request_id,
            location=cause.location,
            api_version=api_version,
            api_url=api_url,
        )
    if isinstance(cause, TransportQueryError):
        return _classify_graphql_errors(
            cause.errors,
            has_cursor=has_cursor,
            api_version=api_version,
            store_name=store_name,
            request_id=request_id,
        )
    if isinstance(cause, TransportServerError):
        return _classify_status(
            cause.code or 0,
            "",
            _one_line(str(cause)),
            retry_after=None,
            request_id=request_id,
            location=None,
            api_version=api_version,
            api_url=api_url,
        )
    if isinstance(cause, TransportProtocolError):
        return Failure(
            FailureKind.TRANSIENT, _describe_protocol_error(str(cause)), request_id=request_id
        )
    if isinstance(cause, (asyncio.TimeoutError, TimeoutError)):
        return Failure(FailureKind.TRANSIENT, "no response before the request timeout")
    if isinstance(cause, aiohttp.ClientConnectorCertificateError):
        return Failure(
            FailureKind.FATAL,
            "TLS certificate verification failed",
            ApiError(
                f"TLS certificate verification failed for {_host(api_url)}: the connection is "
                "not trusted; check SHOPIFY_API_URL and the system's CA certificates"
            ),
        )
    if isinstance(cause, aiohttp.InvalidURL):
        return Failure(
            FailureKind.FATAL,
            "invalid URL",
            ApiError(f"Invalid API URL {api_url!r}: check SHOPIFY_API_URL"),
        )
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return Failure(FailureKind.TRANSIENT, "the connection closed by the server")
    if isinstance(cause, aiohttp.ClientPayloadError):
        return Failure(FailureKind.TRANSIENT, "a response cut off before its end")
    if isinstance(cause, aiohttp.ClientConnectorError):
        return Failure(
            FailureKind.TRANSIENT, f"no connection to {_host(api_url)} ({_os_error(cause)})"
        )
    if isinstance(cause, (aiohttp.ClientError, OSError)):
        return Failure(FailureKind.TRANSIENT, f"a network error ({_one_line(str(cause)) or cause})")
    if isinstance(cause, (UnicodeDecodeError, ValueError)):
        return Failure(FailureKind.TRANSIENT, "a response that is not valid JSON")
    return Failure(
        FailureKind.FATAL,
        "an unexpected error",
        ApiError(f"Shopify request failed with an unexpected error: {_one_line(repr(cause))}"),
    )


def _classify_status(
    status: int,
    reason: str,
    body: str,
    *,
    retry_after: float | None,
    request_id: str | None,
    location: str | None,
    api_version: str,
    api_url: str,
) -> Failure:
    summary = f"HTTP {status}"
    if reason:
        summary += f" {reason}"
    if body:
        summary += f": {body}"
    if status == 429 or status >= 500:
        if retry_after is not None:
            summary += f" (Retry-After {retry_after:g} s)"
        return Failure(
            FailureKind.TRANSIENT,
            summary,
            retry_after=retry_after,
            request_id=request_id,
            status=status,
        )

    if 300 <= status < 400:
        guidance = (
            f"Shopify redirected the request to {location or 'another address'} ({summary}); "
            "redirects are not followed because the access token would go along: check the "
            "store name, or set SHOPIFY_API_URL to the final endpoint"
        )
    elif status == 401:
        guidance = (
            f"Shopify rejected the access token ({summary}): check {TOKEN_ENV} contains the Admin "
            "API access token of this store's custom app"
        )
    elif status == 402:
        guidance = (
            f"Shopify reports the store as frozen or unpaid ({summary}): the store owner must "
            "settle the bill or reactivate the store before customers can be exported"
        )
    elif status == 403:
        guidance = (
            f"Shopify refused access ({summary}): give the app the read_customers scope and "
            "approval for protected customer data, then reinstall it and use the new token"
        )
    elif status == 404:
        guidance = (
            f"Shopify found no store or API version at {api_url} ({summary}): check the store "
            f"name and SHOPIFY_API_VERSION ({_version_hint(api_version)})"
        )
    elif status == 423:
        guidance = (
            f"Shopify has locked the store ({summary}): contact Shopify support; exports cannot "
            "run until the lock is lifted"
        )
    elif status == 400:
        guidance = (
            f"Shopify rejected the request as malformed ({summary}): check SHOPIFY_API_URL "
            "points at an Admin GraphQL endpoint (.../admin/api/VERSION/graphql.json)"
        )
    else:
        guidance = f"Shopify rejected the request ({summary})"
    error = ApiError(
        guidance + _request_id_suffix(request_id), status=status, request_id=request_id
    )
    return Failure(FailureKind.FATAL, summary, error, request_id=request_id)


def _classify_graphql_errors(
    errors: object,
    *,
    has_cursor: bool,
    api_version: str,
    store_name: str,
    request_id: str | None,
) -> Failure:
    entries = _error_entries(errors)
    for _, extensions, _ in entries:
        if extensions.get("requestId") and request_id is None:
            request_id = str(extensions["requestId"])
    suffix = _request_id_suffix(request_id)

    def first(condition: Callable[[str, str], bool]) -> tuple[str, str, Mapping[str, Any]] | None:
        for message, extensions, code in entries:
            if condition(code, message):
                return message, code, extensions
        return None

    if first(lambda code, _: code == "THROTTLED"):
        return Failure(FailureKind.THROTTLED, "THROTTLED", request_id=request_id)

    found = first(lambda code, _: code == "MAX_COST_EXCEEDED")
    if found:
        message, code, extensions = found
        cost = _number(extensions.get("cost")) or _DEFAULT_MAX_COST
        max_cost = _number(extensions.get("maxCost")) or _DEFAULT_MAX_COST
        error: ApiError = QueryCostError(
            f"Shopify rejected the query: cost {cost:g} exceeds the maximum {max_cost:g} even "
            f"with one customer per page ({_one_line(message)}){suffix}",
            cost=cost,
            max_cost=max_cost,
        )
        return Failure(FailureKind.FATAL, code, error, request_id=request_id)

    found = first(
        lambda code, message: (
            code in _TRANSIENT_CODES
            or "timeout" in message.lower()
            or "timed out" in message.lower()
        )
    )
    if found:
        message, code, _ = found
        summary = f"{code or 'GraphQL error'}: {_one_line(message)}"
        return Failure(FailureKind.TRANSIENT, summary, request_id=request_id)

    found = first(
        lambda code, message: has_cursor and ("cursor" in message.lower() or code == "BAD_REQUEST")
    )
    if found:
        message, code, _ = found
        error = InvalidCursorError(
            f"Shopify rejected the saved cursor ({_one_line(message)}){suffix}",
            code=code or None,
            request_id=request_id,
        )
        return Failure(FailureKind.FATAL, "rejected cursor", error, request_id=request_id)

    found = first(
        lambda code, message: code == "ACCESS_DENIED" or "not approved to access" in message
    )
    if found:
        message, code, _ = found
        error = ApiError(
            f"Shopify denied access to customers ({_one_line(message)}): give the app the "
            "read_customers access scope and approval for protected customer data, then "
            f"reinstall it and use the new token{suffix}",
            code=code or "ACCESS_DENIED",
            request_id=request_id,
        )
        return Failure(FailureKind.FATAL, "access denied", error, request_id=request_id)

    found = first(
        lambda code, _: code in {"PAYMENT_REQUIRED", "SHOP_INACTIVE", "SHOP_PENDING_TERMINATION"}
    )
    if found:
        message, code, _ = found
        error = ApiError(
            f"Shopify reports the store as unavailable ({code}: {_one_line(message)}): the "
            f"store owner must reactivate the store or settle its bill{suffix}",
            code=code,
            request_id=request_id,
        )
        return Failure(FailureKind.FATAL, code, error, request_id=request_id)

    found = first(
        lambda code, message: code in _VALIDATION_CODES or bool(_VALIDATION_MESSAGE.search(message))
    )
    if found:
        message, code, extensions = found
        field = extensions.get("argumentName") or extensions.get("fieldName")
        if not field:
            named = _NAMED_ARGUMENT.search(message) or _NAMED_FIELD.search(message)
            field = named.group(1) if named else None
        subject = f"does not support '{field}'" if field else "rejected the query"
        advice = f"set SHOPIFY_API_VERSION={DEFAULT_API_VERSION} or another supported version"
        if api_version == DEFAULT_API_VERSION:
            advice = (
                f"check that SHOPIFY_API_URL, if set, ends in /admin/api/{api_version}/"
                "graphql.json, or set SHOPIFY_API_VERSION to another supported version"
            )
        error = UnsupportedFieldError(
            f"Shopify API version {api_version} {subject} ({_one_line(message)}): {advice}{suffix}",
            code=code or None,
            field=str(field) if field else None,
        )
        return Failure(FailureKind.FATAL, "validation error", error, request_id=request_id)

    if entries:
        message, _, code = entries[0]
        summary = f"{code}: {_one_line(message)}" if code else _one_line(message)
    else:
        summary = _one_line(str(errors))
    error = ApiError(
        f"Shopify returned an error for store {store_name}: {summary}{suffix}",
        code=entries[0][2] if entries and entries[0][2] else None,
        request_id=request_id,
    )
    return Failure(FailureKind.FATAL, summary, error, request_id=request_id)


def _error_entries(errors: object) -> list[tuple[str, Mapping[str, Any], str]]:
    """Return (message, extensions, code) for each error of a GraphQL ``errors`` value."""
    if isinstance(errors, str):
        return [(errors, {}, "")]
    if not isinstance(errors, list):
        return []
    entries = []
    for error in errors:
        if isinstance(error, Mapping):
            extensions = error.get("extensions")
            extensions = extensions if isinstance(extensions, Mapping) else {}
            code = extensions.get("code")
            entries.append((str(error.get("message") or ""), extensions, str(code or "")))
        else:
            entries.append((str(error), {}, ""))
    return entries


def _parse_retry_after(value: str | None) -> float | None:
    """Return the seconds of a Retry-After header (decimal seconds or an HTTP date)."""
    if not value:
        return None
    seconds = _number(value.strip())
    if seconds is None:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _summarize_body(body: bytes, content_type: str) -> str:
    """Return one line describing a response body: its error text, or what kind of page it is."""
    stripped = body.strip()
    if not stripped:
        return ""
    if stripped[:1] == b"<" or "html" in content_type.lower():
        title = _HTML_TITLE.search(stripped)
        if title:
            return f"HTML page '{_one_line(title.group(1).decode('utf-8', 'replace'))}'"
        return "HTML page"
    text = stripped.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return _one_line(text)
    if isinstance(parsed, Mapping) and "errors" in parsed:
        entries = _error_entries(parsed["errors"])
        if entries:
            return _one_line(entries[0][0])
    return _one_line(text)


def _describe_protocol_error(text: str) -> str:
    """Describe gql's 'not a valid GraphQL result' error without dumping the body."""
    body = text.rpartition(": ")[2].lstrip()
    if body.startswith("<") or "<html" in text.lower():
        return "an HTML page instead of JSON"
    if 'No "data" or "errors"' in text:
        return "a JSON response without data or errors"
    return "a response that is not valid JSON (truncated or malformed)"


def _one_line(text: str, limit: int = EXCERPT_LENGTH) -> str:
    """Collapse whitespace to single spaces and cut ``text`` to ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _request_id_suffix(request_id: str | None, text: str = "") -> str:
    """Return " (request id X)", or nothing when ``text`` already names that id."""
    if not request_id or request_id in text:
        return ""
    return f" (request id {request_id})"


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _version_hint(api_version: str) -> str:
    if api_version == DEFAULT_API_VERSION:
        return f"now {api_version}"
    return f"now {api_version}; the default is {DEFAULT_API_VERSION}"


def _host(url: str) -> str:
    return URL(url).host or url


def _os_error(error: aiohttp.ClientConnectorError) -> str:
    return _one_line(error.os_error.strerror or str(error.os_error)) if error.os_error else "failed"


def _number(value: object) -> float | None:
    """Return ``value`` as a finite float, or None for anything else (bool, text, NaN)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None
