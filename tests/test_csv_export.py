"""CSV export: columns, the excel and plain dialects, safe writing."""

from __future__ import annotations

import csv
import io
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shopify_export import csv_lines
from shopify_export.csv_export import HEADER, write_csv
from shopify_export.errors import CsvError
from shopify_export.store import Database

REPO_ROOT = Path(__file__).resolve().parents[1]
STORE = "demo-store"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HOSTILE = [
    "emoji 😀👩‍👩‍👧 and ✓",
    "RTL \u202eעברית\u202c العربية",
    "quotes \"double\" and 'single'",
    "comma, separated, values",
    "line\nbreak and\r\nCRLF and \r CR",
    "control \x01\x07\x1b\x7f chars",
    "NUL \x00 inside",
    "  leading and trailing spaces  ",
    "",
]


def node(number: int, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": f"gid://shopify/Customer/{number}",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "defaultEmailAddress": {"emailAddress": "ada@example.com", "marketingState": "SUBSCRIBED"},
        "defaultPhoneNumber": {"phoneNumber": "+14155550100", "marketingState": "UNSUBSCRIBED"},
        "tags": ["vip", "wholesale"],
        "note": None,
        "taxExempt": True,
        "numberOfOrders": "3",
        "amountSpent": {"amount": "129.90", "currencyCode": "USD"},
        "defaultAddress": {
            "company": None,
            "address1": "1 Main St",
            "city": "Boston",
            "provinceCode": "MA",
            "countryCodeV2": "US",
            "zip": "02134",
            "phone": "+1 (617) 555-0100",
        },
    }
    result.update(fields)
    return result


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path / "customers.db")
    yield database
    database.close()


def save(db: Database, nodes: list[dict[str, Any]], store_name: str = STORE) -> None:
    job = db.create_job(store_name, api_version="2026-04", page_size=250)
    db.save_batch(job.id, store_name, nodes, "cursor", 250)


def read_csv(path: Path, encoding: str = "utf-8") -> list[list[str]]:
    with open(path, encoding=encoding, newline="") as file:
        return list(csv.reader(file))


def by_header(rows: list[list[str]]) -> list[dict[str, str]]:
    assert rows[0] == HEADER
    return [dict(zip(HEADER, row, strict=True)) for row in rows[1:]]


def test_columns_and_values(db: Database, tmp_path: Path) -> None:
    bare = {"id": "gid://shopify/Customer/8", "tags": []}
    save(db, [node(7), bare])
    path = tmp_path / "out.csv"
    assert write_csv(db, STORE, path, "plain") == 2
    first, second = by_header(read_csv(path))

    assert first["Customer ID"] == "7"
    assert first["Email"] == "ada@example.com"
    assert first["Accepts Email Marketing"] == "yes"
    assert first["Accepts SMS Marketing"] == "no"
    assert first["Phone"] == "+14155550100"
    assert first["Default Address Zip"] == "02134"
    assert first["Default Address Province Code"] == "MA"
    assert first["Default Address Country Code"] == "US"
    assert first["Total Spent"] == "129.90"
    assert first["Total Orders"] == "3"
    assert first["Tax Exempt"] == "yes"
    assert first["Tags"] == "vip, wholesale"

    assert second["Customer ID"] == "8"
    assert second["Accepts Email Marketing"] == "no"
    assert second["Tax Exempt"] == ""
    for name in ("First Name", "Email", "Phone", "Note", "Tags", "Total Orders"):
        assert second[name] == "", name
    assert "None" not in path.read_text(encoding="utf-8")


def test_only_the_store_in_id_order(db: Database, tmp_path: Path) -> None:
    save(db, [node(10), node(9), node(2**60)])
    save(db, [node(5)], store_name="other-store")
    path = tmp_path / "out.csv"
    assert write_csv(db, STORE, path, "plain") == 3
    assert [row["Customer ID"] for row in by_header(read_csv(path))] == ["9", "10", str(2**60)]


def _as_written(value: str | None) -> str:
    """Return the plain dialect's cell for a stored value (Python 3.10 cannot write NUL)."""
    if value is None:
        return ""
    if sys.version_info < (3, 11):
        return value.replace("\x00", "\ufffd")
    return value


def test_plain_round_trip_hostile_values(db: Database, tmp_path: Path) -> None:
    note = '64 KB note, "quoted",\r\nwith lines 😀 \x00\n' * 2000
    nodes = [
        node(
            100 + number,
            firstName=text,
            lastName=text[::-1],
            note=text,
            tags=[text.replace(",", ";") or "empty"],
            defaultAddress={"address1": text, "zip": text, "city": "=1+1"},
        )
        for number, text in enumerate(HOSTILE)
    ]
    nodes.append(node(200, note=note, tags=[f"tag-{n}" for n in range(250)]))
    save(db, nodes)
    path = tmp_path / "plain.csv"
    assert write_csv(db, STORE, path, "plain") == len(nodes)

    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    assert raw.endswith(b"\r\n")
    rows = by_header(read_csv(path))
    stored = list(db.iter_customers(STORE))
    assert len(rows) == len(stored)
    pairs = [
        ("First Name", "first_name"),
        ("Last Name", "last_name"),
        ("Note", "note"),
        ("Tags", "tags"),
        ("Default Address Address1", "default_address_address1"),
        ("Default Address Zip", "default_address_zip"),
        ("Default Address City", "default_address_city"),
        ("Phone", "phone"),
        ("Email", "email"),
    ]
    for row, customer in zip(rows, stored, strict=True):
        for header, column in pairs:
            assert row[header] == _as_written(customer[column]), (header, customer["id"])
    assert rows[-1]["Note"] == _as_written(note)
    assert len(rows[-1]["Note"]) > 64 * 1024
    assert rows[-1]["Tags"].count(", ") == 249


def _is_formula_like(cell: str) -> bool:
    return cell[:1] in FORMULA_STARTS


def test_excel_neutralises_formulas(db: Database, tmp_path: Path) -> None:
    attacks = ['=HYPERLINK("http://x")', "+SUM(1)", "-2+3", "@cmd", "\tTab", "\rCR", "\x00=NUL"]
    nodes = [
        node(
            300 + number,
            firstName=attack,
            lastName=attack,
            note=attack,
            tags=[attack],
            defaultEmailAddress={"emailAddress": attack, "marketingState": "SUBSCRIBED"},
            amountSpent={"amount": attack, "currencyCode": "USD"},
            defaultAddress={
                "company": attack,
                "address1": attack,
                "address2": attack,
                "city": attack,
                "provinceCode": attack,
                "countryCodeV2": attack,
                "zip": attack,
                "phone": attack,
            },
        )
        for number, attack in enumerate(attacks)
    ]
    save(db, nodes)
    path = tmp_path / "excel.csv"
    write_csv(db, STORE, path, "excel")

    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert b"\x00" not in raw
    rows = read_csv(path, encoding="utf-8-sig")
    assert rows[0] == HEADER
    for row in rows[1:]:
        for header, cell in zip(HEADER, row, strict=True):
            assert not _is_formula_like(cell), (header, cell)
    first = by_header(rows)[0]
    assert first["First Name"] == '\'=HYPERLINK("http://x")'
    assert first["Note"] == '\'=HYPERLINK("http://x")'
    nul = by_header(rows)[-1]
    assert nul["First Name"] == "'=NUL"


def test_excel_keeps_ids_phones_zips_as_text(db: Database, tmp_path: Path) -> None:
    nodes = [
        node(7000000000220),
        node(7000000000221, defaultPhoneNumber=None, defaultAddress=None),
        node(7000000000222, firstName="Zoë", note="plain note", tags=["a-b"]),
    ]
    save(db, nodes)
    path = tmp_path / "excel.csv"
    write_csv(db, STORE, path, "excel")
    first, second, third = by_header(read_csv(path, encoding="utf-8-sig"))

    assert first["Customer ID"] == "'7000000000220"
    assert first["Phone"] == "'+14155550100"
    assert first["Default Address Zip"] == "'02134"
    assert first["Default Address Phone"] == "'+1 (617) 555-0100"
    # Numbers and ordinary text stay as they are.
    assert first["Total Spent"] == "129.90"
    assert first["Total Orders"] == "3"
    assert first["Tags"] == "vip, wholesale"
    assert second["Phone"] == ""
    assert second["Default Address Zip"] == ""
    assert third["First Name"] == "Zoë"
    assert third["Note"] == "plain note"
    assert third["Tags"] == "a-b"
    for row in (first, second, third):
        assert row["Customer ID"][1:] in {"7000000000220", "7000000000221", "7000000000222"}


def test_excel_numbers_in_text_columns(db: Database, tmp_path: Path) -> None:
    save(db, [node(1)])
    conn = sqlite3.connect(db.path)
    conn.execute("UPDATE customers SET amount_spent = -5, default_address_zip = 2134, tags = 7")
    conn.commit()
    conn.close()
    path = tmp_path / "excel.csv"
    write_csv(db, STORE, path)
    (row,) = by_header(read_csv(path, encoding="utf-8-sig"))
    # TEXT affinity stores the numbers as text, so they follow the rules of text.
    assert row["Total Spent"] == "'-5"
    assert row["Default Address Zip"] == "'2134"
    assert row["Tags"] == "7"


def test_excel_line_ends_and_bom(db: Database, tmp_path: Path) -> None:
    save(db, [node(1, note="two\nlines")])
    path = tmp_path / "excel.csv"
    write_csv(db, STORE, path)
    raw = path.read_bytes()
    assert raw.startswith("\ufeffCustomer ID,".encode())
    assert raw.count(b"\r\n") == 2
    assert b'"two\nlines"' in raw


def test_excel_sandbox_data(db: Database, tmp_path: Path) -> None:
    data = pytest.importorskip("shopify_export.sandbox.data")
    config_module = pytest.importorskip("shopify_export.sandbox.config")
    config = config_module.SandboxConfig(customers=600)
    nodes = [data.customer(config, index) for index in range(600)]
    save(db, nodes)
    path = tmp_path / "excel.csv"
    assert write_csv(db, STORE, path, "excel") == 600
    rows = read_csv(path, encoding="utf-8-sig")
    formula_like_stored = 0
    for customer in db.iter_customers(STORE):
        for column in ("first_name", "last_name", "note", "tags", "default_address_address1"):
            if _is_formula_like(customer[column] or ""):
                formula_like_stored += 1
    for row in rows[1:]:
        for header, cell in zip(HEADER, row, strict=True):
            assert not _is_formula_like(cell), (header, cell)
    # NOTE: depends on the sandbox serving formula-like text; fails loudly if it stops.
    assert formula_like_stored > 0

    plain = tmp_path / "plain.csv"
    write_csv(db, STORE, plain, "plain")
    phones = [row[HEADER.index("Phone")] for row in read_csv(plain)[1:]]
    excel_phones = [row[HEADER.index("Phone")] for row in rows[1:]]
    for original, excel_phone in zip(phones, excel_phones, strict=True):
        assert excel_phone == ("'" + original.replace("\x00", "") if original else "")


def test_file_modes_and_folders(db: Database, tmp_path: Path) -> None:
    save(db, [node(1)])
    path = tmp_path / "exports" / "nested" / "out.csv"
    previous = os.umask(0)
    try:
        write_csv(db, STORE, path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert [entry.name for entry in path.parent.iterdir()] == ["out.csv"]


def test_replaces_existing_file(db: Database, tmp_path: Path) -> None:
    save(db, [node(1), node(2)])
    path = tmp_path / "out.csv"
    path.write_text("old content")
    path.chmod(0o644)
    assert write_csv(db, STORE, path) == 2
    assert "old content" not in path.read_text(encoding="utf-8-sig")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_failure_leaves_no_partial_file(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save(db, [node(number) for number in range(1, 101)])
    real = db.iter_csv_lines

    def failing(store_name: str) -> Iterator[list[str | int]]:
        for chunk in real(store_name):
            yield chunk[:50]
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(db, "iter_csv_lines", failing)
    fresh = tmp_path / "fresh.csv"
    with pytest.raises(CsvError, match="No space left on device"):
        write_csv(db, STORE, fresh)
    assert not fresh.exists()

    existing = tmp_path / "existing.csv"
    existing.write_text("previous export")
    with pytest.raises(CsvError):
        write_csv(db, STORE, existing)
    assert existing.read_text() == "previous export"
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [
        "customers.db",
        "customers.db-shm",
        "customers.db-wal",
        "existing.csv",
    ]


_SLOW_WRITER = """
import sys
from pathlib import Path
from shopify_export import csv_export, csv_lines
from shopify_export.store import Database

class SlowSink(csv_export.Sink):
    def write_stored(self, lines):
        super().write_stored(lines)
        self._file.flush()
        print("chunk", flush=True)
        import time
        time.sleep(0.05)

csv_export.Sink = SlowSink
db = Database.open(sys.argv[1])
csv_export.write_csv(db, "demo-store", Path(sys.argv[2]), "excel")
print("done", flush=True)
"""


def test_kill_during_write_leaves_no_file(db: Database, tmp_path: Path) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    for start in range(0, 10_000, 250):
        db.save_batch(job.id, STORE, [node(start + n + 1) for n in range(250)], "c", 250)
    target = tmp_path / "exports" / "big.csv"
    writer = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(db.path), str(target)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "chunk"
        assert writer.stdout.readline().strip() == "chunk"
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()

    assert not target.exists()
    leftovers = list(target.parent.iterdir())
    assert len(leftovers) == 1
    assert leftovers[0].name.startswith(".big.csv.")
    assert leftovers[0].stat().st_size > 0

    # The next write of the same file removes what the killed process left.
    assert write_csv(db, STORE, target) == 10_000
    assert [entry.name for entry in target.parent.iterdir()] == ["big.csv"]


def test_invalid_arguments(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown CSV dialect"):
        write_csv(db, STORE, tmp_path / "x.csv", "tsv")
    with pytest.raises(CsvError, match="is a folder"):
        write_csv(db, STORE, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CsvError, match="Cannot create the folder"):
        write_csv(db, STORE, tmp_path / "file" / "x.csv")


def test_sink_keeps_line_order() -> None:
    rows: list[list[Any]] = [["a", "b,c", 'd"e', "f\r\ng", None, 3], ["x"] * 6] * 3000
    expected = io.StringIO()
    csv.writer(expected, quoting=csv.QUOTE_ALL).writerows(rows)
    expected.write("s,t\r\n")
    expected.writelines(["y\r\n", "z\r\n"])
    csv.writer(expected, quoting=csv.QUOTE_ALL).writerows(rows[:3])
    actual = io.BytesIO()
    sink = csv_lines.Sink(actual, "plain")
    sink.writer.writerows(rows)
    sink.write_stored(b"s,\x1et\r\n")
    sink.write_stored(b"y\r\nz\r\n")
    sink.writer.writerows(rows[:3])
    sink.flush()
    # The plain dialect drops each marker; the excel one would write a quote.
    assert actual.getvalue().decode() == expected.getvalue()
