"""CSV export of a store's customers, in the column layout of Shopify admin's customer export.

Two dialects:

- ``excel`` (default): UTF-8 with a byte order mark, CRLF line ends, and no cell that a
  spreadsheet runs as a formula. A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or
  a carriage return gets a leading single quote (``'``). So does every non-empty Customer ID,
  Default Address Zip, Default Address Phone and Phone cell: ``+14155550100`` is a formula
  trigger, and without the quote a spreadsheet turns ``02134`` into 2134 and
  ``+14155550100`` into 14155550100. LibreOffice Calc 7.4 (checked with its CSV import)
  shows each quoted cell as text with the quote in front (``'02134``, ``'+14155550100``,
  ``'=1+1``), so every character after the quote is the stored value. NOTE: Excel was not
  checked here. NUL characters are dropped, since a spreadsheet cell cannot hold them.
- ``plain``: RFC 4180, UTF-8 without BOM, CRLF line ends, values exactly as stored, so that
  Python's csv module reads back the database's values (NUL characters included on Python
  3.11 and later). An empty cell is a NULL or an empty string.

In both, booleans are ``yes``/``no``, tags are one cell (``vip, wholesale``) and a missing
value is an empty cell. The Accepts Email/SMS Marketing cells are ``yes`` only for the
marketing state SUBSCRIBED.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from shopify_export.errors import CsvError
from shopify_export.store import Database, create_folders

log = logging.getLogger(__name__)

HEADER = [
    "Customer ID",
    "First Name",
    "Last Name",
    "Email",
    "Accepts Email Marketing",
    "Default Address Company",
    "Default Address Address1",
    "Default Address Address2",
    "Default Address City",
    "Default Address Province Code",
    "Default Address Country Code",
    "Default Address Zip",
    "Default Address Phone",
    "Phone",
    "Accepts SMS Marketing",
    "Total Spent",
    "Total Orders",
    "Note",
    "Tax Exempt",
    "Tags",
]
DIALECTS = ("excel", "plain")
DEFAULT_EXPORT_FOLDER = Path("data") / "exports"

# Columns read from the customers table, in this order.
_SOURCE_COLUMNS = (
    "legacy_id",
    "id",
    "first_name",
    "last_name",
    "email",
    "email_marketing_state",
    "default_address_company",
    "default_address_address1",
    "default_address_address2",
    "default_address_city",
    "default_address_province_code",
    "default_address_country_code",
    "default_address_zip",
    "default_address_phone",
    "phone",
    "sms_marketing_state",
    "amount_spent",
    "number_of_orders",
    "note",
    "tax_exempt",
    "tags",
)

# First characters that can make a spreadsheet read a cell as a formula.
_FORMULA_START = frozenset("=+-@\t\r")
_EXCEL_CHECK_START = _FORMULA_START | {"\x00"}
# Cells written with a leading quote in the excel dialect whenever they are not empty.
_AS_TEXT_CELLS = tuple(
    HEADER.index(name)
    for name in ("Customer ID", "Default Address Zip", "Default Address Phone", "Phone")
)
# Cells of free text, neutralized in the excel dialect when they start like a formula. The
# others hold yes/no or a count.
_FREE_TEXT_CELLS = tuple(
    HEADER.index(name)
    for name in (
        "First Name",
        "Last Name",
        "Email",
        "Default Address Company",
        "Default Address Address1",
        "Default Address Address2",
        "Default Address City",
        "Default Address Province Code",
        "Default Address Country Code",
        "Total Spent",
        "Note",
        "Tags",
    )
)
_TEMP_SUFFIX = ".tmp"
_CSV_WRITES_NUL = sys.version_info >= (3, 11)
_NUL = "\x00"


def _yes_no(flag: int | None) -> str | None:
    if flag is None:
        return None
    return "yes" if flag else "no"


def _plain_row(row: Any) -> tuple[Any, ...]:
    legacy_id = row[0]
    tax_exempt = row[19]
    return (
        row[1] if legacy_id is None else legacy_id,
        row[2],
        row[3],
        row[4],
        "yes" if row[5] == "SUBSCRIBED" else "no",
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
        row[13],
        row[14],
        "yes" if row[15] == "SUBSCRIBED" else "no",
        row[16],
        row[17],
        row[18],
        _yes_no(tax_exempt),
        row[20],
    )


def _text(value: str) -> str:
    """Neutralize a cell that a spreadsheet would run as a formula."""
    first = value[0]
    if first == _NUL:
        # _Sink drops every NUL later, so the first character that remains decides.
        stripped = value.lstrip(_NUL)
        if stripped and stripped[0] in _FORMULA_START:
            return "'" + stripped
        return stripped
    if first in _FORMULA_START:
        return "'" + value
    return value


def _excel_row(row: Any) -> list[Any]:
    values = list(_plain_row(row))
    for index in _FREE_TEXT_CELLS:
        value = values[index]
        # Free-text columns are declared TEXT, so SQLite returns numbers in them as str.
        if value and value[0] in _EXCEL_CHECK_START:
            values[index] = _text(value)
    for index in _AS_TEXT_CELLS:
        value = values[index]
        if value is not None and value != "":
            values[index] = "'" + str(value)
    return values


def _excel_row_without_nul(row: Any) -> list[Any]:
    return [
        value.replace(_NUL, "") if isinstance(value, str) else value for value in _excel_row(row)
    ]


def _plain_row_without_nul(row: Any) -> tuple[Any, ...]:
    return tuple(
        value.replace(_NUL, "\ufffd") if isinstance(value, str) else value
        for value in _plain_row(row)
    )


class _Sink:
    """The file object of csv.writer: collects lines and writes them to the file in chunks.

    Counts the lines, and drops NUL characters from them when ``drop_nul`` is set.
    """

    def __init__(self, file: TextIO, drop_nul: bool, chunk_lines: int = 2000) -> None:
        self._file = file
        self._drop_nul = drop_nul
        self._chunk_lines = chunk_lines
        self._lines: list[str] = []
        self.count = 0

    def write(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= self._chunk_lines:
            self.flush()

    def flush(self) -> None:
        chunk = "".join(self._lines)
        self.count += len(self._lines)
        self._lines.clear()
        if self._drop_nul and _NUL in chunk:
            chunk = chunk.replace(_NUL, "")
        self._file.write(chunk)


def default_csv_path(store_name: str, job_id: str | None) -> Path:
    """Return ``data/exports/<store>_<job id>.csv``, or ``<store>_<UTC timestamp>.csv``."""
    suffix = job_id if job_id else time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return DEFAULT_EXPORT_FOLDER / f"{store_name}_{suffix}.csv"


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

    Rows stream from the database, ordered by customer id, so memory stays flat. The file is
    written to a temporary file beside ``path`` (mode 0600), synced to disk and renamed to
    ``path``: a crash leaves either the previous file or the complete new one under that
    name, never a partial one. Missing folders are created with mode 0700.

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
    excel = dialect == "excel"
    convert: Callable[[Any], Sequence[Any]]
    if excel:
        # The excel dialect drops NUL characters. Before Python 3.11 the csv module cannot
        # write them at all, so they are removed before the rows reach the writer.
        convert = _excel_row if _CSV_WRITES_NUL else _excel_row_without_nul
    elif _CSV_WRITES_NUL:
        convert = _plain_row
    else:
        # NOTE: the csv module writes NUL characters from Python 3.11 on. Before, it raised
        # csv.Error for them (not run here), so this writes U+FFFD in their place there.
        convert = _plain_row_without_nul
    # newline="": the csv module writes the CRLF line ends itself.
    with open(fd, "w", encoding="utf-8-sig" if excel else "utf-8", newline="") as file:
        sink = _Sink(file, drop_nul=excel)
        writer = csv.writer(sink, dialect="excel")
        writer.writerow(HEADER)
        rows = db.iter_customer_values(store_name, _SOURCE_COLUMNS)
        try:
            writer.writerows(map(convert, rows))
        finally:
            rows.close()
        sink.flush()
        file.flush()
        os.fsync(file.fileno())
    return sink.count - 1


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
