"""JSON decoding of GraphQL responses that also gives the JSON text of each customer node.

The customers table stores each node as JSON text. ``PageDecoder`` decodes a response with
orjson and encodes each element of ``data.customers.nodes`` again with it, as compact UTF-8.
Both together took 5 to 6 µs per customer of the sandbox store, against 8 to 10 µs for the
json module's decoder alone (CPython 3.11, measured). The texts are the nodes as received, with the
whitespace and escapes that JSON allows written the one compact way.

Where orjson refuses a response (invalid JSON, NaN, escapes of lone surrogates), the json
module decodes it, and the text of each node is sliced out of the response while decoding it.
NOTE: orjson decodes an integer beyond 64 bits as a float. The customer fields this tool
queries hold no JSON numbers (counts, ids and amounts are strings), so only the ``extensions``
and ``errors`` members of a response carry numbers, and they are small.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson

# The members leading from the top-level object to the array of customer nodes.
_NODES_PATH = ("data", "customers", "nodes")
# Whitespace between JSON tokens (RFC 8259), as the json module skips it.
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_WHITESPACE_CHARACTERS = frozenset(" \t\n\r")
# Decodes the JSON value at an index: (value, index after it). json.loads uses the same scanner,
# which typeshed does not declare.
_scan_value: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


class _Unexpected(Exception):
    """The text is not JSON of a shape this parser handles; json.loads decides instead."""


class PageDecoder:
    """A ``json.loads`` replacement for the gql transport that records node texts.

    ``loads`` returns what ``json.loads`` returns (but for integers beyond 64 bits, see the
    module documentation), and raises what it raises. After each call, ``texts_of`` returns
    the JSON text of each node for the nodes list of that response: UTF-8 bytes where orjson
    decoded the response, str slices of the response where the json module did.
    """

    def __init__(self) -> None:
        self._found: list[tuple[list[Any], list[str]]] = []
        self._nodes: object = None

    def loads(self, text: str) -> Any:
        """Decode ``text`` like ``json.loads`` and record the texts of its customer nodes."""
        found: list[tuple[list[Any], list[str]]] = []
        self._found = found
        self._nodes = None
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
        else:
            self._nodes = _nodes_of(value)
            return value
        try:
            return _decode(text, found)
        except (ValueError, StopIteration, RecursionError, _Unexpected):
            # Not valid JSON, or another shape: json.loads gives the usual result or error.
            found.clear()
            return json.loads(text)

    def texts_of(self, nodes: object) -> list[bytes] | list[str] | None:
        """Return the node texts of the last decoded response if ``nodes`` is its nodes list."""
        if nodes is not None and nodes is self._nodes:
            assert isinstance(nodes, list)
            return [orjson.dumps(node) for node in nodes]
        for candidate, texts in self._found:
            if candidate is nodes:
                return texts
        return None


def _nodes_of(value: Any) -> object:
    """Return ``value["data"]["customers"]["nodes"]`` when it is a list, else None."""
    for key in _NODES_PATH:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, list) else None


def _decode(text: str, found: list[tuple[list[Any], list[str]]]) -> Any:
    index = _skip(text, 0)
    value, index = _value(text, index, 0, found)
    if _skip(text, index) != len(text):
        raise _Unexpected("extra data after the JSON value")
    return value


def _skip(text: str, index: int) -> int:
    match = _WHITESPACE.match(text, index)
    return match.end() if match else index


def _value(
    text: str, index: int, depth: int, found: list[tuple[list[Any], list[str]]]
) -> tuple[Any, int]:
    """Decode the value at ``index``, which lies ``depth`` members down ``_NODES_PATH``."""
    if depth == len(_NODES_PATH):
        if text.startswith("[", index):
            return _nodes(text, index, found)
    elif text.startswith("{", index):
        return _object(text, index, depth, found)
    return _scan_value(text, index)


def _object(
    text: str, index: int, depth: int, found: list[tuple[list[Any], list[str]]]
) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    index = _skip(text, index + 1)
    if text.startswith("}", index):
        return result, index + 1
    path_member = _NODES_PATH[depth]
    while True:
        if not text.startswith('"', index):
            raise _Unexpected("object key expected")
        key, index = _scan_value(text, index)
        index = _skip(text, index)
        if not text.startswith(":", index):
            raise _Unexpected("':' expected")
        index = _skip(text, index + 1)
        if key == path_member:
            value, index = _value(text, index, depth + 1, found)
        else:
            value, index = _scan_value(text, index)
        # A repeated key keeps its last value, as in json.loads.
        result[key] = value
        index = _skip(text, index)
        if text.startswith(",", index):
            index = _skip(text, index + 1)
        elif text.startswith("}", index):
            return result, index + 1
        else:
            raise _Unexpected("',' or '}' expected")


def _nodes(
    text: str, index: int, found: list[tuple[list[Any], list[str]]]
) -> tuple[list[Any], int]:
    """Decode the nodes array, keeping the text of each element."""
    nodes: list[Any] = []
    texts: list[str] = []
    found.append((nodes, texts))
    index = _skip(text, index + 1)
    if text.startswith("]", index):
        return nodes, index + 1
    while True:
        start = index
        node, index = _scan_value(text, index)
        nodes.append(node)
        texts.append(text[start:index])
        # Compact JSON has no whitespace around the commas, so the regular expression runs
        # only where there is some.
        if not text.startswith(",", index):
            index = _skip(text, index)
        if text.startswith(",", index):
            index += 1
            if text[index : index + 1] in _WHITESPACE_CHARACTERS:
                index = _skip(text, index)
        elif text.startswith("]", index):
            return nodes, index + 1
        else:
            raise _Unexpected("',' or ']' expected")
