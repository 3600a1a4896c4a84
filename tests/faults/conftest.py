"""The fault suite's platform: embedded servers of its own (this suite kills them), every service as processes,
once with one instance of each and once with two; the summary table printed at the end of the run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from faults.rig import SUMMARY, Rig, summary_table


@pytest.fixture(scope="session", params=[1, 2], ids=["one-instance", "two-instances"])
def rig_servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    rig = Rig(tmp_path_factory.mktemp(f"faults-{request.param}"), instances=request.param)
    try:
        rig.start()
        yield rig
    finally:
        rig.stop()


@pytest.fixture(scope="session")
async def rig(rig_servers: Rig) -> AsyncIterator[Rig]:
    await rig_servers.connect()
    yield rig_servers
    await rig_servers.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not SUMMARY:
        return
    lines = summary_table(SUMMARY)
    terminalreporter.section("fault injection: every service's state against the oracle")
    for line in lines:
        terminalreporter.write_line(line)
    out = Path("var")
    out.mkdir(exist_ok=True)
    (out / "faults-summary.txt").write_text("\n".join(lines) + "\n")
