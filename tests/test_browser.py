"""A real browser (Debian's Chromium driven by Playwright) uses the app as a person would: pick the offline
dataset and the tiny preset, start training, see the loss chart draw, refresh the page and find the job
again, stop it, generate a completion, and look at an attention heatmap. Screenshots are kept in
test-artifacts/."""

import re

import pytest

from tests.browser import choose, needs_chromium, opened_page, served_app, shot

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    # NEWLEAF_TRAIN_SLICE_SECONDS=3 walks the same steps with jobs trained in slices, as on ZeroGPU
    with served_app(tmp_path_factory.mktemp("browser-runs")) as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    with opened_page(app_url) as page:
        yield page


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
