"""Chromium (Playwright) walks the cases of issue 15 "See inside, calmly": a refused action is a message that names
the field and says what is allowed, in the page's language, and leaves what is on screen as it was (no "Error" over
the loss curves, status or samples); engine messages, status lines, tokenizer descriptions and Gradio's own upload
box speak Chinese in 中文 mode; and the small things: the Train form after a reload, Resume after a time budget, the
statistics table's header, the ↻ buttons' height, a BPE too large for its text. Screenshots go to test-artifacts/.

The tests run in order on one page: the first starts a short training run whose output the refusals must leave
alone."""

import re

import pytest
import requests
import tiktoken
from playwright.sync_api import Error as PlaywrightError

from playground import corpus_choice
from playground.i18n import ZH
from tests.browser import choose, needs_chromium, opened_page, served_app, shot
from tests.chinese import english_words

pytestmark = needs_chromium

OUTPUTS = ("#train-status", "#train-progress", "#loss-plot", "#rate-plot", "#train-samples")  # what Start shows


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("calm-runs")) as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    with opened_page(app_url) as page:
        yield page


# a message's title as shown: the page's CSS may say it instead of Gradio's own word (ui.toast_titles_css)
TITLE_SHOWN = (
    "e => { const c = getComputedStyle(e, '::before').content; return c == 'none' ? e.textContent : JSON.parse(c) }"
)


def toast(page, text: str) -> str:
    """Wait for a message beside the page that contains `text`; return its title as shown and its words, then
    close every message."""
    body = page.locator("[data-testid=toast-body]").filter(has_text=text).first
    body.wait_for()
    title = body.locator(".toast-title").evaluate(TITLE_SHOWN)
    message = f"{title.strip()}\n" + "\n".join(body.locator("[data-testid=toast-text]").all_inner_texts())
    close_toasts(page)
    return message


def close_toasts(page) -> None:
    """Close the messages beside the page (one may go by itself meanwhile: that is fine too)."""
    for close in page.locator("[data-testid=toast-close]").all():
        try:
            close.click(timeout=3_000)
        except PlaywrightError:
            pass


def assert_outputs_untouched(page, traces: int) -> None:
    """No "Error" over any output of Start, and the run's curves and samples still shown."""
    for output in OUTPUTS:
        assert page.locator(f"{output} .error").count() == 0, output
    assert page.locator("#loss-plot .scatterlayer .trace").count() >= traces
    assert page.locator("#train-samples textarea").input_value().strip()


# -- 1 and 2: a refused Start is a message that names the field, and the run on screen stays ----------------------


def test_a_refused_start_names_the_field_and_leaves_the_run_on_screen(page):
    page.get_by_text("Python standard library source").first.click()
    page.locator("#data-load").click()
    page.locator("#data-stats").get_by_text("tokens").first.wait_for()
    assert page.locator("#data-stats th").all_inner_texts() == ["Statistic", "Value"]  # 7: a header, not blank

    page.get_by_role("tab", name="2 · Model").click()
    choose(page, "model-preset", "tiny")
    layers = page.locator("#model-n_layer input[type=number]")
    # typed into the slider's box: Gradio's slider soon keeps the value to 24, but a 500 that reaches the server
    # is named in the estimate (tests/test_refusals.py), never a server error with a bare "Error"
    layers.fill("500")
    said = re.compile(r"Layers must be from 1 to 24; got 500\.|parameters")
    page.locator("#model-estimate").get_by_text(said).first.wait_for()
    assert page.locator("#model-estimate .error").count() == 0
    assert page.locator("[data-testid=toast-body].error").count() == 0
    layers.fill("2")
    page.locator("#model-estimate").get_by_text("parameters").first.wait_for()

    page.get_by_role("tab", name="3 · Train").click()
    page.locator("#train-steps input").fill("7777")
    page.locator("#train-eval input").fill("20")
    page.locator("#train-lr input").fill("0.002")
    page.locator("#train-max-time input").fill("25")
    page.locator("#train-start").click()
    page.locator("#loss-plot").get_by_text("validation").first.wait_for(timeout=120_000)
    page.wait_for_function("() => document.querySelector('#train-samples textarea').value.trim()", timeout=60_000)
    close_toasts(page)
    traces = page.locator("#loss-plot .scatterlayer .trace").count()

    cases = [  # (field, typed, the message's words)
        ("#train-steps", "", "Steps is empty; give it a number."),
        ("#train-lr", "-0.01", "Learning rate must be from 1e-06 to 1; got -0.01."),
        ("#train-max-time", "-5", "Time budget must be from 0 to 86,400; got -5."),
        ("#train-eval", "0", "Evaluate every (steps) must be at least 1; got 0."),
    ]
    for field, typed, words in cases:
        kept = page.locator(f"{field} input").input_value()
        page.locator(f"{field} input").fill(typed)
        page.locator("#train-start").click()
        assert words in toast(page, words)
        assert_outputs_untouched(page, traces)
        page.locator(f"{field} input").fill(kept)
    shot(page, "calm-1-refused-start")


def test_a_picker_given_another_sessions_run_says_so(page):
    page.get_by_role("tab", name="5 · Generate").click()
    box = page.locator("#gen-run input")
    box.fill("someone-elses-run")
    box.press("Enter")
    toast(page, "Run someone-elses-run does not exist (or belongs to another session).")
    assert page.locator("#gen-run-info .error").count() == 0 and page.locator("#gen-run .error").count() == 0

    # 7: the ↻ beside the picker is a button's height, not the row's (the picker's label and box)
    refresh = page.locator("#gen-run").locator("xpath=ancestor::div[contains(@class,'row')][1]").locator(".nl-refresh")
    assert refresh.bounding_box()["height"] < 0.6 * page.locator("#gen-run").bounding_box()["height"]
    shot(page, "calm-2-picker")


def test_gpt2_without_network_names_the_tokenizer_and_keeps_the_statistics(page, tmp_path, monkeypatch):
    def no_network(url):
        raise requests.ConnectionError(f"HTTPSConnectionPool: Max retries exceeded with url: {url}")

    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # forget the loaded encoding
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache
    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(corpus_choice, "_tokenizers", corpus_choice.OrderedDict())

    page.get_by_role("tab", name="1 · Data").click()
    stats = page.locator("#data-stats").inner_text()
    page.locator("#data-tokenizer").get_by_text("GPT-2 BPE").click()
    page.locator("#data-load").click()
    message = toast(page, "GPT-2's tokenizer files")
    assert "no network" in message and "HTTPSConnectionPool" not in message
    assert page.locator("#data-stats").inner_text() == stats and page.locator("#data-stats .error").count() == 0
    page.locator("#data-tokenizer").get_by_text("Characters").click()


# -- 7: Resume after a time budget, and the Train form after a reload --------------------------------------------


def test_resume_after_a_time_budget_and_the_form_after_a_reload(page):
    page.get_by_role("tab", name="3 · Train").click()
    page.locator("#train-status").get_by_text("time budget of 25 s was used").wait_for(timeout=120_000)
    page.locator("#train-resume").click()
    toast(page, "This run used its whole time budget (25 s)")

    page.reload(wait_until="domcontentloaded")
    page.get_by_role("tab", name="3 · Train").click()
    page.locator("#train-status").get_by_text("completed").wait_for()
    page.wait_for_function("() => document.querySelector('#train-steps input').value === '7777'")
    assert page.locator("#train-lr input").input_value() == "0.002"
    assert page.locator("#train-eval input").input_value() == "20"
    assert page.locator("#train-max-time input").input_value() == "25"
    shot(page, "calm-3-reloaded")


# -- 3: Chinese mode --------------------------------------------------------------------------------------------


def test_chinese_mode_speaks_chinese_in_status_tokenizer_errors_and_the_upload_box(page, tmp_path):
    page.locator("#language").get_by_text("简体中文").click()
    page.get_by_role("tab", name="1 · 数据").click()
    upload = page.locator("#data-upload")
    upload.get_by_text("点击上传").wait_for()  # Gradio's own words, in the page's language
    assert not english_words(upload.inner_text()), upload.inner_text()
    page.locator("#data-source").get_by_text("Python 标准库源码").click()
    # the default is the recipe's pick
    page.locator("#data-tokenizer").get_by_text(ZH["data.tok.char"], exact=True).click()
    page.locator("#data-load").click()
    stats = page.locator("#data-stats")
    stats.get_by_text("字符级").wait_for()  # the tokenizer's description
    assert not english_words(stats.inner_text()), stats.inner_text()

    page.get_by_role("tab", name="3 · 训练").click()
    status = page.locator("#train-status")
    status.get_by_text("已完成").wait_for()
    assert not english_words(status.inner_text()), status.inner_text()
    assert not english_words(page.locator("#train-progress").inner_text())

    # an engine message (core/messages.py) and an app message, both refusals, both in Chinese
    page.get_by_role("tab", name="2 · 模型").click()
    page.locator("#model-n_embd input[type=number]").fill("48")
    page.locator("#model-n_head input[type=number]").fill("5")
    page.get_by_role("tab", name="3 · 训练").click()
    page.locator("#train-start").click()
    message = toast(page, "n_head=5")
    assert "整除" in message and not english_words(message), message
    page.locator("#train-steps input").fill("")
    page.locator("#train-start").click()
    message = toast(page, "“步数”是空的")
    assert not english_words(message), message
    assert page.locator("#loss-plot .scatterlayer .trace").count() >= 2
    shot(page, "calm-4-chinese")

    # 7: a 1,024-token BPE on a 3 KB file is warned about (in Chinese)
    small = tmp_path / "small.txt"
    small.write_text(("The quick brown fox jumps over the lazy dog. " * 70)[:3000], encoding="utf-8")
    page.get_by_role("tab", name="1 · 数据").click()
    upload.locator("input[type=file]").set_input_files(str(small))
    page.locator("#data-tokenizer").get_by_text("训练我自己的 BPE").click()
    page.locator("#data-load").click()
    message = toast(page, "BPE 词表太大了")
    assert not english_words(message), message
