"""A real browser (Debian's Chromium driven by Playwright) uses the app as a person would: pick the offline
dataset and the tiny preset, start training, see the loss chart draw, refresh the page and find the job
again, stop it, generate a completion, and look at an attention heatmap. Screenshots are kept in
test-artifacts/."""

import os
import re
import socket
from pathlib import Path

import pytest

from playground import slices
from playground.jobs import Jobs
from playground.settings import Settings
from playground.ui import build_app, launch_kwargs

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

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEWLEAF_RUNS", str(root))
        settings = Settings.from_env()
        # NEWLEAF_TRAIN_SLICE_SECONDS=3 walks the same steps with jobs trained in slices, as on ZeroGPU
        slice_seconds = slices.slice_length(settings.train_slice_seconds)
        jobs = Jobs(root, max_concurrent=1, train_threads=1, poll_seconds=0.2, slice_seconds=slice_seconds)
        demo, _ = build_app(settings, jobs)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        demo.queue(default_concurrency_limit=4)
        demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, **launch_kwargs(settings))
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            demo.close()
            jobs.shutdown()


@pytest.fixture(scope="module")
def page(app_url, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(app_url, wait_until="domcontentloaded")  # never "networkidle": Gradio's heartbeat never idles
        page.get_by_text("train your own small GPT").first.wait_for()
        yield page
        browser.close()


def choose(page, dropdown_id: str, option_text: str) -> None:
    page.locator(f"#{dropdown_id} input").first.click()
    page.get_by_role("option", name=re.compile(re.escape(option_text))).first.click()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def test_a_person_trains_stops_generates_and_looks_inside(page):
    # 1 · Data: the offline dataset
    page.get_by_text("Python standard library source").first.click()
    page.get_by_role("button", name="Load and tokenize").click()
    page.locator("#data-stats").get_by_text("tokens").first.wait_for()
    assert page.locator("#data-preview span").count() > 100  # the text coloured token by token
    shot(page, "1-data")

    # 2 · Model: the tiny preset
    page.get_by_role("tab", name="2 · Model").click()
    choose(page, "model-preset", "tiny")
    page.locator("#model-estimate").get_by_text("parameters").first.wait_for()
    shot(page, "2-model")

    # 3 · Train: start, watch the loss chart draw
    page.get_by_role("tab", name="3 · Train").click()
    page.locator("#train-steps input").fill("20000")
    page.locator("#train-eval input").fill("25")
    page.locator("#train-start").click()
    page.locator("#train-status").get_by_text(re.compile("running|queued")).first.wait_for()
    page.locator("#loss-plot").get_by_text("validation").first.wait_for(timeout=120_000)
    assert page.locator("#loss-plot .scatterlayer .trace").count() >= 2
    shot(page, "3-train")

    # a page refresh re-attaches to the running job
    page.reload(wait_until="domcontentloaded")
    page.get_by_role("tab", name="3 · Train").click()
    page.locator("#train-status").get_by_text("running").first.wait_for()
    page.locator("#loss-plot").get_by_text("validation").first.wait_for()

    page.locator("#train-stop").click()
    page.locator("#train-status").get_by_text("stopped").first.wait_for(timeout=60_000)
    shot(page, "4-stopped")

    # 5 · Generate: a completion from the run just trained
    page.get_by_role("tab", name="5 · Generate").click()
    choose(page, "gen-run", "Python standard library")
    page.locator("#gen-prompt textarea").fill("def ")
    page.locator("#gen-generate").click()
    sample = page.locator("#gen-sample-1 textarea")
    page.wait_for_function("el => el.value.length > 20", arg=sample.element_handle(), timeout=60_000)
    shot(page, "5-generate")

    # 6 · Look inside: an attention heatmap for a prompt
    page.get_by_role("tab", name="6 · Look inside").click()
    choose(page, "attn-run", "Python standard library")
    page.locator("#attn-prompt textarea").fill("import os")
    page.locator("#attn-show").click()
    page.locator("#attn-plot .heatmaplayer").first.wait_for()
    shot(page, "6-attention")
