"""Every fault mode of the sandbox, one export per row: recovered, or failed fast and resumable."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest
from click.testing import Result
from conftest import STORE, Env, customer_ids, expected_ids, job_rows

from shopify_export.sandbox import Fault, SandboxServer

FAST = ("--retry-delay", "0.01", "--timeout", "2")

# Faults that a retry, a wait or a smaller page gets past: the export ends with exit 0.
RECOVERED = [
    ("http_429", 2),
    ("http_500", 2),
    ("http_502_html", 2),
    ("http_503", 2),
    ("http_504", 2),
    ("html_200", 2),
    ("truncated_json", 2),
    ("drop_connection", 2),
    ("hang", 2),
    ("internal_error", 2),
    ("throttled", 2),
]

# Permanent faults: the export fails at once, without a retry, with a message saying what to fix.
PERMANENT = [
    ("http_401", "SHOPIFY_ACCESS_TOKEN"),
    ("http_403", "read_customers"),
    ("access_denied", "read_customers"),
    ("http_404", "store name"),
    ("http_402", "frozen"),
    ("http_423", "locked"),
    ("validation_error", "SHOPIFY_API_VERSION"),
]


@pytest.mark.parametrize(("kind", "page"), RECOVERED)
def test_transient_fault_recovered(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
    kind: str,
    page: int,
) -> None:
    server = sandbox_factory(customers=1000, faults=[Fault(kind, page=page, times=2)])
    env.point_at(server)
    result = run_cli("export", STORE, *FAST)
    assert result.exit_code == 0, result.stderr
    assert server.stats.faults_fired.get(kind) == 2
    assert customer_ids(env.db_path) == expected_ids(server)
    [job] = job_rows(env.db_path)
    assert job["status"] == "completed"
    assert job["processed_customers"] == 1000
    assert "Traceback" not in result.stderr


def test_no_throttled_answer_under_pacing(
    run_cli: Callable[..., Result], env: Env, sandbox_factory: Callable[..., SandboxServer]
) -> None:
    # A bucket of 600 points restored at 1,000 points/s, with 252-point pages: without pacing
    # the third request in a row would be throttled.
    server = sandbox_factory(
        customers=3000, bucket_size=600, restore_rate=1000, cost_per_customer=1.0
    )
    env.point_at(server)
    result = run_cli("export", STORE)
    assert result.exit_code == 0, result.stderr
    assert server.stats.throttled == 0
    assert len(customer_ids(env.db_path)) == 3000


def test_max_cost_shrinks_page_for_whole_job(
    run_cli: Callable[..., Result], env: Env, sandbox_factory: Callable[..., SandboxServer]
) -> None:
    server = sandbox_factory(customers=1000, faults=[Fault("max_cost", page=1, times=0)])
    env.point_at(server)
    result = run_cli("export", STORE)
    assert result.exit_code == 0, result.stderr
    assert server.stats.max_cost_errors == 1
    assert customer_ids(env.db_path) == expected_ids(server)
    [job] = job_rows(env.db_path)
    assert job["page_size"] < 250
    assert job["processed_customers"] == 1000


@pytest.mark.parametrize(("kind", "hint"), PERMANENT)
def test_permanent_fault_fails_fast_then_resumes(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
    kind: str,
    hint: str,
) -> None:
    server = sandbox_factory(customers=1000, faults=[Fault(kind, page=2, times=0)])
    env.point_at(server)
    result = run_cli("export", STORE, *FAST)
    assert result.exit_code == 1
    assert hint in result.stderr
    assert server.stats.faults_fired.get(kind) == 1, "a permanent failure must not be retried"
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1
    [job] = job_rows(env.db_path)
    assert job["status"] == "failed"
    assert job["processed_customers"] == 250
    assert job["last_cursor"] is not None

    healthy = sandbox_factory(customers=1000)
    env.point_at(healthy)
    resumed = run_cli("resume", STORE)
    assert resumed.exit_code == 0, resumed.stderr
    assert customer_ids(env.db_path) == expected_ids(healthy)
    [job] = job_rows(env.db_path)
    assert job["processed_customers"] == 1000


def test_fault_past_retry_budget_fails_then_resumes(
    run_cli: Callable[..., Result], env: Env, sandbox_factory: Callable[..., SandboxServer]
) -> None:
    server = sandbox_factory(customers=1000, faults=[Fault("http_502_html", page=3, times=0)])
    env.point_at(server)
    result = run_cli("export", STORE, *FAST, "--max-retries", "2")
    assert result.exit_code == 1
    assert server.stats.faults_fired["http_502_html"] == 3
    assert "502" in result.stderr
    assert "<html" not in result.stderr.lower()
    [job] = job_rows(env.db_path)
    assert job["status"] == "failed"
    assert job["processed_customers"] == 500

    env.point_at(sandbox_factory(customers=1000))
    assert run_cli("resume", STORE).exit_code == 0
    assert len(customer_ids(env.db_path)) == 1000


def test_fault_on_first_page_is_not_resumable(
    run_cli: Callable[..., Result], env: Env, sandbox_factory: Callable[..., SandboxServer]
) -> None:
    server = sandbox_factory(customers=1000, faults=[Fault("http_401", page=1, times=0)])
    env.point_at(server)
    result = run_cli("export", STORE, *FAST)
    assert result.exit_code == 1
    assert "SHOPIFY_ACCESS_TOKEN" in result.stderr
    [job] = job_rows(env.db_path)
    assert job["status"] == "failed"
    assert job["last_cursor"] is None
    assert customer_ids(env.db_path) == []


def test_redacted_fields_warned_once(
    run_cli: Callable[..., Result], env: Env, sandbox_factory: Callable[..., SandboxServer]
) -> None:
    server = sandbox_factory(customers=1000, redact=frozenset({"email", "phone"}))
    env.point_at(server)
    result = run_cli("export", STORE)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("Warning:") == 1
    assert "protected customer data" in result.stderr
    assert len(customer_ids(env.db_path)) == 1000


def test_legacy_api_version_export(
    run_cli: Callable[..., Result], env: Env, sandbox: SandboxServer
) -> None:
    env.point_at(sandbox, api_version="2025-01")
    result = run_cli("export", STORE)
    assert result.exit_code == 0, result.stderr
    assert customer_ids(env.db_path) == expected_ids(sandbox)
    with sqlite3.connect(env.db_path) as connection:
        emails, phones, states = connection.execute(
            "SELECT count(email), count(phone), count(email_marketing_state) FROM customers"
        ).fetchone()
    assert emails > 500
    assert phones > 100
    assert states > 500
