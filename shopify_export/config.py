"""Settings from the command line and the environment, validated before any work starts."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shopify_export.errors import ConfigError

DEFAULT_API_VERSION = "2026-04"
DEFAULT_DB_PATH = Path("data") / "customers.db"
PAGE_SIZE = 250

TOKEN_ENV = "SHOPIFY_ACCESS_TOKEN"
API_VERSION_ENV = "SHOPIFY_API_VERSION"
API_URL_ENV = "SHOPIFY_API_URL"
DB_ENV = "SHOPIFY_EXPORT_DB"

# A shop handle: lower-case letters, digits and inner hyphens, as Shopify issues them, and at
# most 63 characters because it becomes a DNS label of <handle>.myshopify.com.
_HANDLE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Access tokens are printable ASCII without spaces (custom-app tokens look like shpat_ + hex);
# anything else cannot be sent in an HTTP header.
_TOKEN = re.compile(r"[\x21-\x7e]+")
_MYSHOPIFY_SUFFIX = ".myshopify.com"
# Stable versions are YYYY-MM with a quarter month; "unstable" is Shopify's preview version.
_API_VERSION = re.compile(r"20\d\d-(01|04|07|10)|unstable")
# The first version whose Customer has defaultEmailAddress and defaultPhoneNumber.
_FIRST_DEFAULT_EMAIL_VERSION = "2025-04"


def parse_store_name(value: str) -> str:
    """Return the shop handle of ``value``, which may also be ``<handle>.myshopify.com``.

    Raises:
        ConfigError: when ``value`` is not a valid shop handle.
    """
    # Only ASCII folds: a Unicode letter such as the Kelvin sign must not turn into a handle.
    name = value.lower() if value.isascii() else value
    if name.endswith(_MYSHOPIFY_SUFFIX):
        name = name[: -len(_MYSHOPIFY_SUFFIX)]
    if not _HANDLE.fullmatch(name):
        raise ConfigError(
            f"Invalid store name {value!r}: use the shop's handle, e.g. 'evisu-us' "
            "for evisu-us.myshopify.com (letters, digits and inner hyphens, at most 63)"
        )
    return name


def parse_api_version(value: str) -> str:
    """Return ``value`` if it is a Shopify API version such as ``2026-04`` or ``unstable``.

    Raises:
        ConfigError: for any other string.
    """
    if not _API_VERSION.fullmatch(value):
        raise ConfigError(
            f"Invalid API version {value!r} in {API_VERSION_ENV}: use a quarterly version "
            f"such as {DEFAULT_API_VERSION} (YYYY-01, -04, -07 or -10)"
        )
    return value


def has_default_email_fields(api_version: str) -> bool:
    """Whether ``Customer`` has ``defaultEmailAddress``/``defaultPhoneNumber`` in this version."""
    return api_version == "unstable" or api_version >= _FIRST_DEFAULT_EMAIL_VERSION


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_url(url: str) -> str:
    """Return ``url`` if it may be used as the GraphQL endpoint.

    ``https://`` is accepted for any host; plain ``http://`` only for loopback hosts, so that
    the token never crosses a network unencrypted.

    Raises:
        ConfigError: for other schemes, plain HTTP to a remote host, or a URL with credentials.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            f"Invalid {API_URL_ENV} {url!r}: use a full URL such as "
            "https://proxy.example.com/admin/api/2026-04/graphql.json"
        )
    if parts.username or parts.password:
        raise ConfigError(f"Invalid {API_URL_ENV}: remove the user name and password from the URL")
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigError(
            f"Invalid {API_URL_ENV} {url!r}: plain http:// is allowed only for loopback hosts "
            "(localhost, 127.0.0.1, ::1); use https://"
        )
    return url


def shopify_api_url(store_name: str, api_version: str) -> str:
    """Return the Admin GraphQL endpoint of a validated shop handle."""
    return f"https://{store_name}.myshopify.com/admin/api/{api_version}/graphql.json"


@dataclass(frozen=True)
class ConnectionSettings:
    """Endpoint, token and request limits for the Admin GraphQL API."""

    store_name: str
    api_url: str
    token: str
    api_version: str
    request_timeout: float = 60.0
    # Transient failures of one request are retried this many times before the export fails.
    max_retries: int = 8
    # Back-off before retry n is a random time up to min(retry_max_delay, retry_delay * 2**n).
    retry_delay: float = 1.0
    retry_max_delay: float = 60.0

    def __repr__(self) -> str:
        # The repr leaves the token out, so logging these settings or a traceback that shows them
        # does not reveal it.
        return (
            f"ConnectionSettings(store_name={self.store_name!r}, api_url={self.api_url!r}, "
            f"api_version={self.api_version!r}, token='***')"
        )


def connection_from_env(store_name: str, env: dict[str, str] | None = None) -> ConnectionSettings:
    """Build the connection settings of ``store_name`` from the environment.

    Raises:
        ConfigError: when the token is missing or a variable contains an invalid value.
    """
    env = dict(os.environ) if env is None else env
    api_version = parse_api_version(env.get(API_VERSION_ENV) or DEFAULT_API_VERSION)
    token = env.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(
            f"Missing access token: set {TOKEN_ENV} to the Admin API access token of a custom "
            "app with the read_customers scope, or add --sandbox to try the sandbox store"
        )
    if not _TOKEN.fullmatch(token):
        # The value itself is a secret, so the message describes it instead of showing it.
        raise ConfigError(
            f"Invalid access token in {TOKEN_ENV}: it contains spaces, control or non-ASCII "
            "characters; copy the Admin API access token (shpat_...) again"
        )
    custom_url = env.get(API_URL_ENV)
    api_url = check_api_url(custom_url) if custom_url else shopify_api_url(store_name, api_version)
    return ConnectionSettings(
        store_name=store_name, api_url=api_url, token=token, api_version=api_version
    )


def database_path(option: str | os.PathLike[str] | None, env: dict[str, str] | None = None) -> Path:
    """Return the database path: ``--db``, else ``$SHOPIFY_EXPORT_DB``, else the default."""
    env = dict(os.environ) if env is None else env
    if option is not None:
        value, source = os.fspath(option), "--db"
    elif env.get(DB_ENV):
        value, source = env[DB_ENV], DB_ENV
    else:
        return DEFAULT_DB_PATH
    # SQLite opens ":memory:" as a database that vanishes with the process.
    if not value.strip() or value != value.strip() or "\x00" in value or value == ":memory:":
        raise ConfigError(
            f"Invalid database path {value!r} in {source}: pass a file path such as "
            f"{DEFAULT_DB_PATH}"
        )
    return Path(value)
