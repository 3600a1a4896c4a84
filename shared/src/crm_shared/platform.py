"""Starts the five services as processes, the way production runs them, and stops them cleanly.

Used by `crm run` and by the end-to-end tests, so both start the platform the same way.
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm_shared.embedded import EmbeddedError, ManagedProcess
from crm_shared.settings import SERVICES

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the supervisor dies, so no service is left orphaned."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def service_port(name: str, env: Mapping[str, str] = os.environ) -> int:
    return int(env.get(f"CRM_{name.upper()}_PORT", SERVICES[name]))


def service_env(name: str, kafka_bootstrap: str, mongo_uri: str, port: int, base: Mapping[str, str]) -> dict[str, str]:
    return {
        **base,
        "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CRM_MONGO_URI": mongo_uri,
        f"CRM_{name.upper()}_PORT": str(port),
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


@dataclass
class Platform:
    kafka_bootstrap: str
    mongo_uri: str
    ports: dict[str, int]
    log_dir: Path
    host: str = "127.0.0.1"
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"

    def start(self, env: Mapping[str, str] = os.environ, ready_timeout: float = 90) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name, port in self.ports.items():
            log_file = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
            process = subprocess.Popen(
                [sys.executable, "-m", f"crm_{name}"],
                env=service_env(name, self.kafka_bootstrap, self.mongo_uri, port, env),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            log_file.close()
            self.processes[name] = ManagedProcess(name, process, self.log_dir / f"{name}.log")
        self.wait_ready(ready_timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.ports)
        while pending:
            for name in sorted(pending):
                proc = self.processes[name].process
                if proc.poll() is not None:
                    raise EmbeddedError(
                        f"service {name} exited with code {proc.returncode}; see {self.log_dir / name}.log"
                    )
                with contextlib.suppress(OSError, ValueError):
                    status, _ = http_json("GET", f"{self.url(name)}/readyz", timeout=2)
                    if status == 200:
                        pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise EmbeddedError(f"not ready after {timeout}s: {', '.join(sorted(pending))}")
            if pending:
                time.sleep(0.3)

    def dead_services(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.process.poll() is not None]

    def stop(self) -> None:
        """SIGTERM to every service at once (each drains and flushes its outbox), then wait."""
        for proc in self.processes.values():
            if proc.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGTERM)
        for proc in self.processes.values():
            proc.stop(timeout=30)
        self.processes.clear()
