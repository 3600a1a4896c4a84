"""The shapes the store writes and queries with: outbox documents per transaction, short `$in` clauses."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from crm_shared import store
from crm_shared.store import IN_CHUNK, OUTBOX_DOCUMENT_BYTES, _split_in, outbox_documents


def record(i: int, size: int = 10) -> dict[str, Any]:
    return {"_id": f"e-{i}", "topic": "t", "key": f"k-{i % 3}", "value": b"x" * size, "type": "x", "content_type": "c"}


def test_a_transaction_s_records_are_one_document_in_emit_order() -> None:
    records = [record(i) for i in range(500)]
    [document] = outbox_documents(records)
    assert document["records"] == records
    assert document["count"] == 500
    assert document["sent_at"] is None
    assert document["_id"] == document["seq"]


def test_records_past_the_size_limit_go_to_further_documents_in_order() -> None:
    big = OUTBOX_DOCUMENT_BYTES // 3 + 1
    records = [record(i, big) for i in range(7)]
    documents = outbox_documents(records)
    assert [len(d["records"]) for d in documents] == [2, 2, 2, 1]
    assert [r for d in documents for r in d["records"]] == records
    assert [d["seq"] for d in documents] == sorted(d["seq"] for d in documents)
    assert len({d["_id"] for d in documents}) == 4
    assert all(sum(len(r["value"]) for r in d["records"]) <= OUTBOX_DOCUMENT_BYTES for d in documents)


def test_a_record_above_the_limit_still_gets_a_document_of_its_own() -> None:
    records = [record(0), record(1, OUTBOX_DOCUMENT_BYTES + 1), record(2)]
    assert [len(d["records"]) for d in outbox_documents(records)] == [1, 1, 1]


def test_two_transactions_in_the_same_nanosecond_do_not_collide(monkeypatch: Any) -> None:
    monkeypatch.setattr(store.time, "time_ns", lambda: 1_700_000_000_000_000_000)
    first, second = outbox_documents([record(0)]), outbox_documents([record(1)])
    assert first[0]["_id"] != second[0]["_id"]


def test_a_short_in_is_left_as_it_is() -> None:
    clause = {"_id": {"$in": ["a", "b"]}, "status": "open"}
    assert _split_in(clause) == [clause]


@given(st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=5))
def test_a_long_in_is_split_on_the_longest_list_and_keeps_every_value_and_condition(n: int, m: int) -> None:
    ids = [f"id-{i}" for i in range(n)]
    statuses = [f"s-{i}" for i in range(m)]
    clause = {"customer_id": {"$in": ids}, "status": {"$in": statuses}, "at": {"$gte": 1, "$lte": 2}}
    parts = _split_in(clause)
    if n <= IN_CHUNK or n <= m:
        assert parts == [clause]
        return
    assert [v for p in parts for v in p["customer_id"]["$in"]] == ids
    assert all(len(p["customer_id"]["$in"]) <= IN_CHUNK for p in parts)
    assert all(p["status"] == clause["status"] and p["at"] == clause["at"] for p in parts)
