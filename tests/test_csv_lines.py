"""Stored CSV lines: each equals, in both dialects, the line the csv writer makes."""

from __future__ import annotations

import csv
import json
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shopify_export import csv_lines
from shopify_export.csv_export import write_csv
from shopify_export.csv_lines import DIALECTS, SOURCE_COLUMNS, exact_line, expand, stored_line
from shopify_export.page_json import PageDecoder
from shopify_export.records import COLUMNS, customer_row
from shopify_export.sandbox import data as sandbox_data
from shopify_export.sandbox.config import SandboxConfig
from shopify_export.store import Database

STORE = "lines-store"
_SOURCE_INDEXES = [COLUMNS.index(name) for name in SOURCE_COLUMNS]
# Characters that change how a cell is written, mixed into random values.
_TRICKY = [",", '"', "\r", "\n", "\r\n", "=", "+", "-", "@", "\t", "'"]
# Characters that leave a row without a stored line; rarer, so that most rows have one.
_POISON = ["\x00", "\x1e", "\x1f"]
_PLAIN = ["a", "Zoë", "7", " ", "😀", "\u202e", ";"]


def source_of(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(row[index] for index in _SOURCE_INDEXES)


def assert_same_as_writer(source: tuple[Any, ...]) -> bool:
    """Check the stored line of ``source`` in both dialects; return whether it has one."""
    line = stored_line(source)
    if line is None:
        return False
    for dialect in DIALECTS:
        expanded = expand((line + "\r\n").encode(), dialect).decode()
        assert expanded == exact_line(source, dialect), (dialect, source)
    return True


def sandbox_rows(customers: int) -> Iterator[tuple[Any, ...]]:
    config = SandboxConfig(customers=customers)
    for index in range(customers):
        node = sandbox_data.customer(config, index)
        yield customer_row(node, STORE, "job", "2026-01-01T00:00:00.000Z")


def test_sandbox_customers_match_the_csv_writer() -> None:
    stored = 0
    rows = list(sandbox_rows(3000))
    for row in rows:
        line = row[COLUMNS.index("csv_line")]
        assert line == stored_line(source_of(row))
        stored += assert_same_as_writer(source_of(row))
    # Only rows with a NUL or a negative order count go without; the sandbox has a few.
    assert stored >= 0.95 * len(rows)


def random_text(rng: random.Random) -> str | None:
    if rng.random() < 0.15:
        return None
    parts = []
    for _ in range(rng.randint(0, 5)):
        draw = rng.random()
        if draw < 0.003:
            choices = _POISON
        elif draw < 0.3:
            choices = _TRICKY
        else:
            choices = _PLAIN
        parts.append(rng.choice(choices))
    return "".join(parts)


def random_source(rng: random.Random) -> tuple[Any, ...]:
    values: list[Any] = [random_text(rng) for _ in SOURCE_COLUMNS]
    names = list(SOURCE_COLUMNS)
    values[names.index("legacy_id")] = rng.choice([None, 0, 7, 2**62])
    values[names.index("id")] = rng.choice(["gid://shopify/Customer/7", "", "=1", "x,y"])
    values[names.index("email_marketing_state")] = rng.choice([None, "SUBSCRIBED", "PENDING"])
    values[names.index("sms_marketing_state")] = rng.choice([None, "SUBSCRIBED", "NOT"])
    values[names.index("number_of_orders")] = rng.choice([None, 0, 3, -2])
    values[names.index("tax_exempt")] = rng.choice([None, 0, 1])
    return tuple(values)


def test_random_values_match_the_csv_writer() -> None:
    rng = random.Random(20261204)
    stored = sum(assert_same_as_writer(random_source(rng)) for _ in range(20_000))
    # Rows with a NUL, a marker character, a negative count or an empty id have none.
    assert stored > 10_000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("first_name", "a\x00b"),
        ("note", "uses \x1e inside"),
        ("tags", "uses \x1f inside"),
        ("number_of_orders", -1),
        ("first_name", 42),
        ("id", ""),
    ],
)
def test_rows_without_a_stored_line(field: str, value: Any) -> None:
    source = list(source_of(next(sandbox_rows(1))))
    source[SOURCE_COLUMNS.index("legacy_id")] = None if field == "id" else 5
    source[SOURCE_COLUMNS.index(field)] = value
    assert stored_line(tuple(source)) is None


def test_marked_cells() -> None:
    source = list(source_of(next(sandbox_rows(1))))
    names = list(SOURCE_COLUMNS)
    source[names.index("legacy_id")] = 9
    source[names.index("first_name")] = "=HYPERLINK()"
    source[names.index("default_address_zip")] = "02,134"
    source[names.index("phone")] = None
    line = stored_line(tuple(source))
    assert line is not None
    assert line.startswith('"\x1e9","\x1e=HYPERLINK()",')
    assert '"\x1e02,134"' in line
    assert expand(line.encode(), "excel").startswith(b'"\'9","\'=HYPERLINK()",')
    assert expand(line.encode(), "plain").startswith(b'"9","=HYPERLINK()",')


def test_text_in_total_orders_neutralized() -> None:
    source = list(source_of(next(sandbox_rows(1))))
    source[SOURCE_COLUMNS.index("number_of_orders")] = "-1+2"
    excel = exact_line(tuple(source), "excel")
    assert '"\'-1+2"' in excel
    line = stored_line(tuple(source))
    assert line is not None
    assert expand(line.encode(), "excel").decode() + "\r\n" == excel


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with Database.open(tmp_path / "customers.db") as database:
        yield database


def save_sandbox(db: Database, customers: int) -> None:
    config = SandboxConfig(customers=customers)
    nodes = [sandbox_data.customer(config, index) for index in range(customers)]
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    for start in range(0, customers, 250):
        db.save_batch(job.id, STORE, nodes[start : start + 250], "cursor", 250)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_rows_without_lines_give_the_same_file(db: Database, tmp_path: Path, dialect: str) -> None:
    save_sandbox(db, 2600)
    with_lines = tmp_path / "with.csv"
    assert write_csv(db, STORE, with_lines, dialect) == 2600

    # Rows saved by an earlier version have no line: every other row here, and all of the
    # last chunk, so that chunks of lines only, of rowids only and of both are written.
    conn = sqlite3.connect(db.path)
    conn.execute("UPDATE customers SET csv_line = NULL WHERE legacy_id % 2 = 0 OR rowid > 2000")
    conn.commit()
    missing = conn.execute("SELECT count(*) FROM customers WHERE csv_line IS NULL").fetchone()[0]
    conn.close()
    assert missing > 1300
    without_lines = tmp_path / "without.csv"
    assert write_csv(db, STORE, without_lines, dialect) == 2600
    expected = with_lines.read_text(encoding="utf-8", errors="replace").splitlines()
    actual = without_lines.read_text(encoding="utf-8", errors="replace").splitlines()
    # Compared line by line: a failure names the first line that differs.
    for number, (want, got) in enumerate(zip(expected, actual, strict=False)):
        assert got == want, f"line {number}"
    assert without_lines.read_bytes() == with_lines.read_bytes()


def test_hand_edit_clears_line(db: Database) -> None:
    save_sandbox(db, 300)
    conn = sqlite3.connect(db.path)
    conn.execute(
        "UPDATE customers SET first_name = 'Edited' WHERE legacy_id = ("
        "SELECT min(legacy_id) FROM customers)"
    )
    conn.commit()
    cleared = conn.execute(
        "SELECT first_name FROM customers WHERE csv_line IS NULL AND first_name = 'Edited'"
    ).fetchall()
    assert cleared == [("Edited",)]
    before = conn.execute("SELECT count(*) FROM customers WHERE csv_line IS NULL").fetchone()[0]
    conn.close()

    # Saving the same customers again writes the same lines; none is cleared.
    save_sandbox(db, 300)
    conn = sqlite3.connect(db.path)
    after = conn.execute("SELECT count(*) FROM customers WHERE csv_line IS NULL").fetchone()[0]
    conn.close()
    assert after == before - 1


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="the csv module writes NUL characters from Python 3.11 on"
)
def test_sink_drops_nul_only_in_excel() -> None:
    import io

    for dialect, expected in (
        ("excel", 'a\'b\r\n"c","d"\r\n'),
        ("plain", 'ab\r\n"c\x00","d"\r\n'),
    ):
        buffer = io.BytesIO()
        sink = csv_lines.Sink(buffer, dialect)
        sink.write_stored(b"a\x1eb\r\n")
        sink.writer.writerow(["c\x00", "d"])
        sink.flush()
        assert buffer.getvalue().decode() == expected


def test_database_of_schema_version_1_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "customers.db"
    with Database.open(path) as db:
        save_sandbox(db, 500)
        expected = tmp_path / "expected.csv"
        write_csv(db, STORE, expected)
    # What version 1 made: no csv_line column and no trigger.
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER customers_csv_line_stale")
    conn.execute("ALTER TABLE customers DROP COLUMN csv_line")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    with Database.open(path) as db:
        upgraded = tmp_path / "upgraded.csv"
        assert write_csv(db, STORE, upgraded) == 500
    assert upgraded.read_bytes() == expected.read_bytes()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (2,)
    assert conn.execute("SELECT count(*), count(csv_line) FROM customers").fetchone() == (500, 0)
    triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    assert triggers == [("customers_csv_line_stale",)]
    conn.close()
    assert list(tmp_path.glob("customers.db.backup-*"))


def test_utf16_database_same_file(tmp_path: Path) -> None:
    config = SandboxConfig(customers=600)
    page = {
        "data": {"customers": {"nodes": [sandbox_data.customer(config, i) for i in range(600)]}}
    }
    written = {}
    for encoding in ("UTF-8", "UTF-16le"):
        path = tmp_path / f"{encoding}.db"
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA encoding = '{encoding}'")
        conn.execute("CREATE TABLE made_here (x)")
        conn.execute("DROP TABLE made_here")
        conn.close()
        decoder = PageDecoder()
        nodes = decoder.loads(json.dumps(page))["data"]["customers"]["nodes"]
        texts = decoder.texts_of(nodes)
        assert texts is not None
        assert isinstance(texts[0], bytes)
        with Database.open(path) as db:
            job = db.create_job(STORE, api_version="2026-04", page_size=250)
            db.save_batch(job.id, STORE, nodes, "cursor", 250, texts)
            written[encoding] = tmp_path / f"{encoding}.csv"
            assert write_csv(db, STORE, written[encoding]) == 600
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA encoding").fetchone() == (encoding,)
        stored = [json.loads(row[0]) for row in conn.execute("SELECT data FROM customers")]
        conn.close()
        assert sorted(node["id"] for node in stored) == sorted(node["id"] for node in nodes)
    assert written["UTF-16le"].read_bytes() == written["UTF-8"].read_bytes()


def test_csv_reads_one_snapshot(db: Database, tmp_path: Path) -> None:
    save_sandbox(db, 100)
    conn = sqlite3.connect(db.path)
    conn.execute("UPDATE customers SET csv_line = NULL")
    conn.commit()
    (deleted_id,) = conn.execute("SELECT legacy_id FROM customers WHERE rowid = 2").fetchone()
    real = db.customer_sources

    def delete_first(rowids: Any) -> list[tuple[Any, ...]]:
        # Another process deletes a customer while the CSV is written.
        conn.execute("DELETE FROM customers WHERE rowid = 2")
        conn.commit()
        return real(rowids)

    db.customer_sources = delete_first  # type: ignore[method-assign]
    assert write_csv(db, STORE, tmp_path / "snapshot.csv") == 100
    conn.close()
    with open(tmp_path / "snapshot.csv", encoding="utf-8-sig", newline="") as file:
        ids = [row[0] for row in csv.reader(file)][1:]
    assert len(ids) == 100
    assert f"'{deleted_id}" in ids


def test_export_keeps_line_when_cells_same(db: Database) -> None:
    config = SandboxConfig(customers=1)
    node = sandbox_data.customer(config, 0)
    node["defaultEmailAddress"]["marketingState"] = "NOT_SUBSCRIBED"
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    db.save_batch(job.id, STORE, [node], "cursor", 250)
    # Another state that the CSV also shows as "no": the columns change, the line does not.
    node["defaultEmailAddress"]["marketingState"] = "UNSUBSCRIBED"
    time.sleep(0.002)
    db.save_batch(job.id, STORE, [node], "cursor", 250)
    conn = sqlite3.connect(db.path)
    row = conn.execute("SELECT email_marketing_state, csv_line FROM customers").fetchone()
    conn.close()
    assert row[0] == "UNSUBSCRIBED"
    assert row[1] is not None
