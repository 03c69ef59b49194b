"""GraphQL documents the exporter sends, for each family of Admin API versions.

Every document is parsed and printed once, at import, so that a request only fills in its
variables. Versions from 2025-04 on (and ``unstable``) read e-mail and phone from
``defaultEmailAddress`` and ``defaultPhoneNumber``. Older versions such as 2025-01 lack those
fields, so their query uses ``email``, ``phone`` and the marketing consent objects, which
later versions deprecate.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import DocumentNode, parse, print_ast

from shopify_export.config import has_default_email_fields

# The first version whose customersCount takes a limit argument (limit: null counts all).
_FIRST_UNCAPPED_COUNT_VERSION = "2025-07"

_ADDRESS_FIELDS = (
    "company address1 address2 city province provinceCode country countryCodeV2 zip phone"
)

_COMMON_FIELDS = f"""
      id
      legacyResourceId
      firstName
      lastName
      state
      tags
      note
      verifiedEmail
      taxExempt
      locale
      createdAt
      updatedAt
      numberOfOrders
      amountSpent {{ amount currencyCode }}
      defaultAddress {{ {_ADDRESS_FIELDS} }}
"""

_CONTACT_FIELDS = """
      defaultEmailAddress { emailAddress marketingState }
      defaultPhoneNumber { phoneNumber marketingState }
"""

_LEGACY_CONTACT_FIELDS = """
      email
      phone
      emailMarketingConsent { marketingState }
      smsMarketingConsent { marketingState }
"""

_CUSTOMERS_TEMPLATE = """
query {name}($first: Int!, $after: String, $query: String) {{
  customers(first: $first, after: $after, query: $query, sortKey: ID) {{
    nodes {{{fields}    }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""


@dataclass(frozen=True)
class Query:
    """A GraphQL document parsed once, with its printed text ready to send."""

    name: str
    document: DocumentNode
    text: str


def _prepare(name: str, source: str) -> Query:
    document = parse(source, no_location=True)
    # The documents hold no string literals, so collapsing whitespace keeps them equivalent.
    return Query(name=name, document=document, text=" ".join(print_ast(document).split()))


CUSTOMERS = _prepare(
    "Customers",
    _CUSTOMERS_TEMPLATE.format(name="Customers", fields=_COMMON_FIELDS + _CONTACT_FIELDS),
)
CUSTOMERS_LEGACY = _prepare(
    "CustomersLegacy",
    _CUSTOMERS_TEMPLATE.format(
        name="CustomersLegacy", fields=_COMMON_FIELDS + _LEGACY_CONTACT_FIELDS
    ),
)
CUSTOMER_COUNT = _prepare(
    "CustomerCount", "query CustomerCount { customersCount(limit: null) { count precision } }"
)
CUSTOMER_COUNT_LEGACY = _prepare(
    "CustomerCountLegacy", "query CustomerCountLegacy { customersCount { count precision } }"
)

# Every document the client can send; tests validate each one against the real schemas.
ALL_QUERIES: tuple[Query, ...] = (
    CUSTOMERS,
    CUSTOMERS_LEGACY,
    CUSTOMER_COUNT,
    CUSTOMER_COUNT_LEGACY,
)

# Customer fields that only versions from 2025-04 on have.
CONTACT_FIELDS = frozenset({"defaultEmailAddress", "defaultPhoneNumber"})


def has_uncapped_count(api_version: str) -> bool:
    """Whether ``customersCount`` takes the ``limit`` argument in this API version."""
    return api_version == "unstable" or api_version >= _FIRST_UNCAPPED_COUNT_VERSION


def customers_query(api_version: str) -> Query:
    """Return the customer page query for ``api_version``."""
    return CUSTOMERS if has_default_email_fields(api_version) else CUSTOMERS_LEGACY


def count_query(api_version: str) -> Query:
    """Return the customer count query for ``api_version``."""
    return CUSTOMER_COUNT if has_uncapped_count(api_version) else CUSTOMER_COUNT_LEGACY
