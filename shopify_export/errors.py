"""Exceptions of shopify_export and the exit status each one maps to."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes, fixed by the command-line contract."""

    SUCCESS = 0
    EXPORT_FAILED = 1
    USAGE = 2
    ALREADY_RUNNING = 3
    NOTHING_TO_RESUME = 4
    SIGINT = 130
    SIGTERM = 143


class ShopifyExportError(Exception):
    """Base class of every error the command line reports as a one-line message."""

    exit_status: ExitStatus = ExitStatus.EXPORT_FAILED
    # The job that was running when the error stopped it, set by the job runner.
    job_id: str | None = None


class ConfigError(ShopifyExportError):
    """Raised when a setting (store name, token, URL, API version, database path) is invalid."""

    exit_status = ExitStatus.USAGE


class DatabaseError(ShopifyExportError):
    """Raised when the database cannot be opened, read or written."""


class InvalidDatabaseError(DatabaseError):
    """Raised when ``--db`` names something that cannot be the database: a folder, a device,
    a file that is not SQLite or is corrupt, or a place that cannot be written."""

    exit_status = ExitStatus.USAGE


class CsvError(ShopifyExportError):
    """Raised when a CSV file cannot be written."""


class ApiError(ShopifyExportError):
    """Raised when Shopify fails a request.

    ``retryable`` is True for transient failures (5xx, dropped connections, internal errors);
    the pager retries those and raises the last one once its retry budget is spent.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.code = code
        self.request_id = request_id


class InvalidCursorError(ApiError):
    """Raised when Shopify rejects the ``after`` cursor of a request."""


class ExportInProgressError(ShopifyExportError):
    """Raised when another process holds the export lock of the store."""

    exit_status = ExitStatus.ALREADY_RUNNING


class NothingToResumeError(ShopifyExportError):
    """Raised when resume finds no job it can continue."""

    exit_status = ExitStatus.NOTHING_TO_RESUME


class JobNotFoundError(NothingToResumeError):
    """Raised when a job id names no job in the database."""


class InterruptedExport(ShopifyExportError):
    """Raised when SIGINT or SIGTERM stops an export between two requests."""

    def __init__(self, signal_number: int) -> None:
        super().__init__("Interrupted")
        self.signal_number = signal_number
        self.exit_status = ExitStatus.SIGINT if signal_number == 2 else ExitStatus.SIGTERM
