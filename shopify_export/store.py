"""The SQLite database: export jobs and customers, one transaction per saved batch."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from shopify_export import migrations
from shopify_export.csv_lines import SOURCE_COLUMNS
from shopify_export.errors import DatabaseError, InvalidDatabaseError, JobNotFoundError
from shopify_export.migrations import database_error
from shopify_export.models import Job, JobStatus
from shopify_export.records import COLUMNS, customer_row, sanitized_row

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT = 5.0

# WAL with synchronous=FULL: SQLite syncs the WAL file at every commit, so a committed batch
# survives a power failure too. synchronous=NORMAL would be safe against a killed process but
# could lose the last commits on a power failure (never half of one). The sync adds about 1 to
# 3 ms of waiting per batch of 250 customers and no measurable CPU time (2-core VM, measured).
_SYNCHRONOUS = "FULL"


def _bind_null(value: None) -> None:
    return None


# Without an adapter for NoneType, the sqlite3 module looks for __adapt__ and __conform__ on
# every None it binds. With it, binding a NULL took 0.3 µs in place of 0.7 µs (CPython 3.11,
# measured), and customer rows often have several nulls. NULL stays NULL. The adapter applies
# to every sqlite3 connection of the process.
sqlite3.register_adapter(type(None), _bind_null)

# The data column's JSON text may come as UTF-8 bytes, which SQLite would store as a BLOB;
# CAST makes them TEXT without a round trip through a Python str.
_PLACEHOLDERS = ["CAST(? AS TEXT)" if name == "data" else "?" for name in COLUMNS]
_UPSERT_SQL = (
    f"INSERT INTO customers ({', '.join(COLUMNS)}) VALUES ({', '.join(_PLACEHOLDERS)}) "
    "ON CONFLICT (store_name, id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in COLUMNS if name not in ("store_name", "id"))
)

# The prefix that iter_csv_lines puts before the rowid of a row without a stored line, in the
# place of the line. Stored lines never contain a NUL.
NO_LINE = b"\x00"
_SELECT_SOURCES = f"SELECT rowid, {', '.join(SOURCE_COLUMNS)} FROM customers WHERE rowid IN "

_JOB_COLUMNS = (
    "id, store_name, status, total_customers, processed_customers, started_at, completed_at, "
    "error, csv_file_path, last_cursor, last_customer_id, page_size, pid, updated_at"
)
_SELECT_JOB = f"SELECT {_JOB_COLUMNS} FROM export_jobs"
# started_at has millisecond resolution; rowid orders jobs started within the same millisecond.
_NEWEST_FIRST = "ORDER BY started_at DESC, rowid DESC"


def _iso_time(epoch_ms: int) -> str:
    """Format epoch milliseconds as ISO 8601 UTC, e.g. ``2025-11-13T07:08:26.706Z``."""
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _now() -> str:
    return _iso_time(_now_ms())


def _job_from_row(row: Sequence[Any]) -> Job:
    try:
        status = JobStatus(row[2])
    except ValueError:
        raise DatabaseError(
            f"Job {row[0]} has an unknown status {row[2]!r}: expected one of "
            f"{', '.join(s.value for s in JobStatus)}"
        ) from None
    return Job(
        id=row[0],
        store_name=row[1],
        status=status,
        total_customers=row[3] or 0,
        processed_customers=row[4] or 0,
        started_at=row[5],
        completed_at=row[6],
        error=row[7],
        csv_file_path=row[8],
        last_cursor=row[9],
        last_customer_id=row[10],
        page_size=row[11],
        pid=row[12],
        updated_at=row[13],
    )


def create_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each with mode 0700."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    if not current.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(current))
    for path in reversed(missing):
        try:
            # Path.mkdir(parents=True) would give the parents default permissions.
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not path.is_dir():
                raise


def _folder_error(path: Path, folder: Path, exc: OSError) -> DatabaseError:
    reason = exc.strerror or str(exc)
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        reason = "a file is in the way of a folder on that path"
    return InvalidDatabaseError(
        f"Cannot create the folder {folder} for database {path}: {reason}; "
        "pass a --db path in a writable folder"
    )


def _make_private(path: Path, mode: int) -> None:
    """Make an existing database and its WAL files readable and writable by the owner only."""
    if not stat.S_IMODE(mode) & 0o077:
        return
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        try:
            os.chmod(file, 0o600)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("Could not make %s private (mode 0600): %s", file, exc.strerror)
            return
    log.warning(
        "Database %s was readable by other users (mode %o); it now has mode 0600 because it "
        "holds customers' personal data",
        path,
        stat.S_IMODE(mode),
    )


def _create_file(path: Path) -> None:
    """Create an empty database file with mode 0600 unless ``path`` exists."""
    # The file is created with mode 0600 here, not by SQLite, because a umask can only remove
    # bits. SQLite's unix VFS gives the -wal, -shm and -journal files the permission bits of
    # the database file, so they are 0600 too, whatever the umask. NOTE: a database file that
    # already exists keeps its mode, and its -wal and -shm files get the same.
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


class Database:
    """The export database: jobs and customers of any number of stores.

    Use ``Database.open``. One instance may be used from one thread at a time.
    Every public method raises DatabaseError, never a raw sqlite3 exception.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, busy_timeout: float) -> None:
        self._conn = conn
        self.path = path
        self._busy_timeout = busy_timeout
        # A database made with PRAGMA encoding = 'UTF-16le' (or be) keeps its text in UTF-16:
        # there, bytes must be decoded before SQLite takes them as text, and text must not be
        # read as bytes.
        encoding = conn.execute("PRAGMA encoding").fetchone()[0]
        self._utf8 = encoding == "UTF-8"

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> Database:
        """Open the database at ``path``, creating it and its folders when missing.

        New folders get mode 0700, a new file mode 0600. The database runs in WAL mode. A
        database of an earlier version is backed up beside itself and upgraded in place.

        Args:
            path: The database file.
            busy_timeout: Seconds to wait for another process's write transaction.

        Raises:
            DatabaseError: with a one-line message when the path is a folder, the place is not
                writable, the file is not a SQLite database or is corrupt, or another
                process holds a write lock longer than ``busy_timeout``.
        """
        path = Path(path)
        if path.is_dir():
            raise InvalidDatabaseError(
                f"Database path {path} is a folder: pass a file path with --db"
            )
        try:
            create_folders(path.parent)
        except OSError as exc:
            raise _folder_error(path, path.parent, exc) from exc
        try:
            _create_file(path)
            mode = path.stat().st_mode
        except OSError as exc:
            raise InvalidDatabaseError(
                f"Cannot create database {path}: {exc.strerror or exc}; pass a --db path in a "
                "writable folder"
            ) from exc
        if not stat.S_ISREG(mode):
            raise InvalidDatabaseError(
                f"Database path {path} is not a regular file: pass a file path with --db"
            )
        _make_private(path, mode)

        try:
            conn = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise database_error(path, exc, busy_timeout) from exc
        try:
            cls._prepare(conn, path)
        except (sqlite3.Error, DatabaseError, OSError) as exc:
            conn.close()
            raise database_error(path, exc, busy_timeout) from exc
        return cls(conn, path, busy_timeout)

    @staticmethod
    def _prepare(conn: sqlite3.Connection, path: Path) -> None:
        conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS}")
        # The first read of the file, which raises "file is not a database" for other files.
        # The upgrade comes before the switch to WAL, so the backup is of the file as it was.
        result = migrations.upgrade(conn, path)
        if result.backup is not None:
            log.info("Backed up database %s to %s before upgrading it", path, result.backup)
            for change in result.changes:
                log.info("Upgraded database %s: %s", path, change)
        elif result.changes:
            log.debug("Created the tables of database %s", path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            log.warning("Database %s stays in journal mode %s: WAL is not available", path, mode)
        # A write that is rolled back: fails now, not after the first page, when the file or
        # its folder is read-only or another process holds the write lock.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"PRAGMA user_version = {int(version)}")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        # NOTE: a full PRAGMA quick_check reads the whole file (seconds for millions of
        # customers), so corruption beyond the schema and the jobs table shows up on first use.
        conn.execute("SELECT count(*) FROM export_jobs").fetchone()

    def close(self) -> None:
        """Close the connection; calling it again does nothing."""
        try:
            self._conn.close()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _error(self, exc: BaseException) -> DatabaseError:
        return database_error(self.path, exc, self._busy_timeout)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one write transaction; roll back on any exception."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from exc
            raise

    def _rollback(self) -> None:
        try:
            # SQLite rolls a transaction back by itself after some errors (SQLITE_FULL, IOERR).
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("Rollback of database %s failed: %s", self.path, exc)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._conn
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _update_job(self, job_id: str, assignments: str, params: Sequence[Any]) -> None:
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE export_jobs SET {assignments}, updated_at = ? WHERE id = ?",
                (*params, _now(), job_id),
            )
            if cursor.rowcount != 1:
                raise JobNotFoundError(f"Job {job_id} not found in database {self.path}")

    def create_job(self, store_name: str, *, api_version: str, page_size: int) -> Job:
        """Insert a new in_progress job of this process; its id is ``export_<store>_<epoch ms>``."""
        started_ms = _now_ms()
        started_at = _iso_time(started_ms)
        id_ms = started_ms
        with self._write() as conn:
            # Two jobs of one store started within the same millisecond get the next free one.
            while conn.execute(
                "SELECT 1 FROM export_jobs WHERE id = ?", (f"export_{store_name}_{id_ms}",)
            ).fetchone():
                id_ms += 1
            job_id = f"export_{store_name}_{id_ms}"
            conn.execute(
                "INSERT INTO export_jobs (id, store_name, status, total_customers, "
                "processed_customers, started_at, pid, page_size, api_version, updated_at) "
                "VALUES (?, ?, ?, 0, 0, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    store_name,
                    JobStatus.IN_PROGRESS.value,
                    started_at,
                    os.getpid(),
                    page_size,
                    api_version,
                    started_at,
                ),
            )
        return self._require_job(job_id)

    def _require_job(self, job_id: str) -> Job:
        job = self.get_job(job_id)
        if job is None:
            raise JobNotFoundError(f"Job {job_id} not found in database {self.path}")
        return job

    def set_total(self, job_id: str, total: int) -> None:
        """Record the store's customer count when the job started."""
        self._update_job(job_id, "total_customers = ?", (total,))

    def get_job(self, job_id: str) -> Job | None:
        """Return the job ``job_id``, or None when there is none."""
        with self._read() as conn:
            row = conn.execute(f"{_SELECT_JOB} WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job_from_row(row)

    def latest_job(self, store_name: str) -> Job | None:
        """Return the most recently started job of the store, or None."""
        jobs = self._jobs("WHERE store_name = ?", (store_name,), 1)
        return jobs[0] if jobs else None

    def latest_failed_job(self, store_name: str) -> Job | None:
        """Return the most recently started failed job of the store, or None."""
        jobs = self._jobs(
            "WHERE store_name = ? AND status = ?", (store_name, JobStatus.FAILED.value), 1
        )
        return jobs[0] if jobs else None

    def list_jobs(self, store_name: str, limit: int) -> list[Job]:
        """Return up to ``limit`` jobs of the store, newest first.

        Raises:
            ValueError: when ``limit`` is below 1.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        return self._jobs("WHERE store_name = ?", (store_name,), limit)

    def _jobs(self, where: str, params: tuple[Any, ...], limit: int) -> list[Job]:
        with self._read() as conn:
            rows = conn.execute(
                f"{_SELECT_JOB} {where} {_NEWEST_FIRST} LIMIT ?", (*params, limit)
            ).fetchall()
        return [_job_from_row(row) for row in rows]

    def claim_job(self, job_id: str) -> Job:
        """Mark the job in_progress by this process and clear its error.

        Raises:
            JobNotFoundError: when there is no such job.
        """
        self._update_job(
            job_id,
            "status = ?, pid = ?, error = NULL",
            (JobStatus.IN_PROGRESS.value, os.getpid()),
        )
        return self._require_job(job_id)

    def save_batch(
        self,
        job_id: str,
        store_name: str,
        nodes: list[dict[str, Any]],
        end_cursor: str | None,
        page_size: int,
        node_texts: Sequence[str | bytes] | None = None,
    ) -> int:
        """Store a page of customers and the job's new position in one transaction.

        Each customer replaces its earlier row, if any. The job's processed count grows by
        ``len(nodes)``, its cursor becomes ``end_cursor`` and its last customer id becomes the
        highest legacy id of ``nodes`` (unchanged when ``nodes`` is empty). Either all of that
        is committed or none of it. ``node_texts``, the JSON text of each node as received,
        saves encoding the nodes again for the ``data`` column.

        Returns:
            The job's processed count after this batch.

        Raises:
            JobNotFoundError: when there is no such job; nothing is saved.
            DatabaseError: when SQLite fails (disk full, locked, I/O); nothing is saved.
        """
        exported_at = _now()
        if node_texts is not None and not self._utf8:
            node_texts = [text.decode() if isinstance(text, bytes) else text for text in node_texts]
        if node_texts is None:
            rows = [customer_row(node, store_name, job_id, exported_at) for node in nodes]
        else:
            rows = [
                customer_row(node, store_name, job_id, exported_at, text)
                for node, text in zip(nodes, node_texts, strict=True)
            ]
        last_customer_id = max((row[2] for row in rows if row[2] is not None), default=None)

        with self._write() as conn:
            try:
                # sqlite3 caches the prepared statement of each SQL string.
                conn.executemany(_UPSERT_SQL, rows)
            except UnicodeEncodeError:
                # Lone surrogates in some text. The rows inserted before the failure are
                # inserted again by the second pass, which replaces them.
                rows = [sanitized_row(row, node) for row, node in zip(rows, nodes, strict=True)]
                conn.executemany(_UPSERT_SQL, rows)
            cursor = conn.execute(
                "UPDATE export_jobs "
                "SET processed_customers = coalesce(processed_customers, 0) + ?, last_cursor = ?, "
                "last_customer_id = coalesce(?, last_customer_id), page_size = ?, updated_at = ? "
                "WHERE id = ?",
                (len(rows), end_cursor, last_customer_id, page_size, exported_at, job_id),
            )
            if cursor.rowcount != 1:
                raise JobNotFoundError(f"Job {job_id} not found in database {self.path}")
            processed: int = conn.execute(
                "SELECT processed_customers FROM export_jobs WHERE id = ?", (job_id,)
            ).fetchone()[0]
        return processed

    def mark_completed(self, job_id: str) -> None:
        """Mark the job completed now; its cursor and process id are cleared."""
        now = _now()
        self._update_job(
            job_id,
            "status = ?, completed_at = ?, last_cursor = NULL, pid = NULL, error = NULL",
            (JobStatus.COMPLETED.value, now),
        )

    def mark_failed(self, job_id: str, error: str) -> None:
        """Mark the job failed with ``error``; its cursor stays for resume."""
        self._update_job(
            job_id, "status = ?, error = ?, pid = NULL", (JobStatus.FAILED.value, error)
        )

    def set_csv_path(self, job_id: str, path: str) -> None:
        """Record the path of the CSV written for the job."""
        self._update_job(job_id, "csv_file_path = ?", (path,))

    def customer_count(self, store_name: str) -> int:
        """Return the number of the store's customers in the database."""
        with self._read() as conn:
            count: int = conn.execute(
                "SELECT count(*) FROM customers WHERE store_name = ?", (store_name,)
            ).fetchone()[0]
        return count

    def iter_customers(
        self, store_name: str, columns: Sequence[str] | None = None
    ) -> Generator[sqlite3.Row, None, None]:
        """Yield the store's customers ordered by legacy id, streamed from one snapshot.

        Args:
            store_name: The store.
            columns: Names from ``records.COLUMNS`` to select; all of them by default.

        Raises:
            ValueError: for a column name that is not in ``records.COLUMNS``.
            DatabaseError: when SQLite fails while reading.
        """
        return self._select_customers(store_name, columns, sqlite3.Row)

    def iter_customer_values(
        self, store_name: str, columns: Sequence[str]
    ) -> Generator[tuple[Any, ...], None, None]:
        """Yield the store's customers as tuples of ``columns``, like ``iter_customers``.

        Tuples cost less to build than sqlite3.Row objects, which matters for millions of rows.
        """
        return self._select_customers(store_name, columns, None)

    def iter_csv_lines(self, store_name: str) -> Generator[list[bytes], None, None]:
        """Yield the store's stored CSV lines as UTF-8, in chunks, ordered by legacy id.

        Rows without a legacy id come first, in the order they were first saved. A row without
        a stored line (``csv_line`` NULL) is ``NO_LINE`` and its rowid instead, for
        ``customer_sources``. The chunks and the ``customer_sources`` calls made before the
        generator is closed all read one snapshot of the database.

        Raises:
            DatabaseError: when SQLite fails while reading.
        """
        line = "ifnull(csv_line, char(0) || rowid)"
        if self._utf8:
            # The bytes as stored, without decoding them into str and encoding them again.
            line = f"CAST({line} AS BLOB)"
        # Ties of legacy_id (NULL for ids without a number) go by rowid, which the index on
        # (store_name, legacy_id) contains too, so SQLite reads the index in order and sorts
        # nothing.
        sql = f"SELECT {line} FROM customers WHERE store_name = ? ORDER BY legacy_id, rowid"
        try:
            cursor = self._conn.cursor()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            # One read transaction: without it the snapshot ends with the last row fetched,
            # before the rows of the last chunk that have no line are read.
            self._conn.execute("BEGIN")
            cursor.execute(sql, (store_name,))
            while True:
                rows = cursor.fetchmany(2000)
                if not rows:
                    break
                if self._utf8:
                    yield [row[0] for row in rows]
                else:
                    yield [row[0].encode() for row in rows]
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        finally:
            cursor.close()
            self._rollback()

    def customer_sources(self, rowids: Sequence[bytes | int]) -> list[tuple[Any, ...]]:
        """Return the ``csv_lines.SOURCE_COLUMNS`` values of the customers rows ``rowids``.

        The rows come in the order of ``rowids``.

        Raises:
            DatabaseError: when a row is missing or SQLite fails.
        """
        try:
            numbers = [int(rowid) for rowid in rowids]
        except ValueError:
            raise DatabaseError(
                f"Invalid csv_line in database {self.path}: it contains a NUL character; clear "
                "it with UPDATE customers SET csv_line = NULL WHERE instr(csv_line, char(0))"
            ) from None
        found: dict[int, tuple[Any, ...]] = {}
        with self._read() as conn:
            # SQLite before 3.32 takes at most 999 parameters in one statement.
            for start in range(0, len(numbers), 900):
                part = numbers[start : start + 900]
                sql = _SELECT_SOURCES + f"({', '.join('?' * len(part))})"
                for row in conn.execute(sql, part):
                    found[row[0]] = tuple(row[1:])
        missing = [number for number in numbers if number not in found]
        if missing:
            raise DatabaseError(
                f"Customer row {missing[0]} not found in database {self.path}: run the csv "
                "command again"
            )
        return [found[number] for number in numbers]

    def _select_customers(
        self, store_name: str, columns: Sequence[str] | None, row_factory: Any
    ) -> Generator[Any, None, None]:
        selected = COLUMNS if columns is None else tuple(columns)
        unknown = [name for name in selected if name not in COLUMNS]
        if unknown:
            raise ValueError(f"Unknown customers columns: {', '.join(unknown)}")
        sql = (
            f"SELECT {', '.join(selected)} FROM customers WHERE store_name = ? "
            "ORDER BY legacy_id, id"
        )
        return self._stream(sql, (store_name,), row_factory)

    def _stream(
        self, sql: str, params: tuple[Any, ...], row_factory: Any
    ) -> Generator[Any, None, None]:
        try:
            cursor = self._conn.cursor()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        cursor.row_factory = row_factory
        try:
            # One SELECT keeps one read snapshot until it is exhausted or the cursor is closed.
            cursor.execute(sql, params)
            while True:
                rows = cursor.fetchmany(1000)
                if not rows:
                    break
                yield from rows
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        finally:
            cursor.close()
