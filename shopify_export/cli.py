"""The ``shopify-export`` command line: options, output and exit codes; no SQL or HTTP here."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from shopify_export import __version__
from shopify_export.config import (
    API_VERSION_ENV,
    DB_ENV,
    DEFAULT_API_VERSION,
    ConnectionSettings,
    connection_from_env,
    database_path,
    parse_api_version,
    parse_store_name,
)
from shopify_export.errors import (
    ConfigError,
    CsvError,
    ExitStatus,
    InterruptedExport,
    InvalidDatabaseError,
    JobNotFoundError,
    ShopifyExportError,
)
from shopify_export.jobs import CsvRequest, RunResult, resume_command, run_export
from shopify_export.locks import current_holder
from shopify_export.models import Job, JobStatus
from shopify_export.progress import make_reporter
from shopify_export.store import Database

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
CSV_DIALECTS = ("excel", "plain")
SANDBOX_CUSTOMERS = 5000
SANDBOX_LATENCY = 0.1

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppContext:
    """Global options shared by every command."""

    db_option: str | None
    verbose: bool
    quiet: bool

    @property
    def db_path(self) -> Path:
        return database_path(self.db_option)

    @contextlib.contextmanager
    def open_db(self, *, create: bool = True) -> Iterator[Database]:
        """Open the database; commands that only read it pass ``create=False``.

        A read-only command on a path where no database exists stops with an error, so a
        mistyped ``--db`` is reported instead of silently creating an empty database.
        """
        path = self.db_path
        if not create and not path.exists():
            raise InvalidDatabaseError(
                f"Database {path} not found: nothing has been exported there yet; check --db "
                f"or ${DB_ENV}, or start an export with: shopify-export export STORE"
            )
        db = Database.open(path)
        try:
            yield db
        finally:
            db.close()

    def command(self, text: str) -> str:
        """Add this run's ``--db`` to every ``shopify-export`` command quoted in ``text``."""
        if self.db_option is None:
            return text
        return text.replace(
            "shopify-export ", f"shopify-export --db {shlex.quote(self.db_option)} "
        )

    def resume_hint(self, store_name: str, job_id: str, *, sandbox: bool = False) -> str:
        """Return the command that resumes ``job_id`` with this run's --db and --sandbox."""
        command = self.command(resume_command(store_name, job_id))
        return command + (" --sandbox" if sandbox else "")


class _CommandError(click.ClickException):
    """A ShopifyExportError on its way out, with the exit code that its class maps to."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # An instance value: newer click declares exit_code a class variable of ClickException.
        vars(self)["exit_code"] = exit_code


class ExportGroup(click.Group):
    """Turns every library error into a one-line ``Error: ...`` and the right exit code.

    A traceback is shown only with ``--verbose``.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ShopifyExportError as error:
            _print_traceback_if_verbose(ctx)
            app = ctx.find_object(AppContext)
            message = _one_line(str(error))
            if app is not None:
                # Hints in the message repeat --db, so that pasting them acts on this database.
                message = app.command(message)
            raise _CommandError(message, int(error.exit_status)) from error
        except KeyboardInterrupt:
            raise _CommandError("Interrupted", int(ExitStatus.SIGINT)) from None
        except Exception as error:
            _print_traceback_if_verbose(ctx)
            raise _CommandError(
                f"Unexpected failure: {type(error).__name__}: {_one_line(str(error))} "
                "(run again with --verbose for details)",
                int(ExitStatus.EXPORT_FAILED),
            ) from error


class _Seconds(click.ParamType):
    """A finite number of seconds within [minimum, maximum]; NaN and infinity are rejected."""

    name = "seconds"

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            self.fail(
                f"{value!r} is not between {self.minimum:g} and {self.maximum:g} seconds",
                param,
                ctx,
            )
        return number


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _print_traceback_if_verbose(ctx: click.Context) -> None:
    app = ctx.find_object(AppContext)
    if app is not None and app.verbose:
        traceback.print_exc(file=sys.stderr)


class _RedactFilter(logging.Filter):
    """Replaces the access token with *** in every log record, whatever logged it."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg = message.replace(self.secret, "***")
            record.args = None
        return True


_log_handler: logging.Handler | None = None


def _configure_logging(verbose: bool, quiet: bool) -> None:
    global _log_handler
    # A closed stderr (a pipe into a tool that exited) must not stop an export.
    logging.raiseExceptions = False
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(message)s"))
    token = os.environ.get("SHOPIFY_ACCESS_TOKEN", "").strip()
    if token:
        handler.addFilter(_RedactFilter(token))
    root = logging.getLogger()
    if _log_handler is not None:
        root.removeHandler(_log_handler)
    root.addHandler(handler)
    _log_handler = handler
    # Other libraries log at WARNING and above; gql would log whole payloads (customer data)
    # at DEBUG.
    root.setLevel(logging.WARNING)
    package_logger = logging.getLogger("shopify_export")
    if verbose:
        package_logger.setLevel(logging.DEBUG)
    else:
        package_logger.setLevel(logging.ERROR if quiet else logging.INFO)


@click.group(cls=ExportGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--db",
    "db_option",
    metavar="PATH",
    help="SQLite database file  [default: $SHOPIFY_EXPORT_DB or data/customers.db]",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every request's cost and throttle state")
@click.option("-q", "--quiet", is_flag=True, help="Show only errors and the closing summary")
@click.version_option(__version__, "--version", prog_name="shopify-export")
@click.pass_context
def cli(ctx: click.Context, db_option: str | None, verbose: bool, quiet: bool) -> None:
    """Export every customer of a Shopify store into SQLite (and CSV), resumably.

    \b
    Quick start, no Shopify account needed:
      shopify-export export demo --sandbox
    A real store (custom app with the read_customers scope):
      export SHOPIFY_ACCESS_TOKEN=shpat_...
      shopify-export export evisu-us --csv
    """
    if verbose and quiet:
        raise click.UsageError("--verbose and --quiet cannot be used together")
    _configure_logging(verbose, quiet)
    ctx.obj = AppContext(db_option=db_option, verbose=verbose, quiet=quiet)


def _store_argument(function: F) -> F:
    def convert(ctx: click.Context, param: click.Parameter, value: str) -> str:
        try:
            return parse_store_name(value)
        except ShopifyExportError as error:
            raise click.BadParameter(str(error), ctx=ctx, param=param) from error

    return click.argument("store", callback=convert)(function)


def _check_csv_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is None:
        return None
    text = str(value)
    if not text.strip() or text in ("-", "."):
        raise click.BadParameter(
            f"invalid CSV path {text!r}: pass a file path such as customers.csv", ctx, param
        )
    if value.is_dir():
        raise click.BadParameter(
            f"{text} is a folder: pass a file path such as {value / 'customers.csv'}", ctx, param
        )
    if value.exists() and not value.is_file():
        raise click.BadParameter(
            f"{text} is not a regular file: pass the path of a new or existing CSV file",
            ctx,
            param,
        )

    # Checked now, not after an export of hours: the nearest existing folder must be writable.
    folder = value.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(
            f"cannot write {text}: {folder} is not a writable folder; pass another CSV path",
            ctx,
            param,
        )

    app = ctx.find_object(AppContext)
    if app is not None:
        database = app.db_path.absolute()
        database_files = {
            Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")
        }
        if value.absolute() in database_files or (
            value.exists() and database.exists() and value.resolve() == database.resolve()
        ):
            raise click.BadParameter(
                f"{text} is the database or one of its files: pass another CSV path", ctx, param
            )
    return value.absolute()


def _csv_options(function: F) -> F:
    function = click.option(
        "--csv-dialect",
        type=click.Choice(CSV_DIALECTS),
        default="excel",
        show_default=True,
        help="excel: BOM, formulas made inert; plain: RFC 4180, values exactly as stored",
    )(function)
    function = click.option(
        "--csv-path",
        type=click.Path(path_type=Path),
        callback=_check_csv_path,
        help="CSV file to write  [default: a file in exports/ beside the database]",
    )(function)
    return function


def _export_options(function: F) -> F:
    function = click.option(
        "--retry-delay",
        type=_Seconds(0, 600),
        default=1.0,
        show_default=True,
        help="Base delay in seconds of the exponential back-off between retries",
    )(function)
    function = click.option(
        "--timeout",
        type=_Seconds(1, 3600),
        default=60.0,
        show_default=True,
        help="Seconds to wait for each response from Shopify",
    )(function)
    function = click.option(
        "--max-retries",
        type=click.IntRange(min=0, max=1000),
        default=8,
        show_default=True,
        help="Retries of one request after a transient failure before the export fails",
    )(function)
    function = click.option(
        "--sandbox",
        is_flag=True,
        help="Export from the built-in sandbox store instead of Shopify (no token needed)",
    )(function)
    function = click.option(
        "--csv/--no-csv",
        "write_csv_file",
        default=None,
        help="Write a CSV once the export completes  [default: only with --csv-path]",
    )(function)
    return _csv_options(function)


@contextlib.contextmanager
def _connection(
    store_name: str, sandbox: bool, timeout: float, max_retries: int, retry_delay: float
) -> Iterator[ConnectionSettings]:
    if not sandbox:
        settings = connection_from_env(store_name)
        yield dataclasses.replace(
            settings, request_timeout=timeout, max_retries=max_retries, retry_delay=retry_delay
        )
        return
    from shopify_export.sandbox import SandboxConfig, SandboxServer

    api_version = parse_api_version(os.environ.get(API_VERSION_ENV) or DEFAULT_API_VERSION)
    config = SandboxConfig(customers=SANDBOX_CUSTOMERS, latency=SANDBOX_LATENCY)
    if not logging.getLogger("shopify_export").isEnabledFor(logging.DEBUG):
        # The sandbox's start and stop lines are noise in a demo; -v shows them.
        logging.getLogger("shopify_export.sandbox").setLevel(logging.WARNING)
    with SandboxServer(config) as server:
        yield ConnectionSettings(
            store_name=store_name,
            api_url=server.url(api_version),
            token=server.token,
            api_version=api_version,
            request_timeout=timeout,
            max_retries=max_retries,
            retry_delay=retry_delay,
        )


def _csv_request(
    app: AppContext, enabled: bool, path: Path | None, dialect: str
) -> Callable[[Job], CsvRequest] | None:
    if not enabled:
        return None

    def for_job(job: Job) -> CsvRequest:
        return CsvRequest(path=path or _default_csv_path(app.db_path, job.id), dialect=dialect)

    return for_job


def _default_csv_path(db_path: Path, name: str) -> Path:
    return db_path.absolute().parent / "exports" / f"{name}.csv"


def _run(
    app: AppContext,
    store: str,
    *,
    resume: bool,
    job_id: str | None,
    write_csv_file: bool | None,
    csv_path: Path | None,
    csv_dialect: str,
    sandbox: bool,
    max_retries: int,
    timeout: float,
    retry_delay: float,
) -> None:
    if write_csv_file is False and csv_path is not None:
        raise click.UsageError("--no-csv and --csv-path contradict each other: drop one of them")
    if write_csv_file is None:
        write_csv_file = csv_path is not None
    reporter = make_reporter(quiet=app.quiet)
    with (
        _connection(store, sandbox, timeout, max_retries, retry_delay) as settings,
        app.open_db() as db,
    ):
        try:
            result = run_export(
                db,
                app.db_path,
                settings,
                reporter,
                resume=resume,
                job_id=job_id,
                csv=_csv_request(app, write_csv_file, csv_path, csv_dialect),
                resume_hint=lambda job_id: app.resume_hint(store, job_id, sandbox=sandbox),
            )
        except InterruptedExport as interrupted:
            stopped = db.get_job(interrupted.job_id) if interrupted.job_id else None
            if stopped is not None and stopped.can_resume:
                reporter.summary(
                    f"Export interrupted with {stopped.processed_customers} customers saved. "
                    f"Resume with: {app.resume_hint(store, stopped.id, sandbox=sandbox)}"
                )
            else:
                reporter.summary(
                    "Export interrupted before its first batch was saved; start it again "
                    "with: " + app.command(f"shopify-export export {store}")
                )
            raise _CommandError("Interrupted", int(interrupted.exit_status)) from None
        except CsvError as error:
            completed = db.get_job(error.job_id) if error.job_id else None
            if completed is None or completed.status is not JobStatus.COMPLETED:
                raise
            raise CsvError(
                f"Export {completed.id} completed, but writing the CSV failed ({error}); write "
                f"it again with: shopify-export csv {store} --csv-path PATH"
            ) from error
        except ShopifyExportError as error:
            failed = db.get_job(error.job_id) if error.job_id else None
            if failed is not None and failed.status is JobStatus.FAILED and failed.can_resume:
                reporter.summary(
                    f"Export {failed.id} failed after {failed.processed_customers} customers. "
                    f"Resume with: {app.resume_hint(store, failed.id, sandbox=sandbox)}"
                )
            raise
    _print_summary(reporter, app, result)


def _print_summary(reporter: Any, app: AppContext, result: RunResult) -> None:
    job = result.job
    rate = result.saved_this_run / result.elapsed if result.elapsed > 0 else 0.0
    reporter.summary(
        f"Export {job.id} completed: {result.saved_this_run} customers saved in "
        f"{result.elapsed:.1f} s ({rate:,.0f} customers/s); {job.processed_customers} in this "
        f"job; database: {app.db_path}"
    )
    if result.csv_path is not None:
        reporter.summary(f"CSV written to {result.csv_path}")


@cli.command()
@_store_argument
@_export_options
@click.pass_obj
def export(app: AppContext, store: str, **options: Any) -> None:
    """Export every customer of STORE into the database, as a new job.

    STORE is the shop's handle, e.g. evisu-us for evisu-us.myshopify.com. The token comes
    from SHOPIFY_ACCESS_TOKEN and is never accepted on the command line.

    \b
    Example:
      shopify-export export evisu-us --csv
    """
    _run(app, store, resume=False, job_id=None, **options)


@cli.command()
@_store_argument
@click.option("--job-id", help="Job to continue  [default: the store's most recent failed job]")
@_export_options
@click.pass_obj
def resume(app: AppContext, store: str, job_id: str | None, **options: Any) -> None:
    """Continue a failed or interrupted export of STORE from its saved position.

    \b
    Example:
      shopify-export resume evisu-us
    """
    _run(app, store, resume=True, job_id=job_id, **options)


@cli.command("csv")
@_store_argument
@_csv_options
@click.pass_obj
def csv_command(app: AppContext, store: str, csv_path: Path | None, csv_dialect: str) -> None:
    """Write a CSV of the customers of STORE that the database holds.

    \b
    Example:
      shopify-export csv evisu-us --csv-path customers.csv
    """
    from shopify_export.csv_export import write_csv

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = csv_path or _default_csv_path(app.db_path, f"{store}_{stamp}")
    with app.open_db(create=False) as db:
        if db.latest_job(store) is None:
            raise ConfigError(
                f"No export of {store} in {app.db_path}: export it first with: "
                f"shopify-export export {store}"
            )
        rows = write_csv(db, store, path, csv_dialect)
    click.echo(f"Wrote {rows} customers of {store} to {path}", err=True)


def _job_for_display(job: Job, db_path: Path) -> Job:
    if job.status is JobStatus.IN_PROGRESS:
        holder = current_holder(db_path, job.store_name)
        job.stale = holder is None
    return job


def _status_text(job: Job) -> str:
    if job.status is JobStatus.IN_PROGRESS and job.stale:
        if job.can_resume:
            return "in_progress (stale: its process ended; run resume)"
        return "in_progress (stale: its process ended before saving a batch)"
    return job.status.value


def _echo_json(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


class _StdoutConsole(Console):
    """Tables on stdout; off a terminal, lines carry no trailing padding and no colour codes."""

    def __init__(self) -> None:
        self._plain = not sys.stdout.isatty()
        # Off a terminal Rich would fold tables to 80 columns, cutting job ids and paths apart.
        super().__init__(width=200 if self._plain else None)

    def print(self, *objects: Any, **options: Any) -> None:
        if not self._plain:
            super().print(*objects, **options)
            return
        with self.capture() as capture:
            super().print(*objects, **options)
        lines = capture.get().split("\n")
        click.echo("\n".join(line.rstrip() for line in lines), nl=False)


def _stdout_console() -> Console:
    return _StdoutConsole()


@cli.command()
@_store_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts")
@click.pass_obj
def status(app: AppContext, store: str, as_json: bool) -> None:
    """Show whether STORE is being exported now, its customers saved and its latest job."""
    with app.open_db(create=False) as db:
        holder = current_holder(app.db_path, store)
        latest = db.latest_job(store)
        count = db.customer_count(store)
    if latest is not None:
        _job_for_display(latest, app.db_path)

    if as_json:
        _echo_json(
            {
                "storeName": store,
                "isExporting": holder is not None,
                "customerCount": count,
                "latestJob": latest.to_json() if latest else None,
            }
        )
        return

    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_row("Store", store)
    table.add_row("Customers in database", f"{count:,}")
    if holder is not None:
        running = f"yes: job {holder.job_id or '?'} in process {holder.pid or '?'}"
        table.add_row("Exporting now", running)
    else:
        table.add_row("Exporting now", "no")

    console = _stdout_console()
    console.print(table)
    if latest is None:
        console.print(
            app.command(f"No export jobs yet. Start one with: shopify-export export {store}")
        )
        return
    console.print()
    console.print(_job_table(latest, app))


def _job_table(job: Job, app: AppContext) -> Table:
    table = Table(
        title=f"Job {job.id}", show_header=False, title_justify="left", box=None, padding=(0, 2)
    )
    total = f"{job.total_customers:,}" if job.total_customers else "unknown"
    table.add_row("Status", _status_text(job))
    table.add_row("Customers", f"{job.processed_customers:,} of {total}")
    table.add_row("Started", job.started_at)
    table.add_row("Completed", job.completed_at or "-")
    if job.error:
        table.add_row("Error", job.error)
    table.add_row("CSV", job.csv_file_path or "-")
    if job.can_resume:
        table.add_row("Resume with", app.resume_hint(job.store_name, job.id))
    return table


@cli.command()
@_store_argument
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=1_000_000),
    default=10,
    show_default=True,
    help="Number of jobs to list",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts")
@click.pass_obj
def history(app: AppContext, store: str, limit: int, as_json: bool) -> None:
    """List the export jobs of STORE, newest first, and which of them can be resumed."""
    with app.open_db(create=False) as db:
        jobs = [_job_for_display(job, app.db_path) for job in db.list_jobs(store, limit)]
    if as_json:
        _echo_json({"storeName": store, "jobs": [job.to_json() for job in jobs]})
        return
    console = _stdout_console()
    if not jobs:
        console.print(
            f"No export jobs for {store} yet. Start one with: shopify-export export {store}"
        )
        return
    table = Table(title=f"Export jobs of {store}", title_justify="left")
    for column in ("Job ID", "Status", "Started", "Customers", "Resumable", "CSV", "Error"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        total = f"{job.total_customers:,}" if job.total_customers else "?"
        table.add_row(
            job.id,
            _status_text(job),
            job.started_at,
            f"{job.processed_customers:,}/{total}",
            "yes" if job.can_resume else "no",
            job.csv_file_path or "",
            job.error or "",
        )
    console.print(table)


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts")
@click.pass_obj
def job(app: AppContext, job_id: str, as_json: bool) -> None:
    """Show one export job by its id."""
    if not job_id.strip():
        raise click.BadParameter(
            "the job id is empty: pass an id from history", param_hint="JOB_ID"
        )
    with app.open_db(create=False) as db:
        found = db.get_job(job_id)
    if found is None:
        raise JobNotFoundError(
            f"Job {job_id} not found; list a store's jobs with: shopify-export history STORE"
        )
    _job_for_display(found, app.db_path)
    if as_json:
        _echo_json(found.to_json())
        return
    table = _job_table(found, app)
    table.add_row("Store", found.store_name)
    _stdout_console().print(table)


def _attach_sandbox_commands() -> None:
    from shopify_export.sandbox.command import sandbox

    cli.add_command(sandbox)


_attach_sandbox_commands()


def main() -> None:
    """Run the command line (the ``shopify-export`` console script)."""
    cli(prog_name="shopify-export")
