"""What each service may do on Kafka and MongoDB, computed from what its code consumes and publishes.

deploy/kafka/acls.txt is this table as the compose job `kafka-acls` applies it. Regenerate it with
    python -m crm_shared.acls > deploy/kafka/acls.txt
tests/unit/shared/test_deployment.py fails when it is stale.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crm_shared.settings import SERVICES
from crm_shared.topics import ALL_TOPICS, Topic

if TYPE_CHECKING:
    from crm_shared.service import Runtime

TOPICS_PRINCIPAL = "crm-topics"
"""The user of the job that creates the topics (`crm topics`)."""

MONGO_ROLE = "readWrite"


@dataclass(frozen=True)
class ServiceAccess:
    """One service's rights: the Kafka and MongoDB user are both `principal`."""

    service: str
    principal: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    groups: tuple[str, ...]
    database: str


@dataclass(frozen=True)
class AclLine:
    """One allow rule of deploy/kafka/acls.txt: `principal` may do `operations` on each named resource."""

    principal: str
    resource: str
    operations: tuple[str, ...]
    names: tuple[str, ...]

    def render(self) -> str:
        return " ".join((self.principal, self.resource, ",".join(self.operations), *self.names))

    @classmethod
    def parse(cls, line: str) -> AclLine:
        principal, resource, operations, *names = line.split()
        return cls(principal, resource, tuple(operations.split(",")), tuple(names))


def principal_of(service: str) -> str:
    return f"crm-{service}"


def access_of(runtime: Runtime) -> ServiceAccess:
    """A service's rights, from the subscriptions and publishers declared on its runtime."""
    settings = runtime.settings
    reads = {topic for subscription in runtime.subscriptions for topic in subscription.topics}
    groups = {subscription.group_id for subscription in runtime.subscriptions}
    writes = {str(getattr(publisher, "topic", "")) for publisher in runtime.spec.publishers} - {""}
    # Every service writes dead letters, and tails and publishes API key records (security.keys.KeyFeed);
    # the feed reads without a consumer group, so it needs no group right.
    reads.add(Topic.SECURITY_KEYS)
    writes.update((Topic.DEADLETTER, Topic.SECURITY_KEYS))
    return ServiceAccess(
        service=settings.service_name,
        principal=principal_of(settings.service_name),
        reads=tuple(sorted(str(t) for t in reads)),
        writes=tuple(sorted(str(t) for t in writes)),
        groups=tuple(sorted(groups)),
        database=settings.database_name,
    )


def platform_access(services: Iterable[str] = SERVICES) -> list[ServiceAccess]:
    """Every service's rights, from its app as `create_service()` composes it (no connection is made)."""
    found: list[ServiceAccess] = []
    for service in services:
        app = importlib.import_module(f"crm_{service}.app").create_service()
        found.append(access_of(app.state.runtime))
    return found


def acl_lines(accesses: Iterable[ServiceAccess], topics: Iterable[str] = ALL_TOPICS) -> list[AclLine]:
    """The Kafka allow rules: each service's topics and groups, and topic creation for the topics job."""
    lines: list[AclLine] = []
    for access in accesses:
        lines.append(AclLine(access.principal, "topic", ("Read", "Describe"), access.reads))
        lines.append(AclLine(access.principal, "topic", ("Write", "Describe"), access.writes))
        if access.groups:
            lines.append(AclLine(access.principal, "group", ("Read",), access.groups))
    lines.append(AclLine(TOPICS_PRINCIPAL, "topic", ("Create", "Describe"), tuple(sorted(topics))))
    return lines


HEADER = """\
# Kafka ACLs (allow rules, literal names) applied by deploy/kafka/acls.sh in the compose job kafka-acls.
# Generated from the services' code: python -m crm_shared.acls > deploy/kafka/acls.txt
# principal resource operations name...
"""


def render(lines: Iterable[AclLine]) -> str:
    return HEADER + "".join(f"{line.render()}\n" for line in lines)


def parse(text: str) -> list[AclLine]:
    return [AclLine.parse(line) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def main() -> int:
    sys.stdout.write(render(acl_lines(platform_access())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
