"""Runners of the sandbox store: a background thread, or the foreground.

``SandboxServer`` runs the store in a background thread with its own event loop, for tests and
``export --sandbox``. ``serve`` runs it in the foreground until SIGINT or SIGTERM, for
``sandbox serve``. Both listen on loopback addresses only.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import threading
from typing import TextIO

from aiohttp import web

from shopify_export.config import is_loopback
from shopify_export.errors import ConfigError
from shopify_export.sandbox.config import SandboxConfig
from shopify_export.sandbox.endpoint import DEFAULT_API_VERSION, SandboxStore, Stats

__all__ = [
    "DEFAULT_API_VERSION",
    "SandboxServer",
    "SandboxStore",
    "Stats",
    "check_loopback",
    "serve",
]

log = logging.getLogger(__name__)


def check_loopback(host: str) -> str:
    """Return ``host`` if it is a loopback address.

    Raises:
        ConfigError: for any other host, because the sandbox accepts a well-known token.
    """
    if not is_loopback(host):
        raise ConfigError(
            f"Invalid host {host!r}: the sandbox store listens only on loopback addresses "
            "(127.0.0.1, ::1, localhost)"
        )
    return host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class SandboxServer:
    """A sandbox store served from a background thread with its own event loop.

    Use it as a context manager, or call ``start`` and ``stop``.
    """

    def __init__(self, config: SandboxConfig, port: int = 0, host: str = "127.0.0.1") -> None:
        self.config = config
        self.host = check_loopback(host)
        self.port = port
        self.store = SandboxStore(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.base_url = ""

    @property
    def token(self) -> str:
        """Access token the store accepts."""
        return self.config.token

    def url(self, api_version: str = DEFAULT_API_VERSION) -> str:
        """Return the GraphQL endpoint of ``api_version``."""
        return f"{self.base_url}/admin/api/{api_version}/graphql.json"

    @property
    def stats(self) -> Stats:
        """A snapshot of the store's counters."""
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            return self.store.snapshot()
        future = asyncio.run_coroutine_threadsafe(self._snapshot(), self._loop)
        return future.result(timeout=10)

    async def _snapshot(self) -> Stats:
        return self.store.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters."""
        if self._loop is None:
            self.store.reset_stats()
            return

        async def reset() -> None:
            self.store.reset_stats()

        asyncio.run_coroutine_threadsafe(reset(), self._loop).result(timeout=10)

    def start(self) -> SandboxServer:
        """Bind the port and start serving; return self.

        Raises:
            OSError: when the port cannot be bound.
        """
        if self._thread is not None:
            return self
        sock = _bind(self.host, self.port)
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(self.store.application(), access_log=None, shutdown_timeout=1.0)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.SockSite(runner, sock).start())
        except BaseException:
            loop.run_until_complete(runner.cleanup())
            loop.close()
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self.base_url = _base_url(sock)
        self._loop = loop
        self._runner = runner
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"sandbox-{self.port}", daemon=True
        )
        self._thread.start()
        log.info("Sandbox store serving %d customers at %s", self.config.customers, self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and end the thread."""
        loop, runner, thread = self._loop, self._runner, self._thread
        if loop is None or runner is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=15)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=15)
            loop.close()
            if self._sock is not None:
                self._sock.close()
            self._loop = self._runner = self._thread = self._sock = None
            log.info("Sandbox store at %s stopped", self.base_url)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(
    config: SandboxConfig,
    host: str = "127.0.0.1",
    port: int = 8787,
    *,
    api_version: str = DEFAULT_API_VERSION,
    out: TextIO | None = None,
) -> None:
    """Serve the sandbox store in the foreground until SIGINT or SIGTERM.

    Prints the customer count and the ``export`` lines for ``SHOPIFY_API_URL`` and
    ``SHOPIFY_ACCESS_TOKEN`` to ``out`` (stdout by default) once the port is bound.

    Raises:
        ConfigError: when ``host`` is not a loopback address.
        OSError: when the port cannot be bound.
    """
    check_loopback(host)
    sock = _bind(host, port)
    asyncio.run(_serve(config, sock, api_version, out or sys.stdout))


async def _serve(config: SandboxConfig, sock: socket.socket, api_version: str, out: TextIO) -> None:
    store = SandboxStore(config)
    runner = web.AppRunner(store.application(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    base_url = _base_url(sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    print(f"Sandbox store serving {config.customers} customers", file=out)
    print(f"export SHOPIFY_API_URL={base_url}/admin/api/{api_version}/graphql.json", file=out)
    print(f"export SHOPIFY_ACCESS_TOKEN={config.token}", file=out)
    out.flush()
    try:
        await stop.wait()
    finally:
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signal_number)
        await runner.cleanup()
        sock.close()
        stats = store.snapshot()
        log.info(
            "Sandbox store stopped after %d requests, %d customers in %d pages",
            stats.requests,
            stats.customers_served,
            stats.customer_pages,
        )
