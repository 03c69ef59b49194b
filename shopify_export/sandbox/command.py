"""The ``sandbox`` command group: ``sandbox serve`` runs the sandbox store on loopback."""

from __future__ import annotations

import click

from shopify_export.errors import ConfigError
from shopify_export.sandbox.config import (
    DEFAULT_ID_START,
    FAULT_KINDS,
    REDACTABLE,
    Fault,
    SandboxConfig,
    parse_fault,
    parse_redact,
)


def _check_host(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from shopify_export.sandbox.server import check_loopback

    try:
        return check_loopback(value)
    except ConfigError as error:
        raise click.BadParameter(str(error)) from None


def _faults(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[Fault]:
    try:
        return [parse_fault(value) for value in values]
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _redact(ctx: click.Context, param: click.Parameter, value: str | None) -> frozenset[str]:
    try:
        return parse_redact(value or "")
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.group()
def sandbox() -> None:
    """Run the built-in sandbox store, a stand-in for Shopify's Admin API."""


@sandbox.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, callback=_check_host, help="Loopback address"
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8787,
    show_default=True,
    help="TCP port (0 picks a free one)",
)
@click.option(
    "--customers",
    type=click.IntRange(min=0),
    default=5000,
    show_default=True,
    help="Number of customers",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the generated data")
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Delay before each response, in seconds",
)
@click.option(
    "--bucket-size",
    type=click.FloatRange(min=0, min_open=True),
    default=2000.0,
    show_default=True,
    help="Leaky bucket size, in cost points",
)
@click.option(
    "--restore-rate",
    type=click.FloatRange(min=0),
    default=100.0,
    show_default=True,
    help="Bucket restore rate, in points per second",
)
@click.option(
    "--cost-per-customer",
    type=click.FloatRange(min=0),
    default=None,
    help="Query cost per requested customer (default: Shopify's real costs)",
)
@click.option(
    "--fail",
    "faults",
    multiple=True,
    callback=_faults,
    metavar="KIND[@PAGE][xTIMES]",
    help="Inject a fault from that page on, TIMES times (0 = always); repeatable. "
    f"Kinds: {', '.join(FAULT_KINDS)}",
)
@click.option(
    "--redact",
    callback=_redact,
    metavar="GROUPS",
    help=f"Withhold protected fields, comma-separated: {', '.join(REDACTABLE)}",
)
@click.option(
    "--id-start",
    type=click.IntRange(min=1),
    default=DEFAULT_ID_START,
    show_default=True,
    help="Lowest customer id",
)
@click.option(
    "--hang-seconds",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="How long the hang fault delays a response, in seconds",
)
@click.option(
    "--retry-after",
    type=click.FloatRange(min=0),
    default=0.2,
    show_default=True,
    help="Retry-After of the http_429 fault, in seconds",
)
@click.option(
    "--api-version",
    default="2026-04",
    show_default=True,
    help="API version in the printed SHOPIFY_API_URL",
)
def serve(
    host: str,
    port: int,
    customers: int,
    seed: int,
    latency: float,
    bucket_size: float,
    restore_rate: float,
    cost_per_customer: float | None,
    faults: list[Fault],
    redact: frozenset[str],
    id_start: int,
    hang_seconds: float,
    retry_after: float,
    api_version: str,
) -> None:
    """Serve the sandbox store until Ctrl-C.

    Prints the SHOPIFY_API_URL and SHOPIFY_ACCESS_TOKEN to export in another shell.

    \b
    Example:
        shopify-export sandbox serve --customers 20000 --fail http_502_html@3x2
    """
    from shopify_export.sandbox.server import serve as serve_store

    try:
        config = SandboxConfig(
            customers=customers,
            seed=seed,
            id_start=id_start,
            latency=latency,
            bucket_size=bucket_size,
            restore_rate=restore_rate,
            cost_per_customer=cost_per_customer,
            faults=faults,
            redact=redact,
            retry_after=retry_after,
            hang_seconds=hang_seconds,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    try:
        serve_store(config, host, port, api_version=api_version)
    except OSError as error:
        raise click.ClickException(
            f"Cannot listen on {host}:{port}: {error.strerror or error}. "
            "Choose another port with --port, or --port 0 for any free one"
        ) from None


if __name__ == "__main__":
    sandbox()
