"""The sandbox store's GraphQL schema per API version, and query validation.

The sandbox has a small schema: ``customers`` and ``customersCount`` on the query root, and the
fields of ``Customer`` and its nested objects that an export reads. Fields of the real Admin API
that the sandbox does not serve fail validation like unknown ones.

Versions before 2025-04 lack ``Customer.defaultEmailAddress`` and ``defaultPhoneNumber``.
``customersCount`` accepts ``limit`` from 2025-07 and caps counts at 10,000 before that.
A query is parsed and validated once per text (``analyse``); errors use the wording of
Shopify's GraphQL server where it is known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    VariableNode,
    build_schema,
    coerce_input_value,
    get_named_type,
    is_composite_type,
    is_non_null_type,
    parse,
    specified_rules,
    type_from_ast,
    validate,
    value_from_ast,
)
from graphql.validation import FieldsOnCorrectTypeRule

VERSION_PATTERN = re.compile(r"\d{4}-(0[1-9]|1[0-2])|unstable")
FIRST_DEFAULT_EMAIL_VERSION = "2025-04"
FIRST_COUNT_LIMIT_VERSION = "2025-07"

_DEPRECATED_EMAIL = '@deprecated(reason: "Use `defaultEmailAddress.emailAddress` instead.")'
_DEPRECATED_PHONE = '@deprecated(reason: "Use `defaultPhoneNumber.phoneNumber` instead.")'
_DEPRECATED_EMAIL_CONSENT = '@deprecated(reason: "Use `defaultEmailAddress` instead.")'
_DEPRECATED_SMS_CONSENT = '@deprecated(reason: "Use `defaultPhoneNumber` instead.")'

_SDL = """
schema { query: QueryRoot }
scalar DateTime
scalar Decimal
scalar URL
scalar UnsignedInt64
enum CountPrecision { EXACT AT_LEAST }
enum CustomerSortKeys { CREATED_AT ID LOCATION NAME RELEVANCE UPDATED_AT }
enum CustomerState { DECLINED DISABLED ENABLED INVITED }
enum CustomerEmailAddressMarketingState { INVALID NOT_SUBSCRIBED PENDING SUBSCRIBED UNSUBSCRIBED }
enum CustomerEmailMarketingState {
  NOT_SUBSCRIBED PENDING SUBSCRIBED UNSUBSCRIBED REDACTED INVALID
}
enum CustomerSmsMarketingState { NOT_SUBSCRIBED PENDING SUBSCRIBED UNSUBSCRIBED REDACTED }
enum CustomerMarketingOptInLevel { SINGLE_OPT_IN CONFIRMED_OPT_IN UNKNOWN }
enum CustomerConsentCollectedFrom { SHOPIFY OTHER }
enum CustomerEmailAddressOpenTrackingLevel { UNKNOWN OPTED_IN OPTED_OUT }
enum CustomerProductSubscriberStatus {
  ACTIVE CANCELLED EXPIRED FAILED NEVER_SUBSCRIBED PAUSED
}
enum CurrencyCode { USD CAD EUR GBP JPY AUD BRL }
enum CountryCode { US CA GB IE DE FR JP BR AU IL AE }

interface Node { id: ID! }

type QueryRoot {
  customers(
    first: Int, after: String, last: Int, before: String, query: String,
    reverse: Boolean = false, sortKey: CustomerSortKeys = ID
  ): CustomerConnection!
  customersCount(COUNT_ARGUMENTS): Count
}
type Count { count: Int! precision: CountPrecision! }
type PageInfo {
  endCursor: String hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String
}
type CustomerConnection { edges: [CustomerEdge!]! nodes: [Customer!]! pageInfo: PageInfo! }
type CustomerEdge { cursor: String! node: Customer! }
type MoneyV2 { amount: Decimal! currencyCode: CurrencyCode! }
type CustomerEmailMarketingConsentState {
  consentUpdatedAt: DateTime
  marketingOptInLevel: CustomerMarketingOptInLevel
  marketingState: CustomerEmailMarketingState!
}
type CustomerSmsMarketingConsentState {
  consentCollectedFrom: CustomerConsentCollectedFrom
  consentUpdatedAt: DateTime
  marketingOptInLevel: CustomerMarketingOptInLevel!
  marketingState: CustomerSmsMarketingState!
}
NEW_TYPES
type MailingAddress implements Node {
  address1: String
  address2: String
  city: String
  company: String
  coordinatesValidated: Boolean!
  country: String
  countryCode: String @deprecated(reason: "Use `countryCodeV2` instead.")
  countryCodeV2: CountryCode
  firstName: String
  formattedArea: String
  id: ID!
  lastName: String
  latitude: Float
  longitude: Float
  name: String
  phone: String
  province: String
  provinceCode: String
  timeZone: String
  zip: String
}
type Customer implements Node {
  amountSpent: MoneyV2!
  canDelete: Boolean!
  createdAt: DateTime!
  dataSaleOptOut: Boolean!
  defaultAddress: MailingAddress
  NEW_FIELDS
  displayName: String!
  email: String EMAIL_DEPRECATION
  emailMarketingConsent: CustomerEmailMarketingConsentState EMAIL_CONSENT_DEPRECATION
  firstName: String
  id: ID!
  lastName: String
  legacyResourceId: UnsignedInt64!
  lifetimeDuration: String!
  locale: String!
  multipassIdentifier: String
  note: String
  numberOfOrders: UnsignedInt64!
  phone: String PHONE_DEPRECATION
  productSubscriberStatus: CustomerProductSubscriberStatus!
  smsMarketingConsent: CustomerSmsMarketingConsentState SMS_CONSENT_DEPRECATION
  state: CustomerState!
  tags: [String!]!
  taxExempt: Boolean!
  updatedAt: DateTime!
  validEmailAddress: Boolean! @deprecated(reason: "Use `defaultEmailAddress.validFormat` instead.")
  verifiedEmail: Boolean!
}
"""

_NEW_TYPES = """
type CustomerEmailAddress {
  emailAddress: String!
  marketingOptInLevel: CustomerMarketingOptInLevel
  marketingState: CustomerEmailAddressMarketingState!
  marketingUnsubscribeUrl: URL!
  marketingUpdatedAt: DateTime
  openTrackingLevel: CustomerEmailAddressOpenTrackingLevel!
  validFormat: Boolean!
}
type CustomerPhoneNumber {
  marketingCollectedFrom: CustomerConsentCollectedFrom
  marketingOptInLevel: CustomerMarketingOptInLevel
  marketingState: CustomerSmsMarketingState!
  marketingUpdatedAt: DateTime
  phoneNumber: String!
}
"""


@dataclass(frozen=True)
class ApiVersion:
    """The schema of one API version and the behaviour that differs between versions."""

    name: str
    schema: GraphQLSchema
    has_count_limit: bool


def is_valid_version(version: str) -> bool:
    """Whether ``version`` looks like an Admin API version: ``YYYY-MM`` or ``unstable``."""
    return VERSION_PATTERN.fullmatch(version) is not None


@lru_cache(maxsize=4)
def _schema(default_email: bool, count_limit: bool) -> GraphQLSchema:
    sdl = _SDL.replace(
        "COUNT_ARGUMENTS", "limit: Int = 10000, query: String" if count_limit else "query: String"
    )
    if default_email:
        sdl = sdl.replace("NEW_TYPES", _NEW_TYPES)
        sdl = sdl.replace(
            "NEW_FIELDS",
            "defaultEmailAddress: CustomerEmailAddress\n  defaultPhoneNumber: CustomerPhoneNumber",
        )
        sdl = sdl.replace("EMAIL_DEPRECATION", _DEPRECATED_EMAIL)
        sdl = sdl.replace("PHONE_DEPRECATION", _DEPRECATED_PHONE)
        sdl = sdl.replace("EMAIL_CONSENT_DEPRECATION", _DEPRECATED_EMAIL_CONSENT)
        sdl = sdl.replace("SMS_CONSENT_DEPRECATION", _DEPRECATED_SMS_CONSENT)
    else:
        for marker in (
            "NEW_TYPES",
            "NEW_FIELDS",
            "EMAIL_DEPRECATION",
            "PHONE_DEPRECATION",
            "EMAIL_CONSENT_DEPRECATION",
            "SMS_CONSENT_DEPRECATION",
        ):
            sdl = sdl.replace(marker, "")
    return build_schema(sdl)


def api_version(version: str) -> ApiVersion:
    """Return the sandbox schema of ``version`` (a valid ``YYYY-MM`` or ``unstable``)."""
    newest = version == "unstable"
    default_email = newest or version >= FIRST_DEFAULT_EMAIL_VERSION
    count_limit = newest or version >= FIRST_COUNT_LIMIT_VERSION
    return ApiVersion(version, _schema(default_email, count_limit), count_limit)


def graphql_error(
    message: str,
    locations: list[dict[str, int]] | None = None,
    path: list[Any] | None = None,
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return one entry of a GraphQL ``errors`` list in Shopify's key order."""
    error: dict[str, Any] = {"message": message}
    if locations:
        error["locations"] = locations
    if path is not None:
        error["path"] = path
    if extensions is not None:
        error["extensions"] = extensions
    return error


def location(node: Any) -> list[dict[str, int]]:
    """Return the ``locations`` list of an AST node."""
    if node.loc is None:
        return []
    start = node.loc.start_token
    return [{"line": start.line, "column": start.column}]


def response_key(node: FieldNode) -> str:
    """Return the key of a field in the response: its alias, or else its name."""
    return node.alias.value if node.alias else node.name.value


class QueryError(Exception):
    """Raised when a request fails before execution. ``errors`` is the GraphQL ``errors`` list.

    ``null_data`` is True for errors found while resolving arguments, which Shopify returns
    with ``"data": null``. Validation errors come without a ``data`` key.
    """

    def __init__(self, errors: list[dict[str, Any]], *, null_data: bool = False) -> None:
        super().__init__(errors[0]["message"] if errors else "query error")
        self.errors = errors
        self.null_data = null_data


# Analysis: parse and validate once per query text.


@dataclass
class Analysis:
    """A parsed and validated query, shared by every request that sends the same text."""

    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    # Variables that @skip or @include read, whose values change the plan.
    directive_variables: tuple[str, ...]
    uses_deprecated: bool


def _undefined_fields(
    schema: GraphQLSchema,
    selection_set: SelectionSetNode,
    parent: Any,
    path: list[str],
    errors: list[dict[str, Any]],
) -> None:
    """Report fields missing from their type the way Shopify's GraphQL server words it."""
    fields = getattr(parent, "fields", {})
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            if name == "__typename":
                continue
            if parent is schema.query_type and name in ("__schema", "__type"):
                continue
            definition = fields.get(name)
            if definition is None:
                errors.append(
                    graphql_error(
                        f"Field '{name}' doesn't exist on type '{parent.name}'",
                        location(selection),
                        [*path, name],
                        {"code": "undefinedField", "typeName": parent.name, "fieldName": name},
                    )
                )
                continue
            child = get_named_type(definition.type)
            if selection.selection_set is not None and is_composite_type(child):
                _undefined_fields(
                    schema,
                    selection.selection_set,
                    child,
                    [*path, response_key(selection)],
                    errors,
                )
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            child = schema.get_type(condition.name.value) if condition else parent
            if child is not None and is_composite_type(child):
                segment = f"... on {child.name}" if condition else "..."
                _undefined_fields(schema, selection.selection_set, child, [*path, segment], errors)


_ARGUMENT_NOT_ACCEPTED = re.compile(r"Unknown argument '(\w+)' on field '\w+\.(\w+)'")


def _validation_error(error: GraphQLError) -> dict[str, Any]:
    """Convert a graphql-core validation error to an entry in Shopify's wording where known."""
    locations = [{"line": loc.line, "column": loc.column} for loc in error.locations or []]
    match = _ARGUMENT_NOT_ACCEPTED.match(error.message)
    if match:
        argument, field_name = match.groups()
        return graphql_error(
            f"Field '{field_name}' doesn't accept argument '{argument}'",
            locations,
            None,
            {
                "code": "argumentNotAccepted",
                "name": field_name,
                "typeName": "Field",
                "argumentName": argument,
            },
        )
    # NOTE: other validation failures keep graphql-core's message; Shopify's wording differs.
    return graphql_error(error.message, locations, None, {"code": "GRAPHQL_VALIDATION_FAILED"})


def _directive_variables(document: DocumentNode) -> tuple[str, ...]:
    names: list[str] = []

    def visit(selection_set: SelectionSetNode | None) -> None:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            for directive in selection.directives or ():
                for argument in directive.arguments or ():
                    if isinstance(argument.value, VariableNode):
                        names.append(argument.value.name.value)
            visit(getattr(selection, "selection_set", None))

    for definition in document.definitions:
        visit(getattr(definition, "selection_set", None))
    return tuple(sorted(set(names)))


def _uses_deprecated(schema: GraphQLSchema, document: DocumentNode) -> bool:
    deprecated = {
        name
        for type_ in schema.type_map.values()
        if isinstance(type_, GraphQLObjectType)
        for name, definition in type_.fields.items()
        if definition.deprecation_reason
    }
    found = False

    def visit(selection_set: SelectionSetNode | None) -> None:
        nonlocal found
        if selection_set is None:
            return
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode) and selection.name.value in deprecated:
                found = True
            visit(getattr(selection, "selection_set", None))

    for definition in document.definitions:
        visit(getattr(definition, "selection_set", None))
    return found


_OTHER_RULES = tuple(rule for rule in specified_rules if rule is not FieldsOnCorrectTypeRule)


def analyse(version: ApiVersion, text: str, operation_name: str | None) -> Analysis:
    """Parse and validate a query against the schema of ``version``.

    Raises:
        QueryError: for a syntax error, an invalid query or an unknown operation name.
    """
    try:
        document = parse(text)
    except GraphQLSyntaxError as error:
        locations = [{"line": loc.line, "column": loc.column} for loc in error.locations or []]
        raise QueryError([graphql_error(f"Parse error: {error.message}", locations)]) from None

    schema = version.schema
    errors: list[dict[str, Any]] = []
    fragments: dict[str, FragmentDefinitionNode] = {}
    operations: list[OperationDefinitionNode] = []
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            fragments[definition.name.value] = definition
            condition = schema.get_type(definition.type_condition.name.value)
            if condition is not None and is_composite_type(condition):
                path = [f"fragment {definition.name.value}"]
                _undefined_fields(schema, definition.selection_set, condition, path, errors)
        elif isinstance(definition, OperationDefinitionNode):
            operations.append(definition)
            if definition.operation is OperationType.QUERY:
                name = definition.name.value if definition.name else None
                path = [f"query {name}" if name else "query"]
                root = schema.query_type
                _undefined_fields(schema, definition.selection_set, root, path, errors)
    errors.extend(_validation_error(error) for error in validate(schema, document, _OTHER_RULES))
    if errors:
        raise QueryError(errors)

    if operation_name:
        chosen = [op for op in operations if op.name and op.name.value == operation_name]
        if not chosen:
            raise QueryError([graphql_error(f'No operation named "{operation_name}"')])
    elif len(operations) > 1:
        raise QueryError([graphql_error("An operation name is required")])
    else:
        chosen = operations
    return Analysis(
        operation=chosen[0],
        fragments=fragments,
        directive_variables=_directive_variables(document),
        uses_deprecated=_uses_deprecated(schema, document),
    )


def coerce_variables(
    version: ApiVersion, analysis: Analysis, inputs: dict[str, Any]
) -> dict[str, Any]:
    """Return the operation's variables with defaults applied and values checked.

    Raises:
        QueryError: when a variable is missing or has a value of the wrong type.
    """
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for definition in analysis.operation.variable_definitions or ():
        name = definition.variable.name.value
        type_ = type_from_ast(version.schema, definition.type)
        if name not in inputs:
            if definition.default_value is not None:
                values[name] = value_from_ast(definition.default_value, type_)  # type: ignore[arg-type]
            elif is_non_null_type(type_):
                errors.append(
                    graphql_error(
                        f"Variable ${name} of type {type_} was provided invalid value",
                        location(definition),
                        None,
                        {
                            "value": None,
                            "problems": [
                                {"path": [], "explanation": "Expected value to not be null"}
                            ],
                        },
                    )
                )
            continue
        try:
            value = coerce_input_value(inputs[name], type_)  # type: ignore[arg-type]
        except GraphQLError:
            value = Undefined
        if value is Undefined:
            errors.append(
                graphql_error(
                    f"Variable ${name} of type {type_} was provided invalid value",
                    location(definition),
                    None,
                    {
                        "value": inputs[name],
                        "problems": [
                            {"path": [], "explanation": f"Could not coerce value to {type_}"}
                        ],
                    },
                )
            )
            continue
        values[name] = value
    if errors:
        raise QueryError(errors)
    return values
