"""Running an export job: lock, job record, pages from Shopify into the database, then the CSV.

This is the one place where the client, the database, the CSV writer and the reporter meet.
The client is asynchronous; ``run_export`` drives it with ``asyncio.run`` so that the command
line stays synchronous.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import signal
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shopify_export.config import PAGE_SIZE, ConnectionSettings
from shopify_export.csv_export import write_csv
from shopify_export.errors import (
    ExportInProgressError,
    InterruptedExport,
    JobNotFoundError,
    NothingToResumeError,
    ShopifyExportError,
)
from shopify_export.locks import StoreLock
from shopify_export.models import Job, JobStatus, Page
from shopify_export.progress import Reporter
from shopify_export.store import Database

log = logging.getLogger(__name__)

INTERRUPTED_ERROR = "Interrupted"
# Passes of the event loop given to the request for the next page before a batch is saved.
_PASSES_TO_SEND_REQUEST = 3


# Collection thresholds while pages are saved. Each page of 250 customers allocates about 4,000
# dicts and lists that live until the next page. With the default first threshold (700), the
# collector ran about 430 times per 100,000 customers, for about 1.6 µs per customer (CPython
# 3.11, measured). Cycles, which only asyncio's futures and exceptions make here, wait longer.
_GC_THRESHOLDS = (20_000, 50, 1_000)
# glibc malloc options (mallopt's M_TRIM_THRESHOLD and M_MMAP_THRESHOLD) and their values: keep
# up to 64 MiB of freed memory and serve blocks of up to 4 MiB (a response is about 190 KB)
# from the heap. With glibc's defaults each page's memory went back to the kernel and came back
# zeroed: 125,000 page faults for 100,000 customers, against 11,600 with these (measured).
_MALLOPT = ((-1, 64 << 20), (-3, 4 << 20))


def _keep_freed_memory() -> None:
    """Tune glibc malloc for a long run of same-sized pages; elsewhere do nothing."""
    # Imported here: the commands that never export do not pay for it.
    import ctypes

    try:
        os.confstr("CS_GNU_LIBC_VERSION")
        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):
        return  # not glibc: its allocator keeps its own defaults
    for option, value in _MALLOPT:
        mallopt(ctypes.c_int(option), ctypes.c_int(value))


@contextmanager
def _batch_settings() -> Iterator[None]:
    """Set the garbage collector and the allocator for saving page after page.

    The collector's thresholds are restored afterwards. The allocator's options stay for the rest
    of the process, because glibc offers no way to read them back. They only keep more freed
    memory for reuse.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(*_GC_THRESHOLDS)
    _keep_freed_memory()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


@dataclass(frozen=True)
class CsvRequest:
    """The path and dialect of the CSV written once the export completes."""

    path: Path
    dialect: str


@dataclass
class RunResult:
    """The outcome of one run of ``run_export``."""

    job: Job
    saved_this_run: int
    elapsed: float
    csv_path: Path | None = None


class StopSignal:
    """The first SIGINT or SIGTERM of a run; it also cuts short any wait between requests."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._event: asyncio.Event | None = None

    def bind(self) -> None:
        """Create the event in the running loop (call from inside ``asyncio.run``)."""
        self._event = asyncio.Event()

    def trigger(self, signal_number: int) -> None:
        """Record the signal and wake every sleeper."""
        self.signal_number = signal_number
        if self._event is not None:
            self._event.set()

    def check(self) -> None:
        """Raise InterruptedExport if a signal has arrived."""
        if self.signal_number is not None:
            raise InterruptedExport(self.signal_number)

    async def sleep(self, seconds: float) -> None:
        """Sleep like ``asyncio.sleep``, but raise InterruptedExport as soon as a signal arrives."""
        self.check()
        if self._event is None or seconds <= 0:
            await asyncio.sleep(max(seconds, 0))
            return
        try:
            await asyncio.wait_for(self._event.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            return
        self.check()


def resume_command(store_name: str, job_id: str) -> str:
    """Return the command that continues ``job_id``."""
    return f"shopify-export resume {store_name} --job-id {job_id}"


def fail_stale_jobs(db: Database, store_name: str) -> None:
    """Mark failed every job of the store still ``in_progress``.

    Call only while holding the store's lock: then no live process is running any of them.
    """
    for job in db.list_jobs(store_name, limit=1_000_000):
        if job.status is JobStatus.IN_PROGRESS:
            process = f" (PID {job.pid})" if job.pid else ""
            db.mark_failed(job.id, f"The process that ran this export{process} ended unexpectedly")
            log.info("Marked stale job %s as failed", job.id)


def choose_job_to_resume(db: Database, store_name: str, job_id: str | None) -> Job:
    """Return the job that ``resume`` continues.

    Raises:
        NothingToResumeError: when there is no such job or it cannot be resumed.
    """
    if job_id is None:
        failed = [job for job in db.list_jobs(store_name, 1000) if job.status is JobStatus.FAILED]
        # The newest failed job with a saved position; an older one is continued when a newer
        # attempt failed before saving its first batch.
        job = next((job for job in failed if job.can_resume), failed[0] if failed else None)
        if job is None:
            raise NothingToResumeError(
                f"No failed job found to resume for {store_name}; "
                f"start a new export with: shopify-export export {store_name}"
            )
    else:
        found = db.get_job(job_id)
        if found is None:
            raise JobNotFoundError(
                f"Job {job_id} not found; list this store's jobs with: "
                f"shopify-export history {store_name}"
            )
        job = found
        if job.store_name != store_name:
            raise NothingToResumeError(
                f"Job {job_id} belongs to store {job.store_name}, not {store_name}; "
                f"run: shopify-export resume {job.store_name} --job-id {job_id}"
            )
        if job.status is JobStatus.COMPLETED:
            raise NothingToResumeError(
                f"Job {job_id} already completed; start a new export with: "
                f"shopify-export export {store_name}"
            )
    if job.last_cursor is None and job.last_customer_id is None:
        raise NothingToResumeError(
            f"Job {job.id} has no saved cursor to resume from: the cursor is saved after the "
            f"first batch, and this job stopped before one was saved. Start a new export with: "
            f"shopify-export export {store_name}"
        )
    return job


def _describe_holder(db: Database, store_name: str, pid: int | None, job_id: str | None) -> str:
    job = db.get_job(job_id) if job_id else None
    running = f"job {job.id}" if job else "an export"
    process = f" in process {pid}" if pid else ""
    return (
        f"Export already in progress for this store: {running} is running{process}. "
        f"Wait for it to finish, or see it with: shopify-export status {store_name}"
    )


class _SignalHandlers:
    """SIGINT/SIGTERM handling for one run: the first stops cleanly, the second exits at once."""

    def __init__(self, stop: StopSignal, reporter: Reporter, on_force_exit: Callable[[], None]):
        self.stop = stop
        self.reporter = reporter
        self.on_force_exit = on_force_exit

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, self._handle, signal_number)

    def remove(self, loop: asyncio.AbstractEventLoop) -> None:
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signal_number)

    def _handle(self, signal_number: int) -> None:
        if self.stop.signal_number is None:
            self.stop.trigger(signal_number)
            again = "press Ctrl-C" if signal_number == signal.SIGINT else "send SIGTERM"
            self.reporter.notice(
                f"Stopping after the current request; {again} again to quit at once"
            )
            return
        self.on_force_exit()
        os._exit(128 + signal_number)


class ExportRunner:
    """Runs one job of one store, from its current position to the end of the customer list."""

    def __init__(
        self,
        db: Database,
        settings: ConnectionSettings,
        reporter: Reporter,
        resume_hint: Callable[[str], str] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.reporter = reporter
        self.resume_hint = resume_hint or (
            lambda job_id: resume_command(settings.store_name, job_id)
        )
        self.stop = StopSignal()
        self._warned_redacted = False

    async def _export_pages(self, job: Job) -> int:
        loop = asyncio.get_running_loop()
        self.stop.bind()
        handlers = _SignalHandlers(self.stop, self.reporter, lambda: self._force_fail(job.id))
        handlers.install(loop)
        try:
            return await self._fetch_and_save(job)
        finally:
            handlers.remove(loop)

    def _force_fail(self, job_id: str) -> None:
        job = None
        try:
            self.db.mark_failed(job_id, INTERRUPTED_ERROR)
            job = self.db.get_job(job_id)
        except ShopifyExportError:
            pass  # The job stays in_progress and resume treats it as stale.
        self.reporter.stop()
        if job is not None and not job.can_resume:
            self.reporter.summary("Interrupted before the first batch was saved.")
        else:
            self.reporter.summary(f"Interrupted. Resume with: {self.resume_hint(job_id)}")

    async def _fetch_and_save(self, job: Job) -> int:
        # Imported here, not at module level: see run_export.
        from shopify_export.client import ShopifyClient

        async with ShopifyClient(
            self.settings, sleep=self.stop.sleep, on_notice=self.reporter.notice
        ) as client:
            if job.total_customers <= 0:
                total = await client.count_customers()
                if total is not None:
                    self.db.set_total(job.id, total)
                    job.total_customers = total
                    self.reporter.set_total(total)
            self.stop.check()
            pages = client.pages(
                after=job.last_cursor,
                last_customer_id=job.last_customer_id,
                page_size=job.page_size or PAGE_SIZE,
            )
            try:
                return await self._save_pages(job, pages)
            finally:
                await pages.aclose()

    async def _save_pages(self, job: Job, pages: AsyncGenerator[Page, None]) -> int:
        """Save each page while the request for the next page is under way.

        One page is fetched ahead: its request goes out as soon as the previous page has
        arrived, so that Shopify (or the sandbox) prepares it while this process saves the
        previous one. Pages are still saved one at a time, in order, each in its own
        transaction.
        """
        saved = 0
        batch_number = job.processed_customers // (job.page_size or PAGE_SIZE)
        cursor = job.last_cursor
        ahead = asyncio.create_task(_next_page(pages))
        try:
            while True:
                page = await ahead
                if page is None:
                    return saved
                ahead = asyncio.create_task(_next_page(pages))
                # save_batch blocks the event loop, so the loop first runs the new task until
                # its request is written. aiohttp 3.14 writes the headers in the first pass
                # and the body, from a task of its own, in the second. Too few passes only
                # delay the request until the batch is saved.
                for _ in range(_PASSES_TO_SEND_REQUEST):
                    await asyncio.sleep(0)
                if page.redacted and not self._warned_redacted:
                    self._warned_redacted = True
                    self.reporter.warning(_redaction_warning(page.redacted))
                if page.nodes:
                    cursor = page.end_cursor or cursor
                    processed = self.db.save_batch(
                        job.id, job.store_name, page.nodes, cursor, page.page_size, page.node_texts
                    )
                    saved += len(page.nodes)
                    batch_number += 1
                    job.processed_customers = processed
                    self.reporter.batch(batch_number, len(page.nodes), processed)
                self.stop.check()
        finally:
            if not ahead.done():
                ahead.cancel()
            # When the loop ends early, the page fetched ahead is dropped unsaved.
            await asyncio.gather(ahead, return_exceptions=True)

    def run(self, job: Job) -> int:
        """Fetch and save every remaining page of ``job``; return the customers saved."""
        with _batch_settings():
            return asyncio.run(self._export_pages(job))


async def _next_page(pages: AsyncGenerator[Page, None]) -> Page | None:
    """Return the next page, or None after the last one."""
    try:
        return await anext(pages)
    except StopAsyncIteration:
        return None


def _redaction_warning(redacted: dict[str, str]) -> str:
    fields = ", ".join(sorted(redacted))
    reason = next(iter(redacted.values()))
    return (
        f"Shopify withheld protected customer data ({fields}); those columns stay empty and "
        f"everything else is saved. Shopify said: {reason}"
    )


def run_export(
    db: Database,
    db_path: Path,
    settings: ConnectionSettings,
    reporter: Reporter,
    *,
    resume: bool = False,
    job_id: str | None = None,
    csv: CsvRequest | Callable[[Job], CsvRequest] | None = None,
    resume_hint: Callable[[str], str] | None = None,
) -> RunResult:
    """Start a new export of ``settings.store_name``, or resume one, and run it to the end.

    Raises:
        ExportInProgressError: when another process is exporting the store.
        NothingToResumeError: when ``resume`` finds no job it can continue.
        InterruptedExport: on SIGINT/SIGTERM; the job is failed with a resumable cursor.
        ShopifyExportError: when the export fails; the job is marked failed first.
    """
    # With gql, graphql-core and aiohttp, the client takes about 0.6 s of CPU to import
    # (Python 3.11, 2-core VM). The commands that never call Shopify (csv, status, history,
    # job) skip it, and an export imports it here, before its job and its timing start.
    importlib.import_module("shopify_export.client")
    store_name = settings.store_name
    lock = StoreLock(db_path, store_name)
    holder = lock.acquire()
    if holder is not None:
        raise ExportInProgressError(_describe_holder(db, store_name, holder.pid, holder.job_id))
    try:
        fail_stale_jobs(db, store_name)
        if resume:
            job = choose_job_to_resume(db, store_name, job_id)
            reporter.notice(
                f"Resuming job {job.id}: {job.processed_customers} customers already "
                f"processed; it stopped with: {job.error or 'no error recorded'}"
            )
            job = db.claim_job(job.id)
        else:
            job = db.create_job(store_name, api_version=settings.api_version, page_size=PAGE_SIZE)
        lock.record(job.id)
        return _run_job(db, settings, reporter, job, csv, resume_hint)
    finally:
        lock.release()


def _run_job(
    db: Database,
    settings: ConnectionSettings,
    reporter: Reporter,
    job: Job,
    csv: CsvRequest | Callable[[Job], CsvRequest] | None,
    resume_hint: Callable[[str], str] | None,
) -> RunResult:
    started = time.monotonic()
    runner = ExportRunner(db, settings, reporter, resume_hint)
    reporter.start(
        f"Exporting {job.store_name}", job.total_customers or None, job.processed_customers
    )
    try:
        saved = runner.run(job)
    except InterruptedExport as interrupted:
        reporter.stop()
        interrupted.job_id = job.id
        _mark_failed_quietly(db, job.id, INTERRUPTED_ERROR)
        raise
    except ShopifyExportError as error:
        reporter.stop()
        error.job_id = job.id
        _mark_failed_quietly(db, job.id, str(error))
        raise
    except BaseException as error:
        reporter.stop()
        _mark_failed_quietly(db, job.id, f"Unexpected error: {type(error).__name__}: {error}")
        raise
    reporter.stop()
    db.mark_completed(job.id)
    elapsed = time.monotonic() - started
    completed = db.get_job(job.id) or job
    result = RunResult(job=completed, saved_this_run=saved, elapsed=elapsed)
    if csv is not None:
        request = csv(completed) if callable(csv) else csv
        try:
            write_csv(db, job.store_name, request.path, request.dialect)
        except ShopifyExportError as error:
            error.job_id = job.id
            raise
        db.set_csv_path(job.id, str(request.path))
        result.csv_path = request.path
        result.job = db.get_job(job.id) or completed
    return result


def _mark_failed_quietly(db: Database, job_id: str, error: str) -> None:
    try:
        db.mark_failed(job_id, error)
    except ShopifyExportError as failure:
        # The job stays in_progress; the next resume finds it stale and continues it.
        log.warning("Could not mark job %s as failed: %s", job_id, failure)
