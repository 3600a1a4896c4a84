"""The sales database's `quotas` (`_id` "<owner>|<period>", `owner_id`, `period`, `amount` in the reporting
currency, `updated_at`) and `forecast_snapshots` (`_id`, `period`, `owners` (null: everyone), `territory`,
`taken_at`, `weighted_pipeline`, `closed_won`, `commit`, `best_case`, `currency`)."""

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_shared.store import IndexSpec

QUOTAS = "quotas"
SNAPSHOTS = "forecast_snapshots"

INDEXES = (
    IndexSpec(QUOTAS, IndexModel([("period", ASCENDING), ("owner_id", ASCENDING)], name="by_period_owner")),
    IndexSpec(SNAPSHOTS, IndexModel([("taken_at", DESCENDING), ("_id", DESCENDING)], name="newest_taken_first")),
)


def quota_id(owner_id: str, period: str) -> str:
    return f"{owner_id}|{period}"
