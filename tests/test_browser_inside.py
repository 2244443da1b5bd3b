"""Looking inside in a real browser (Debian's Chromium driven by Playwright) on a 1400x900 screen, with a run
trained here whose context is 64 tokens: the next-token bars beside the sliders that move them, following the
prompt as it is typed; an attention map of 64 tokens that says, under the mouse, which token looks at which and
how much, zooms, and has a text view where a click chooses the token; the token symbols ("␠") drawn by the
shipped font, not as an empty box; the logit lens and the view over training. Screenshots go to test-artifacts/."""

import math

import pytest

from core import files, runs
from core.train import Trainer
from playground.fonts import CHART_FONT, FAMILY
from playground.jobs import SHARED_OWNER
from tests.browser import choose, needs_chromium, opened_page, served_app, shot
from tests.test_train import make_run

pytestmark = needs_chromium

TITLE = "Inside test"
LONG = (
    "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
    "Arise, fair sun, and kill the envious moon"
)  # longer than the 64-token context: the views show its last 64 tokens


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, shakespeare_text):
    root = tmp_path_factory.mktemp("inside-runs")
    run = make_run(
        root / "inside", shakespeare_text[:200_000], preset="nano", max_steps=120, eval_every=20, batch_size=16
    )
    Trainer(run).fit()
    config = runs.read_config(run)
    config.update(owner=SHARED_OWNER, title=TITLE)  # every browser session may read it
    files.atomic_write_json(run / runs.CONFIG, config)
    with served_app(root) as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    with opened_page(app_url, height=900) as page:
        yield page


def to_top(page, selector: str) -> None:
    page.locator(selector).first.evaluate("el => el.scrollIntoView({block: 'start'})")


def graph(page, selector: str) -> str:
    """A JS expression for the plotly graph div inside a gr.Plot."""
    return f"document.querySelector('{selector} .js-plotly-plot')"


# ----------------------------------------------------------------------------------------------------------
# 5 · the next-token bars beside their sliders


def test_the_next_token_bars_sit_beside_their_sliders_and_follow_the_prompt(page):
    page.get_by_role("tab", name="5 · Generate").click()
    choose(page, "gen-run", TITLE)
    prompt = page.locator("#gen-prompt textarea")
    summary = page.locator("#gen-next-summary")
    prompt.fill("ROMEO:")
    summary.get_by_text("After the prompt (6 tokens)").wait_for()  # no button pressed: the bars follow the prompt
    prompt.fill("ROMEO: But soft")
    summary.get_by_text("After the prompt (15 tokens)").wait_for()
    page.locator("#gen-next-plot .barlayer").first.wait_for()

    to_top(page, "#gen-shaping")
    sliders = [page.locator("#gen-shaping input[type=range]").nth(i).bounding_box() for i in range(4)]
    bars = page.locator("#gen-next-plot .js-plotly-plot").bounding_box()
    boxes = [*sliders, bars]
    assert all(0 <= b["y"] and b["y"] + b["height"] <= 900 for b in boxes), boxes  # one 1400x900 screen
    assert max(b["x"] + b["width"] for b in sliders) < bars["x"]  # side by side: knobs left, bars right
    box = page.locator("#gen-prompt textarea").bounding_box()
    assert box["y"] + box["height"] <= 900  # and the prompt they follow is on the same screen
    shot(page, "inside-1-next-token")

    before = summary.inner_text()
    green = f"{graph(page, '#gen-next-plot')}.data[1].x.join(',')"
    bars_before = page.evaluate(green)
    page.locator("#gen-shaping input[type=range]").first.fill("0.3")  # temperature
    page.wait_for_function(f"() => {green} !== {bars_before!r}")
    assert summary.inner_text() != before


# ----------------------------------------------------------------------------------------------------------
# 4 · attention at the model's real context


def test_attention_at_64_tokens_says_under_the_mouse_who_looks_at_whom(page):
    page.get_by_role("tab", name="6 · Look inside").click()
    choose(page, "attn-run", TITLE)
    page.locator("#attn-prompt textarea").fill(LONG)
    choose(page, "attn-head", "1")
    page.locator("#attn-show").click()
    page.locator("#attn-note").get_by_text("only the last 64 are used").wait_for()
    page.locator("#attn-plot .heatmaplayer").first.wait_for()
    gd = graph(page, "#attn-plot")
    assert page.evaluate(f"{gd}.data[0].z.length") == 64
    sizes = page.evaluate("[...document.querySelectorAll('#attn-plot .ytick text')].map(e => e.style.fontSize)")
    assert sizes and all(float(s.rstrip("px")) >= 10 for s in sizes)  # tick labels big enough to read

    # hover the cell where token #40 looks at token #10
    to_top(page, "#attn-plot")
    area = page.locator("#attn-plot .nsewdrag").first.bounding_box()
    q, k = 40, 10
    page.mouse.move(area["x"] + (k - 0.5) / 64 * area["width"], area["y"] + (q - 0.5) / 64 * area["height"])
    hover = page.locator("#attn-plot .hoverlayer .hovertext").first
    hover.wait_for()
    text = hover.text_content()
    query, key, weight = page.evaluate(
        f"[{gd}.data[0].y[{q - 1}], {gd}.data[0].x[{k - 1}], {gd}.data[0].z[{q - 1}][{k - 1}]]"
    )
    assert text == f"“{query}” #{q} looks at “{key}” #{k}: {weight:.1%}", text
    shot(page, "inside-2-attention-hover")

    # zoom into the first 16 tokens: every one of them gets its label back
    page.mouse.move(area["x"] + 1, area["y"] + 1)
    page.mouse.down()
    page.mouse.move(area["x"] + 16 / 64 * area["width"] - 2, area["y"] + 16 / 64 * area["height"] - 2, steps=8)
    page.mouse.up()
    ticks_drawn = "document.querySelectorAll('#attn-plot .xtick text').length"
    page.wait_for_function(f"() => {gd}.layout.xaxis.range[1] < 20 && {ticks_drawn} <= 20", timeout=10_000)
    low, high = page.evaluate(f"{gd}.layout.xaxis.range")
    ticks = page.evaluate(
        "[...document.querySelectorAll('#attn-plot .xtick text')]"
        ".sort((a, b) => a.getBoundingClientRect().x - b.getBoundingClientRect().x).map(e => e.textContent)"
    )
    shown = page.evaluate(f"{gd}.data[0].x.slice({math.ceil(low)}, {math.floor(high) + 1})")
    assert ticks == shown and len(shown) >= 14  # every token of the zoomed range has its label, in order

    # the text view: a click on token #10 chooses it; the tokens after it, which it cannot see, fade
    page.locator('#attn-text [data-pos="10"]').click()
    page.locator("#attn-text .nl-attn-line").get_by_text("#10 looks most at").wait_for()
    assert page.locator("#attn-query input[type=number]").input_value() == "10"
    assert page.locator("#attn-text .nl-future").count() == 64 - 10
    assert page.locator("#attn-text .nl-q").get_attribute("data-pos") == "10"
    shot(page, "inside-3-attention-text")


# ----------------------------------------------------------------------------------------------------------
# 6 · "␠" is drawn, not an empty box

MEASURE = """([font, char]) => {
  const c = document.createElement('canvas'); c.width = 120; c.height = 80;
  const g = c.getContext('2d'); g.font = font; g.fillStyle = '#000'; g.fillText(char, 10, 60);
  return {width: g.measureText(char).width, pixels: Array.from(g.getImageData(0, 0, 120, 80).data).join('')};
}"""


def test_the_space_symbol_is_drawn_by_the_shipped_font(page):
    page.get_by_role("tab", name="5 · Generate").click()
    page.locator("#gen-next-plot .ytick").first.wait_for()
    tick = page.evaluate(
        "(() => { const t = [...document.querySelectorAll('#gen-next-plot .ytick text')]"
        ".find(e => e.textContent === '␠'); return t && [t.style.fontFamily, t.getComputedTextLength()]; })()"
    )
    assert tick, "a space among the most likely next tokens, shown as ␠"
    family, width_in_chart = tick
    assert family.startswith(f'"{FAMILY}"')
    assert page.evaluate(f"document.fonts.load('40px \"{FAMILY}\"', '␠').then(f => f.length)") == 1
    font = f"40px {CHART_FONT}"
    space = page.evaluate(MEASURE, [font, "␠"])
    missing = page.evaluate(MEASURE, [font, "\u0378"])  # an unassigned code point: every font's missing-glyph box
    ours = page.evaluate(MEASURE, [f'40px "{FAMILY}"', "␠"])
    assert abs(space["width"] - missing["width"]) > 1, (space["width"], missing["width"])
    assert space["pixels"] != missing["pixels"]  # a different drawing, not the box
    assert space["width"] == ours["width"] and space["pixels"] == ours["pixels"]  # and it is our font's glyph
    assert width_in_chart > 0


# ----------------------------------------------------------------------------------------------------------
# The logit lens and the view over training


def test_the_logit_lens_and_the_view_over_training(page):
    page.get_by_role("tab", name="6 · Look inside").click()
    page.get_by_role("tab", name="Logit lens").click()
    page.locator("#lens-show").click()
    page.locator("#lens-plot .heatmaplayer").first.wait_for()
    gd = graph(page, "#lens-plot")
    rows = page.evaluate(f"{gd}.data[0].y")
    assert rows == ["embeddings", "block 1", "block 2", "block 3 (output)"]
    assert page.evaluate(f"{gd}.data[0].text[3].length") == 24
    to_top(page, "#lens-plot")
    shot(page, "inside-4-logit-lens")

    page.get_by_role("tab", name="Over training").click()
    page.locator("#hist-show").click()
    status = page.locator("#hist-status")
    status.get_by_text("Step 0").wait_for()
    steps = page.locator("#hist-step input[type=range]")
    assert steps.get_attribute("max") == "6"  # steps 0, 20, …, 120
    first = page.locator("#hist-sample textarea").input_value()
    steps.fill("6")
    status.get_by_text("Step 120").wait_for()
    assert page.locator("#hist-sample textarea").input_value() != first
    assert page.locator("#hist-attention .heatmaplayer").count() == 1
    to_top(page, "#hist-step")
    shot(page, "inside-5-over-training")
