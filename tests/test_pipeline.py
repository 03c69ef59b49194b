"""The export's page pipeline: the next page is requested before the current one is saved."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result
from conftest import STORE, Env, customer_ids, expected_ids, job_rows

from shopify_export.sandbox import SandboxServer
from shopify_export.store import Database


def test_next_page_requested_before_save(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = sandbox_factory(customers=1000, latency=0.05)
    env.point_at(server)
    requests_at_save: list[int] = []
    save_batch = Database.save_batch

    def slow_save_batch(self: Database, *args: Any, **kwargs: Any) -> int:
        # Long enough for a request written before the save to reach the sandbox.
        time.sleep(0.2)
        requests_at_save.append(server.stats.graphql_requests)
        return save_batch(self, *args, **kwargs)

    monkeypatch.setattr(Database, "save_batch", slow_save_batch)
    result = run_cli("export", STORE)

    assert result.exit_code == 0, result.stderr
    # The count request, the pages up to the one being saved, and the page fetched ahead.
    # The last page has no next page to fetch.
    assert requests_at_save == [3, 4, 5, 5]
    assert customer_ids(env.db_path) == expected_ids(server)
    [job] = job_rows(env.db_path)
    assert job["processed_customers"] == 1000
