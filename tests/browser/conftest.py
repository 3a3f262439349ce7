"""A real browser for the console's tests: Playwright for Python driving the system Chromium.

Playwright cannot download its own browser here (its CDN is not reachable), and no PyPI
package ships a Chromium it can drive, so the tests use Debian's ``chromium`` package
(``.ci/run`` installs it) through ``executable_path``. A missing browser fails the tests
(never a skip): ``IPTO_CHROMIUM`` may name another binary.

Playwright's sync API runs in a worker thread (``trio.to_thread``) while the engine under
test keeps serving on the Trio thread; the scenario may call back into Trio with
``trio.from_thread.run``. trio-asyncio (which the engine imports) makes every new asyncio
loop a Trio one; in that thread Playwright gets a plain asyncio loop again (trio-asyncio
keeps ``set_event_loop_policy`` per thread outside Trio).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

CHROMIUM_ARGS = [
    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    wanted = os.environ.get("IPTO_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    if not Path(wanted).is_file():
        pytest.fail(f"no Chromium at {wanted}: the console's browser tests need Debian's chromium (apt-get install chromium)")
    return wanted


@dataclass
class BrowserLog:
    """What the page said and did that a test may want to check afterwards."""

    page_errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def run_browser(base_url: str, scenario: Callable[[Any, BrowserLog], None], *, screenshot_dir: Path | None = None) -> BrowserLog:
    """Run ``scenario(page, log)`` in a fresh headless Chromium (blocking: call it on a thread)."""
    from playwright.sync_api import sync_playwright

    log = BrowserLog()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())  # this thread only (see above)
    try:
        _drive(sync_playwright, base_url, scenario, log, screenshot_dir)
    finally:
        asyncio.set_event_loop_policy(None)
    return log


def _drive(sync_playwright: Any, base_url: str, scenario: Callable[[Any, BrowserLog], None], log: BrowserLog,
           screenshot_dir: Path | None) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(base_url=base_url, viewport={"width": 1500, "height": 900})
            context.set_default_timeout(30_000)
            page = context.new_page()
            page.on("pageerror", lambda exc: log.page_errors.append(str(exc)))
            page.on("console", lambda msg: log.console.append(f"{msg.type}: {msg.text}"))

            def on_dialog(dialog: Any) -> None:
                log.dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            try:
                scenario(page, log)
            except BaseException:
                if screenshot_dir is not None:
                    page.screenshot(path=str(screenshot_dir / "failure.png"), full_page=True)
                raise
        finally:
            browser.close()


@pytest.fixture(name="browse")
def _browse(tmp_path: Path) -> Callable[..., Any]:
    """``await browse(base_url, scenario)``: the scenario on a worker thread, the engine on Trio's."""

    async def go(base_url: str, scenario: Callable[[Any, BrowserLog], None]) -> BrowserLog:
        return await trio.to_thread.run_sync(lambda: run_browser(base_url, scenario, screenshot_dir=tmp_path))

    return go
