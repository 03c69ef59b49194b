"""Settings of the sandbox store: its customers, rate limits and the faults it injects."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Every fault the sandbox can inject into the response for a customers page.
FAULT_KINDS: tuple[str, ...] = (
    "http_429",
    "http_500",
    "http_502_html",
    "http_503",
    "http_504",
    "html_200",
    "truncated_json",
    "drop_connection",
    "hang",
    "internal_error",
    "throttled",
    "max_cost",
    "http_401",
    "http_403",
    "access_denied",
    "http_404",
    "http_402",
    "http_423",
    "validation_error",
    "invalid_cursor",
)

# Groups of protected customer data that can be withheld, as Shopify does for apps that are
# not approved for them.
REDACTABLE: tuple[str, ...] = ("name", "email", "phone", "address")

# Real Shopify customer ids have 13 digits.
DEFAULT_ID_START = 7_000_000_000_000
# Customer i gets an id in [id_start + i * ID_STRIDE, id_start + (i + 1) * ID_STRIDE).
ID_STRIDE = 1024
# The largest value of SQLite's signed 64-bit INTEGER.
MAX_ID = 2**63 - 1

_FAULT_SPEC = re.compile(r"(?P<kind>[a-z0-9_]+?)(?:@(?P<page>\d+))?(?:x(?P<times>\d+))?")


@dataclass(frozen=True)
class Fault:
    """A failure injected into the responses for one customers page.

    ``page`` is 1-based: the fault applies once ``page - 1`` customer pages have been served
    successfully, and fires on the next ``times`` requests for customers (0 = on every one).
    """

    kind: str
    page: int = 1
    times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"Unknown fault kind {self.kind!r}: use one of {', '.join(FAULT_KINDS)}"
            )
        if self.page < 1:
            raise ValueError(f"Invalid fault page {self.page}: pages are numbered from 1")
        if self.times < 0:
            raise ValueError(f"Invalid fault count {self.times}: use 0 (always) or more")


def parse_fault(spec: str) -> Fault:
    """Parse ``KIND[@PAGE][xTIMES]``, e.g. ``http_502_html@3x2`` or ``throttled@5``.

    Raises:
        ValueError: when ``spec`` does not have that form or names an unknown kind.
    """
    match = _FAULT_SPEC.fullmatch(spec.strip())
    if not match:
        raise ValueError(f"Invalid fault {spec!r}: use KIND[@PAGE][xTIMES], e.g. http_502_html@3x2")
    page = int(match["page"]) if match["page"] else 1
    times = int(match["times"]) if match["times"] is not None else 1
    return Fault(match["kind"], page, times)


def parse_redact(spec: str) -> frozenset[str]:
    """Parse a comma-separated list of field groups to withhold, e.g. ``name,email``.

    Raises:
        ValueError: for a group not in ``REDACTABLE``.
    """
    groups = frozenset(part.strip() for part in spec.split(",") if part.strip())
    unknown = sorted(groups - set(REDACTABLE))
    if unknown:
        raise ValueError(
            f"Unknown field group {', '.join(unknown)}: use any of {', '.join(REDACTABLE)}"
        )
    return groups


@dataclass
class SandboxConfig:
    """Everything that defines a sandbox store.

    The customers depend only on ``customers``, ``seed`` and ``id_start``, so two servers with
    the same values serve the same store and accept each other's cursors.
    """

    customers: int = 5000
    seed: int = 1
    token: str = "shpat_sandbox_token"
    id_start: int = DEFAULT_ID_START
    # Delay before every GraphQL response, in seconds.
    latency: float = 0.0
    # Leaky bucket of Shopify's Standard plan: 2000 points, restored at 100 points per second.
    bucket_size: float = 2000.0
    restore_rate: float = 100.0
    # None models Shopify's real costs, about 12 points for 250 customers. A number makes a page
    # cost 2 + first * cost_per_customer points, so that throttling matters.
    cost_per_customer: float | None = None
    max_query_cost: int = 1000
    faults: list[Fault] = field(default_factory=list)
    redact: frozenset[str] = frozenset()
    # Retry-After of the http_429 fault, in seconds.
    retry_after: float = 0.2
    # How long the hang fault delays its response, in seconds.
    hang_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.customers < 0:
            raise ValueError(f"Invalid customer count {self.customers}: use 0 or more")
        if self.id_start < 1:
            raise ValueError(f"Invalid id start {self.id_start}: ids start at 1 or above")
        if self.id_start + (self.customers + 1) * ID_STRIDE > MAX_ID:
            raise ValueError(
                f"Invalid id start {self.id_start}: the last id of {self.customers} customers "
                "would exceed 2**63 - 1"
            )
        if self.bucket_size <= 0 or self.restore_rate < 0:
            raise ValueError("Invalid bucket: the size must be positive and the rate not negative")
        if self.cost_per_customer is not None and self.cost_per_customer < 0:
            raise ValueError(f"Invalid cost per customer {self.cost_per_customer}: use 0 or more")
        if self.latency < 0 or self.hang_seconds < 0 or self.retry_after < 0:
            raise ValueError("Invalid delay: latency, hang and Retry-After seconds must be >= 0")
        parse_redact(",".join(self.redact))
