"""Two instances of one service, each a process on a port of its own: both answer, and one killed comes back."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from crm_shared.embedded import free_port
from crm_shared.platform import Platform

from helpers import ADMIN_HEADERS, broker_of_its_own, eventually


@pytest.fixture(scope="module")
def scoring_twice(backend: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Two scoring instances on a broker of their own (so their group takes no partition from the session's
    scoring) and on a database of their own."""
    folder = tmp_path_factory.mktemp("instances")
    with broker_of_its_own(folder / "broker") as broker:
        running = Platform(
            broker.kafka_bootstrap,
            backend.mongo_uri,
            {"scoring": free_port()},
            folder / "logs",
            instances=2,
            further_ports="free",
        )
        try:
            running.start(env={**os.environ, "CRM_SCORING_DB": f"crm_scoring_{uuid.uuid4().hex[:8]}"})
            yield running
        finally:
            running.stop()


async def whoami(url: str) -> int:
    async with httpx.AsyncClient(timeout=5, headers=ADMIN_HEADERS) as http:
        return (await http.get(f"{url}/v1/auth/whoami")).status_code


def logged_instances(log: Path) -> set[int | None]:
    return {json.loads(line).get("instance") for line in log.read_text().splitlines() if line.startswith("{")}


async def test_both_instances_answer_and_one_killed_is_restarted(scoring_twice: Platform) -> None:
    platform = scoring_twice
    assert platform.instance_names("scoring") == ["scoring", "scoring-2"]
    first, second = platform.urls("scoring")
    assert first != second
    async with httpx.AsyncClient(timeout=5) as anonymous:
        for url in (first, second):
            assert (await anonymous.get(f"{url}/readyz")).status_code == 200
    assert [await whoami(url) for url in (first, second)] == [200, 200]
    logged = [logged_instances(platform.log_dir / f"{name}.log") for name in platform.instance_names("scoring")]
    assert 1 in logged[0] and 2 not in logged[0]
    assert 2 in logged[1] and 1 not in logged[1]
    await eventually(
        lambda: _both_in_the_group(platform.kafka_bootstrap),
        timeout=20,
        what="both instances in the group crm-scoring, by client id",
    )

    platform.kill("scoring-2")
    assert platform.dead_services() == ["scoring-2"]
    assert await whoami(first) == 200

    await asyncio.to_thread(platform.restart, "scoring-2")
    assert platform.dead_services() == []
    assert await whoami(second) == 200


async def _both_in_the_group(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups(["crm-scoring"])
    finally:
        await admin.close()
    (group,) = described.to_object()["groups"]
    # A member id is the member's client id, a dash and a UUID.
    clients = {member["member_id"].rsplit("-", 5)[0] for member in group["members"]}
    return clients == {"crm-scoring", "crm-scoring-2"}
