"""CSV lines of customers, in the column layout of Shopify admin's customer export.

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

In both, every cell is in double quotes (``csv.QUOTE_ALL``), but the header has none.
Booleans are ``yes``/``no``, tags are one cell (``vip, wholesale``) and a missing value is an
empty cell.
The Accepts Email/SMS Marketing cells are ``yes`` only for the marketing state SUBSCRIBED.

Each customer row is turned into CSV when it is saved: ``stored_line`` makes one line that
serves both dialects, kept in the ``csv_line`` column, and writing a CSV file then only joins
those lines. Python's csv writer took about 5 µs per row of 20 cells, against about 1.5 µs to
read a stored line (CPython 3.11, measured). ``Sink`` writes the rows that have no stored line
through the csv writer, from their columns.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

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

# Columns of the customers table that the cells come from, in this order.
SOURCE_COLUMNS = (
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
# Cells that can hold text, neutralized in the excel dialect when they start like a formula.
# Total Orders is a count, but a hand edit can leave text in it. The others hold yes/no.
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
        "Total Orders",
        "Note",
        "Tags",
    )
)
_CSV_WRITES_NUL = sys.version_info >= (3, 11)
_NUL = "\x00"

# A stored line is the plain line with MARK at the start of each cell that the excel dialect
# starts with an apostrophe. Cells are first joined with _SEPARATOR, which then becomes the
# comma. Rows whose values contain either character get no stored line.
MARK = "\x1e"
_MARK_BYTE = MARK.encode()
_SEPARATOR = "\x1f"
_SEPARATORS = len(HEADER) - 1
# A separator and a character that makes a spreadsheet read the cell after it as a formula.
# Only free-text cells can start so: the marked ones start with MARK, and yes/no cells cannot.
# A negative Total Orders could, so rows with one get no stored line.
# A lookahead, so that the replacement is a plain string: re.sub expands a template with a
# group reference in Python code for every match.
_FORMULA_CELL = re.compile("\x1f(?=[=+\\-@\t\r])")


def stored_line(source: Sequence[Any]) -> str | None:
    """Return the stored CSV line of a customer, or None when it cannot have one.

    ``source`` contains the values of ``SOURCE_COLUMNS`` as SQLite stores them. The line has no
    line end. ``expand`` turns it into the line of either dialect, equal to what
    ``exact_line`` writes for the same values. None means the row is written from its
    columns: it contains a NUL, a value that is not text where text is expected, a negative
    order count, or the characters the line uses as markers.
    """
    (
        legacy_id,
        gid,
        first_name,
        last_name,
        email,
        email_state,
        company,
        address1,
        address2,
        city,
        province_code,
        country_code,
        zip_code,
        address_phone,
        phone,
        sms_state,
        amount,
        orders,
        note,
        tax_exempt,
        tags,
    ) = source
    customer_id = gid if legacy_id is None else str(legacy_id)
    if not customer_id or (orders.__class__ is int and orders < 0):
        return None
    if tax_exempt is None:
        tax_exempt_cell = ""
    else:
        tax_exempt_cell = "yes" if tax_exempt else "no"
    marks = 1
    try:
        if zip_code is None or zip_code == "":
            zip_code = ""
        else:
            zip_code = MARK + zip_code
            marks += 1
        if address_phone is None or address_phone == "":
            address_phone = ""
        else:
            address_phone = MARK + address_phone
            marks += 1
        if phone is None or phone == "":
            phone = ""
        else:
            phone = MARK + phone
            marks += 1
        joined = _SEPARATOR.join(
            (
                MARK + customer_id,
                "" if first_name is None else first_name,
                "" if last_name is None else last_name,
                "" if email is None else email,
                "yes" if email_state == "SUBSCRIBED" else "no",
                "" if company is None else company,
                "" if address1 is None else address1,
                "" if address2 is None else address2,
                "" if city is None else city,
                "" if province_code is None else province_code,
                "" if country_code is None else country_code,
                zip_code,
                address_phone,
                phone,
                "yes" if sms_state == "SUBSCRIBED" else "no",
                "" if amount is None else amount,
                "" if orders is None else str(orders),
                "" if note is None else note,
                tax_exempt_cell,
                "" if tags is None else tags,
            )
        )
    except TypeError:
        # A value that is not text, such as a number in a name.
        return None
    if (
        joined.count(_SEPARATOR) != _SEPARATORS
        or joined.count(MARK) != marks
        # The excel dialect drops NUL characters, which one marked line cannot express.
        or _NUL in joined
    ):
        return None
    # The excel dialect puts an apostrophe before a free-text cell that starts like a formula,
    # as it does before the marked cells.
    joined = _FORMULA_CELL.sub(_SEPARATOR + MARK, joined)
    # Every cell is quoted, so no cell needs to be looked at on its own.
    return '"' + joined.replace('"', '""').replace(_SEPARATOR, '","') + '"'


def expand(lines: bytes, dialect: str) -> bytes:
    """Turn stored lines in UTF-8 (joined, with their line ends) into lines of ``dialect``."""
    return lines.replace(_MARK_BYTE, b"'" if dialect == "excel" else b"")


def _yes_no(flag: int | None) -> str | None:
    if flag is None:
        return None
    return "yes" if flag else "no"


def _plain_row(row: Sequence[Any]) -> tuple[Any, ...]:
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
        # Sink drops every NUL later, so the first character that remains decides.
        stripped = value.lstrip(_NUL)
        if stripped and stripped[0] in _FORMULA_START:
            return "'" + stripped
        return stripped
    if first in _FORMULA_START:
        return "'" + value
    return value


def _excel_row(row: Sequence[Any]) -> list[Any]:
    values = list(_plain_row(row))
    for index in _FREE_TEXT_CELLS:
        value = values[index]
        # Free-text columns are declared TEXT, so SQLite returns numbers in them as str. Total
        # Orders (INTEGER) gives an int, which a spreadsheet reads as a number.
        if isinstance(value, str) and value and value[0] in _EXCEL_CHECK_START:
            values[index] = _text(value)
    for index in _AS_TEXT_CELLS:
        value = values[index]
        if value is not None and value != "":
            values[index] = "'" + str(value)
    return values


def _excel_row_without_nul(row: Sequence[Any]) -> list[Any]:
    return [
        value.replace(_NUL, "") if isinstance(value, str) else value for value in _excel_row(row)
    ]


def _plain_row_without_nul(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(
        value.replace(_NUL, "\ufffd") if isinstance(value, str) else value
        for value in _plain_row(row)
    )


def cells_function(dialect: str) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """Return the function that turns ``SOURCE_COLUMNS`` values into the cells of a row."""
    if dialect == "excel":
        # The excel dialect drops NUL characters. Before Python 3.11 the csv module cannot
        # write them at all, so they are removed before the rows reach the writer.
        return _excel_row if _CSV_WRITES_NUL else _excel_row_without_nul
    if _CSV_WRITES_NUL:
        return _plain_row
    # NOTE: the csv module writes NUL characters from Python 3.11 on. Before, it raised
    # csv.Error for them (not run here), so this writes U+FFFD in their place there.
    return _plain_row_without_nul


def exact_line(source: Sequence[Any], dialect: str) -> str:
    """Return the CSV line (with its CRLF) of one row of ``SOURCE_COLUMNS`` values."""
    buffer = io.StringIO()
    csv.writer(buffer, dialect="excel", quoting=csv.QUOTE_ALL).writerow(
        cells_function(dialect)(source)
    )
    line = buffer.getvalue()
    return line.replace(_NUL, "") if dialect == "excel" else line


class Sink:
    """A writer of CSV lines to a binary file, in UTF-8, in chunks and in order.

    ``write_stored`` takes stored lines (``stored_line``, each followed by CRLF) as UTF-8
    bytes; ``writer``, a csv writer, takes rows of cells. The excel dialect's NUL characters
    are dropped here.
    """

    def __init__(self, file: BinaryIO, dialect: str, chunk_lines: int = 2000) -> None:
        self._file = file
        self._dialect = dialect
        self._chunk_lines = chunk_lines
        self._drop_nul = dialect == "excel"
        self._pending: list[str] = []
        self.writer = csv.writer(self, dialect="excel", quoting=csv.QUOTE_ALL)

    def write(self, text: str) -> None:
        """Take one line from the csv writer."""
        self._pending.append(text)
        if len(self._pending) >= self._chunk_lines:
            self.flush()

    def write_stored(self, lines: bytes) -> None:
        """Write stored lines, joined with their line ends, after what came before."""
        self.flush()
        self._file.write(expand(lines, self._dialect))

    def flush(self) -> None:
        """Write the lines that the csv writer produced so far."""
        if not self._pending:
            return
        chunk = "".join(self._pending)
        self._pending.clear()
        if self._drop_nul and _NUL in chunk:
            chunk = chunk.replace(_NUL, "")
        self._file.write(chunk.encode())
