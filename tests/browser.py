"""What the browser tests share: Debian's Chromium driven by Playwright, an app served on a free port for a runs
directory, a page opened at it, and small steps (pick from a dropdown, take a screenshot into test-artifacts/)."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

import pytest

from playground import slices
from playground.jobs import Jobs
from playground.settings import Settings
from playground.ui import build_app, launch_kwargs
from tests.apps import free_port

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# flags from this workplace's notes: no background networking (the machine's network is closed)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (.ci/run installs it)"
)


@contextmanager
def served_app(root: Path):
    """The app on a free port of 127.0.0.1, its runs in `root`, one job at a time; yields its URL. With
    NEWLEAF_TRAIN_SLICE_SECONDS set (e.g. 3) its jobs train in slices, as on ZeroGPU."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEWLEAF_RUNS", str(root))
        settings = Settings.from_env()
        slice_seconds = slices.slice_length(settings.train_slice_seconds)
        jobs = Jobs(root, max_concurrent=1, train_threads=1, poll_seconds=0.2, slice_seconds=slice_seconds)
        demo, _ = build_app(settings, jobs)
        port = free_port()
        demo.queue(default_concurrency_limit=4)
        demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, **launch_kwargs(settings))
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            demo.close()
            jobs.shutdown()


@contextmanager
def opened_page(url: str, width: int = 1400, height: int = 1000):
    """A Chromium page at the app, once its title shows."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_context(viewport={"width": width, "height": height}).new_page()
        page.set_default_timeout(60_000)
        page.goto(url, wait_until="domcontentloaded")  # never "networkidle": Gradio's heartbeat never idles
        page.get_by_text("train your own small GPT").first.wait_for()
        try:
            yield page
        finally:
            browser.close()


def choose(page, dropdown_id: str, option_text: str) -> None:
    page.locator(f"#{dropdown_id} input").first.click()
    page.get_by_role("option", name=re.compile(re.escape(option_text))).first.click()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)
