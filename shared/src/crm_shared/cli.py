"""`crm`: the operators' command line.

crm run       start the broker and database (embedded unless CRM_KAFKA_BOOTSTRAP / CRM_MONGO_URI
              name real ones), create the topics, start the five services and the web console, load demo data
crm topics    create the topics of the contract on CRM_KAFKA_BOOTSTRAP (idempotent)
crm publish   publish a CloudEvent JSON file (or stdin) to a topic, keyed by its subject
crm deadletters  print the records the services rejected, with the reasons
crm keys      issue, list, rotate and revoke API keys (through a service's admin API)
crm audit     print a service's audit log
crm customer  the customer service's tasks (publish-match-keys): crm customer --help
crm scoring   the scoring service's tasks (backtest, ...): crm scoring --help
crm docs      regenerate docs/ (JSON Schemas and AsyncAPI); --check fails when they are stale
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crm_shared.embedded import EmbeddedError, EmbeddedServers, ensure_topics
from crm_shared.platform import CONSOLE_PORT, Platform, http_json, instance_ports, service_port
from crm_shared.security.development import DEMO_USERS, DevelopmentIdentity
from crm_shared.security.keys import BOOTSTRAP_KEY_ID, key_sha256, new_key
from crm_shared.settings import SERVICES
from crm_shared.topics import ALL_TOPICS, DEFAULT_PARTITIONS, Topic
from crm_shared.transport import kafka_options_from_env

DEFAULT_EMBEDDED_KAFKA_PORT = 19092
DEFAULT_EMBEDDED_MONGO_PORT = 27019
DEADLETTER_QUIET_POLLS = 3
MAX_INSTANCES = 4


def _say(message: str) -> None:
    print(message, flush=True)


def _wait_for_stop(platform: Platform) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        dead = platform.dead_services()
        if dead:
            _say(f"service(s) stopped unexpectedly: {', '.join(dead)}; see {platform.log_dir}/<name>.log")
            return


ADMIN_KEY_FILE = "admin-key"


def development_admin_key(data_dir: Path) -> str:
    """The embedded default's bootstrap admin key: made on first start, kept (owner-only) in the data dir."""
    path = data_dir / ADMIN_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key, _ = new_key(BOOTSTRAP_KEY_ID)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


MATCH_KEY_FILE = "match-key"


def development_match_key_secret(data_dir: Path) -> str:
    """The embedded default's match-key secret (CRM_MATCH_KEY_SECRET), made on first start and kept (owner-only)
    in the data dir: the customer service and sales must share it, and keep it across restarts, since the keys
    sales holds were made with it."""
    path = data_dir / MATCH_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    secret = secrets.token_urlsafe(32)
    path.write_text(secret + "\n")
    return secret


def _publish_existing_match_keys(env: dict[str, str], mongo: str, made: Path) -> None:
    """A data dir from before the match-key secret holds customers sales cannot match leads against yet: publish
    their keys once (`crm customer publish-match-keys`), now that the secret exists."""
    done = subprocess.run(
        [sys.executable, "-m", "crm_customer.cli", "publish-match-keys"],
        env={**env, "CRM_MONGO_URI": mongo},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        _say(f"new match-key secret in {made}: {done.stdout.strip()}")
    else:
        _say(f"crm customer publish-match-keys failed ({done.stderr.strip()[-300:]}); run it by hand")


def _admin_key(data_dir: str) -> str | None:
    """The key the CLI calls admin APIs with: CRM_API_KEY, else the one `crm run` made."""
    key = os.environ.get("CRM_API_KEY")
    path = Path(data_dir) / ADMIN_KEY_FILE
    if not key and path.exists():
        key = path.read_text().strip()
    return key or None


def _instance_count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of instances, got {value!r}") from None
    if not 1 <= count <= MAX_INSTANCES:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_INSTANCES} instances per service, got {count}")
    return count


async def _fewest_partitions(bootstrap: str) -> tuple[str, int]:
    """The topic the services consume in groups with the fewest partitions, and how many it has."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **kafka_options_from_env())
    await consumer.start()
    try:
        await consumer.topics()
        # Every instance reads the keys topic whole, by assignment: its partitions are not shared out.
        counts = {
            topic: len(consumer.partitions_for_topic(topic) or ())
            for topic in ALL_TOPICS
            if topic != Topic.SECURITY_KEYS
        }
    finally:
        await consumer.stop()
    fewest = min(counts, key=lambda topic: counts[topic])
    return fewest, counts[fewest]


def _warn_if_partitions_are_short(kafka: str, instances: int) -> None:
    """A group shares a topic's partitions out among its instances: one instance more than partitions stands by."""
    if instances == 1:
        return
    try:
        topic, partitions = asyncio.run(_fewest_partitions(kafka))
        where = f"{topic} has {partitions} partition(s)"
    except Exception as exc:
        # Only a warning hangs on it: the services start all the same.
        partitions = DEFAULT_PARTITIONS
        where = f"the topics are made with {partitions} partitions (the broker did not say how many: {exc!r})"
    if instances > partitions:
        _say(
            f"warning: {instances} instances per service, but {where}: in each consumer group "
            f"{instances - partitions} instance(s) get no partition and stand by (they answer the REST API, and "
            "take partitions over when another instance stops)"
        )


def cmd_run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    ports = {name: service_port(name) for name in SERVICES}
    try:
        instance_ports(ports, args.instances)
    except ValueError as exc:
        _say(f"crm run: {exc}")
        return 2
    env = dict(os.environ)
    api_key: str | None
    if env.get("CRM_AUTH_ADMIN_KEY_SHA256"):
        # The operator manages the bootstrap key; the demo data needs it as CRM_API_KEY.
        api_key = env.get("CRM_API_KEY")
    else:
        api_key = development_admin_key(data_dir)
        env["CRM_AUTH_ADMIN_KEY_SHA256"] = key_sha256(api_key)
    new_match_key = False
    if not env.get("CRM_MATCH_KEY_SECRET"):
        new_match_key = not (data_dir / MATCH_KEY_FILE).exists()
        env["CRM_MATCH_KEY_SECRET"] = development_match_key_secret(data_dir)
    console_password = console_identity(args, data_dir, env)
    kafka = os.environ.get("CRM_KAFKA_BOOTSTRAP")
    mongo = os.environ.get("CRM_MONGO_URI")
    servers = EmbeddedServers(
        data_dir / "servers",
        int(os.environ.get("CRM_EMBEDDED_KAFKA_PORT", DEFAULT_EMBEDDED_KAFKA_PORT)),
        int(os.environ.get("CRM_EMBEDDED_MONGO_PORT", DEFAULT_EMBEDDED_MONGO_PORT)),
    )
    servers.data_dir.mkdir(parents=True, exist_ok=True)
    platform: Platform | None = None
    try:
        if mongo is None:
            _say(f"starting the embedded MongoDB-compatible server (SecantusDB), data in {servers.data_dir / 'mongo'}")
            servers.start_database()
            mongo = servers.mongo_uri
        if kafka is None:
            _say("starting the embedded Kafka-compatible broker (Tansu, in memory)")
            servers.start_broker()
            kafka = servers.kafka_bootstrap
        asyncio.run(ensure_topics(kafka, ALL_TOPICS, kafka_options=kafka_options_from_env()))
        _warn_if_partitions_are_short(kafka, args.instances)
        each = f", {args.instances} instances of each" if args.instances > 1 else ""
        _say(f"starting the five services{each} ...")
        platform = Platform(
            kafka,
            mongo,
            ports,
            data_dir / "logs",
            instances=args.instances,
            console_port=None if args.no_console else int(env.get("CRM_CONSOLE_PORT", CONSOLE_PORT)),
        )
        platform.start(env=env)
        if new_match_key:
            _publish_existing_match_keys(env, mongo, data_dir / MATCH_KEY_FILE)
        if not args.no_demo and api_key:
            load_demo_data(platform, api_key)
        elif not args.no_demo:
            _say("demo data not loaded: CRM_AUTH_ADMIN_KEY_SHA256 is set, so give its key as CRM_API_KEY")
        _print_addresses(platform, api_key, data_dir / ADMIN_KEY_FILE, console_password, data_dir)
        _wait_for_stop(platform)
        return 0
    except EmbeddedError as exc:
        _say(f"crm run: {exc}")
        return 1
    finally:
        _say("stopping ...")
        if platform is not None:
            platform.stop()
        servers.stop()
        _say("stopped.")


def console_identity(args: argparse.Namespace, data_dir: Path, env: dict[str, str]) -> str | None:
    """The console's session secret; and, unless tokens come from an identity provider already, the development
    identity: a signing key the services trust and a few users, whose password this returns."""
    if args.no_console:
        return None
    identity = DevelopmentIdentity.under(data_dir)
    own_provider = any(env.get(f"CRM_AUTH_{name}") for name in ("JWKS_URL", "JWT_PUBLIC_KEY_FILE", "JWT_SECRET"))
    password = None if own_provider else identity.ensure()
    if password is not None:
        env.update(identity.service_env())
    env.update(identity.console_env(sign_in=password is not None))
    return password


def _print_addresses(
    platform: Platform,
    api_key: str | None,
    key_file: Path,
    console_password: str | None = None,
    data_dir: Path | None = None,
) -> None:
    _say("")
    _say("CRM platform is up. Ctrl-C stops everything.")
    _say(f"  Kafka bootstrap : {platform.kafka_bootstrap}")
    _say(f"  MongoDB URI     : {platform.mongo_uri}")
    for service in SERVICES:
        for name, url in zip(platform.instance_names(service), platform.urls(service), strict=True):
            _say(f"  {name:<16}: {url}   (API docs {url}/docs)")
    if platform.console_port is not None:
        _say(f"  {'console':<16}: {platform.console_url}   (the web console: sign in in a browser)")
        if console_password is not None and data_dir is not None:
            users = ", ".join(user["username"] for user in DEMO_USERS)
            kept = DevelopmentIdentity.under(data_dir).password_file
            _say(f"                    users {users}; password {console_password}")
            _say(f"                    (development only; kept in {kept})")
    _say(f"  logs            : {platform.log_dir}")
    if api_key and key_file.exists():
        _say(f"  admin API key   : {api_key}")
        _say(f"                    (development only; kept in {key_file}; `crm keys create` issues narrower ones)")
    _say("")
    _say("Every API needs a credential. Try the demo customer C-1001:")
    if api_key and key_file.exists():
        _say(f"  export CRM_API_KEY={api_key}")
    _say(f'  curl -s -H "X-API-Key: $CRM_API_KEY" {platform.url("scoring")}/v1/customers/C-1001/scores')
    _say(f'  curl -s -H "X-API-Key: $CRM_API_KEY" {platform.url("marketing")}/v1/customers/C-1001/enrolments')
    _say(f'  curl -s -H "X-API-Key: $CRM_API_KEY" {platform.url("customer")}/v1/customers/C-1001/timeline')
    _say(f'  curl -s -H "X-API-Key: $CRM_API_KEY" {platform.url("sales")}/v1/leads')


DEMO_CUSTOMERS = (
    ("C-1001", "Ada Demo", [("email", True), ("phone", False)], "email"),
    ("C-1002", "Ben Demo", [("sms", True), ("email", False)], "sms"),
    ("C-1003", "Cy Demo", [("email", True)], "email"),
)
DEMO_ORDERS = (
    ("C-1001", "O-9001", "180.00"),
    ("C-1001", "O-9002", "1250.00"),
    ("C-1002", "O-9003", "35.50"),
    ("C-1003", "O-9004", "2400.00"),
)
DEMO_COMPLAINTS = (("C-1003", "T-9001", "service", "high", "Installation engineer did not show up twice."),)


def load_demo_data(platform: Platform, api_key: str) -> None:
    """A few customers through the public REST APIs, so every view has something to show."""
    for customer_id, name, consents, preferred in DEMO_CUSTOMERS:
        http_json(
            "POST",
            f"{platform.url('customer')}/v1/customers",
            {
                "customer_id": customer_id,
                "name": name,
                "email": f"{customer_id.lower()}@example.com",
                "consents": [{"channel": c, "granted": g} for c, g in consents],
                "preferred_channel": preferred,
            },
            api_key=api_key,
        )
    # Marketing learns consents from crm.customer.events; give it that head start.
    time.sleep(2)
    for customer_id, order_id, total in DEMO_ORDERS:
        http_json(
            "POST",
            f"{platform.url('sales')}/v1/orders",
            {"order_id": order_id, "customer_id": customer_id, "currency": "EUR", "total": total},
            api_key=api_key,
        )
    _load_demo_support(platform, api_key)
    for customer_id, complaint_id, dimension, severity, summary in DEMO_COMPLAINTS:
        http_json(
            "POST",
            f"{platform.url('support')}/v1/complaints",
            {
                "complaint_id": complaint_id,
                "customer_id": customer_id,
                "dimension": dimension,
                "severity": severity,
                "summary": summary,
            },
            api_key=api_key,
        )
    _load_demo_sales(platform, api_key)
    _load_demo_duplicate(platform, api_key)
    _say(
        "demo data loaded: customers C-1001, C-1002, C-1003; a territory, two leads, an opportunity and a call; "
        "SLA policies on office hours, a knowledge-base article, a technician, a service contract and a ticket "
        "with a visit booked; W-1001, the web shop's id of C-1001, merged into it with an order"
    )


def _load_demo_duplicate(platform: Platform, api_key: str) -> None:
    """The web shop signs Ada up again under its own id, with her email in capitals: the customer service merges
    the new id into C-1001 at once, and the order the shop then places for W-1001 is C-1001's."""
    http_json(
        "POST",
        f"{platform.url('customer')}/v1/customers",
        {"customer_id": "W-1001", "name": "Ada Demo", "email": "C-1001@Example.com", "channel": "web", "consents": []},
        api_key=api_key,
    )
    # Sales files the order under C-1001 once it has applied the merge (crm.customer.merged.v1).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, merges = http_json("GET", f"{platform.url('customer')}/v1/customers/C-1001/merges", api_key=api_key)
        if status == 200 and merges and "sales" in merges[0].get("applied", {}).get("merge", {}):
            break
        time.sleep(0.5)
    http_json(
        "POST",
        f"{platform.url('sales')}/v1/orders",
        {"order_id": "O-9005", "customer_id": "W-1001", "currency": "EUR", "total": "42.00"},
        api_key=api_key,
    )


DEMO_TERRITORY = {
    "territory_id": "demo-north",
    "name": "North (demo)",
    "priority": 10,
    "regions": ["north"],
    "strategy": "round_robin",
    "reps": [{"user_id": "rep-1", "capacity": 50}, {"user_id": "rep-2", "capacity": 50}],
}
DEMO_LEADS = (
    (
        "demo-lead-1",
        {"source": "field_visit", "name": "Dora Demo", "email": "dora.demo@example.com", "region": "north"},
    ),
    (
        "demo-lead-2",
        {"source": "inbound", "company": "Northwind Demo Ltd", "phone": "+44 20 7946 0999", "region": "north"},
    ),
)


DEMO_OFFICE_HOURS = {
    "time_zone": "Europe/Berlin",
    "weekly": {
        day: [{"start": "09:00", "end": "17:00"}] for day in ("monday", "tuesday", "wednesday", "thursday", "friday")
    },
    "country": "DE",
}
DEMO_POLICIES = (
    (
        "demo-high-value",
        {
            "name": "High-value customers",
            "order": 10,
            "conditions": {"value_tiers": ["high_value"]},
            "targets": {"first_response": {"hours": 1}, "next_response": {"hours": 4}, "resolution": {"hours": 16}},
            "calendar_id": "demo-office",
            "warn_before_minutes": 30,
            "escalate_to_group": "service-leads",
        },
    ),
    (
        "demo-standard",
        {
            "name": "Everyone else",
            "order": 100,
            "targets": {"first_response": {"hours": 8}, "resolution": {"hours": 40}},
            "calendar_id": "demo-office",
        },
    ),
)
DEMO_ARTICLE = {
    "title": "Descaling the ATM-200 espresso machine",
    "problem": "Coffee runs slowly and the machine shows the descale light.",
    "solution": "Fill the tank with descaler, run the descale programme twice, then rinse with clean water.",
    "product": "ATM-200",
    "tags": ["descale", "maintenance"],
    "status": "published",
}


def _load_demo_support(platform: Platform, api_key: str) -> None:
    """SLA policies, a knowledge-base article, a technician, a contract and a ticket with a visit; idempotent."""
    support = platform.url("support")
    http_json("PUT", f"{support}/v1/sla/calendars/demo-office", DEMO_OFFICE_HOURS, api_key=api_key)
    for policy_id, policy in DEMO_POLICIES:
        http_json("PUT", f"{support}/v1/sla/policies/{policy_id}", policy, api_key=api_key)
    http_json("PUT", f"{support}/v1/kb/articles/demo-descale", DEMO_ARTICLE, api_key=api_key)
    technician = {"name": "Tess Demo", "skills": ["installation", "repair"], "calendar_id": "demo-office"}
    http_json("PUT", f"{support}/v1/technicians/tech-1", technician, api_key=api_key)
    contract = {
        "customer_id": "C-1001",
        "name": "ATM-200 maintenance (demo)",
        "starts_on": f"{datetime.now(UTC).year}-01-01",
        "ends_on": f"{datetime.now(UTC).year + 2}-12-31",
        "products": ["ATM-200"],
    }
    http_json("PUT", f"{support}/v1/service-contracts/demo-contract", contract, api_key=api_key)
    ticket = {
        "customer_id": "C-1001",
        "subject": "Coffee runs slowly",
        "description": "The ATM-200 shows a light and the coffee runs slowly since last week.",
        "channel": "email",
        "category": "product",
        "product": "ATM-200",
        "contract_id": "demo-contract",
    }
    answered, opened = http_json(
        "POST", f"{support}/v1/tickets", ticket, api_key=api_key, headers={"Idempotency-Key": "demo-ticket-1"}
    )
    if answered in (200, 201):
        http_json(
            "POST",
            f"{support}/v1/tickets/{opened['ticket_id']}/visits",
            {"skill": "repair", "duration_minutes": 90, "installed_product": "ATM-200-SN-0001"},
            api_key=api_key,
            headers={"Idempotency-Key": "demo-visit-1"},
        )


def _load_demo_sales(platform: Platform, api_key: str) -> None:
    """Something for each sales view; every call is idempotent, so a restart adds nothing twice."""
    sales = platform.url("sales")
    http_json("POST", f"{sales}/v1/territories", DEMO_TERRITORY, api_key=api_key)
    for key, lead in DEMO_LEADS:
        http_json("POST", f"{sales}/v1/leads", lead, api_key=api_key, headers={"Idempotency-Key": key})
    opportunity = {
        "customer_id": "C-1001",
        "name": "Second machine for Ada Demo",
        "amount": "4800.00",
        "currency": "EUR",
        "owner_id": "rep-1",
        "lines": [{"sku": "ATM-200", "quantity": 2, "unit_price": "2400.00"}],
    }
    http_json(
        "POST", f"{sales}/v1/opportunities", opportunity, api_key=api_key, headers={"Idempotency-Key": "demo-opp-1"}
    )
    call = {
        "kind": "call",
        "title": "Call Ada Demo about the second machine",
        # Tomorrow at 10:00 UTC on the first start: on rep-1's calendar, and overdue on a later one.
        "due_at": (datetime.now(UTC) + timedelta(days=1))
        .replace(hour=10, minute=0, second=0, microsecond=0)
        .isoformat(),
        "customer_id": "C-1001",
        "owner_id": "rep-1",
    }
    http_json("POST", f"{sales}/v1/activities", call, api_key=api_key, headers={"Idempotency-Key": "demo-call-1"})


def cmd_topics(_: argparse.Namespace) -> int:
    bootstrap = _bootstrap()
    asyncio.run(ensure_topics(bootstrap, ALL_TOPICS, kafka_options=kafka_options_from_env()))
    _say(f"topics present on {bootstrap}: {', '.join(ALL_TOPICS)}")
    return 0


def _bootstrap() -> str:
    return os.environ.get("CRM_KAFKA_BOOTSTRAP", f"127.0.0.1:{DEFAULT_EMBEDDED_KAFKA_PORT}")


def embedded_mongo_uri() -> str:
    """Where `crm run` starts its embedded database (CRM_EMBEDDED_MONGO_PORT, 27019 by default)."""
    port = int(os.environ.get("CRM_EMBEDDED_MONGO_PORT", DEFAULT_EMBEDDED_MONGO_PORT))
    return f"mongodb://127.0.0.1:{port}/?replicaSet=secantus"


def cmd_publish(args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaProducer
    from pydantic import ValidationError

    from crm_shared.consumer import describe_failure
    from crm_shared.events import parse_event

    raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    key: str | None = args.key
    if not args.raw:
        try:
            key = key or parse_event(raw).subject
        except ValidationError as exc:
            _say(f"crm publish: {describe_failure(exc, raw)} (--raw publishes it anyway)")
            return 2
    if key is None:
        _say("crm publish: --raw needs --key (the customer id)")
        return 2

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=_bootstrap(), acks="all", **kafka_options_from_env())
        await producer.start()
        try:
            meta = await producer.send_and_wait(args.topic, raw, key=key.encode())
            _say(json.dumps({"topic": args.topic, "partition": meta.partition, "offset": meta.offset, "key": key}))
        finally:
            await producer.stop()

    asyncio.run(publish())
    return 0


def cmd_deadletters(args: argparse.Namespace) -> int:
    """Print the dead-letter records, oldest first, one JSON object a line (the original bytes left out)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    async def read() -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=_bootstrap(), enable_auto_commit=False, **kafka_options_from_env()
        )
        await consumer.start()
        try:
            await consumer.topics()
            known = consumer.partitions_for_topic(Topic.DEADLETTER) or set()
            partitions = [TopicPartition(Topic.DEADLETTER, p) for p in sorted(known)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            letters: list[dict[str, object]] = []
            # Read until the topic stays quiet: the embedded broker's end offsets cannot be trusted.
            quiet_polls = 0
            while quiet_polls < DEADLETTER_QUIET_POLLS:
                batch = await consumer.getmany(timeout_ms=500)
                quiet_polls = 0 if batch else quiet_polls + 1
                for records in batch.values():
                    for record in records:
                        letter = json.loads(record.value)
                        letter.pop("original_value_base64", None)
                        letters.append(letter)
            letters.sort(key=lambda letter: str(letter.get("failed_at")))
            for letter in letters[-args.limit :]:
                _say(json.dumps(letter, ensure_ascii=False))
        finally:
            await consumer.stop()

    asyncio.run(read())
    return 0


def _admin_call(args: argparse.Namespace, method: str, path: str, body: object | None = None) -> tuple[int, object]:
    key = _admin_key(args.data_dir)
    if key is None:
        raise SystemExit("crm: no admin key: set CRM_API_KEY (crm run keeps its development key in var/admin-key)")
    base = args.url or f"http://127.0.0.1:{service_port(args.service)}"
    try:
        return http_json(method, f"{base.rstrip('/')}{path}", body, api_key=key)
    except OSError as exc:
        raise SystemExit(f"crm: cannot reach {base}: {exc}") from exc


def _answer(status: int, body: object, ok: int = 200) -> int:
    _say(json.dumps(body, indent=2, ensure_ascii=False))
    return 0 if status == ok else 1


def cmd_keys(args: argparse.Namespace) -> int:
    if args.action == "create":
        body = {
            "name": args.name,
            "scopes": args.scope,
            "event_types": args.event_type or None,
            "read_only": args.read_only,
            "rate_limit": args.rate_limit,
            "expires_in_days": args.expires_in_days,
        }
        status, answer = _admin_call(args, "POST", "/v1/admin/keys", body)
        if status == 201 and isinstance(answer, dict):
            _say(f"API key (shown once, keep it now): {answer['key']}")
            _say(json.dumps(answer["record"], indent=2))
            return 0
        return _answer(status, answer)
    if args.action == "list":
        return _answer(*_admin_call(args, "GET", "/v1/admin/keys"))
    if args.key_id is None:
        raise SystemExit(f"crm keys {args.action}: give the key id")
    if args.action == "revoke":
        return _answer(*_admin_call(args, "DELETE", f"/v1/admin/keys/{args.key_id}"))
    status, answer = _admin_call(
        args, "POST", f"/v1/admin/keys/{args.key_id}/rotate", {"grace_seconds": args.grace_seconds}
    )
    if status == 201 and isinstance(answer, dict):
        _say(f"new API key (shown once; the old one works for {args.grace_seconds} s more): {answer['key']}")
        return 0
    return _answer(status, answer)


def cmd_audit(args: argparse.Namespace) -> int:
    query = f"?limit={args.limit}" + (f"&outcome={args.outcome}" if args.outcome else "")
    status, answer = _admin_call(args, "GET", f"/v1/admin/audit{query}")
    if status != 200 or not isinstance(answer, dict):
        return _answer(status, answer)
    for record in reversed(answer["items"]):
        _say(json.dumps(record, ensure_ascii=False))
    return 0


def _admin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--service", choices=list(SERVICES), default="customer", help="whose admin API (default customer)"
    )
    parser.add_argument("--url", help="the service's base URL, instead of --service on this host")
    parser.add_argument("--data-dir", default=os.environ.get("CRM_DATA_DIR", "var"), help="where crm run keeps its key")


def cmd_docs(args: argparse.Namespace) -> int:
    from crm_shared.contract_docs import main as docs_main

    return docs_main(["--check"] if args.check else [])


def cmd_service_tasks(args: argparse.Namespace) -> int:
    """A service's operator tasks live in its own package (crm_<service>.cli); it must be installed here."""
    service = args.command
    try:
        tasks = importlib.import_module(f"crm_{service}.cli")
    except ImportError as exc:
        _say(f"crm {service}: the {service} service is not installed here ({exc}): pip install ./services/{service}")
        return 2
    # Like the other commands, the tasks find what `crm run` started unless told otherwise.
    os.environ.setdefault("CRM_MONGO_URI", embedded_mongo_uri())
    match_key = Path(os.environ.get("CRM_DATA_DIR", "var")) / MATCH_KEY_FILE
    if "CRM_MATCH_KEY_SECRET" not in os.environ and match_key.exists():
        os.environ["CRM_MATCH_KEY_SECRET"] = match_key.read_text().strip()
    status: int = tasks.main(args.task_args)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm", description="Operate the CRM platform.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start everything (embedded servers unless CRM_KAFKA_BOOTSTRAP/CRM_MONGO_URI)")
    run.add_argument("--data-dir", default=os.environ.get("CRM_DATA_DIR", "var"), help="where data and logs go")
    run.add_argument("--no-demo", action="store_true", help="do not load the demo customers")
    run.add_argument(
        "--no-console",
        action="store_true",
        help=f"do not start the web console (CRM_CONSOLE_PORT, default {CONSOLE_PORT})",
    )
    run.add_argument(
        "--instances",
        type=_instance_count,
        default=1,
        metavar="N",
        help=f"processes per service, 1 to {MAX_INSTANCES} (default 1); instance k listens on the service's port "
        "+ 10*(k-1): sales on 8002, 8012, ...",
    )
    run.set_defaults(func=cmd_run)
    topics = sub.add_parser("topics", help="create the contract's topics on CRM_KAFKA_BOOTSTRAP")
    topics.set_defaults(func=cmd_topics)
    publish = sub.add_parser("publish", help="publish a CloudEvent JSON to a topic")
    publish.add_argument("topic", choices=ALL_TOPICS)
    publish.add_argument("file", help="a JSON file, or - for stdin")
    publish.add_argument("--raw", action="store_true", help="publish the bytes unchecked (to try the dead-letter path)")
    publish.add_argument("--key", help="the Kafka key (the customer id); by default the event's subject")
    publish.set_defaults(func=cmd_publish)
    deadletters = sub.add_parser("deadletters", help="print the records the services rejected, with the reasons")
    deadletters.add_argument("--limit", type=int, default=50, help="the newest N (default 50)")
    deadletters.set_defaults(func=cmd_deadletters)
    keys = sub.add_parser("keys", help="issue, list, rotate and revoke API keys (CRM_API_KEY is the admin key)")
    keys.add_argument("action", choices=["create", "list", "rotate", "revoke"])
    keys.add_argument("key_id", nargs="?", help="the key (rotate, revoke)")
    keys.add_argument("--name", default="channel-system", help="what the key is for (create)")
    keys.add_argument("--scope", action="append", default=[], help="a scope it may use; repeat (create)")
    keys.add_argument("--event-type", action="append", help="an event type it may submit; repeat (create)")
    keys.add_argument("--read-only", action="store_true", help="refuse every scope but :read ones (create)")
    keys.add_argument("--rate-limit", help="its own limit, e.g. 500/second (create)")
    keys.add_argument("--expires-in-days", type=int, default=90, help="default 90 (create)")
    keys.add_argument("--grace-seconds", type=int, default=86400, help="how long the old key works (rotate)")
    _admin_options(keys)
    keys.set_defaults(func=cmd_keys)
    audit = sub.add_parser("audit", help="print a service's audit log, oldest first")
    audit.add_argument("--outcome", choices=["allowed", "denied", "failed"])
    audit.add_argument("--limit", type=int, default=50)
    _admin_options(audit)
    audit.set_defaults(func=cmd_audit)
    customer = sub.add_parser(
        "customer", help="the customer service's tasks (publish-match-keys): crm customer --help", add_help=False
    )
    customer.set_defaults(func=cmd_service_tasks)
    scoring = sub.add_parser("scoring", help="the scoring service's tasks: crm scoring --help", add_help=False)
    scoring.set_defaults(func=cmd_service_tasks)
    sales = sub.add_parser("sales", help="the sales service's tasks (import-leads): crm sales --help", add_help=False)
    sales.set_defaults(func=cmd_service_tasks)
    docs = sub.add_parser("docs", help="regenerate docs/ from the code")
    docs.add_argument("--check", action="store_true", help="fail if docs/ is not current")
    docs.set_defaults(func=cmd_docs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # A task owned by a service package parses its own options.
    args, task_args = parser.parse_known_args(argv)
    if task_args and args.command not in ("customer", "scoring", "sales"):
        parser.error(f"unrecognized arguments: {' '.join(task_args)}")
    args.task_args = task_args
    command: Callable[[argparse.Namespace], int] = args.func
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
