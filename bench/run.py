#!/usr/bin/env python3
"""Benchmark of shopify-export against the sandbox store, each in its own process.

Scenarios (docs/benchmarks.md explains each measure and its target):

- ``rate-limit``: a throttled sandbox; the exporter's wall time against the bound
  (cost charged - initial bucket) / restore rate, and the THROTTLED responses.
- ``local``: an unthrottled sandbox without latency; customers per second and the exporter's
  CPU time (user + system) per customer.
- ``memory``: the exporter's peak RSS for stores of several sizes.
- ``csv``: the ``csv`` command on the largest database; rows per second and peak RSS.

Every run also checks that each customer of the sandbox store arrived in the database (and in
the CSV) exactly once. Usage::

    python bench/run.py            # full size, 2 to 2.5 minutes on 2 cores
    python bench/run.py --quick    # reduced size for CI, about 12 seconds
    python bench/run.py --write    # also rewrite the results section of docs/benchmarks.md
    python bench/run.py --profile  # cProfile of the local scenario's exporter, top functions

Exit status: 0 when every hard check passed, 1 when one failed, 2 for a usage error. In the
full run the targets are hard checks; with ``--quick`` only correctness is (see ``Check``).
Linux only: CPU and peak RSS come from ``os.wait4``, whose ``ru_maxrss`` is in KiB on Linux.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import pstats
import re
import selectors
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# The repository itself, so that the benchmark also runs without `pip install -e .`.
sys.path.insert(0, str(REPO_ROOT))

from shopify_export.csv_export import HEADER  # noqa: E402
from shopify_export.sandbox import SandboxConfig, customer_ids  # noqa: E402

DOC_PATH = REPO_ROOT / "docs" / "benchmarks.md"
RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"
STORE = "bench-store"
# Enough points and restore rate that no request of an unthrottled run ever waits.
UNTHROTTLED = 1e12
SANDBOX_START_TIMEOUT = 30.0
EXPORT_TIMEOUT = 900.0


@dataclass(frozen=True)
class Sizes:
    """Store sizes and sandbox settings of one benchmark size."""

    name: str
    rate_customers: int
    # Shopify's Standard plan: a 2,000-point bucket restored at 100 points/s (20 s of restore).
    # The full size scales both by 2.5 and charges 1 point per customer, so that the bound
    # of 20,000 customers is about 60 s.
    restore_rate: float
    bucket_size: float
    cost_per_customer: float
    local_customers: int
    # Stores of the memory scenario; the one of local_customers reuses the local run.
    memory_customers: tuple[int, ...]
    # Repeats of the local run; the table shows the run of median wall time.
    local_repeats: int


FULL = Sizes(
    name="full",
    rate_customers=20_000,
    restore_rate=250.0,
    bucket_size=5_000.0,
    cost_per_customer=1.0,
    local_customers=100_000,
    memory_customers=(30_000, 100_000, 300_000),
    local_repeats=3,
)
QUICK = Sizes(
    name="quick",
    rate_customers=2_000,
    restore_rate=90.0,
    bucket_size=1_800.0,
    cost_per_customer=1.0,
    local_customers=5_000,
    memory_customers=(1_000, 5_000),
    local_repeats=1,
)

# Targets.
MIN_RATE_EFFICIENCY = 0.97
MIN_CUSTOMERS_PER_SECOND = 10_000.0
MAX_CPU_PER_CUSTOMER = 60e-6
MAX_RSS_BYTES = 150e6
# "Flat": the largest store's peak RSS is at most this much above the smallest store's.
MAX_RSS_GROWTH = 0.10
MIN_CSV_ROWS_PER_SECOND = 200_000.0


class BenchmarkError(Exception):
    """A step of the benchmark itself failed: a process did not start, respond or exit."""


@dataclass
class ProcessRun:
    """Wall time and resource usage of one finished child process."""

    wall: float
    user: float
    system: float
    max_rss_bytes: int
    exit_code: int
    stderr: str

    @property
    def cpu(self) -> float:
        return self.user + self.system


@dataclass
class ExportRun:
    """A finished export and the database it wrote."""

    run: ProcessRun
    db_path: Path


@dataclass
class Check:
    """One row of the results table.

    ``passed`` is None for a figure without a target. A ``hard`` check that fails makes the
    benchmark exit with status 1.
    """

    scenario: str
    measure: str
    value: str
    target: str = ""
    passed: bool | None = None
    hard: bool = False


@dataclass
class Report:
    """Rows of the results table and the failures among them."""

    checks: list[Check] = field(default_factory=list)

    def add(self, check: Check) -> None:
        self.checks.append(check)
        mark = {True: "ok", False: "MISSED", None: ""}[check.passed]
        if check.passed is False and not check.hard:
            mark = "missed (not enforced)"
        print(f"  {check.measure}: {check.value} {mark}".rstrip(), flush=True)

    def require(self, scenario: str, measure: str, passed: bool, detail: str) -> None:
        """Add a correctness check, which is hard in every size."""
        self.add(Check(scenario, measure, detail, "exact", passed, hard=True))

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.hard and check.passed is False]


# Processes.


# Folder of the children's bytecode cache, set by warm_up.
_bytecode_cache: Path | None = None
# The repository whose shopify_export the children run; --source replaces it.
_source: Path = REPO_ROOT


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment of a child: this one without SHOPIFY_*, plus the repository.

    The children cache bytecode in the work folder even where PYTHONDONTWRITEBYTECODE is set,
    so that they start like an installed package, whose modules pip compiles.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("SHOPIFY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_source), env.get("PYTHONPATH")]))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if _bytecode_cache is not None:
        env["PYTHONPYCACHEPREFIX"] = str(_bytecode_cache)
    env.update(extra or {})
    return env


def warm_up(workdir: Path) -> None:
    """Fill the bytecode cache: import every module the measured processes import."""
    global _bytecode_cache
    _bytecode_cache = workdir / "pycache"
    modules = "shopify_export.cli, shopify_export.jobs, shopify_export.sandbox.server"
    subprocess.run(
        [sys.executable, "-c", f"import {modules}"], env=child_env(), check=True, cwd=workdir
    )


def run_measured(command: Sequence[str], env: dict[str, str], cwd: Path) -> ProcessRun:
    """Run ``command`` to its end; return its wall time, CPU time and peak RSS.

    The wall time runs from just before the fork to the reaping of the child, so it includes
    the interpreter's start, the imports and the exit.
    """
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
        )
        try:
            _, status, usage = _wait4(process.pid, EXPORT_TIMEOUT)
        except BaseException:
            process.kill()
            process.wait()
            raise
        wall = time.perf_counter() - started
        # os.wait4 reaped the child, so Popen must not wait for it again.
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        output = stderr.read().decode("utf-8", "replace")
    return ProcessRun(
        wall=wall,
        user=usage.ru_utime,
        system=usage.ru_stime,
        max_rss_bytes=usage.ru_maxrss * 1024,
        exit_code=process.returncode,
        stderr=output,
    )


def _wait4(pid: int, timeout: float) -> tuple[int, int, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found, status, usage = os.wait4(pid, os.WNOHANG)
        if found == pid:
            return found, status, usage
        if time.monotonic() > deadline:
            raise BenchmarkError(f"process {pid} still running after {timeout:.0f} s")
        time.sleep(0.005)


def process_cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of /proc/PID/stat, 12 and 13 after the ")".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sandbox:
    """``shopify-export sandbox serve`` on a free loopback port, in its own process."""

    def __init__(
        self,
        customers: int,
        *,
        bucket_size: float = UNTHROTTLED,
        restore_rate: float = UNTHROTTLED,
        cost_per_customer: float | None = None,
    ) -> None:
        self.customers = customers
        self.command = [
            sys.executable,
            "-m",
            "shopify_export",
            "sandbox",
            "serve",
            "--port",
            "0",
            "--customers",
            str(customers),
            "--bucket-size",
            f"{bucket_size:g}",
            "--restore-rate",
            f"{restore_rate:g}",
        ]
        if cost_per_customer is not None:
            self.command += ["--cost-per-customer", f"{cost_per_customer:g}"]
        self.process: subprocess.Popen[bytes] | None = None
        self.api_url = ""
        self.token = ""

    def __enter__(self) -> Sandbox:
        self.process = subprocess.Popen(
            self.command,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._read_settings(self.process)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_settings(self, process: subprocess.Popen[bytes]) -> None:
        # Raw reads of the pipe: a buffered readline could hold the later lines back from select.
        assert process.stdout is not None
        descriptor = process.stdout.fileno()
        deadline = time.monotonic() + SANDBOX_START_TIMEOUT
        output = b""
        with selectors.DefaultSelector() as selector:
            selector.register(descriptor, selectors.EVENT_READ)
            while not (self.api_url and self.token):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise BenchmarkError(f"sandbox printed no URL within {SANDBOX_START_TIMEOUT} s")
                chunk = os.read(descriptor, 4096)
                if not chunk:
                    raise BenchmarkError(f"sandbox exited with status {process.wait()}")
                output += chunk
                complete = output.rpartition(b"\n")[0]
                for line in complete.decode("utf-8", "replace").splitlines():
                    name, _, value = line.strip().removeprefix("export ").partition("=")
                    if name == "SHOPIFY_API_URL":
                        self.api_url = value
                    elif name == "SHOPIFY_ACCESS_TOKEN":
                        self.token = value

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stats(self) -> dict[str, Any]:
        """Return the counters of ``GET /sandbox/stats``."""
        import json

        base = self.api_url.partition("/admin/")[0]
        with urllib.request.urlopen(f"{base}/sandbox/stats", timeout=10) as response:
            stats: dict[str, Any] = json.load(response)
        return stats

    def env(self) -> dict[str, str]:
        """Return the exporter's environment for this store."""
        return child_env({"SHOPIFY_API_URL": self.api_url, "SHOPIFY_ACCESS_TOKEN": self.token})

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self.process = None

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def export_command(db_path: Path, *, profile: Path | None = None) -> list[str]:
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    return [*command, "-m", "shopify_export", "--db", str(db_path), "-q", "export", STORE]


def run_export(sandbox: Sandbox, db_path: Path, workdir: Path) -> ProcessRun:
    """Export the sandbox's store into a new database at ``db_path``."""
    run = run_measured(export_command(db_path), sandbox.env(), workdir)
    if run.exit_code != 0:
        raise BenchmarkError(f"export exited with status {run.exit_code}:\n{run.stderr[-2000:]}")
    return run


# Correctness.


def expected_ids(customers: int) -> set[int]:
    """Return the numeric ids of the sandbox store of that size (default seed and ids)."""
    return set(customer_ids(SandboxConfig(customers=customers)))


def check_database(report: Report, scenario: str, db_path: Path, customers: int) -> None:
    """Check that the database contains each customer once and a completed job of all of them."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        ids = [
            row[0]
            for row in connection.execute(
                "SELECT legacy_id FROM customers WHERE store_name = ?", (STORE,)
            )
        ]
        jobs = connection.execute(
            "SELECT status, processed_customers FROM export_jobs WHERE store_name = ?", (STORE,)
        ).fetchall()
    finally:
        connection.close()
    exact = len(ids) == customers and set(ids) == expected_ids(customers)
    report.require(scenario, "every customer in the database once", exact, f"{len(ids):,} rows")
    job_ok = jobs == [("completed", customers)]
    report.require(scenario, "job completed with every customer", job_ok, f"{jobs}")


def check_served(report: Report, scenario: str, stats: dict[str, Any], customers: int) -> None:
    report.require(
        scenario,
        "customers served",
        stats["customers_served"] == customers,
        f"{stats['customers_served']:,}",
    )
    throttled = stats["throttled"]
    report.require(scenario, "THROTTLED responses", throttled == 0, f"{throttled}")


def job_seconds(db_path: Path) -> float:
    """Return completed_at - started_at of the store's job, in seconds."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        started, completed = connection.execute(
            "SELECT started_at, completed_at FROM export_jobs WHERE store_name = ?", (STORE,)
        ).fetchone()
    finally:
        connection.close()

    def parse(text: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (parse(completed) - parse(started)).total_seconds()


def check_csv(report: Report, scenario: str, path: Path, customers: int) -> None:
    """Check the CSV's header and that it has one row per customer of the store."""
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        ids = [row[0].removeprefix("'") for row in reader]
    report.require(scenario, "CSV header", header == HEADER, "Shopify's columns")
    exact = len(ids) == customers and {int(value) for value in ids} == expected_ids(customers)
    report.require(scenario, "every customer in the CSV once", exact, f"{len(ids):,} rows")


# Scenarios.


def _mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


def rate_limit_scenario(report: Report, sizes: Sizes, workdir: Path, hard: bool) -> None:
    customers = sizes.rate_customers
    print(
        f"rate-limit: {customers:,} customers, bucket {sizes.bucket_size:g}, restore "
        f"{sizes.restore_rate:g}/s, {sizes.cost_per_customer:g} point(s) per customer",
        flush=True,
    )
    db_path = workdir / "rate.db"
    with Sandbox(
        customers,
        bucket_size=sizes.bucket_size,
        restore_rate=sizes.restore_rate,
        cost_per_customer=sizes.cost_per_customer,
    ) as sandbox:
        run = run_export(sandbox, db_path, workdir)
        stats = sandbox.stats()
    scenario = "rate-limit"
    check_served(report, scenario, stats, customers)
    check_database(report, scenario, db_path, customers)

    cost = stats["cost_charged"]
    bound = (cost - sizes.bucket_size) / sizes.restore_rate
    efficiency = bound / run.wall
    span = job_seconds(db_path)
    report.add(Check(scenario, "cost charged", f"{cost:,} points"))
    report.add(
        Check(
            scenario,
            "bound (cost - bucket) / restore rate",
            f"{bound:.2f} s",
        )
    )
    report.add(
        Check(
            scenario,
            "exporter wall time (bound / wall)",
            f"{run.wall:.2f} s ({efficiency:.1%})",
            f">= {MIN_RATE_EFFICIENCY:.0%} of the bound",
            efficiency >= MIN_RATE_EFFICIENCY,
            hard,
        )
    )
    report.add(
        Check(
            scenario,
            "job started_at to completed_at (bound / span)",
            f"{span:.2f} s ({bound / span:.1%})",
        )
    )


def local_scenario(report: Report, sizes: Sizes, workdir: Path, hard: bool) -> dict[int, ExportRun]:
    """Run the local-cost scenario and the memory runs; return the export run of each size."""
    runs: dict[int, ExportRun] = {}
    sizes_to_run = sorted({sizes.local_customers, *sizes.memory_customers})
    for customers in sizes_to_run:
        repeats = sizes.local_repeats if customers == sizes.local_customers else 1
        print(f"unthrottled: {customers:,} customers, {repeats} run(s)", flush=True)
        attempts: list[ExportRun] = []
        with Sandbox(customers) as sandbox:
            for attempt in range(repeats):
                db_path = workdir / f"local-{customers}-{attempt}.db"
                sandbox_cpu = process_cpu_seconds(sandbox.pid)
                run = run_export(sandbox, db_path, workdir)
                sandbox_cpu = process_cpu_seconds(sandbox.pid) - sandbox_cpu
                stats = sandbox.stats()
                scenario = f"unthrottled {customers:,}"
                check_served(report, scenario, stats, customers * (attempt + 1))
                check_database(report, scenario, db_path, customers)
                print(
                    f"    wall {run.wall:.2f} s, CPU {run.cpu:.2f} s, sandbox CPU "
                    f"{sandbox_cpu:.2f} s, peak RSS {_mb(run.max_rss_bytes)}",
                    flush=True,
                )
                attempts.append(ExportRun(run, db_path))
        attempts.sort(key=lambda item: item.run.wall)
        runs[customers] = attempts[len(attempts) // 2]
        for spare in attempts:
            if spare is not runs[customers]:
                spare.db_path.unlink()

    run = runs[sizes.local_customers].run
    customers = sizes.local_customers
    scenario = "local"
    rate = customers / run.wall
    cpu = run.cpu / customers
    median_note = f", median of {sizes.local_repeats}" if sizes.local_repeats > 1 else ""
    report.add(
        Check(
            scenario,
            f"customers/s end to end ({customers:,}{median_note})",
            f"{rate:,.0f} ({run.wall:.2f} s)",
            f">= {MIN_CUSTOMERS_PER_SECOND:,.0f}",
            rate >= MIN_CUSTOMERS_PER_SECOND,
            hard,
        )
    )
    report.add(
        Check(
            scenario,
            "exporter CPU per customer (user + system)",
            f"{cpu * 1e6:.1f} µs ({run.user:.2f} s + {run.system:.2f} s)",
            f"< {MAX_CPU_PER_CUSTOMER * 1e6:.0f} µs",
            cpu < MAX_CPU_PER_CUSTOMER,
            hard,
        )
    )

    scenario = "memory"
    for customers in sizes.memory_customers:
        rss = runs[customers].run.max_rss_bytes
        report.add(
            Check(
                scenario,
                f"exporter peak RSS, {customers:,} customers",
                _mb(rss),
                f"< {_mb(MAX_RSS_BYTES)}",
                rss < MAX_RSS_BYTES,
                hard,
            )
        )
    smallest = runs[min(sizes.memory_customers)].run.max_rss_bytes
    largest = runs[max(sizes.memory_customers)].run.max_rss_bytes
    growth = largest / smallest - 1
    report.add(
        Check(
            scenario,
            "peak RSS growth, smallest to largest store",
            f"{growth:+.1%}",
            f"<= {MAX_RSS_GROWTH:+.0%} (flat)",
            growth <= MAX_RSS_GROWTH,
            hard,
        )
    )
    return runs


def csv_scenario(
    report: Report, sizes: Sizes, workdir: Path, runs: dict[int, ExportRun], hard: bool
) -> None:
    rss: dict[int, int] = {}
    for customers in (min(sizes.memory_customers), max(sizes.memory_customers)):
        db_path = runs[customers].db_path
        csv_path = workdir / f"customers-{customers}.csv"
        print(f"csv: {customers:,} customers", flush=True)
        command = [
            sys.executable,
            "-m",
            "shopify_export",
            "--db",
            str(db_path),
            "csv",
            STORE,
            "--csv-path",
            str(csv_path),
        ]
        run = run_measured(command, child_env(), workdir)
        if run.exit_code != 0:
            raise BenchmarkError(f"csv exited with status {run.exit_code}:\n{run.stderr[-2000:]}")
        scenario = f"csv {customers:,}"
        check_csv(report, scenario, csv_path, customers)
        rss[customers] = run.max_rss_bytes
        if customers == max(sizes.memory_customers):
            rate = customers / run.wall
            report.add(
                Check(
                    "csv",
                    f"rows/s, {customers:,} customers (whole command)",
                    f"{rate:,.0f} ({run.wall:.2f} s, CPU {run.cpu:.2f} s)",
                    f">= {MIN_CSV_ROWS_PER_SECOND:,.0f}",
                    rate >= MIN_CSV_ROWS_PER_SECOND,
                    hard,
                )
            )
        csv_path.unlink()
    smallest, largest = (rss[key] for key in sorted(rss))
    growth = largest / smallest - 1
    report.add(
        Check(
            "csv",
            f"peak RSS, {min(rss):,} and {max(rss):,} customers",
            f"{_mb(smallest)}, {_mb(largest)} ({growth:+.1%})",
            f"<= {MAX_RSS_GROWTH:+.0%} (flat)",
            growth <= MAX_RSS_GROWTH,
            hard,
        )
    )


def profile_scenario(sizes: Sizes, workdir: Path, limit: int) -> None:
    """Export the local scenario's store under cProfile and print the top functions."""
    customers = sizes.local_customers
    profile = workdir / "export.prof"
    print(f"profile: {customers:,} customers under cProfile", flush=True)
    with Sandbox(customers) as sandbox:
        command = export_command(workdir / "profile.db", profile=profile)
        run = run_measured(command, sandbox.env(), workdir)
    if run.exit_code != 0:
        raise BenchmarkError(f"export exited with status {run.exit_code}:\n{run.stderr[-2000:]}")
    stats = pstats.Stats(str(profile), stream=sys.stdout)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)


# Output.


def machine_description() -> list[tuple[str, str]]:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        model = found.group(1).strip() if found else model
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        found = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.MULTILINE)
        memory = f"{int(found.group(1)) / 1024**2:.0f} GiB" if found else memory
    return [
        ("CPU", model),
        ("cores (nproc)", str(len(os.sched_getaffinity(0)))),
        ("memory", memory),
        ("system", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("SQLite", sqlite3.sqlite_version),
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
    ]


def results_markdown(report: Report, sizes: Sizes, command: str, elapsed: float) -> str:
    lines = [f"Command: `{command}` ({sizes.name} size, {elapsed:.0f} s in all).", ""]
    lines += ["| machine | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in machine_description()]
    lines += ["", "| scenario | measure | result | target | met |", "|---|---|---|---|---|"]
    for check in report.checks:
        if check.target == "exact":
            continue
        met = {True: "yes", False: "**no**", None: ""}[check.passed]
        if check.passed is False and not check.hard:
            met = "no (not enforced)"
        lines.append(
            f"| {check.scenario} | {check.measure} | {check.value} | {check.target} | {met} |"
        )
    correctness = [check for check in report.checks if check.target == "exact"]
    passed = sum(1 for check in correctness if check.passed)
    lines += [
        "",
        f"Correctness checks passed: {passed} of {len(correctness)} (every customer in the "
        "database and the CSV exactly once, every job completed, no THROTTLED response).",
    ]
    return "\n".join(lines) + "\n"


def write_results(markdown: str, path: Path = DOC_PATH) -> None:
    text = path.read_text(encoding="utf-8")
    start = text.find(RESULTS_START)
    end = text.find(RESULTS_END)
    if start < 0 or end < start:
        raise BenchmarkError(f"{path} lacks the markers {RESULTS_START} and {RESULTS_END}")
    head = text[: start + len(RESULTS_START)]
    path.write_text(f"{head}\n{markdown}{text[end:]}", encoding="utf-8")


@contextmanager
def work_folder(keep: bool) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="shopify-export-bench-"))
    try:
        yield folder
    finally:
        if keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="reduced sizes for CI; only correctness is checked"
    )
    parser.add_argument(
        "--write", action="store_true", help=f"rewrite the results section of {DOC_PATH.name}"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=("rate-limit", "local", "csv"),
        help="run only these scenarios (repeatable); csv needs local, which includes memory",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile the local scenario's exporter with cProfile",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases and logs")
    parser.add_argument(
        "--source",
        type=Path,
        metavar="PATH",
        help="run the exporter and the sandbox of the checkout at PATH (before/after comparisons)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    global _source
    if args.source is not None:
        if not (args.source / "shopify_export" / "__init__.py").is_file():
            print(f"No shopify_export package in {args.source}", file=sys.stderr)
            return 2
        _source = args.source.resolve()
    sizes = QUICK if args.quick else FULL
    # In quick mode speed and memory are reported, not enforced: CI machines are shared.
    hard = not args.quick
    scenarios = args.scenario or ["rate-limit", "local", "csv"]
    if "csv" in scenarios and "local" not in scenarios:
        scenarios.append("local")
    report = Report()
    started = time.perf_counter()
    try:
        with work_folder(args.keep) as workdir:
            warm_up(workdir)
            if args.profile:
                profile_scenario(sizes, workdir, limit=30)
                return 0
            if "rate-limit" in scenarios:
                rate_limit_scenario(report, sizes, workdir, hard)
            if "local" in scenarios:
                runs = local_scenario(report, sizes, workdir, hard)
                if "csv" in scenarios:
                    csv_scenario(report, sizes, workdir, runs, hard)
    except (BenchmarkError, OSError, sqlite3.Error, subprocess.CalledProcessError) as error:
        print(f"Benchmark failed: {error}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started

    command = " ".join(["python bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    markdown = results_markdown(report, sizes, command, elapsed)
    print()
    print(markdown)
    if args.write:
        write_results(markdown)
        print(f"Wrote the results to {DOC_PATH}")
    failures = report.failures
    for check in failures:
        print(f"Failed: {check.scenario}: {check.measure}: {check.value}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
