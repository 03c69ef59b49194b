"""Bad input on the command line: one clear line, the right exit code, never a traceback."""

from __future__ import annotations

import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from conftest import STORE, Env, customer_ids, job_rows, run_process

from shopify_export.sandbox import SandboxServer


def _single_error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    error_lines = [line for line in lines if line.startswith("Error:")]
    assert len(error_lines) == 1, result.stderr
    return error_lines[0]


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        "a b",
        "../etc",
        "evil.example/",
        "a@b",
        "shop:443",
        "shop.example.com",
        "Évisu",
        "-shop",
        "shop-",
        "shop\n",
        "shop/../x",
        "%2e%2e",
    ],
)
def test_invalid_store_name_exits_2(run_cli: Callable[..., Result], name: str) -> None:
    result = run_cli("export", "--", name)
    assert result.exit_code == 2
    line = _single_error_line(result)
    assert "Invalid store name" in line
    assert "evisu-us" in line


def test_full_store_domain_accepted(run_cli: Callable[..., Result], env: Env) -> None:
    result = run_cli("export", f"{STORE}.myshopify.com")
    assert result.exit_code == 0, result.stderr
    assert len(customer_ids(env.db_path, STORE)) == 1000


def test_missing_token_exits_2(run_cli: Callable[..., Result], env: Env) -> None:
    del env.variables["SHOPIFY_ACCESS_TOKEN"]
    result = run_cli("export", STORE)
    assert result.exit_code == 2
    line = _single_error_line(result)
    assert "SHOPIFY_ACCESS_TOKEN" in line
    assert "--sandbox" in line


@pytest.mark.parametrize("version", ["2026-13", "latest", "2026-4", "26-04", "2026-04; rm"])
def test_invalid_api_version_exits_2(
    run_cli: Callable[..., Result], env: Env, version: str
) -> None:
    env.variables["SHOPIFY_API_VERSION"] = version
    result = run_cli("export", STORE)
    assert result.exit_code == 2
    assert "Invalid API version" in _single_error_line(result)


@pytest.mark.parametrize("limit", ["0", "-1", "abc"])
def test_invalid_history_limit_exits_2(run_cli: Callable[..., Result], limit: str) -> None:
    result = run_cli("history", STORE, "--limit", limit)
    assert result.exit_code == 2
    assert "--limit" in result.stderr
    assert "Traceback" not in result.stderr


def test_plain_http_to_remote_host_rejected(run_cli: Callable[..., Result], env: Env) -> None:
    env.variables["SHOPIFY_API_URL"] = "http://example.com/admin/api/2026-04/graphql.json"
    result = run_cli("export", STORE)
    assert result.exit_code == 2
    assert "loopback" in _single_error_line(result)


def test_db_path_is_folder(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    result = run_cli("--db", str(tmp_path), "status", STORE)
    assert result.exit_code == 2
    assert "is a folder" in _single_error_line(result)


def test_db_in_unwritable_place(run_cli: Callable[..., Result]) -> None:
    result = run_cli("--db", "/proc/no-such-folder/customers.db", "export", STORE)
    assert result.exit_code == 2
    assert "writable folder" in _single_error_line(result)


def test_db_not_sqlite(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    result = run_cli("--db", str(path), "status", STORE)
    assert result.exit_code == 2
    assert "not a SQLite database" in _single_error_line(result)
    assert path.read_text().startswith("these are my notes")


def test_db_corrupt(run_cli: Callable[..., Result], env: Env) -> None:
    assert run_cli("export", STORE).exit_code == 0
    data = bytearray(env.db_path.read_bytes())
    # Keep the header, overwrite the schema page and what follows with junk.
    data[100:8192] = b"\xff" * (8192 - 100)
    env.db_path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(str(env.db_path) + suffix).unlink(missing_ok=True)
    result = run_cli("status", STORE)
    assert result.exit_code == 2
    line = _single_error_line(result)
    assert str(env.db_path) in line


def test_db_write_locked_by_other_process(env: Env, sandbox: SandboxServer, tmp_path: Path) -> None:
    env.db_path.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(env.db_path)!r}, isolation_level=None)\n"
            "c.execute('PRAGMA journal_mode=WAL')\n"
            "c.execute('CREATE TABLE IF NOT EXISTS t (x)')\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "c.execute('INSERT INTO t VALUES (1)')\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        result = run_process(env, "export", STORE)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert "locked" in result.stderr
    assert "Traceback" not in result.stderr
    assert waited < 30


def test_disk_full_mid_export_is_resumable(
    env: Env, sandbox_factory: Callable[..., SandboxServer]
) -> None:
    server = sandbox_factory(customers=5000)
    env.point_at(server)
    env.db_path.parent.mkdir(parents=True)
    limit = 3 * 1024 * 1024

    def small_disk() -> None:
        # Python ignores SIGXFSZ, so a write past this size fails with EFBIG like a full disk.
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = subprocess.run(
        [sys.executable, "-m", "shopify_export", "export", STORE],
        env=env.process_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=small_disk,
    )
    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr
    with sqlite3.connect(env.db_path) as connection:
        rows = connection.execute("SELECT count(*) FROM customers").fetchone()[0]
    [job] = job_rows(env.db_path)
    assert 0 < rows < 5000
    assert job["processed_customers"] == rows

    resumed = run_process(env, "resume", STORE)
    assert resumed.returncode == 0, resumed.stderr
    assert len(customer_ids(env.db_path)) == 5000
    [job] = job_rows(env.db_path)
    assert job["processed_customers"] == 5000


def test_read_commands_need_existing_database(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    missing = tmp_path / "typo" / "customers.db"
    for args in (["status", STORE], ["history", STORE], ["job", "export_x_1"], ["csv", STORE]):
        result = run_cli("--db", str(missing), *args)
        assert result.exit_code == 2, args
        assert f"Database {missing} not found" in _single_error_line(result)
    assert not missing.parent.exists()


def test_csv_of_never_exported_store_exits_2(run_cli: Callable[..., Result]) -> None:
    assert run_cli("export", STORE).exit_code == 0
    result = run_cli("csv", "other-store")
    assert result.exit_code == 2
    assert "No export of other-store" in _single_error_line(result)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "abc", "0.5"])
def test_invalid_timeout_exits_2(run_cli: Callable[..., Result], env: Env, value: str) -> None:
    result = run_cli("export", STORE, "--timeout", value)
    assert result.exit_code == 2
    assert "--timeout" in result.stderr
    assert not env.db_path.exists()


@pytest.mark.parametrize("value", ["nan", "-0.5", "1e400"])
def test_invalid_retry_delay_exits_2(run_cli: Callable[..., Result], value: str) -> None:
    result = run_cli("export", STORE, "--retry-delay", value)
    assert result.exit_code == 2
    assert "--retry-delay" in result.stderr


def test_huge_history_limit_exits_2(run_cli: Callable[..., Result]) -> None:
    result = run_cli("history", STORE, "--limit", "99999999999999999999999")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_csv_path_cannot_be_database(run_cli: Callable[..., Result], env: Env, suffix: str) -> None:
    assert run_cli("export", STORE).exit_code == 0
    target = f"{env.db_path}{suffix}"
    result = run_cli("csv", STORE, "--csv-path", target)
    assert result.exit_code == 2
    assert "is the database" in result.stderr
    assert run_cli("status", STORE, "--json").exit_code == 0


@pytest.mark.parametrize("value", ["", "-", "/dev/null"])
def test_csv_path_invalid_exits_2(run_cli: Callable[..., Result], value: str) -> None:
    assert run_cli("export", STORE).exit_code == 0
    result = run_cli("csv", STORE, "--csv-path", value)
    assert result.exit_code == 2
    assert "--csv-path" in result.stderr


def test_long_store_handle_rejected(run_cli: Callable[..., Result]) -> None:
    result = run_cli("export", "a" * 64)
    assert result.exit_code == 2
    assert "at most 63" in _single_error_line(result)


@pytest.mark.parametrize("token", ["shpat_abc\x01def", "shpat abc", "shpat_\u00e9"])
def test_invalid_token_exits_2(run_cli: Callable[..., Result], env: Env, token: str) -> None:
    env.variables["SHOPIFY_ACCESS_TOKEN"] = token.encode().decode("unicode_escape")
    result = run_cli("export", STORE)
    assert result.exit_code == 2
    assert "Invalid access token" in _single_error_line(result)


def test_blank_db_path_exits_2(run_cli: Callable[..., Result]) -> None:
    result = run_cli("--db", " ", "status", STORE)
    assert result.exit_code == 2
    assert "Invalid database path" in _single_error_line(result)


def test_existing_database_made_private(run_cli: Callable[..., Result], env: Env) -> None:
    assert run_cli("export", STORE).exit_code == 0
    env.db_path.chmod(0o644)
    result = run_cli("status", STORE)
    assert result.exit_code == 0
    assert env.db_path.stat().st_mode & 0o777 == 0o600
    assert "mode 0600" in result.stderr


def test_unknown_command_exits_2(run_cli: Callable[..., Result]) -> None:
    result = run_cli("exprot", STORE)
    assert result.exit_code == 2
    assert "No such command" in result.stderr


def test_verbose_and_quiet_together_exit_2(run_cli: Callable[..., Result]) -> None:
    result = run_cli("-v", "-q", "status", STORE)
    assert result.exit_code == 2


def test_help_for_every_command(run_cli: Callable[..., Result]) -> None:
    for command in ("export", "resume", "csv", "status", "history", "job"):
        result = run_cli(command, "--help")
        assert result.exit_code == 0
        assert "Usage:" in result.stdout
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for command in ("export", "resume", "csv", "status", "history", "job", "sandbox serve"):
        assert f"  {command} " in readme or f"`{command}" in readme


def test_memory_database_rejected(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    result = run_cli("--db", ":memory:", "export", STORE)
    assert result.exit_code == 2
    assert "Invalid database path ':memory:'" in _single_error_line(result)


def test_error_hints_repeat_db(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    assert run_cli("--db", str(db), "export", STORE).exit_code == 0
    result = run_cli("--db", str(db), "resume", STORE)
    assert result.exit_code == 4
    assert f"shopify-export --db {db} export {STORE}" in _single_error_line(result)


def test_csv_path_checked_before_export(
    run_cli: Callable[..., Result], env: Env, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli("export", STORE, "--csv-path", str(blocker / "x.csv"))
    assert result.exit_code == 2
    assert "not a writable folder" in result.stderr
    assert not env.db_path.exists()


def test_csv_path_folder_says_what_to_do(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    result = run_cli("export", STORE, "--csv-path", str(tmp_path))
    assert result.exit_code == 2
    assert "is a folder: pass a file path such as" in result.stderr


def test_no_csv_with_csv_path_exits_2(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    target = tmp_path / "x.csv"
    result = run_cli("export", STORE, "--no-csv", "--csv-path", str(target))
    assert result.exit_code == 2
    assert "contradict" in result.stderr
    assert not target.exists()


def test_closed_stderr_does_not_stop_export(env: Env, sandbox: SandboxServer) -> None:
    # stderr goes into a pipe whose reader exits after the first line.
    export = subprocess.Popen(
        [sys.executable, "-m", "shopify_export", "export", STORE],
        env=env.process_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert export.stderr is not None
    export.stderr.readline()
    export.stderr.close()
    assert export.wait(timeout=60) == 0
    assert len(customer_ids(env.db_path)) == 1000


def test_tables_have_no_trailing_spaces(run_cli: Callable[..., Result]) -> None:
    assert run_cli("export", STORE).exit_code == 0
    for args in (["status", STORE], ["history", STORE]):
        output = run_cli(*args).stdout
        assert output.strip()
        assert all(line == line.rstrip() for line in output.splitlines()), args
