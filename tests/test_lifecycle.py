"""Job lifecycle end to end: export, failure, resume, status, history, job, locking, stale jobs."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from click.testing import Result
from conftest import STORE, Env, customer_ids, expected_ids, job_rows

from shopify_export.locks import StoreLock
from shopify_export.sandbox import Fault, SandboxServer

FAST = ("--retry-delay", "0.01", "--max-retries", "1")


def _fail_at_page(
    sandbox_factory: Callable[..., SandboxServer], env: Env, page: int, kind: str = "http_500"
) -> SandboxServer:
    server = sandbox_factory(customers=1000, faults=[Fault(kind, page=page, times=0)])
    env.point_at(server)
    return server


def test_export_stores_every_customer_once(
    run_cli: Callable[..., Result], env: Env, sandbox: SandboxServer
) -> None:
    result = run_cli("export", STORE)
    assert result.exit_code == 0, result.stderr
    assert customer_ids(env.db_path) == expected_ids(sandbox)
    [job] = job_rows(env.db_path)
    assert job["status"] == "completed"
    assert job["last_cursor"] is None
    assert job["processed_customers"] == 1000
    assert job["total_customers"] == 1000
    assert job["id"].startswith(f"export_{STORE}_")
    assert "Batch 4: Saved 250 customers (Total: 1000)" in result.stderr


def test_export_uses_one_connection(run_cli: Callable[..., Result], sandbox: SandboxServer) -> None:
    result = run_cli("export", STORE)
    assert result.exit_code == 0, result.stderr
    assert sandbox.stats.connections == 1


def test_failed_export_resumes_in_same_job(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    _fail_at_page(sandbox_factory, env, page=3)
    failed = run_cli("export", STORE, *FAST)
    assert failed.exit_code == 1
    assert "Resume with: shopify-export resume" in failed.stderr
    [job] = job_rows(env.db_path)
    assert job["status"] == "failed"
    assert job["processed_customers"] == 500
    assert job["last_cursor"] is not None
    assert "500" in job["error"]

    healthy = sandbox_factory(customers=1000)
    env.point_at(healthy)
    resumed = run_cli("resume", STORE)
    assert resumed.exit_code == 0, resumed.stderr
    assert f"Resuming job {job['id']}: 500 customers already processed" in resumed.stderr
    [done] = job_rows(env.db_path)
    assert done["id"] == job["id"]
    assert done["status"] == "completed"
    assert done["processed_customers"] == 1000
    assert customer_ids(env.db_path) == expected_ids(healthy)
    assert healthy.stats.customers_served == 500


def test_rejected_cursor_restarts_from_last_id(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    _fail_at_page(sandbox_factory, env, page=2)
    assert run_cli("export", STORE, *FAST).exit_code == 1
    rejecting = sandbox_factory(customers=1000, faults=[Fault("invalid_cursor", page=1, times=0)])
    env.point_at(rejecting)
    resumed = run_cli("resume", STORE)
    assert resumed.exit_code == 0, resumed.stderr
    assert customer_ids(env.db_path) == expected_ids(rejecting)
    [job] = job_rows(env.db_path)
    assert job["processed_customers"] == 1000
    assert rejecting.stats.customers_served == 750


def test_resume_counts_add_up_over_runs(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    _fail_at_page(sandbox_factory, env, page=2)
    assert run_cli("export", STORE, *FAST).exit_code == 1
    _fail_at_page(sandbox_factory, env, page=2)
    assert run_cli("resume", STORE, *FAST).exit_code == 1
    [job] = job_rows(env.db_path)
    assert job["processed_customers"] == 500
    env.point_at(sandbox_factory(customers=1000))
    assert run_cli("resume", STORE).exit_code == 0
    [job] = job_rows(env.db_path)
    assert job["processed_customers"] == 1000
    assert len(customer_ids(env.db_path)) == 1000


def test_resume_without_failed_job_exits_4(run_cli: Callable[..., Result]) -> None:
    result = run_cli("resume", STORE)
    assert result.exit_code == 4
    assert f"No failed job found to resume for {STORE}" in result.stderr
    assert "shopify-export export" in result.stderr


def test_resume_without_cursor_exits_4(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    _fail_at_page(sandbox_factory, env, page=1)
    assert run_cli("export", STORE, *FAST).exit_code == 1
    [job] = job_rows(env.db_path)
    result = run_cli("resume", STORE)
    assert result.exit_code == 4
    assert f"Job {job['id']} has no saved cursor to resume from" in result.stderr
    assert "saved after the first batch" in result.stderr


def test_resume_unknown_job_exits_4(run_cli: Callable[..., Result]) -> None:
    result = run_cli("resume", STORE, "--job-id", "export_nope_1")
    assert result.exit_code == 4
    assert "Job export_nope_1 not found" in result.stderr


def test_resume_other_store_job_exits_4(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    _fail_at_page(sandbox_factory, env, page=2)
    assert run_cli("export", "other-store", *FAST).exit_code == 1
    [job] = job_rows(env.db_path, "other-store")
    result = run_cli("resume", STORE, "--job-id", job["id"])
    assert result.exit_code == 4
    assert "belongs to store other-store" in result.stderr


def test_resume_completed_job_exits_4(run_cli: Callable[..., Result], env: Env) -> None:
    assert run_cli("export", STORE).exit_code == 0
    [job] = job_rows(env.db_path)
    result = run_cli("resume", STORE, "--job-id", job["id"])
    assert result.exit_code == 4
    assert "already completed" in result.stderr


def test_second_export_of_store_exits_3(run_cli: Callable[..., Result], env: Env) -> None:
    env.db_path.parent.mkdir(parents=True)
    lock = StoreLock(env.db_path, STORE)
    assert lock.acquire() is None
    lock.record("export_demo-store_1")
    try:
        result = run_cli("export", STORE)
    finally:
        lock.release()
    assert result.exit_code == 3
    assert "Export already in progress for this store" in result.stderr
    assert "process" in result.stderr


def test_status_json_shape(run_cli: Callable[..., Result]) -> None:
    assert run_cli("export", STORE).exit_code == 0
    result = run_cli("status", STORE, "--json")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert set(payload) == {"storeName", "isExporting", "customerCount", "latestJob"}
    assert payload["storeName"] == STORE
    assert payload["isExporting"] is False
    assert payload["customerCount"] == 1000
    job = payload["latestJob"]
    assert set(job) == {
        "id",
        "storeName",
        "status",
        "totalCustomers",
        "processedCustomers",
        "startedAt",
        "completedAt",
        "error",
        "csvFilePath",
        "lastCursor",
        "canResume",
    }
    assert job["status"] == "completed"
    assert job["canResume"] is False
    assert job["startedAt"].endswith("Z")


def test_status_of_unknown_store(run_cli: Callable[..., Result]) -> None:
    assert run_cli("export", STORE).exit_code == 0
    result = run_cli("status", "never-exported", "--json")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["latestJob"] is None
    assert payload["customerCount"] == 0


def test_history_newest_first_with_limit(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    assert run_cli("export", STORE).exit_code == 0
    _fail_at_page(sandbox_factory, env, page=2)
    assert run_cli("export", STORE, *FAST).exit_code == 1
    result = run_cli("history", STORE, "--json")
    payload = json.loads(result.stdout)
    statuses = [job["status"] for job in payload["jobs"]]
    assert statuses == ["failed", "completed"]
    assert payload["jobs"][0]["canResume"] is True
    limited = json.loads(run_cli("history", STORE, "--json", "--limit", "1").stdout)
    assert len(limited["jobs"]) == 1
    table = run_cli("history", STORE)
    assert table.exit_code == 0
    assert "Resumable" in table.stdout


def test_job_command_json_and_table(run_cli: Callable[..., Result], env: Env) -> None:
    assert run_cli("export", STORE).exit_code == 0
    [row] = job_rows(env.db_path)
    payload = json.loads(run_cli("job", row["id"], "--json").stdout)
    assert payload["id"] == row["id"]
    assert payload["processedCustomers"] == 1000
    table = run_cli("job", row["id"])
    assert row["id"] in table.stdout
    assert "completed" in table.stdout


def test_job_command_unknown_id_exits_4(run_cli: Callable[..., Result]) -> None:
    assert run_cli("export", STORE).exit_code == 0
    result = run_cli("job", "export_missing_1")
    assert result.exit_code == 4
    assert "not found" in result.stderr


def test_stale_job_reported_and_resumed(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    _fail_at_page(sandbox_factory, env, page=3)
    assert run_cli("export", STORE, *FAST).exit_code == 1
    # Make the job look like the one of a process that died mid-export.
    with sqlite3.connect(env.db_path) as connection:
        connection.execute(
            "UPDATE export_jobs SET status = 'in_progress', error = NULL, pid = 999999"
        )
    status = json.loads(run_cli("status", STORE, "--json").stdout)
    assert status["isExporting"] is False
    assert status["latestJob"]["status"] == "in_progress"
    assert status["latestJob"]["canResume"] is True
    assert "stale" in run_cli("status", STORE).stdout

    env.point_at(sandbox_factory(customers=1000))
    resumed = run_cli("resume", STORE)
    assert resumed.exit_code == 0, resumed.stderr
    assert "ended unexpectedly" in resumed.stderr
    [job] = job_rows(env.db_path)
    assert job["status"] == "completed"
    assert len(customer_ids(env.db_path)) == 1000


def test_csv_path_recorded_and_shown(
    run_cli: Callable[..., Result], env: Env, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "customers.csv"
    result = run_cli("export", STORE, "--csv", "--csv-path", str(target))
    assert result.exit_code == 0, result.stderr
    assert target.exists()
    [job] = job_rows(env.db_path)
    assert job["csv_file_path"] == str(target)
    assert str(target) in run_cli("history", STORE).stdout.replace("\n", "")


def test_default_csv_path_under_exports(run_cli: Callable[..., Result], env: Env) -> None:
    assert run_cli("export", STORE, "--csv").exit_code == 0
    [job] = job_rows(env.db_path)
    path = Path(job["csv_file_path"])
    assert path.parent == env.db_path.parent / "exports"
    assert job["id"] in path.name
    assert path.exists()


def test_failed_export_writes_no_csv(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    _fail_at_page(sandbox_factory, env, page=2)
    assert run_cli("export", STORE, "--csv", *FAST).exit_code == 1
    assert not (env.db_path.parent / "exports").exists()
    [job] = job_rows(env.db_path)
    assert job["csv_file_path"] is None


def test_resume_hint_repeats_db_and_sandbox(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "my customers.db"
    failing = run_cli(
        "--db", str(db), "export", STORE, "--sandbox", "--timeout", "1", "--max-retries", "0"
    )
    assert failing.exit_code == 0, failing.stderr
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE export_jobs SET status = 'failed', completed_at = NULL")
        connection.execute("UPDATE export_jobs SET last_cursor = 'x', last_customer_id = 1")
    status = run_cli("--db", str(db), "status", STORE)
    assert f"shopify-export --db '{db}' resume {STORE} --job-id" in status.stdout


def test_resume_prefers_job_with_saved_position(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    _fail_at_page(sandbox_factory, env, page=3)
    assert run_cli("export", STORE, *FAST).exit_code == 1
    _fail_at_page(sandbox_factory, env, page=1)
    assert run_cli("export", STORE, *FAST).exit_code == 1
    older, newer = job_rows(env.db_path)
    assert newer["last_cursor"] is None
    env.point_at(sandbox_factory(customers=1000))
    resumed = run_cli("resume", STORE)
    assert resumed.exit_code == 0, resumed.stderr
    assert f"Resuming job {older['id']}" in resumed.stderr
    assert len(customer_ids(env.db_path)) == 1000


def test_symlinked_db_shares_lock(run_cli: Callable[..., Result], env: Env, tmp_path: Path) -> None:
    assert run_cli("export", STORE).exit_code == 0
    link = tmp_path / "link.db"
    link.symlink_to(env.db_path)
    lock = StoreLock(env.db_path, STORE)
    assert lock.acquire() is None
    try:
        result = run_cli("--db", str(link), "export", STORE)
    finally:
        lock.release()
    assert result.exit_code == 3
