"""The console in headless Chromium, against the platform `crm run` starts: its own data directory, free ports,
the development identity and the demo data, exactly as a newcomer gets them.

Chromium is Debian's (`apt-get install chromium`; `.ci/run` installs it), driven by Playwright through its
executable path: Playwright cannot download its own browsers here. Without it these tests are skipped, and the
reason says how to install it. Screenshots of every page go to var/test-output/console/ for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crm_shared.embedded import free_port
from crm_shared.settings import SERVICES

CHROMIUM = os.environ.get("CRM_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[3] / "var" / "test-output" / "console"
# As the environment notes say: without the background-networking flags Chromium keeps dialling out of this
# machine's closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

HAVE_CHROMIUM = Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)
NO_CHROMIUM = (
    f"browser tests skipped: no Chromium at {CHROMIUM}. Install Debian's package "
    "(sudo apt-get install chromium) or point CRM_TEST_CHROMIUM at a Chromium binary."
)


@dataclass(frozen=True)
class RunningCrm:
    """`crm run` in a process of its own, with what it printed and made."""

    data_dir: Path
    console: str
    urls: dict[str, str]
    kafka_bootstrap: str
    admin_key: str
    password: str
    output: Path

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.admin_key}


# The suite's own credentials (tests/conftest.py) would make `crm run` trust the suite's token secret instead of
# making its development identity: a newcomer's shell has none of them.
_SUITE_ONLY = ("CRM_AUTH_", "CRM_MATCH_KEY_SECRET", "CRM_API_KEY", "CRM_KAFKA_BOOTSTRAP", "CRM_MONGO_URI")


@pytest.fixture(scope="package")
def crm_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCrm]:
    data_dir = tmp_path_factory.mktemp("crm-run")
    ports = {f"CRM_{name.upper()}_PORT": str(free_port()) for name in SERVICES}
    console_port = free_port()
    kafka_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SUITE_ONLY)}
    env.update(
        ports,
        CRM_CONSOLE_PORT=str(console_port),
        CRM_EMBEDDED_KAFKA_PORT=str(kafka_port),
        CRM_EMBEDDED_MONGO_PORT=str(free_port()),
        CRM_MARKETING_HOLDOUT_SHARE="0",
    )
    output = data_dir / "crm-run.out"
    crm = Path(sys.executable).with_name("crm")
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [str(crm), "run", "--data-dir", str(data_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while b"CRM platform is up" not in output.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"crm run did not come up:\n{output.read_text()[-3000:]}")
            time.sleep(0.5)
        printed = output.read_text()
        assert f"http://127.0.0.1:{console_port}" in printed, printed
        yield RunningCrm(
            data_dir=data_dir,
            console=f"http://127.0.0.1:{console_port}",
            urls={name: f"http://127.0.0.1:{ports[f'CRM_{name.upper()}_PORT']}" for name in SERVICES},
            kafka_bootstrap=f"127.0.0.1:{kafka_port}",
            admin_key=(data_dir / "admin-key").read_text().strip(),
            password=(data_dir / "console" / "password").read_text().strip(),
            output=output,
        )
    finally:
        # Ctrl-C, as a person stops it: every service drains and the servers stop.
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        logs = data_dir / "logs"
        if logs.is_dir():
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(logs / "console.log", SCREENSHOTS / "console.log")


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        await launched.close()


@pytest.fixture
async def laptop(browser: Any) -> AsyncIterator[Any]:
    """A fresh browser context (no cookies) at a laptop's size."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Script errors and CSP refusals; an answer's own status (a refused sign-in's 401) is the tests' business.
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.script_errors = errors
    yield page
    await context.close()


@pytest.fixture
async def phone(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context.set_default_timeout(20_000)
    page = await context.new_page()
    yield page
    await context.close()


async def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def sign_in(page: Any, crm: RunningCrm, username: str, next_path: str = "/") -> None:
    await page.goto(f"{crm.console}/sign-in?next={next_path}")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", crm.password)
    await page.click("form[action='/sign-in'] button[type=submit]")
    await page.wait_for_url(f"{crm.console}{next_path}*")
