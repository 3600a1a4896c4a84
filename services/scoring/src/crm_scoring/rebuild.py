"""`crm scoring rebuild`: recompute every customer's scores from the stored facts and report how many differ
from the live ones (0 after live processing, unless the statistics changed and their pass has not run yet)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from crm_scoring import handlers
from crm_scoring.settings import ScoringSettings
from crm_shared.store import Store
from crm_shared.transport import mongo_client_options


async def run(settings: ScoringSettings, show: int) -> int:
    store = Store.connect(settings.mongo_uri, settings.database_name, client_options=mongo_client_options(settings))
    try:
        result = await handlers.rebuild(store, settings.thresholds)
    finally:
        await store.close()
    print(f"{result.customers} customers rebuilt from their facts; {len(result.different)} differ from the live scores")
    for customer_id in result.different[:show]:
        print(f"  differs: {customer_id}")
    return 1 if result.different else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="crm scoring rebuild",
        description="Recompute every customer's scores from the stored facts (CRM_MONGO_URI, CRM_SCORING_DB) "
        "and count those that differ from the live ones. Exit status 1 when any differs.",
    )
    parser.add_argument("--show", type=int, default=20, help="how many differing customer ids to list")
    args = parser.parse_args(argv)
    return asyncio.run(run(ScoringSettings(), args.show))


if __name__ == "__main__":
    sys.exit(main())
