"""Validation in the job queue with progress (issue 13) and the trace's estimate next to the Trace button, long
prompts up to the 256-token limit (issue 16), on the fake API (fake_api.py, fake_analysis.py, fake_jobs.py).
Screenshots at 1600x1000 and 1280x800 go to test-artifacts/jobs-*.png."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ServerThread
from fixtures import make_graph, make_research_graph
from playwright.sync_api import Page, expect
from reading_helpers import errors_of
from scenario import READY

pytestmark = pytest.mark.browser
A = "dallas-fixture"
LONG, LONG_B = "long-200", "long-200-b"
SIZES = ((1600, 1000), (1280, 800))

# Samples the validation's bar and status line every 20 ms while it shows (the page's rendering of the events).
WATCH_VALIDATION = """
  window.__vbar = [];
  setInterval(() => {
    const b = document.querySelector('#validation-progress .progress-fill');
    const t = document.querySelector('#validation-phase');
    if (b && !document.getElementById('validation-progress').hidden) {
      window.__vbar.push([parseFloat(b.style.width) || 0, t ? t.textContent : '']);
    }
  }, 20);
"""


def words(n: int) -> str:
    """A prompt of n fake tokens after BOS."""
    return "".join(f" w{i}" for i in range(n)).strip()


@pytest.fixture(scope="module")
def jobs_server():
    long_tokens = ["<bos>", *[f" w{i}" for i in range(1, 200)]]
    other = [" x100" if t == " w100" else t for t in long_tokens]  # the same prompt but one token
    graphs = {
        A: make_graph(slug=A, seed=4),
        LONG: make_research_graph(LONG, long_tokens, n_features=1200, n_links=60_000, seed=8),
        LONG_B: make_research_graph(LONG_B, other, n_features=1200, n_links=60_000, seed=8),
    }
    with ServerThread(__import__("fake_api").create_fake_app(graphs)) as srv:
        yield srv.url


def shots(page: Page, artifacts, name: str, target: str | None = None) -> None:
    for w, hgt in SIZES:
        page.set_viewport_size({"width": w, "height": hgt})
        page.wait_for_timeout(300)
        if target:
            page.locator(target).scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / f"jobs-{name}-{w}x{hgt}.png"))
    page.set_viewport_size({"width": 1440, "height": 1000})


def open_with_supernodes(page: Page, base: str, labels: list[str]) -> None:
    feats = [d["node_id"] for d in make_graph(slug=A, seed=4)["nodes"] if d["feature_type"] == "cross layer transcoder"]
    sn = [[label, *feats[3 * k : 3 * k + 3]] for k, label in enumerate(labels)]
    pinned = ",".join(m for s in sn for m in s[1:])
    page.goto(f"{base}/graph/{A}?supernodes={json.dumps(sn)}&pinnedIds={pinned}")
    page.wait_for_selector(READY)
    expect(page.locator("#validate-btn")).to_have_text(f"Validate supernodes ({len(labels)})")


def test_validation_progress_advances_and_ends_in_plot(page: Page, jobs_server, artifacts):
    errors = errors_of(page)
    page.add_init_script(WATCH_VALIDATION)
    open_with_supernodes(page, jobs_server, ["says Texas", "odd one", "capitals"])
    with page.expect_response("**/validate") as resp:
        page.click("#validate-btn")
    assert resp.value.status == 202 and resp.value.json()["job"]["kind"] == "validate"
    expect(page.locator("#validation-progress")).to_be_visible()
    expect(page.locator("#validate-btn")).to_be_disabled()
    expect(page.locator("#validation-phase")).to_contain_text(re.compile(r"\d+ of \d+ interventions"))
    shots(page, artifacts, "validation-running", "#validation-panel")
    expect(page.locator("#validation-plot circle.vpoint")).to_have_count(3, timeout=10_000)
    expect(page.locator("#validation-job")).to_have_count(0)  # the progress gives way to the plot
    expect(page.locator("#validation-flagged")).to_contain_text("1 group(s) disagree")
    samples = page.evaluate("window.__vbar")
    widths = [w for w, _ in samples]
    assert len(widths) > 5 and all(b >= a for a, b in zip(widths, widths[1:], strict=False)), widths
    assert any(re.search(r"^validating \d+ of 24 interventions · \d+% · about \d+ s left$", t) for _, t in samples)
    log = page.evaluate("window.__cbValidationLog")
    assert log[-1]["status"] == "done" and log[-1]["fraction"] == 1.0
    expect(page.locator("#validate-btn")).to_be_enabled()
    shots(page, artifacts, "validation-done", "#validation")
    assert not errors


def test_validation_cancel(page: Page, jobs_server):
    open_with_supernodes(page, jobs_server, ["slow group", "capitals"])
    page.click("#validate-btn")
    expect(page.locator("#validation-progress")).to_be_visible()
    with page.expect_request(lambda r: r.method == "DELETE" and "/api/jobs/" in r.url):
        page.click("#validation-cancel")
    expect(page.locator("#validation-note")).to_have_text("The validation was cancelled.")
    expect(page.locator("#validation-job")).to_have_count(0)
    expect(page.locator("#validation-plot")).to_have_count(0)
    expect(page.locator("#validate-btn")).to_be_enabled()


def test_validation_failure_shows_its_error(page: Page, jobs_server):
    open_with_supernodes(page, jobs_server, ["capitals", "fail here"])
    page.click("#validate-btn")
    expect(page.locator("#validation-failed")).to_contain_text("The validation failed.", timeout=10_000)
    expect(page.locator("#validation-failed")).to_contain_text("ran out of memory")
    expect(page.locator("#validation-plot")).to_have_count(0)


def test_validation_input_error_at_once(page: Page, jobs_server):
    open_with_supernodes(page, jobs_server, ["capitals"])
    page.route(
        "**/validate", lambda route: route.fulfill(status=422, json={"detail": "supernodes.0: unknown node '9_9_9'"})
    )
    page.click("#validate-btn")
    expect(page.locator("#validation-failed")).to_contain_text("The validation could not start.")
    expect(page.locator("#validation-job")).to_have_count(0)


def test_validation_is_picked_up_after_leaving(page: Page, jobs_server):
    open_with_supernodes(page, jobs_server, ["slow group", "capitals"])
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "validate" in r.url else None)
    page.click("#validate-btn")
    expect(page.locator("#validation-progress")).to_be_visible()
    page.click("a.brand")  # away to Browse, then back while it runs
    expect(page.locator(".browse-item").first).to_be_visible()
    page.go_back()
    page.wait_for_selector(READY)
    expect(page.locator("#validation-progress")).to_be_visible()
    expect(page.locator("#validation-plot circle.vpoint")).to_have_count(2, timeout=15_000)
    page.reload()  # a finished validation shows again
    page.wait_for_selector(READY)
    expect(page.locator("#validation-plot circle.vpoint")).to_have_count(2)
    assert len(posts) == 1, posts


def estimate_text(page: Page) -> str:
    return page.locator("#trace-estimate").inner_text()


def test_estimate_shows_and_updates(page: Page, jobs_server, artifacts):
    errors = errors_of(page)
    page.goto(f"{jobs_server}/trace")
    expect(page.locator("#trace-estimate")).to_be_hidden()
    with page.expect_request("**/api/estimate") as req:
        page.fill("#trace-prompt", "Fact: the capital of the state containing Dallas is")
    assert req.value.post_data_json["prompt"].startswith("Fact:")
    est = page.locator("#trace-estimate")
    expect(est).to_have_text(re.compile(r"^~ \d+ s, ~ \d+ MiB$"))
    title = r"^Estimated for 10 tokens: about \d+ s and \d+ MiB of peak memory"
    title += r" \(this server allows up to 2 min and 2\.0 GiB\)$"
    expect(est).to_have_attribute("title", re.compile(title))
    before = estimate_text(page)
    shots(page, artifacts, "trace-estimate-fits")
    # More feature nodes: the estimate follows (debounced), with the parameter in the request.
    page.click("details.advanced summary")
    with page.expect_request("**/api/estimate") as req:
        page.fill("#param-max_feature_nodes", "8000")
    assert req.value.post_data_json["max_feature_nodes"] == 8000
    expect(est).not_to_have_text(before)
    expect(page.locator("#trace-submit")).to_be_enabled()
    # A longer prompt: more again.
    page.fill("#trace-prompt", words(60))
    expect(est).to_have_text(re.compile(r"^~ \d+ (s|min), ~ 1\.\d GiB$"))
    assert not errors


def test_prompt_that_does_not_fit_disables_trace(page: Page, jobs_server, artifacts):
    page.goto(f"{jobs_server}/trace")
    page.click("details.advanced summary")
    page.fill("#param-max_feature_nodes", "10000")
    page.fill("#trace-prompt", words(199))
    est = page.locator("#trace-estimate")
    expect(est).to_have_class(re.compile(r"\bwarn\b"))
    expect(est).to_contain_text("this server allows 2 min and 2.0 GiB")
    submit = page.locator("#trace-submit")
    expect(submit).to_be_disabled()
    expect(submit).to_have_attribute("title", re.compile(r"^The prompt: 200 tokens would take ~7 min and ~6\.8 GiB;"))
    shots(page, artifacts, "trace-estimate-too-big")
    # Fewer feature nodes: it fits again.
    page.fill("#param-max_feature_nodes", "2000")
    expect(est).not_to_have_class(re.compile(r"\bwarn\b"))
    expect(submit).to_be_enabled()
    expect(submit).to_have_attribute("title", "")


def test_refusal_names_the_prompt(page: Page, jobs_server):
    """The server refuses a trace that does not fit with a 4xx naming `prompt`; the form says it."""
    page.route(
        "**/api/estimate",
        lambda route: route.fulfill(
            json={"tokens": 1, "seconds": 1, "peak_bytes": 1, "fits": True, "limit": {}, "reason": None}
        ),
    )
    page.goto(f"{jobs_server}/trace")
    page.click("details.advanced summary")
    page.fill("#param-max_feature_nodes", "10000")
    page.fill("#trace-prompt", words(199))
    expect(page.locator("#trace-submit")).to_be_enabled()
    with page.expect_response("**/api/graphs") as resp:
        page.click("#trace-submit")
    assert resp.value.status == 422
    err = page.locator("#trace-error")
    expect(err).to_have_text(
        "The trace could not start. The prompt: 200 tokens would take ~7 min and ~6.8 GiB; this server allows"
        " 2 min and 2.0 GiB; shorten the prompt or lower max_feature_nodes."
    )
    expect(page.locator("#trace-submit")).to_be_enabled()


def test_256_tokens_wrap(page: Page, jobs_server, artifacts):
    page.goto(f"{jobs_server}/trace")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.fill("#trace-prompt", words(255))
    expect(page.locator("#trace-tokens .tok")).to_have_count(256)
    expect(page.locator(".trace-form > .muted").first).to_have_text("256 tokens of at most 256")
    expect(page.locator("#trace-submit")).to_be_enabled()
    fit = page.evaluate(
        """(() => { const t = document.getElementById('trace-tokens');
        const r = t.getBoundingClientRect();
        const out = [...t.querySelectorAll('.tok')].filter(e => e.getBoundingClientRect().right > r.right + 0.5);
        return {doc: document.documentElement.scrollWidth, win: innerWidth, tok: [t.scrollWidth, t.clientWidth],
                out: out.length, rows: Math.round(t.scrollHeight / 21)}; })()"""
    )
    assert fit["doc"] <= fit["win"] and fit["tok"][0] <= fit["tok"][1] and fit["out"] == 0, fit
    assert fit["rows"] > 3, fit  # wrapped onto several lines
    shots(page, artifacts, "trace-256-tokens")
    page.fill("#trace-prompt", words(256))
    expect(page.locator(".trace-form > .muted").first).to_contain_text("257 tokens of at most 256")
    expect(page.locator("#trace-submit")).to_be_disabled()
    expect(page.locator("#trace-submit")).to_have_attribute("title", re.compile("too long|more than the limit of 256"))
    expect(page.locator("#trace-estimate")).to_have_class(re.compile(r"\bwarn\b"))


def test_graph_of_a_200_token_prompt(page: Page, jobs_server, artifacts):
    errors = errors_of(page)
    for w, hgt in SIZES:
        page.set_viewport_size({"width": w, "height": hgt})
        page.goto(f"{jobs_server}/graph/{LONG}")
        page.wait_for_selector(READY)
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        # The prompt is cut to two lines (the graph stays in view), and opens in full on demand.
        box = page.locator("#graph-prompt").bounding_box()
        assert box["x"] + box["width"] <= w and box["height"] < 60, box
        lg = page.locator("#link-graph").bounding_box()
        assert lg["y"] < hgt / 4, lg
        # Wider than the view: it opens at the right end (the logits); the layer names stay at the left edge and
        # the top margin says what is out of view.
        wrap = page.locator("#link-graph .lg-wrap")
        edge = wrap.bounding_box()["x"]
        expect(page.locator("#lg-scroll-before")).to_have_text(re.compile(r"^◀ \d+ earlier positions"))
        expect(page.locator("#lg-scroll-after")).to_have_text("")
        lefts = "els => els.map(e => e.getBoundingClientRect().left)"
        label_x = page.eval_on_selector_all(".lg-yaxis .lg-ylabel", lefts)
        assert len(label_x) == 20 and all(edge <= x < edge + 44 for x in label_x), (edge, label_x)
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts / f"jobs-graph-200-tokens-{w}x{hgt}.png"))
        wrap.evaluate("e => { e.scrollLeft = 0; }")
        expect(page.locator("#lg-scroll-before")).to_have_text("")
        expect(page.locator("#lg-scroll-after")).to_have_text(re.compile(r"^\d+ later positions ▶$"))
        page.click("#graph-prompt-more")
        expect(page.locator("#graph-prompt-more")).to_have_text("show less")
        assert page.locator("#graph-prompt").bounding_box()["height"] > 2 * box["height"]
    page.click("#theme-btn")  # the layer strip takes the panel's colour in the dark theme too
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "jobs-graph-200-tokens-dark.png"))
    page.click("#theme-btn")
    page.goto(f"{jobs_server}/graph/{A}")  # a short prompt: nothing to show more of
    page.wait_for_selector(READY)
    expect(page.locator("#graph-prompt-more")).to_be_hidden()
    assert not errors


def test_browse_cuts_a_long_prompt(page: Page, jobs_server, artifacts):
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{jobs_server}/")
    prompt = page.locator(f'.browse-item[data-slug="{LONG}"] .browse-prompt')
    expect(prompt).to_be_visible()
    assert prompt.bounding_box()["height"] < 50  # two lines, not ten
    expect(prompt).to_have_attribute("title", re.compile(r"^ w1 w2 .* w199$"))
    page.screenshot(path=str(artifacts / "jobs-browse-long-prompt-1280x800.png"))


def test_diff_of_two_long_prompts(page: Page, jobs_server, artifacts):
    """Token labels under the diff plot stay apart (every k-th position, and each one that differs)."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{jobs_server}/diff/{LONG}/{LONG_B}")
    expect(page.locator("#diff-svg circle.diff-node").first).to_be_attached(timeout=15_000)
    labels = page.locator("#diff-svg .tok-label")
    assert 10 < labels.count() < 120, labels.count()
    expect(page.locator("#diff-svg .tok-label.differs")).to_have_text("w100 / x100")
    xs = [float(x) for x in labels.evaluate_all("els => els.map(e => e.getAttribute('x'))")]
    assert all(b - a >= 8 for a, b in zip(xs, xs[1:], strict=False)), xs
    for line in page.locator("#diff-prompts .diff-prompt").all():
        assert line.bounding_box()["height"] < 50  # two lines each
    page.screenshot(path=str(artifacts / "jobs-diff-long-prompts-1280x800.png"))


def test_estimate_real_server(page: Page, real_server):
    """The real POST /api/estimate (tiny model): the page reads its shape."""
    page.goto(f"{real_server}/trace")
    page.fill("#trace-prompt", "The capital of the state containing Dallas is")
    est = page.locator("#trace-estimate")
    expect(est).to_have_text(re.compile(r"^(~ \d+ s|< 1 s), ~ \d+(\.\d)? (MiB|GiB)$"), timeout=30_000)
    expect(est).to_have_attribute("title", re.compile(r"^Estimated for \d+ tokens: .* \(this server allows up to "))
    expect(page.locator("#trace-submit")).to_be_enabled()
