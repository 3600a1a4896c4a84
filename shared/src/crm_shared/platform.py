"""Starts the five services as processes, the way production runs them, and stops them cleanly.

Used by `crm run` and by the end-to-end tests, so both start the platform the same way. Each service may run as
several instances (`crm run --instances N`), each a process on a port of its own; the fault-injection tests kill
and restart them one by one.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crm_shared.embedded import EmbeddedError, ManagedProcess, free_port
from crm_shared.settings import SERVICES

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the supervisor dies, so no service is left orphaned."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def service_port(name: str, env: Mapping[str, str] = os.environ) -> int:
    return int(env.get(f"CRM_{name.upper()}_PORT", SERVICES[name]))


CONSOLE = "console"
"""The web console's process name: a deployable beside the five services, with no data of its own."""
CONSOLE_PORT = 8000

INSTANCE_PORT_STEP = 10
"""Instance k of a service listens on its port + 10*(k-1) by default (sales: 8002, 8012, 8022, ...)."""

PortScheme = Literal["offset", "free"]


def instance_name(service: str, instance: int = 1) -> str:
    """`sales` for instance 1, `sales-2` for instance 2: the process's name and its log file's."""
    return service if instance == 1 else f"{service}-{instance}"


def instance_ports(
    ports: Mapping[str, int],
    instances: int,
    further: Mapping[str, Sequence[int]] | PortScheme = "offset",
) -> dict[str, list[int]]:
    """Every instance's port, by service. Instance 1 keeps its port in `ports`; instances 2..N take theirs from
    `further`: "offset" (port + 10*(k-1)), "free" (free ports, for tests) or explicit ports of instances 2..N."""
    if instances < 1:
        raise ValueError(f"instances must be 1 or more, got {instances}")
    resolved: dict[str, list[int]] = {}
    taken = set(ports.values())
    for service, port in ports.items():
        if further == "offset":
            extra = [port + INSTANCE_PORT_STEP * k for k in range(1, instances)]
        elif further == "free":
            extra = [_free_port_but(taken) for _ in range(1, instances)]
        else:
            extra = list(further.get(service, ()))
            if len(extra) != instances - 1:
                raise ValueError(f"{service}: {instances - 1} further port(s) expected, got {extra}")
        resolved[service] = [port, *extra]
    every = [port for service_ports in resolved.values() for port in service_ports]
    clashing = sorted({port for port in every if every.count(port) > 1})
    if clashing:
        raise ValueError(f"two instances would share port(s) {clashing}: {resolved}")
    out_of_range = sorted(port for port in every if not 1 <= port <= 65535)
    if out_of_range:
        raise ValueError(f"port(s) out of range: {out_of_range}")
    return resolved


def _free_port_but(taken: set[int]) -> int:
    """A free port none of `taken`, then taken too: the kernel may hand out a port just freed again."""
    port = free_port()
    while port in taken:
        port = free_port()
    taken.add(port)
    return port


def service_env(
    name: str, kafka_bootstrap: str, mongo_uri: str, port: int, base: Mapping[str, str], *, instance: int = 1
) -> dict[str, str]:
    return {
        **base,
        "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CRM_MONGO_URI": mongo_uri,
        f"CRM_{name.upper()}_PORT": str(port),
        "CRM_INSTANCE": str(instance),
        "PYTHONUNBUFFERED": "1",
    }


def http_json(
    method: str,
    url: str,
    body: Any | None = None,
    timeout: float = 10,
    *,
    api_key: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **({"X-API-Key": api_key} if api_key else {}), **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@dataclass(frozen=True)
class Instance:
    """One process of a service."""

    service: str
    number: int
    port: int

    @property
    def name(self) -> str:
        return instance_name(self.service, self.number)


@dataclass
class Platform:
    """The services of `ports` as processes, `instances` of each: every instance in its service's consumer groups
    and on its database, so they share the partitions, and any of them answers the REST API."""

    kafka_bootstrap: str
    mongo_uri: str
    ports: dict[str, int]
    log_dir: Path
    host: str = "127.0.0.1"
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    instances: int = 1
    further_ports: Mapping[str, Sequence[int]] | PortScheme = "offset"
    """Where instances 2..N listen: see `instance_ports`."""
    console_port: int | None = None
    """Start the web console too, on this port, once the services are ready: it calls instance 1 of each."""
    _instances: dict[str, Instance] = field(init=False, repr=False)
    _env: dict[str, str] = field(init=False, repr=False, default_factory=dict)
    _spawner: ThreadPoolExecutor | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._instances = {
            instance.name: instance
            for service, ports in instance_ports(self.ports, self.instances, self.further_ports).items()
            for instance in (Instance(service, k, port) for k, port in enumerate(ports, start=1))
        }
        if self.console_port is not None:
            if any(i.port == self.console_port for i in self._instances.values()):
                raise ValueError(f"the console's port {self.console_port} is a service's")
            self._instances[CONSOLE] = Instance(CONSOLE, 1, self.console_port)

    def url(self, service: str, instance: int = 1) -> str:
        return f"http://{self.host}:{self._instance(instance_name(service, instance)).port}"

    @property
    def console_url(self) -> str:
        if self.console_port is None:
            raise KeyError("this platform has no console (console_port is None)")
        return self._url(CONSOLE)

    def urls(self, service: str) -> list[str]:
        return [self._url(name) for name in self.instance_names(service)]

    def instance_names(self, service: str) -> list[str]:
        """`["sales", "sales-2", ...]`: the names `process`, `kill` and `restart` take."""
        if service not in self.ports:
            raise KeyError(f"no service {service!r}; there are {', '.join(self.ports)}")
        return [instance_name(service, k) for k in range(1, self.instances + 1)]

    def process(self, name: str) -> subprocess.Popen[bytes]:
        """The running (or exited) process of instance `name`, e.g. "sales-2"."""
        self._instance(name)
        if name not in self.processes:
            raise KeyError(f"{name} has not been started")
        return self.processes[name].process

    def start(self, env: Mapping[str, str] = os.environ, ready_timeout: float = 90) -> None:
        self._env = dict(env)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        services = [name for name in self._instances if name != CONSOLE]
        for name in services:
            self._spawn(name)
        self.wait_ready(ready_timeout, services)
        if self.console_port is not None:
            self._env.update({f"CRM_CONSOLE_{service.upper()}_URL": self.url(service) for service in self.ports})
            self._spawn(CONSOLE)
            self.wait_ready(ready_timeout, [CONSOLE])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to instance `name`'s process group. After SIGKILL it returns once the process is gone, so
        `dead_services()` names it at once; other signals (SIGTERM, SIGSTOP, ...) return at once."""
        process = self.process(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        if sig == signal.SIGKILL:
            process.wait(10)

    def restart(self, name: str, ready_timeout: float = 60) -> None:
        """Start instance `name` again, with the env `start` had, on its port and appending to its log, and wait
        until it is ready. One still running is stopped first (SIGTERM, as `stop` does)."""
        self.process(name)
        self.processes.pop(name).stop(timeout=30)
        self._spawn(name)
        self.wait_ready(ready_timeout, [name])

    def wait_ready(self, timeout: float, names: Iterable[str] | None = None) -> None:
        """Until every instance (or those of `names`) answers `/readyz` with 200."""
        deadline = time.monotonic() + timeout
        pending = set(self._instances if names is None else names)
        while pending:
            for name in sorted(pending):
                proc = self.process(name)
                if proc.poll() is not None:
                    raise EmbeddedError(
                        f"service {name} exited with code {proc.returncode}; see {self.log_dir / name}.log"
                    )
                with contextlib.suppress(OSError, ValueError):
                    status, _ = http_json("GET", f"{self._url(name)}/readyz", timeout=2)
                    if status == 200:
                        pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise EmbeddedError(f"not ready after {timeout}s: {', '.join(sorted(pending))}")
            if pending:
                time.sleep(0.3)

    def dead_services(self) -> list[str]:
        """The instances whose process has exited, by name ("sales-2")."""
        return [name for name, p in self.processes.items() if p.process.poll() is not None]

    def stop(self) -> None:
        """SIGTERM to every instance at once (each drains and flushes its outbox), then wait."""
        for proc in self.processes.values():
            if proc.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGTERM)
        for proc in self.processes.values():
            proc.stop(timeout=30)
        self.processes.clear()
        if self._spawner is not None:
            self._spawner.shutdown()
            self._spawner = None

    def _instance(self, name: str) -> Instance:
        try:
            return self._instances[name]
        except KeyError:
            raise KeyError(f"no instance {name!r}; there are {', '.join(self._instances)}") from None

    def _url(self, name: str) -> str:
        return f"http://{self.host}:{self._instance(name).port}"

    def _spawn(self, name: str) -> None:
        instance = self._instance(name)
        log_path = self.log_dir / f"{name}.log"
        env = service_env(
            instance.service, self.kafka_bootstrap, self.mongo_uri, instance.port, self._env, instance=instance.number
        )
        # The parent-death signal fires when the thread that started the child ends, not the process: a restart
        # called from a short-lived thread (asyncio.to_thread) would take its child down with it. One thread of
        # the platform's own starts them all.
        if self._spawner is None:
            self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crm-platform")
        with open(log_path, "ab") as log_file:
            process = self._spawner.submit(
                subprocess.Popen,
                [sys.executable, "-m", f"crm_{instance.service}"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            ).result()
        self.processes[name] = ManagedProcess(name, process, log_path)
