"""`crm customer <task>`: the customer service's operator tasks, on its database (CRM_MONGO_URI,
CRM_CUSTOMER_DB)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from tqdm import tqdm

from crm_customer import handlers, repository
from crm_customer.settings import CustomerSettings
from crm_shared.store import Store
from crm_shared.transport import mongo_client_options

NO_SECRET = 2


async def run_publish(settings: CustomerSettings, secret: bytes, bar: tqdm) -> int:
    store = Store.connect(settings.mongo_uri, settings.database_name, client_options=mongo_client_options(settings))
    try:
        bar.total = await store.db[repository.CUSTOMERS].count_documents({})
        bar.refresh()
        return await handlers.publish_match_keys(store, secret, progress=bar.update)
    finally:
        await store.close()


def publish_match_keys(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="crm customer publish-match-keys",
        description="Publish every customer's match keys (crm.customer.match_keys_changed.v1, through the customer "
        "service's outbox: a running customer service relays them) under CRM_MATCH_KEY_SECRET, for customers who "
        "signed up before the secret was set or after it changed. Safe to run again.",
    )
    parser.parse_args(argv)
    settings = CustomerSettings()
    secret = settings.match_secret
    if secret is None:
        print("crm customer publish-match-keys: CRM_MATCH_KEY_SECRET is not set", file=sys.stderr)
        return NO_SECRET
    with tqdm(unit="customer", desc="customers", file=sys.stderr) as bar:
        published = asyncio.run(run_publish(settings, secret, bar))
    print(f"match keys of {published} customers written to the outbox")
    return 0


TASKS: dict[str, tuple[str, Callable[[Sequence[str]], int]]] = {
    "publish-match-keys": ("publish every customer's match keys again (after setting the secret)", publish_match_keys),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crm customer", description="The customer service's tasks.")
    parser.add_argument("task", choices=sorted(TASKS), help="; ".join(f"{k}: {v[0]}" for k, v in TASKS.items()))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the task's options (crm customer TASK --help)")
    args = parser.parse_args(argv)
    return TASKS[args.task][1](args.options)


if __name__ == "__main__":
    sys.exit(main())
