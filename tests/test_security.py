"""Secrets, file modes and transport: the token never leaks, files stay private, TLS is verified."""

from __future__ import annotations

import http.server
import shutil
import ssl
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import Result
from conftest import STORE, Env, job_rows

from shopify_export.config import ConfigError, check_api_url, parse_store_name, shopify_api_url
from shopify_export.sandbox import FAULT_KINDS, Fault, SandboxServer

TOKEN = "shpat_TOPSECRET_0123456789abcdef"
FAST = ("--retry-delay", "0.01", "--max-retries", "1", "--timeout", "2")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_token_never_leaks(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
    tmp_path: Path,
) -> None:
    outputs: list[str] = []

    def run(*args: str) -> Result:
        result = run_cli(*args)
        outputs.extend([result.stdout, result.stderr])
        return result

    # A clean export, then every fault of the sandbox from the second page on. Persistent
    # faults fail the export (exit 1) and a resume against a healthy sandbox completes it.
    scenarios: list[list[Fault]] = [[]] + [
        [Fault(kind, page=2, times=3 if kind == "throttled" else 0)] for kind in FAULT_KINDS
    ]
    csv_path = tmp_path / "exports" / "customers.csv"
    for verbose in ([], ["-v"]):
        for faults in scenarios:
            server = sandbox_factory(customers=600, token=TOKEN, faults=faults, hang_seconds=5)
            env.point_at(server)
            result = run(*verbose, "export", STORE, "--csv", "--csv-path", str(csv_path), *FAST)
            assert result.exit_code in (0, 1), (faults, result.stderr)
            if result.exit_code == 1:
                env.point_at(sandbox_factory(customers=600, token=TOKEN))
                assert run(*verbose, "resume", STORE, "--csv-path", str(csv_path)).exit_code == 0
        [job_id, *_] = [row["id"] for row in job_rows(env.db_path)]
        run(*verbose, "status", STORE)
        run(*verbose, "status", STORE, "--json")
        run(*verbose, "history", STORE, "--json")
        run(*verbose, "history", STORE)
        run(*verbose, "job", job_id)
        run(*verbose, "job", job_id, "--json")
        run(*verbose, "csv", STORE, "--csv-path", str(csv_path))
        run(*verbose, "csv", STORE, "--csv-dialect", "plain", "--csv-path", str(csv_path))
        run(*verbose, "--help")
    # The token that Shopify rejects is the user's real one too: it must not be echoed back.
    env.variables["SHOPIFY_ACCESS_TOKEN"] = TOKEN + "x"
    run("-v", "export", STORE, *FAST)

    assert any("Batch" in output for output in outputs), "the scenarios did not run"
    for output in outputs:
        assert TOKEN not in output
    files = _files_under(env.db_path.parent) + _files_under(tmp_path / "exports")
    assert any(path.suffix == ".csv" for path in files)
    for path in files:
        assert TOKEN.encode() not in path.read_bytes(), path


def test_data_files_private(run_cli: Callable[..., Result], env: Env) -> None:
    result = run_cli("export", STORE, "--csv")
    assert result.exit_code == 0, result.stderr
    data_folder = env.db_path.parent
    assert _mode(data_folder) == 0o700
    assert _mode(data_folder / "exports") == 0o700
    files = _files_under(data_folder)
    assert {path.suffix for path in files} >= {".db", ".csv", ".lock"}
    for path in files:
        assert _mode(path) == 0o600, path


def test_wal_files_private_while_exporting(
    env: Env, sandbox_factory: Callable[..., SandboxServer]
) -> None:
    from conftest import spawn_process

    env.point_at(sandbox_factory(customers=3000, latency=0.1))
    process = spawn_process(env, "export", STORE)
    try:
        assert process.stderr is not None
        while not process.stderr.readline().startswith("Batch 2:"):
            pass
        wal = Path(str(env.db_path) + "-wal")
        shm = Path(str(env.db_path) + "-shm")
        assert wal.exists()
        assert _mode(wal) == 0o600
        assert _mode(shm) == 0o600
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    "name",
    [
        "evil.example/",
        "a@b",
        "../x",
        "shop:8080",
        "shop name",
        "shop?x=1",
        "shop#frag",
        "shop.evil.com",
        "shop%00",
        "xn--",
        "a/b",
        "\\\\host",
    ],
)
def test_store_name_only_builds_myshopify_urls(name: str) -> None:
    try:
        handle = parse_store_name(name)
    except ConfigError:
        return
    url = urlsplit(shopify_api_url(handle, "2026-04"))
    assert url.scheme == "https"
    assert url.hostname == f"{handle}.myshopify.com"
    assert url.port is None
    assert url.username is None


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8787/graphql.json",
        "http://127.0.0.1/x",
        "http://127.8.9.10/x",
        "http://[::1]:80/x",
        "https://proxy.example.com/admin/api/2026-04/graphql.json",
    ],
)
def test_api_url_accepted(url: str) -> None:
    assert check_api_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/x",
        "http://10.0.0.1/x",
        "http://localhost.evil.com/x",
        "ftp://127.0.0.1/x",
        "https://user:pass@proxy.example.com/x",
        "127.0.0.1:8787",
        "",
    ],
)
def test_api_url_rejected(url: str) -> None:
    with pytest.raises(ConfigError):
        check_api_url(url)


@pytest.fixture
def untrusted_https(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    yield f"https://127.0.0.1:{server.server_address[1]}/admin/api/2026-04/graphql.json"
    server.shutdown()


def test_untrusted_certificate_fails(
    run_cli: Callable[..., Result], env: Env, untrusted_https: str
) -> None:
    env.variables["SHOPIFY_API_URL"] = untrusted_https
    result = run_cli("export", STORE, *FAST)
    assert result.exit_code == 1
    assert "certificate" in result.stderr
    assert "Traceback" not in result.stderr
