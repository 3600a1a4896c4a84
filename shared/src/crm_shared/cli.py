"""`crm`: the operators' command line.

crm run       start the broker and database (embedded unless CRM_KAFKA_BOOTSTRAP / CRM_MONGO_URI
              name real ones), create the topics, start the five services, load demo data
crm topics    create the topics of the contract on CRM_KAFKA_BOOTSTRAP (idempotent)
crm publish   publish a CloudEvent JSON file (or stdin) to a topic, keyed by its subject
crm deadletters  print the records the services rejected, with the reasons
crm scoring   the scoring service's tasks (backtest, ...): crm scoring --help
crm docs      regenerate docs/ (JSON Schemas and AsyncAPI); --check fails when they are stale
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from crm_shared.embedded import EmbeddedError, EmbeddedServers, ensure_topics
from crm_shared.platform import Platform, http_json, service_port
from crm_shared.settings import SERVICES
from crm_shared.topics import ALL_TOPICS, Topic

DEFAULT_EMBEDDED_KAFKA_PORT = 19092
DEFAULT_EMBEDDED_MONGO_PORT = 27019
DEADLETTER_QUIET_POLLS = 3


def _say(message: str) -> None:
    print(message, flush=True)


def _wait_for_stop(platform: Platform) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        dead = platform.dead_services()
        if dead:
            _say(f"service(s) stopped unexpectedly: {', '.join(dead)}; see {platform.log_dir}/<service>.log")
            return


def cmd_run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
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
        asyncio.run(ensure_topics(kafka, ALL_TOPICS))
        _say("starting the five services ...")
        platform = Platform(kafka, mongo, {name: service_port(name) for name in SERVICES}, data_dir / "logs")
        platform.start()
        if not args.no_demo:
            load_demo_data(platform)
        _print_addresses(platform)
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


def _print_addresses(platform: Platform) -> None:
    _say("")
    _say("CRM platform is up. Ctrl-C stops everything.")
    _say(f"  Kafka bootstrap : {platform.kafka_bootstrap}")
    _say(f"  MongoDB URI     : {platform.mongo_uri}")
    for name in SERVICES:
        _say(f"  {name:<16}: {platform.url(name)}   (API docs {platform.url(name)}/docs)")
    _say(f"  logs            : {platform.log_dir}")
    _say("")
    _say("Try the demo customer C-1001:")
    _say(f"  curl -s {platform.url('scoring')}/v1/customers/C-1001/scores")
    _say(f"  curl -s {platform.url('marketing')}/v1/customers/C-1001/enrolments")
    _say(f"  curl -s {platform.url('customer')}/v1/customers/C-1001/timeline")


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


def load_demo_data(platform: Platform) -> None:
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
        )
    # Marketing learns consents from crm.customer.events; give it that head start.
    time.sleep(2)
    for customer_id, order_id, total in DEMO_ORDERS:
        http_json(
            "POST",
            f"{platform.url('sales')}/v1/orders",
            {"order_id": order_id, "customer_id": customer_id, "currency": "EUR", "total": total},
        )
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
        )
    _say("demo data loaded: customers C-1001, C-1002, C-1003")


def cmd_topics(_: argparse.Namespace) -> int:
    bootstrap = _bootstrap()
    asyncio.run(ensure_topics(bootstrap, ALL_TOPICS))
    _say(f"topics present on {bootstrap}: {', '.join(ALL_TOPICS)}")
    return 0


def _bootstrap() -> str:
    return os.environ.get("CRM_KAFKA_BOOTSTRAP", f"127.0.0.1:{DEFAULT_EMBEDDED_KAFKA_PORT}")


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
        producer = AIOKafkaProducer(bootstrap_servers=_bootstrap(), acks="all")
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
        consumer = AIOKafkaConsumer(bootstrap_servers=_bootstrap(), enable_auto_commit=False)
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


def cmd_docs(args: argparse.Namespace) -> int:
    from crm_shared.contract_docs import main as docs_main

    return docs_main(["--check"] if args.check else [])


def cmd_scoring(args: argparse.Namespace) -> int:
    """Scoring's operator tasks live in its own package (crm_scoring.cli); it must be installed here."""
    try:
        tasks = importlib.import_module("crm_scoring.cli")
    except ImportError as exc:
        _say(f"crm scoring: the scoring service is not installed here ({exc}): pip install ./services/scoring")
        return 2
    status: int = tasks.main(args.task_args)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm", description="Operate the CRM platform.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start everything (embedded servers unless CRM_KAFKA_BOOTSTRAP/CRM_MONGO_URI)")
    run.add_argument("--data-dir", default=os.environ.get("CRM_DATA_DIR", "var"), help="where data and logs go")
    run.add_argument("--no-demo", action="store_true", help="do not load the demo customers")
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
    scoring = sub.add_parser("scoring", help="the scoring service's tasks: crm scoring --help", add_help=False)
    scoring.set_defaults(func=cmd_scoring)
    docs = sub.add_parser("docs", help="regenerate docs/ from the code")
    docs.add_argument("--check", action="store_true", help="fail if docs/ is not current")
    docs.set_defaults(func=cmd_docs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # A task owned by a service package parses its own options.
    args, task_args = parser.parse_known_args(argv)
    if task_args and args.command != "scoring":
        parser.error(f"unrecognized arguments: {' '.join(task_args)}")
    args.task_args = task_args
    command: Callable[[argparse.Namespace], int] = args.func
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
