"""CSV files of a store's customers, in the column layout of Shopify admin's customer export.

The dialects and the cells are described in ``csv_lines``. Files are written beside their final
name and renamed into place.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
import tempfile
from pathlib import Path

from shopify_export.csv_lines import DIALECTS, HEADER, Sink, cells_function
from shopify_export.errors import CsvError
from shopify_export.store import NO_LINE, Database, create_folders

__all__ = ["DIALECTS", "HEADER", "write_csv"]

log = logging.getLogger(__name__)

_TEMP_SUFFIX = ".tmp"


def _remove_stale_temp_files(path: Path) -> None:
    """Delete temporary files of earlier writes of ``path`` whose process has ended."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[^.]+" + re.escape(_TEMP_SUFFIX))
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if not match:
            continue
        pid = int(match.group(1))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            candidate.unlink(missing_ok=True)
            log.debug("Removed %s, left by an interrupted CSV write", candidate)
        except OSError:
            pass


def write_csv(db: Database, store_name: str, path: Path, dialect: str = "excel") -> int:
    """Write the store's customers to a CSV file at ``path``.

    Rows stream from the database, ordered by legacy customer id (customers without one first,
    in the order they were first saved), so memory stays flat. The file is written to a
    temporary file beside ``path`` (mode 0600), synced to disk and renamed to ``path``: a
    crash leaves either the previous file or the complete new one under that name, never a
    partial one. Missing folders are created with mode 0700.

    Args:
        db: The database.
        store_name: The store whose customers to write.
        path: The CSV file to create or replace.
        dialect: ``excel`` or ``plain`` (see the module documentation).

    Returns:
        The number of customer rows written.

    Raises:
        ValueError: for an unknown dialect.
        CsvError: when the file cannot be written.
        DatabaseError: when the database cannot be read.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"Unknown CSV dialect {dialect!r}: use one of {', '.join(DIALECTS)}")
    path = Path(path)
    if path.is_dir():
        raise CsvError(f"CSV path {path} is a folder: pass a file path with --csv-path")
    try:
        create_folders(path.parent)
    except OSError as exc:
        raise CsvError(
            f"Cannot create the folder {path.parent} for CSV file {path}: "
            f"{exc.strerror or exc}; pass another --csv-path"
        ) from exc
    _remove_stale_temp_files(path)

    try:
        # mkstemp creates the file with mode 0600.
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=_TEMP_SUFFIX, dir=path.parent
        )
    except OSError as exc:
        raise CsvError(
            f"Cannot create a file in {path.parent} for CSV file {path}: "
            f"{exc.strerror or exc}; pass another --csv-path"
        ) from exc
    temp_path = Path(temp_name)
    try:
        count = _write_file(db, store_name, fd, dialect)
        os.replace(temp_path, path)
    except BaseException as exc:
        temp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CsvError(
                f"Cannot write CSV file {path}: {exc.strerror or exc}; check the free space "
                "and permissions, or pass another --csv-path"
            ) from exc
        raise
    _sync_folder(path.parent)
    log.debug("Wrote %d customers of %s to %s (%s dialect)", count, store_name, path, dialect)
    return count


def _write_file(db: Database, store_name: str, fd: int, dialect: str) -> int:
    cells_of = cells_function(dialect)
    count = 0
    with open(fd, "wb") as file:
        if dialect == "excel":
            file.write(codecs.BOM_UTF8)
        sink = Sink(file, dialect)
        # The names need no quotes; Shopify's own template has none.
        sink.write_stored((",".join(HEADER) + "\r\n").encode())
        chunks = db.iter_csv_lines(store_name)
        try:
            for chunk in chunks:
                count += len(chunk)
                lines = b"\r\n".join(chunk) + b"\r\n"
                if NO_LINE not in lines:
                    sink.write_stored(lines)
                    continue
                # Rows without a stored line: NO_LINE and the rowid, up to the line end.
                before, *rest = lines.split(NO_LINE)
                pieces = [piece.partition(b"\r\n") for piece in rest]
                sources = db.customer_sources([rowid for rowid, _, _ in pieces])
                sink.write_stored(before)
                for source, (_, _, after) in zip(sources, pieces, strict=True):
                    sink.writer.writerow(cells_of(source))
                    sink.write_stored(after)
        finally:
            chunks.close()
        sink.flush()
        file.flush()
        os.fsync(file.fileno())
    return count


def _sync_folder(folder: Path) -> None:
    # Makes the rename durable. Some file systems refuse to open or sync a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
