"""Plain data passed between the layers: jobs and pages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class JobStatus(str, Enum):
    """Job states as stored in ``export_jobs.status``."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass
class Job:
    """One row of ``export_jobs``."""

    id: str
    store_name: str
    status: JobStatus
    total_customers: int
    processed_customers: int
    started_at: str
    completed_at: str | None = None
    error: str | None = None
    csv_file_path: str | None = None
    last_cursor: str | None = None
    last_customer_id: int | None = None
    page_size: int | None = None
    pid: int | None = None
    updated_at: str | None = None
    # True for an in_progress job whose process has ended (no process holds the store's lock).
    # Not stored: it is worked out when the job is shown.
    stale: bool = False

    @property
    def can_resume(self) -> bool:
        """Whether ``resume`` can continue this job from a saved position."""
        resumable = self.status is JobStatus.FAILED or (
            self.status is JobStatus.IN_PROGRESS and self.stale
        )
        return resumable and (self.last_cursor is not None or self.last_customer_id is not None)

    def to_json(self) -> dict[str, Any]:
        """Return the job in the camelCase shape of ``--json`` output."""
        return {
            "id": self.id,
            "storeName": self.store_name,
            "status": self.status.value,
            "totalCustomers": self.total_customers,
            "processedCustomers": self.processed_customers,
            "startedAt": self.started_at,
            "completedAt": self.completed_at,
            "error": self.error,
            "csvFilePath": self.csv_file_path,
            "lastCursor": self.last_cursor,
            "canResume": self.can_resume,
        }


@dataclass
class Page:
    """One page of customers as returned by the pager.

    ``nodes`` are the customer objects exactly as received. ``redacted`` maps each field that
    Shopify returned as null because of protected customer data rules to its error message.
    ``node_texts``, when set, contains the JSON text of each node as received, in the same order.
    """

    nodes: list[dict[str, Any]]
    end_cursor: str | None
    has_next_page: bool
    page_size: int
    redacted: dict[str, str] = field(default_factory=dict)
    node_texts: Sequence[str | bytes] | None = None
