"""Fixtures shared by the command-line, job and fault tests: a sandbox store on loopback, a
database in a temporary folder, and ways to run the real command in-process or as a subprocess.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from shopify_export.cli import cli
from shopify_export.sandbox import Fault, SandboxConfig, SandboxServer

REPO_ROOT = Path(__file__).resolve().parents[1]
STORE = "demo-store"


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxServer]]:
    """Start sandbox stores on 127.0.0.1; each is stopped when the test ends."""
    servers: list[SandboxServer] = []

    def start(**config: Any) -> SandboxServer:
        config.setdefault("customers", 1000)
        server = SandboxServer(SandboxConfig(**config))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., SandboxServer]) -> SandboxServer:
    """A sandbox store of 1,000 customers, no faults."""
    return sandbox_factory()


@dataclass
class Env:
    """The environment of one test's exports: database path and connection variables."""

    db_path: Path
    variables: dict[str, str]

    def point_at(self, server: SandboxServer, api_version: str = "2026-04") -> None:
        self.variables["SHOPIFY_API_URL"] = server.url(api_version)
        self.variables["SHOPIFY_ACCESS_TOKEN"] = server.token
        self.variables["SHOPIFY_API_VERSION"] = api_version

    def process_env(self) -> dict[str, str]:
        merged = {key: value for key, value in os.environ.items() if not key.startswith("SHOPIFY")}
        merged.update(self.variables)
        return merged


@pytest.fixture
def env(tmp_path: Path, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Env:
    """Connection variables pointing at the default sandbox and a database in tmp_path."""
    for key in list(os.environ):
        if key.startswith("SHOPIFY"):
            monkeypatch.delenv(key)
    result = Env(db_path=tmp_path / "data" / "customers.db", variables={})
    result.variables["SHOPIFY_EXPORT_DB"] = str(result.db_path)
    result.point_at(sandbox)
    return result


@pytest.fixture
def run_cli(env: Env) -> Callable[..., Result]:
    """Run the command in-process with CliRunner; stdout and stderr are kept apart."""

    def invoke(*args: str, **kwargs: Any) -> Result:
        runner = CliRunner()
        return runner.invoke(cli, list(args), env=env.variables, catch_exceptions=False, **kwargs)

    return invoke


def run_process(
    env: Env, *args: str, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m shopify_export ARGS`` as a real subprocess and wait for it."""
    return subprocess.run(
        [sys.executable, "-m", "shopify_export", *args],
        env=env.process_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def spawn_process(env: Env, *args: str) -> subprocess.Popen[str]:
    """Start ``python -m shopify_export ARGS`` as a real subprocess without waiting."""
    return subprocess.Popen(
        [sys.executable, "-m", "shopify_export", *args],
        env=env.process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def customer_ids(db_path: Path, store: str = STORE) -> list[str]:
    """Return the ids of the store's customers in the database, in storage order."""
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute(
            "SELECT id FROM customers WHERE store_name = ? ORDER BY legacy_id", (store,)
        ).fetchall()
    return [row[0] for row in rows]


def job_rows(db_path: Path, store: str = STORE) -> list[sqlite3.Row]:
    """Return the store's jobs as rows, oldest first."""
    connection = sqlite3.connect(db_path)
    connection.row_factory = sqlite3.Row
    try:
        return connection.execute(
            "SELECT * FROM export_jobs WHERE store_name = ? ORDER BY started_at, id", (store,)
        ).fetchall()
    finally:
        connection.close()


def expected_ids(server: SandboxServer) -> list[str]:
    """Return the GIDs of every customer the sandbox serves, in id order."""
    from shopify_export.sandbox import customer_ids as sandbox_ids

    return [f"gid://shopify/Customer/{number}" for number in sandbox_ids(server.config)]


__all__ = ["Fault", "STORE", "Env", "run_process", "spawn_process", "customer_ids", "job_rows"]
