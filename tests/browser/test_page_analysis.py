"""Circuit analysis on the page (issue 13): suggested supernodes (preview, accept some / all, edit), validation by
intervention (predicted vs measured plot, disagreeing groups flagged), the graph diff page and "compare with …",
"trace back from this feature"; and the sign-in of a shared server (issue 14). Fake API (fake_analysis.py)."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import ServerThread
from fixtures import DEFAULT_TOKENS, make_graph
from playwright.sync_api import Page, expect
from scenario import READY, click_node

pytestmark = pytest.mark.browser
A, B = "dallas-fixture", "chicago-fixture"
SIZES = [(1600, 1000), (1280, 800)]


def chicago_of(dallas: dict) -> dict:
    """Graph A with " Chicago" for " Dallas": the features at that position change, two vanish, one appears."""
    g = copy.deepcopy(dallas)
    pos = DEFAULT_TOKENS.index(" Dallas")
    g["metadata"].update(slug=B, prompt="Fact: the capital of the state containing Chicago is")
    g["metadata"]["prompt_tokens"] = [" Chicago" if t == " Dallas" else t for t in DEFAULT_TOKENS]
    at_pos = [d for d in g["nodes"] if d["ctx_idx"] == pos and d["feature_type"] == "cross layer transcoder"]
    for d in at_pos:
        d["activation"] = round(d["activation"] * 0.3, 4)
    gone = {d["node_id"] for d in at_pos[:2]}
    g["nodes"] = [d for d in g["nodes"] if d["node_id"] not in gone]
    g["links"] = [lk for lk in g["links"] if lk["source"] not in gone and lk["target"] not in gone]
    extra = {**at_pos[-1], "node_id": f"3_9999_{pos}", "jsNodeId": "3_9999-0", "layer": "3", "activation": 5.0}
    g["nodes"].append(extra)
    return g


@pytest.fixture(scope="module")
def analysis_server():
    dallas = make_graph(slug=A, seed=4)
    with ServerThread(__import__("fake_api").create_fake_app({A: dallas, B: chicago_of(dallas)})) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def shared_server():
    from fake_api import create_fake_app

    with ServerThread(create_fake_app({A: make_graph(slug=A, seed=4)}, users={"tok-ada": "ada"})) as srv:
        yield srv.url


def shots(page: Page, artifacts, name: str, target: str) -> None:
    for w, h in SIZES:
        page.set_viewport_size({"width": w, "height": h})
        page.locator(target).scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / f"analysis-{name}-{w}x{h}.png"))


def errors_of(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_suggest_preview_accept_some_and_edit(page: Page, analysis_server, artifacts):
    errors = errors_of(page)
    page.goto(f"{analysis_server}/graph/{A}")
    page.wait_for_selector(READY)
    page.click("#suggest-btn")
    preview = page.locator("#suggest-preview")
    expect(preview).to_be_visible()
    items = preview.locator(".suggest-item")
    n = items.count()
    assert n >= 2
    # Nothing is in the view state until accepted.
    assert page.evaluate("window.__cb.store.state.supernodes") == []
    shots(page, artifacts, "suggest-preview", "#suggest-preview")
    # Keep the first two, rename the first, accept the checked ones.
    for k in range(2, n):
        items.nth(k).locator("input[type=checkbox]").uncheck()
    items.nth(0).locator(".suggest-label").fill("Texas group")
    page.click("#suggest-accept")
    expect(preview).to_have_count(0)
    sn = page.evaluate("window.__cb.store.state.supernodes")
    assert [s[0] for s in sn][0] == "Texas group" and len(sn) == 2
    pinned = page.evaluate("window.__cb.store.state.pinnedIds")
    assert all(m in pinned for s in sn for m in s[1:])
    expect(page.locator("#subgraph svg .sg-node.supernode")).to_have_count(2)
    # Accepted groups are ordinary supernodes: they travel in the link.
    assert "Texas group" in page.evaluate("new URLSearchParams(location.search).get('supernodes')")
    shots(page, artifacts, "accepted-supernodes", "#subgraph")
    assert not errors


def test_suggest_accept_all(page: Page, analysis_server):
    page.goto(f"{analysis_server}/graph/{A}")
    page.wait_for_selector(READY)
    page.click("#suggest-btn")
    expect(page.locator("#suggest-preview")).to_be_visible()
    n = page.locator("#suggest-preview .suggest-item").count()
    assert n >= 2
    page.click("#suggest-accept-all")
    expect(page.locator("#subgraph svg .sg-node.supernode")).to_have_count(n)


def test_validation_plot_flags_disagreement(page: Page, analysis_server, artifacts):
    errors = errors_of(page)
    feats = [d["node_id"] for d in make_graph(slug=A, seed=4)["nodes"] if d["feature_type"] == "cross layer transcoder"]
    sn = [["says Texas", *feats[:3]], ["odd one", *feats[3:5]], ["capitals", *feats[5:9]]]
    page.goto(f"{analysis_server}/graph/{A}?supernodes={json.dumps(sn)}&pinnedIds={','.join(feats[:9])}")
    page.wait_for_selector(READY)
    expect(page.locator("#validate-btn")).to_have_text("Validate supernodes (3)")
    # A job in the queue (202 + JobView): its progress shows, then the plot (test_page_jobs_estimate.py: more).
    with page.expect_response("**/validate") as resp:
        page.click("#validate-btn")
    assert resp.value.status == 202 and resp.value.json()["job"]["status"] in ("queued", "running")
    expect(page.locator("#validation-progress")).to_be_visible()
    expect(page.locator("#validation-plot circle.vpoint")).to_have_count(3, timeout=10_000)
    expect(page.locator("#validation-plot circle.vpoint.disagrees")).to_have_count(1)
    expect(page.locator("#validation-list li.disagrees")).to_contain_text("odd one")
    expect(page.locator("#validation-flagged")).to_contain_text("1 group(s) disagree")
    expect(page.locator("#validation-circuit")).to_contain_text("sufficiency")
    shots(page, artifacts, "validation-plot", "#validation")
    assert not errors


def test_diff_page_and_compare_with(page: Page, analysis_server, artifacts):
    errors = errors_of(page)
    page.goto(f"{analysis_server}/graph/{A}")
    page.wait_for_selector(READY)
    expect(page.locator(f'#compare-with option[value="{B}"]')).to_have_count(1)
    page.select_option("#compare-with", B)
    page.wait_for_url(f"**/diff/{A}/{B}")
    expect(page.locator("#diff-summary")).to_contain_text("2 only in A")
    expect(page.locator("#diff-summary")).to_contain_text("1 only in B")
    expect(page.locator("#diff-svg circle.diff-node.changed").first).to_be_attached()
    ranked = page.locator("#diff-ranked li")
    assert ranked.count() > 3
    expect(ranked.first).to_contain_text("only in")
    shots(page, artifacts, "diff-page", "#diff-body")
    # A graph against itself: nothing changed.
    page.goto(f"{analysis_server}/diff/{A}/{A}")
    expect(page.locator("#diff-ranked")).to_contain_text("Nothing changed")
    assert not errors


def test_trace_back_from_feature(page: Page, analysis_server):
    g = make_graph(slug=A, seed=4)
    feat = min((d for d in g["nodes"] if d["feature_type"] == "cross layer transcoder"), key=lambda d: d["influence"])
    page.goto(f"{analysis_server}/graph/{A}")
    page.wait_for_selector(READY)
    click_node(page, feat["node_id"])
    page.click("#fd-trace-back")
    page.wait_for_url("**/trace?**")
    layer, index, pos = feat["node_id"].split("_")
    expect(page.locator("#trace-features")).to_contain_text(f"L{layer} #{index} @ position {pos}")
    page.fill("#trace-prompt", "Fact: the capital of the state containing Austin is")
    with page.expect_request(lambda r: r.url.endswith("/api/graphs") and r.method == "POST") as req:
        page.click("#trace-submit")
    body = req.value.post_data_json
    assert body["target_features"] == [[int(layer), int(index), int(pos)]]


def test_single_user_shows_no_sign_in(page: Page, analysis_server):
    page.goto(f"{analysis_server}/")
    page.wait_for_selector("#engine-badge:not(:empty)")
    expect(page.locator("#signin")).to_have_count(0)
    expect(page.locator("#auth-user")).to_have_count(0)


def test_sign_in_and_out(page: Page, shared_server, artifacts):
    page.goto(f"{shared_server}/graph/{A}")
    expect(page.locator("#signin")).to_be_visible()
    page.fill("#signin-token", "wrong")
    page.click("#signin-submit")
    expect(page.locator("#signin-error")).to_contain_text("unknown token")
    page.screenshot(path=str(artifacts / "analysis-sign-in.png"))
    page.fill("#signin-token", "tok-ada")
    page.click("#signin-submit")
    expect(page.locator("#signin")).to_have_count(0)
    expect(page.locator("#auth-user")).to_contain_text("ada")
    page.reload()
    page.wait_for_selector(READY)
    expect(page.locator("#auth-user")).to_contain_text("ada")
    page.click("#sign-out")
    expect(page.locator("#signin")).to_be_visible()


def test_compare_with_a_counterfactual_in_one_step(page: Page, analysis_server):
    errors = errors_of(page)
    page.goto(f"{analysis_server}/graph/{A}")
    page.wait_for_selector(READY)
    page.select_option("#compare-with", "+trace")
    page.wait_for_url("**/trace?**")
    expect(page.locator("#trace-compare")).to_contain_text(A)
    page.fill("#trace-prompt", "Fact: the capital of the state containing Houston is")
    page.click("#trace-submit")
    page.wait_for_url(f"**/diff/{A}/**", timeout=15_000)
    expect(page.locator("#diff-summary")).to_contain_text("shared")
    assert not errors
