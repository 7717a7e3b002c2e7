"""Issue 12, tracing and intervening: exact target tokens with warnings, watched tokens and a sweep, example prompts
on an empty Browse page, error messages as sentences, and one forward-only progress bar with an ETA (fake API,
tests/browser/conftest.py). Screenshots at 1600x1000 and 1280x800 go to test-artifacts/."""

from __future__ import annotations

import re

import pytest
from conftest import COUPLET
from playwright.sync_api import Page, expect
from reading_helpers import errors_of, pin_two_supernodes, shots
from scenario import READY

pytestmark = pytest.mark.browser

# Samples the progress bar and its text every 20 ms (the page's own rendering of the job's events).
WATCH_PROGRESS = """
  window.__bar = [];
  setInterval(() => {
    const b = document.querySelector('#trace-progress .progress-fill');
    const t = document.querySelector('#trace-phase');
    if (b && !document.getElementById('trace-progress').hidden) {
      window.__bar.push([parseFloat(b.style.width) || 0, t ? t.textContent : '']);
    }
  }, 20);
"""


def chip(page: Page, token: str):
    return page.locator(f'#trace-targets .token-chip[data-token="{token}"]')


def add_token(page: Page, box: str, token: str) -> None:
    page.fill(f"#{box}-input", token)
    page.press(f"#{box}-input", "Enter")


def check_progress(page: Page) -> None:
    """The bar only moved forward, ended full, and told the time left on the way."""
    samples = page.evaluate("window.__bar")
    widths = [w for w, _ in samples]
    assert len(widths) > 5, samples
    assert all(b >= a for a, b in zip(widths, widths[1:], strict=False)), widths
    assert widths[-1] == 100
    assert any(re.search(r"about \d+ s left", t) for _, t in samples), samples


def test_exact_targets(page: Page, reading_server, artifacts):
    errors = errors_of(page)
    page.add_init_script(WATCH_PROGRESS)
    page.goto(f"{reading_server}/trace")
    page.fill("#trace-prompt", COUPLET)
    expect(page.locator("#trace-next .pick").first).to_be_visible()
    # Typed with its leading space, kept and shown.
    add_token(page, "trace-targets", " rabbit")
    expect(chip(page, " rabbit")).to_contain_text("·rabbit")
    # A predicted token becomes a target with one click; × removes it.
    page.click('#trace-next .pick[data-token=" Austin"]')
    expect(chip(page, " Austin")).to_have_count(1)
    chip(page, " Austin").locator(".chip-x").click()
    expect(chip(page, " Austin")).to_have_count(0)
    # Without the space it is another, unlikely token; two words are two tokens: warnings.
    add_token(page, "trace-targets", "rabbit")
    add_token(page, "trace-targets", "rab bit")
    notes = page.locator("#trace-target-notes")
    expect(notes).to_contain_text('p("rabbit") = 2.00e-6 after this prompt: the model almost never says it.')
    expect(notes).to_contain_text('Did you mean "·rabbit" with a leading space?')
    expect(notes).to_contain_text('"rab·bit" is 2 tokens, not one')
    expect(notes.locator("li.warn")).to_have_count(2)
    shots(page, artifacts, "trace-target-warnings")
    # Tracing asks first.
    sent = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith("/api/graphs") and r.method == "POST" else None)
    page.click("#trace-submit")
    expect(page.locator("#trace-submit")).to_have_text("Trace anyway")
    expect(page.locator("#trace-error")).to_contain_text("Some target tokens need a look")
    assert not sent
    chip(page, "rabbit").locator(".chip-x").click()
    chip(page, "rab bit").locator(".chip-x").click()
    add_token(page, "trace-targets", " habit")
    expect(notes.locator("li.warn")).to_have_count(0)
    expect(notes).to_contain_text('"·habit": one token, p = ')
    expect(page.locator("#trace-submit")).to_have_text("Trace")
    with page.expect_request("**/api/graphs") as req:
        page.click("#trace-submit")
    assert req.value.post_data_json["target_tokens"] == [" rabbit", " habit"]
    page.wait_for_url(re.compile(r".*/graph/[^/?]+"), timeout=60_000)
    page.wait_for_selector(READY)
    check_progress(page)
    logits = page.locator("#lg-logits li.target .tok")
    expect(logits).to_have_text(["·rabbit", "·habit"])
    shots(page, artifacts, "couplet-graph")
    assert not errors, errors


def test_interventions_watch_and_sweep(page: Page, reading_server, artifacts):
    errors = errors_of(page)
    pin_two_supernodes(page, reading_server)
    row = page.locator("#interventions tr", has_text="say Austin")
    row.locator("select.iv-mode").select_option("zero")
    add_token(page, "iv-watch-tokens", " Texas")
    add_token(page, "iv-watch-tokens", " rabbit")
    page.fill("#iv-top-k", "8")
    with page.expect_request("**/api/interventions") as req:
        page.click("#iv-run")
    body = req.value.post_data_json
    assert body["watch"] == [" Texas", " rabbit"] and body["top_k"] == 8
    expect(page.locator("#iv-watch tbody tr")).to_have_count(2)
    expect(page.locator('#iv-watch tr[data-token=" Texas"]')).to_contain_text(re.compile(r"%.*→.*%.*\+\d+(\.\d)? pts"))
    expect(page.locator("#iv-result .iv-verdict")).to_have_text("Output changed")
    expect(page.locator("#iv-words")).to_contain_text('Top token " Austin" → " Texas"; p(')
    expect(page.locator("#iv-words")).to_contain_text('p(" rabbit") ')
    expect(page.locator("#iv-result .iv-top li")).to_have_count(16)  # top 8, before and after
    # A small change: the top token stays, the words say what moved.
    row.locator("select.iv-mode").select_option("scale")
    row.locator("input.iv-value").fill("1.1")
    page.click("#iv-run")
    expect(page.locator("#iv-result .iv-verdict")).to_have_text("Probabilities shifted")
    expect(page.locator("#iv-words")).to_contain_text(
        re.compile(r'Top token the same \(" Austin"\); p\(" \w+"\) [\d.]+% → [\d.]+%')
    )
    # Sweep the supernode's scale: 9 requests, one next token each, plotted per watched token.
    sent = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/api/interventions") else None)
    page.select_option("#sweep-item", label="say Austin")
    page.click("#sweep-run")
    expect(page.locator("#sweep-status")).to_have_text("9 / 9 factors", timeout=30_000)
    assert [b["interventions"][0]["value"] for b in sent] == [-4, -3, -2, -1, 0, 1, 2, 3, 4]
    assert all(b["n_tokens"] == 1 and b["watch"] == [" Texas", " rabbit"] for b in sent)
    assert all({iv["mode"] for iv in b["interventions"]} == {"scale"} and len(b["interventions"]) == 2 for b in sent)
    expect(page.locator("#sweep-plot path.sweep-line")).to_have_count(2)
    expect(page.locator("#iv-sweep .sweep-key")).to_have_text(["·Texas", "·rabbit"])
    shots(page, artifacts, "intervention-watched", scroll_to="#iv-result")
    shots(page, artifacts, "intervention-sweep", scroll_to="#iv-sweep")
    # A watched token that is not one token: the server's 422 as a sentence.
    add_token(page, "iv-watch-tokens", "two words")
    page.click("#iv-run")
    expect(page.locator("#interventions [role=alert]")).to_have_text(
        "The intervention could not run. Watched token 3: 'two words' is 2 tokens; a target must be exactly one token."
    )
    assert not errors, errors


def test_empty_browse_offers_examples(page: Page, empty_server, artifacts):
    errors = errors_of(page)
    page.add_init_script(WATCH_PROGRESS)
    page.goto(f"{empty_server}/")
    cards = page.locator("#browse-examples .example-card")
    expect(cards).to_have_count(3)
    expect(cards.nth(0)).to_contain_text("Fact: the capital of the state containing Dallas is")
    expect(cards.nth(1)).to_contain_text('The opposite of "hot" is "')
    expect(cards.nth(2)).to_contain_text("·rabbit")
    shots(page, artifacts, "empty-browse")
    # One click traces (targets included): progress, then the graph.
    with page.expect_request("**/api/graphs") as req:
        page.click('button[data-example="A rhyming couplet"]')
    body = req.value.post_data_json
    assert body["prompt"] == COUPLET and body["target_tokens"] == [" rabbit", " habit"], body
    expect(page.locator("#trace-progress")).to_be_visible()
    page.wait_for_timeout(600)
    shots(page, artifacts, "trace-progress")
    page.wait_for_url(re.compile(r".*/graph/[^/?]+"), timeout=60_000)
    page.wait_for_selector(READY)
    # The server sent no `fraction` here: the page weighed the phases itself, and the bar never went back.
    check_progress(page)
    log = page.evaluate("window.__cbJobLog")
    assert log[-1]["status"] == "done" and "fraction" not in log[-1]
    page.goto(f"{empty_server}/")
    expect(page.locator(".browse-item")).to_have_count(1)
    expect(page.locator("#browse-examples")).to_have_count(0)
    assert not errors, errors


def test_finished_job_reports_done(page: Page, reading_server):
    page.add_init_script(WATCH_PROGRESS)
    page.goto(f"{reading_server}/trace")
    page.fill("#trace-prompt", "A fresh prompt for the progress bar")
    page.click("#trace-submit")
    page.wait_for_url(re.compile(r".*/graph/[^/?]+"), timeout=60_000)
    page.wait_for_selector(READY)
    log = page.evaluate("window.__cbJobLog")
    fractions = [e["fraction"] for e in log if "fraction" in e]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert log[-1]["phase"] == "done" and log[-1]["done"] == log[-1]["total"]
    check_progress(page)


def test_error_messages_are_sentences(page: Page, reading_server):
    page.goto(f"{reading_server}/trace")
    page.click("#trace-submit")
    expect(page.locator("#trace-error")).to_have_text("Type a prompt first.")
    validation = [{"loc": ["body", "max_n_logits"], "msg": "x", "type": "less_than_equal", "ctx": {"le": 20}}]
    page.route("**/api/graphs", lambda route: route.fulfill(status=422, json={"detail": validation}))
    page.fill("#trace-prompt", "Some prompt")
    page.click("#trace-submit")
    expect(page.locator("#trace-error")).to_have_text("The trace could not start. Max logits must be at most 20.")
    page.unroute("**/api/graphs")
    page.route("**/api/graphs", lambda route: route.fulfill(status=422, json={"detail": "prompt: must not be empty"}))
    page.click("#trace-submit")
    expect(page.locator("#trace-error")).to_have_text("The trace could not start. The prompt must not be empty.")
    page.unroute("**/api/graphs")
    page.route("**/api/graphs", lambda route: route.abort())
    page.click("#trace-submit")
    expect(page.locator("#trace-error")).to_contain_text("The server could not be reached")
