"""Real subprocesses: signals, kill -9 at many points, and the per-store lock across processes."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable

import pytest
from conftest import STORE, Env, customer_ids, expected_ids, job_rows, run_process, spawn_process

from shopify_export.sandbox import SandboxServer

pytestmark = pytest.mark.slow


def _wait_for_batch(
    process: subprocess.Popen[str], batch: int | None = 1, timeout: float = 30
) -> None:
    """Read the exporter's stderr until it reports batch number ``batch`` (None: any batch)."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            raise AssertionError(f"exporter ended before batch {batch}: exit {process.poll()}")
        if line.startswith(f"Batch {batch}:" if batch is not None else "Batch "):
            return
    raise AssertionError(f"no batch {batch} within {timeout} s")


def _rows_and_processed(env: Env) -> tuple[int, int]:
    with sqlite3.connect(env.db_path) as connection:
        rows = connection.execute("SELECT count(*) FROM customers").fetchone()[0]
        processed = connection.execute(
            "SELECT coalesce(sum(processed_customers), 0) FROM export_jobs"
        ).fetchone()[0]
    return rows, processed


@pytest.mark.parametrize(
    ("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_signal_fails_job_resumably(
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
    signal_number: int,
    exit_code: int,
) -> None:
    server = sandbox_factory(customers=5000, latency=0.1)
    env.point_at(server)
    process = spawn_process(env, "export", STORE)
    _wait_for_batch(process, 2)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == exit_code
    assert f"Resume with: shopify-export resume {STORE} --job-id" in stderr
    again = "press Ctrl-C again" if signal_number == signal.SIGINT else "send SIGTERM again"
    assert again in stderr
    assert "Traceback" not in stderr
    [job] = job_rows(env.db_path)
    assert job["status"] == "failed"
    assert job["error"] == "Interrupted"
    assert job["last_cursor"] is not None
    rows, processed = _rows_and_processed(env)
    assert rows == processed == job["processed_customers"]

    env.point_at(sandbox_factory(customers=5000))
    resumed = run_process(env, "resume", STORE)
    assert resumed.returncode == 0, resumed.stderr
    assert customer_ids(env.db_path) == expected_ids(server)


def test_second_ctrl_c_exits_at_once(
    env: Env, sandbox_factory: Callable[..., SandboxServer]
) -> None:
    server = sandbox_factory(customers=5000, latency=0.05)
    env.point_at(server)
    process = spawn_process(env, "export", STORE, "--timeout", "60")
    _wait_for_batch(process, 1)
    # Every later request now takes 20 s, so only a forced exit ends the process quickly.
    server.config.latency = 20.0
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=10)
    assert time.monotonic() - started < 5
    assert process.returncode == 130
    assert "Resume with" in stderr
    [job] = job_rows(env.db_path)
    assert job["status"] == "failed"
    assert job["error"] == "Interrupted"


def test_kill_9_at_many_points_loses_nothing(
    env: Env, sandbox_factory: Callable[..., SandboxServer]
) -> None:
    server = sandbox_factory(customers=6000, latency=0.005)
    env.point_at(server)
    chooser = random.Random(7)
    kills = 0
    command = "export"

    for _ in range(14):
        process = spawn_process(env, command, STORE)
        try:
            _wait_for_batch(process, None)
        except AssertionError:
            process.wait(timeout=30)
            break
        # Land anywhere in the request, the upsert or the commit of the next batches.
        time.sleep(chooser.uniform(0, 0.08))
        process.kill()
        process.wait(timeout=10)
        kills += 1
        command = "resume"
        rows, processed = _rows_and_processed(env)
        assert rows == processed, f"after kill {kills}: {rows} rows, processed {processed}"
        if rows == 6000:
            break

    assert kills >= 5
    final = run_process(env, "resume", STORE)
    if final.returncode == 4:
        # The last run finished before its kill: nothing left to resume.
        assert "already completed" in final.stderr or "No failed job" in final.stderr
    else:
        assert final.returncode == 0, final.stderr
    assert customer_ids(env.db_path) == expected_ids(server)
    [job] = job_rows(env.db_path)
    assert job["status"] == "completed"
    assert job["processed_customers"] == 6000


def test_second_process_of_same_store_exits_3(
    env: Env, sandbox_factory: Callable[..., SandboxServer]
) -> None:
    env.point_at(sandbox_factory(customers=5000, latency=0.2))
    first = spawn_process(env, "export", STORE)
    try:
        _wait_for_batch(first, 1)
        started = time.monotonic()
        second = run_process(env, "export", STORE)
        assert time.monotonic() - started < 10
        assert second.returncode == 3
        assert "Export already in progress for this store" in second.stderr
        assert f"process {first.pid}" in second.stderr
        [job] = job_rows(env.db_path)
        assert job["id"] in second.stderr
        again = run_process(env, "resume", STORE)
        assert again.returncode == 3
        status = run_process(env, "status", STORE)
        assert str(first.pid) in status.stdout
    finally:
        first.terminate()
        first.wait(timeout=30)


def test_two_stores_export_at_once(env: Env, sandbox_factory: Callable[..., SandboxServer]) -> None:
    env.point_at(sandbox_factory(customers=2000, latency=0.02))
    first = spawn_process(env, "export", "store-one")
    second = spawn_process(env, "export", "store-two")
    first_out = first.communicate(timeout=60)
    second_out = second.communicate(timeout=60)
    assert first.returncode == 0, first_out[1]
    assert second.returncode == 0, second_out[1]
    assert len(customer_ids(env.db_path, "store-one")) == 2000
    assert len(customer_ids(env.db_path, "store-two")) == 2000


def test_interrupt_before_first_batch(
    env: Env, sandbox_factory: Callable[..., SandboxServer]
) -> None:
    env.point_at(sandbox_factory(customers=1000, latency=3.0))
    process = spawn_process(env, "export", STORE)
    time.sleep(1.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "before its first batch was saved" in stderr
    assert "Resume with" not in stderr
    [job] = job_rows(env.db_path)
    assert job["status"] == "failed"
    assert job["error"] == "Interrupted"
