"""PageDecoder: the same values as json.loads, plus the JSON text of each customer node."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from shopify_export.client import ShopifyClient
from shopify_export.config import ConnectionSettings
from shopify_export.page_json import PageDecoder
from shopify_export.sandbox import SandboxConfig, SandboxServer
from shopify_export.store import Database

NODES = [
    {"id": "gid://shopify/Customer/1", "firstName": "Zoë", "tags": ["vip", "a,b"], "note": None},
    {"id": "gid://shopify/Customer/2", "note": 'He said "hi"\n', "amountSpent": {"amount": "1.5"}},
    {"id": "gid://shopify/Customer/3", "firstName": "😀", "numberOfOrders": "3", "x": [1.5e3, -0]},
]
PAGE = {
    "data": {
        "customers": {
            "nodes": NODES,
            "pageInfo": {"hasNextPage": True, "endCursor": "abc"},
        }
    },
    "extensions": {"cost": {"requestedQueryCost": 12, "actualQueryCost": 12}},
}

# Documents that every decoder must turn into exactly what json.loads returns.
DOCUMENTS = {
    "compact page": json.dumps(PAGE, ensure_ascii=False, separators=(",", ":")),
    "indented page": json.dumps(PAGE, indent=2),
    "ascii escapes": json.dumps(PAGE, ensure_ascii=True),
    "spaces everywhere": (
        ' \r\n{ "data" : { "customers" : { "nodes" : [ {"id":1} ,\t{"id":2} ] } } }\n'
    ),
    "empty nodes": '{"data":{"customers":{"nodes":[],"pageInfo":{"hasNextPage":false}}}}',
    "null data": '{"data":null,"errors":[{"message":"Throttled"}]}',
    "count": '{"data":{"customersCount":{"count":5}}}',
    "nodes not a list": '{"data":{"customers":{"nodes":null}}}',
    "top-level list": '[{"data":1}]',
    "empty object": "{}",
    "errors first": '{"errors":[{"path":["customers","nodes",0,"email"]}],"data":'
    '{"customers":{"nodes":[{"email":null}]}}}',
}


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_loads_equals_json_loads(name: str) -> None:
    text = DOCUMENTS[name]
    assert PageDecoder().loads(text) == json.loads(text)


def as_text(texts: Sequence[str | bytes] | None) -> list[str] | None:
    if texts is None:
        return None
    return [text.decode() if isinstance(text, bytes) else text for text in texts]


@pytest.mark.parametrize("name", ["compact page", "indented page", "ascii escapes"])
def test_node_texts_are_the_nodes_in_compact_json(name: str) -> None:
    text = DOCUMENTS[name]
    decoder = PageDecoder()
    nodes = decoder.loads(text)["data"]["customers"]["nodes"]
    expected = [json.dumps(node, ensure_ascii=False, separators=(",", ":")) for node in NODES]
    assert as_text(decoder.texts_of(nodes)) == expected


def test_node_texts_sliced_where_the_json_module_decodes() -> None:
    # NaN and the escape of a lone surrogate are JSON that only the json module reads.
    text = '{"data": {"customers": {"nodes": [{"id": 1, "n": NaN}, {"note": "\\ud800 x"}]}}}'
    decoder = PageDecoder()
    nodes = decoder.loads(text)["data"]["customers"]["nodes"]
    assert nodes[1] == {"note": "\ud800 x"}
    assert decoder.texts_of(nodes) == ['{"id": 1, "n": NaN}', '{"note": "\\ud800 x"}']


def test_texts_of_other_list_is_none() -> None:
    decoder = PageDecoder()
    decoder.loads(DOCUMENTS["compact page"])
    assert decoder.texts_of(list(NODES)) is None
    assert decoder.texts_of(None) is None


def test_texts_of_previous_response_dropped() -> None:
    decoder = PageDecoder()
    first = decoder.loads(DOCUMENTS["compact page"])["data"]["customers"]["nodes"]
    decoder.loads(DOCUMENTS["count"])
    assert decoder.texts_of(first) is None


def test_repeated_nodes_key_keeps_last() -> None:
    text = '{"data":{"customers":{"nodes":[{"id":1}],"nodes":[{"id":2},{"id":3}]}}}'
    decoder = PageDecoder()
    result = decoder.loads(text)
    assert result == json.loads(text)
    assert as_text(decoder.texts_of(result["data"]["customers"]["nodes"])) == [
        '{"id":2}',
        '{"id":3}',
    ]


@pytest.mark.parametrize(
    "text",
    [
        '{"data": {"customers": ',
        '{"data":{"customers":{"nodes":[{"id":1},]}}}',
        '{"data":{"customers":{"nodes":[{"id":1}]}}} trailing',
        '{"data":{"customers":{"nodes":[{"id":1} {"id":2}]}}}',
        "<html><title>502</title></html>",
        "",
        '{"data" 1}',
        "{1: 2}",
    ],
)
def test_invalid_json_raises_like_json_loads(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as raised:
        PageDecoder().loads(text)
    assert str(raised.value) == str(expected.value)


def test_nan_and_big_numbers_decoded() -> None:
    # With NaN in it, the json module decodes the response, and keeps big integers exact.
    text = '{"data":{"customers":{"nodes":[{"n":NaN,"big":123456789012345678901234567890}]}}}'
    decoder = PageDecoder()
    result = decoder.loads(text)
    node = result["data"]["customers"]["nodes"][0]
    assert node["big"] == 123456789012345678901234567890
    assert node["n"] != node["n"]
    assert decoder.texts_of(result["data"]["customers"]["nodes"]) == [
        '{"n":NaN,"big":123456789012345678901234567890}'
    ]


def _stored_data(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as connection:
        return [row[0] for row in connection.execute("SELECT data FROM customers ORDER BY id")]


def test_save_batch_stores_node_text(tmp_path: Path) -> None:
    text = DOCUMENTS["ascii escapes"]
    decoder = PageDecoder()
    nodes: list[dict[str, Any]] = decoder.loads(text)["data"]["customers"]["nodes"]
    texts = decoder.texts_of(nodes)
    db = Database.open(tmp_path / "customers.db")
    try:
        job = db.create_job("shop", api_version="2026-04", page_size=250)
        db.save_batch(job.id, "shop", nodes, "abc", 250, texts)
    finally:
        db.close()
    assert _stored_data(tmp_path / "customers.db") == as_text(texts)
    with sqlite3.connect(tmp_path / "customers.db") as connection:
        # UTF-8 bytes are stored as text, so SQLite's JSON functions read them.
        assert connection.execute(
            "SELECT typeof(data), json_extract(data, '$.firstName') FROM customers WHERE id = ?",
            ("gid://shopify/Customer/1",),
        ).fetchone() == ("text", "Zoë")


def test_client_pages_carry_node_texts() -> None:
    async def collect(server: SandboxServer) -> list[Any]:
        settings = ConnectionSettings(
            store_name="shop", api_url=server.url(), token=server.token, api_version="2026-04"
        )
        async with ShopifyClient(settings) as client:
            return [page async for page in client.pages(after=None, last_customer_id=None)]

    with SandboxServer(SandboxConfig(customers=600)) as server:
        pages = asyncio.run(collect(server))
    assert [len(page.nodes) for page in pages] == [250, 250, 100]
    for page in pages:
        assert page.node_texts is not None
        assert [json.loads(text) for text in page.node_texts] == page.nodes
