"""Every GraphQL document the client sends, validated against Shopify's real Admin schemas."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from graphql import (
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    build_client_schema,
    build_schema,
    parse,
    print_ast,
    validate,
)
from graphql.validation import NoDeprecatedCustomRule

from shopify_export import queries
from shopify_export.queries import (
    ALL_QUERIES,
    CUSTOMER_COUNT,
    CUSTOMER_COUNT_LEGACY,
    CUSTOMERS,
    CUSTOMERS_LEGACY,
    Query,
)

SCHEMA_2026_04 = "admin_2026-04.graphql.gz"
SCHEMA_2025_01 = "admin_2025-01.introspection.json.gz"


def schema_folder() -> Path:
    """Return the folder of the Shopify schema files beside the repository, or skip."""
    candidates = [
        Path(__file__).resolve().parents[2] / "shared" / "shopify",
        Path("/work/shared/shopify"),
    ]
    for folder in candidates:
        if (folder / SCHEMA_2026_04).is_file() and (folder / SCHEMA_2025_01).is_file():
            return folder
    pytest.skip("Shopify schema files not found in ../shared/shopify")


def clear_deprecation_mismatches(schema: GraphQLSchema) -> GraphQLSchema:
    """Undeprecate implementation fields whose interface field is not deprecated.

    Shopify's schemas contain such pairs (Customer.hasTimelineComment, for one), which
    graphql-core 3.3 reports as an invalid schema before validating any document.
    """
    for named_type in schema.type_map.values():
        if not isinstance(named_type, (GraphQLObjectType, GraphQLInterfaceType)):
            continue
        for interface in named_type.interfaces:
            for name, interface_field in interface.fields.items():
                field = named_type.fields.get(name)
                if field is not None and interface_field.deprecation_reason is None:
                    field.deprecation_reason = None
    return schema


@pytest.fixture(scope="module")
def schema_2026_04() -> GraphQLSchema:
    with gzip.open(schema_folder() / SCHEMA_2026_04, "rt", encoding="utf-8") as file:
        return clear_deprecation_mismatches(build_schema(file.read()))


@pytest.fixture(scope="module")
def schema_2025_01() -> GraphQLSchema:
    with gzip.open(schema_folder() / SCHEMA_2025_01, "rt", encoding="utf-8") as file:
        introspection = json.load(file)
    return clear_deprecation_mismatches(build_client_schema(introspection["data"]))


def errors_of(schema: GraphQLSchema, query: Query) -> list[str]:
    return [error.message for error in validate(schema, query.document)]


@pytest.mark.parametrize("query", ALL_QUERIES, ids=lambda query: query.name)
def test_query_valid_for_2026_04(schema_2026_04: GraphQLSchema, query: Query) -> None:
    assert errors_of(schema_2026_04, query) == []


@pytest.mark.parametrize("query", [CUSTOMERS_LEGACY, CUSTOMER_COUNT_LEGACY], ids=lambda q: q.name)
def test_legacy_query_valid_for_2025_01(schema_2025_01: GraphQLSchema, query: Query) -> None:
    assert errors_of(schema_2025_01, query) == []


def test_customers_query_fails_on_2025_01(schema_2025_01: GraphQLSchema) -> None:
    errors = errors_of(schema_2025_01, CUSTOMERS)
    assert any("defaultEmailAddress" in message for message in errors)
    assert any("defaultPhoneNumber" in message for message in errors)


def test_count_query_fails_on_2025_01(schema_2025_01: GraphQLSchema) -> None:
    errors = errors_of(schema_2025_01, CUSTOMER_COUNT)
    assert any("limit" in message for message in errors)


@pytest.mark.parametrize("query", [CUSTOMERS, CUSTOMER_COUNT], ids=lambda query: query.name)
def test_current_query_not_deprecated(schema_2026_04: GraphQLSchema, query: Query) -> None:
    assert [
        e.message for e in validate(schema_2026_04, query.document, [NoDeprecatedCustomRule])
    ] == []


def test_legacy_query_is_deprecated_on_2026_04(schema_2026_04: GraphQLSchema) -> None:
    errors = validate(schema_2026_04, CUSTOMERS_LEGACY.document, [NoDeprecatedCustomRule])
    assert any("email" in error.message for error in errors)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2024-10", CUSTOMERS_LEGACY),
        ("2025-01", CUSTOMERS_LEGACY),
        ("2025-04", CUSTOMERS),
        ("2026-04", CUSTOMERS),
        ("2027-01", CUSTOMERS),
        ("unstable", CUSTOMERS),
    ],
)
def test_customers_query_by_version(version: str, expected: Query) -> None:
    assert queries.customers_query(version) is expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2025-01", CUSTOMER_COUNT_LEGACY),
        ("2025-04", CUSTOMER_COUNT_LEGACY),
        ("2025-07", CUSTOMER_COUNT),
        ("2026-04", CUSTOMER_COUNT),
        ("unstable", CUSTOMER_COUNT),
    ],
)
def test_count_query_by_version(version: str, expected: Query) -> None:
    assert queries.count_query(version) is expected


@pytest.mark.parametrize("query", ALL_QUERIES, ids=lambda query: query.name)
def test_query_text_matches_document(query: Query) -> None:
    assert print_ast(parse(query.text)) == print_ast(query.document)
    assert "\n" not in query.text


def test_customers_query_pages_by_id() -> None:
    for query in (CUSTOMERS, CUSTOMERS_LEGACY):
        assert "first: $first, after: $after, query: $query, sortKey: ID" in query.text
        assert "pageInfo { hasNextPage endCursor }" in query.text
        assert "legacyResourceId" in query.text
