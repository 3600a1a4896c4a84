"""The sales database's `expenses` collection: one document per expense, the fields of `Expense` (`_id` the
expense id, `spent_on` at midnight UTC)."""

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_sales.expenses.domain import Expense
from crm_shared.store import IndexSpec

EXPENSES = "expenses"

_NEWEST = [("spent_at", DESCENDING), ("_id", DESCENDING)]

INDEXES = (
    IndexSpec(EXPENSES, IndexModel(_NEWEST, name="newest_spent_first")),
    IndexSpec(EXPENSES, IndexModel([("owner_id", ASCENDING), *_NEWEST], name="by_owner_spent")),
    IndexSpec(EXPENSES, IndexModel([("territory", ASCENDING), *_NEWEST], name="by_territory_spent")),
    IndexSpec(EXPENSES, IndexModel([("opportunity_id", ASCENDING)], name="by_opportunity")),
    IndexSpec(EXPENSES, IndexModel([("account_id", ASCENDING), *_NEWEST], name="by_account_spent")),
)

FIELDS = (
    "owner_id",
    "category",
    "amount",
    "currency",
    "created_at",
    "account_id",
    "opportunity_id",
    "territory",
    "description",
    "receipt_ref",
)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def to_document(expense: Expense) -> dict[str, Any]:
    return {
        "_id": expense.expense_id,
        "spent_at": midnight(expense.spent_on),
        **{f: getattr(expense, f) for f in FIELDS},
    }


def from_document(doc: Mapping[str, Any]) -> Expense:
    fields: dict[str, Any] = {f: doc.get(f) for f in FIELDS}
    return Expense(expense_id=doc["_id"], spent_on=doc["spent_at"].date(), **fields)
