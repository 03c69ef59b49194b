"""The sandbox store: a Shopify-compatible Admin GraphQL endpoint with generated customers.

The server part (aiohttp, graphql-core) is imported on first use, so that commands which
never start the sandbox do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shopify_export.sandbox.config import (
    FAULT_KINDS,
    REDACTABLE,
    Fault,
    SandboxConfig,
    parse_fault,
    parse_redact,
)
from shopify_export.sandbox.data import (
    customer,
    customer_id,
    customer_ids,
    decode_cursor,
    encode_cursor,
    index_after,
)

if TYPE_CHECKING:
    from shopify_export.sandbox.server import SandboxServer, Stats, serve

__all__ = [
    "FAULT_KINDS",
    "REDACTABLE",
    "Fault",
    "SandboxConfig",
    "SandboxServer",
    "Stats",
    "customer",
    "customer_id",
    "customer_ids",
    "decode_cursor",
    "encode_cursor",
    "index_after",
    "parse_fault",
    "parse_redact",
    "serve",
]

_SERVER_NAMES = ("SandboxServer", "Stats", "serve")


def __getattr__(name: str) -> Any:
    if name in _SERVER_NAMES:
        from shopify_export.sandbox import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
