"""Link graph view features: link-type filter, feature-density filter, cross-tab sync, resizable panels and
fullscreen (fake API, tests/browser/fake_api.py)."""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest
from playwright.sync_api import Page, expect
from scenario import READY, click_node, connected_features, node_center, shot

pytestmark = pytest.mark.browser
GRAPH = "dallas-austin-fixture"

# Links the page should draw: both ends visible, and not hidden by the filter (mirrors graph-data.js edgeMask).
EXPECTED_LINKS = """(hidden) => {
  const g = window.__cb.store.state.graph;
  const shown = new Set([...document.querySelectorAll('#link-graph .node')].map(e => e.dataset.id));
  let n = 0;
  for (let j = 0; j < g.links.n; j++) {
    const s = g.nodes[g.links.src[j]], t = g.nodes[g.links.dst[j]];
    if (!shown.has(s.id) || !shown.has(t.id)) continue;
    if (hidden.includes(g.links.w[j] < 0 ? 'neg' : 'pos')) continue;
    if (hidden.includes(s.kind) || hidden.includes(t.kind)) continue;
    n++;
  }
  return n;
}"""

# Pixels of the edge canvas whose colour is the negative-link hue (purple: red and blue well above green).
NEG_PIXELS = """() => {
  const cv = document.querySelector('#link-graph canvas.lg-all');
  const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 20 && d[i] > d[i + 1] + 25 && d[i + 2] > d[i + 1] + 25) n++;
  return n;
}"""


def errors_of(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def drawn(page: Page) -> int:
    return page.evaluate("window.__cb.lg.drawnLinks()")


def test_link_type_filter(page: Page, fake_server, artifacts):
    errors = errors_of(page)
    page.goto(f"{fake_server}/graph/{GRAPH}?pruningThreshold=1")
    page.wait_for_selector(READY)
    total = drawn(page)
    assert total == page.evaluate(EXPECTED_LINKS, []) > 0
    assert page.evaluate(NEG_PIXELS) > 0
    page.locator('#link-filter input[data-tag="neg"]').uncheck()
    expect(page).to_have_url(re.compile(r"hideLinks=neg"))
    assert drawn(page) == page.evaluate(EXPECTED_LINKS, ["neg"]) < total
    assert page.evaluate(NEG_PIXELS) == 0  # no negative link left on the canvas
    page.locator('#link-filter input[data-tag="error"]').uncheck()
    expect(page).to_have_url(re.compile(r"hideLinks=neg%2Cerror|hideLinks=neg,error"))
    assert drawn(page) == page.evaluate(EXPECTED_LINKS, ["neg", "error"])
    # Nodes stay: only their links go.
    assert page.locator("#link-graph .node.error").count() > 0
    # A clicked node's highlighted links obey the filter too (hover / click canvas): no error link is highlighted.
    feat = connected_features(page)[0]
    click_node(page, feat)
    shot(page, artifacts, "views-link-filter", full=False)
    # The view comes back from the link.
    page.goto(page.url)
    page.wait_for_selector(READY)
    expect(page.locator('#link-filter input[data-tag="neg"]')).not_to_be_checked()
    expect(page.locator('#link-filter input[data-tag="error"]')).not_to_be_checked()
    expect(page.locator('#link-filter input[data-tag="pos"]')).to_be_checked()
    assert drawn(page) == page.evaluate(EXPECTED_LINKS, ["neg", "error"])
    page.locator('#link-filter input[data-tag="neg"]').check()
    page.locator('#link-filter input[data-tag="embedding"]').uncheck()
    assert drawn(page) == page.evaluate(EXPECTED_LINKS, ["error", "embedding"])
    assert "hideLinks=error%2Cembedding" in page.url or "hideLinks=error,embedding" in page.url
    page.locator('#link-filter input[data-tag="pos"]').uncheck()
    page.locator('#link-filter input[data-tag="neg"]').uncheck()
    assert drawn(page) == 0
    assert not errors, errors


def test_feature_density_filter(page: Page, fake_server, artifacts):
    errors = errors_of(page)
    page.goto(f"{fake_server}/graph/{GRAPH}?pruningThreshold=1")
    page.wait_for_selector(READY)
    expect(page.locator("#density")).to_be_enabled()  # the atlas answered with frequencies
    expect(page.locator("#density-text")).to_have_text("off")
    n_all = page.locator("#link-graph .node.feature").count()
    dense = page.evaluate(
        "() => window.__cb.store.state.graph.nodes"
        ".filter(n => n.kind === 'feature' && n.frequency > 0.01).map(n => n.id)"
    )
    assert 0 < len(dense) < n_all
    page.locator("#density").fill("-2")  # log10: 1%
    expect(page.locator("#density-text")).to_have_text(f"< 1% — hiding {len(dense)} dense")
    expect(page).to_have_url(re.compile(r"densityThreshold=0\.01"))
    expect(page.locator("#link-graph .node.feature")).to_have_count(n_all - len(dense))
    shown = page.eval_on_selector_all("#link-graph .node.feature", "els => els.map(e => e.dataset.id)")
    assert not set(shown) & set(dense)
    # Counts add up with the pruning slider's.
    n_nodes = page.evaluate("window.__cb.store.state.graph.nodes.length")
    pruned = int(re.search(r"hiding (\d+) of", page.inner_text("#pruning-text")).group(1))
    assert page.locator("#link-graph .node").count() == n_nodes - pruned - len(dense)
    shot(page, artifacts, "views-density", full=False)
    # A pinned dense feature stays; the help overlay says what the filter does.
    page.goto(f"{fake_server}/graph/{GRAPH}?pruningThreshold=1&densityThreshold=0.01&pinnedIds={dense[0]}")
    page.wait_for_selector(READY)
    expect(page.locator(f'#link-graph .node[data-id="{dense[0]}"]')).to_have_count(1)
    expect(page.locator("#density-text")).to_have_text(f"< 1% — hiding {len(dense) - 1} dense")
    page.keyboard.press("?")
    expect(page.locator("#help-notes")).to_contain_text("Feature density")
    expect(page.locator("#help-notes")).to_contain_text("activation frequency")
    shot(page, artifacts, "views-help", full=False)
    page.keyboard.press("Escape")
    page.locator("#density").fill("0")
    expect(page.locator("#density-text")).to_have_text("off")
    expect(page.locator("#link-graph .node.feature")).to_have_count(n_all)
    assert "densityThreshold" not in page.url
    assert not errors, errors


def test_density_needs_atlas(page: Page, fake_server):
    page.route("**/api/features/labels", lambda route: route.fulfill(status=404, json={"detail": "no feature atlas"}))
    page.goto(f"{fake_server}/graph/{GRAPH}")
    page.wait_for_selector(READY)
    expect(page.locator("#density")).to_be_disabled()
    expect(page.locator("#density-text")).to_have_text("needs a feature atlas")


def test_cross_tab_hover_and_select(page: Page, fake_server, artifacts):
    errors = errors_of(page)
    other = page.context.new_page()
    errors += errors_of(other)
    unrelated = page.context.new_page()
    for p, slug in ((page, GRAPH), (other, GRAPH), (unrelated, "xss-fixture")):
        p.goto(f"{fake_server}/graph/{slug}?pruningThreshold=1")
        p.wait_for_selector(READY)
    feats = connected_features(page)
    x, y = node_center(page, feats[0])
    page.mouse.move(x, y)
    other.wait_for_function("id => window.__cb.lg.hoveredId() === id", arg=feats[0])
    expect(other.locator("#link-graph .tooltip")).to_be_visible()
    shot(other, artifacts, "views-sync-hover", full=False)
    page.mouse.move(5, 5)  # leaving the link graph clears the other tab's hover
    other.wait_for_function("() => window.__cb.lg.hoveredId() === null")
    click_node(page, feats[1])
    other.wait_for_function("id => window.__cb.store.state.clickedId === id", arg=feats[1])
    expect(other.locator("#feature-detail code").first).to_have_text(feats[1])
    expect(other).to_have_url(re.compile(f"clickedId={feats[1]}"))
    # ... and back the other way, without echoing forever.
    click_node(other, feats[2])
    page.wait_for_function("id => window.__cb.store.state.clickedId === id", arg=feats[2])
    page.wait_for_timeout(300)
    assert other.evaluate("window.__cb.store.state.clickedId") == feats[2]
    # A tab on another graph hears nothing.
    assert unrelated.evaluate("window.__cb.store.state.clickedId") is None
    assert unrelated.evaluate("window.__cb.lg.hoveredId()") is None
    assert not errors, errors


def _drag(page: Page, selector: str, dx: float, dy: float) -> None:
    box = page.locator(selector).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx / 2, y + dy / 2, steps=3)
    page.mouse.move(x + dx, y + dy, steps=3)
    page.mouse.up()


def test_resizable_panels_and_fullscreen(page: Page, fake_server, artifacts):
    errors = errors_of(page)
    page.goto(f"{fake_server}/graph/{GRAPH}")
    page.wait_for_selector(READY)
    h0 = page.locator("#link-graph").bounding_box()["height"]
    rows0 = page.evaluate("document.querySelector('#link-graph .lg-inner').offsetHeight")
    page.locator("#lg-resize").scroll_into_view_if_needed()
    _drag(page, "#lg-resize", 0, 160)
    h1 = page.locator("#link-graph").bounding_box()["height"]
    assert abs(h1 - (h0 + 160)) < 3, (h0, h1)
    expect(page.locator("#link-graph")).to_have_class(re.compile(r"\bsized\b"))
    # The grid re-lays out to the new height (rows share it).
    page.wait_for_function("h => document.querySelector('#link-graph .lg-inner').offsetHeight > h + 100", arg=rows0)
    w_conn = page.locator("#connections").bounding_box()["width"]
    w_detail = page.locator("#feature-detail").bounding_box()["width"]
    _drag(page, ".col-handle[data-k='0']", 120, 0)
    assert abs(page.locator("#connections").bounding_box()["width"] - (w_conn + 120)) < 4
    assert abs(page.locator("#feature-detail").bounding_box()["width"] - (w_detail - 120)) < 4
    saved = page.evaluate("JSON.parse(localStorage.getItem('cb-panels'))")
    assert saved["lgHeight"] == round(h1) and len(saved["cols"]) == 3
    shot(page, artifacts, "views-resized")
    # Sizes survive a reload.
    page.reload()
    page.wait_for_selector(READY)
    assert abs(page.locator("#link-graph").bounding_box()["height"] - h1) < 2
    assert abs(page.locator("#connections").bounding_box()["width"] - (w_conn + 120)) < 4
    # Fullscreen: button, Esc, F.
    page.click("#lg-fullscreen")
    expect(page.locator("#link-graph")).to_have_class(re.compile(r"\bfullscreen\b"))
    box = page.locator("#link-graph").bounding_box()
    assert box["width"] == 1440 and box["height"] == 1000
    # rows grow up to 90 px each
    page.wait_for_function("() => document.querySelector('#link-graph .lg-inner').offsetHeight > 700")
    expect(page.locator("#lg-fullscreen")).to_have_attribute("aria-pressed", "true")
    feat = connected_features(page)[0]
    click_node(page, feat)  # the graph works in fullscreen
    expect(page.locator(f'#link-graph [data-id="{feat}"]')).to_have_class(re.compile(r"\bclicked\b"))
    shot(page, artifacts, "views-fullscreen-light", full=False)
    page.keyboard.press("t")
    shot(page, artifacts, "views-fullscreen-dark", full=False)
    page.keyboard.press("t")
    page.keyboard.press("Escape")
    expect(page.locator("#link-graph")).not_to_have_class(re.compile(r"\bfullscreen\b"))
    assert page.evaluate("window.__cb.store.state.clickedId") == feat  # Esc left fullscreen only
    page.keyboard.press("f")
    expect(page.locator("#link-graph")).to_have_class(re.compile(r"\bfullscreen\b"))
    page.keyboard.press("f")
    expect(page.locator("#link-graph")).not_to_have_class(re.compile(r"\bfullscreen\b"))
    # Double-click a handle: back to the default height.
    page.locator("#lg-resize").dblclick()
    expect(page.locator("#link-graph")).not_to_have_class(re.compile(r"\bsized\b"))
    assert abs(page.locator("#link-graph").bounding_box()["height"] - h0) < 2
    assert not errors, errors


def test_saved_view_keeps_new_view_state(page: Page, fake_server):
    errors = errors_of(page)
    pos = urllib.parse.quote(json.dumps([["1_2_2", 100, 120]]))
    page.goto(
        f"{fake_server}/graph/scores-fixture?pinnedIds=1_2_2,logit-diff&hideLinks=neg&sgPos={pos}"
        "&logitDiff=3_100_2__vs__3_200_2&densityThreshold=0.5&clickedId=logit-diff"
    )
    page.wait_for_selector(READY)
    keys = (
        "({pinnedIds, hideLinks, sgPos, logitDiff, densityThreshold, clickedId}) => "
        "({pinnedIds, hideLinks, sgPos, logitDiff, densityThreshold, clickedId})"
    )
    state = page.evaluate(f"({keys})(window.__cb.store.state)")
    assert state == {
        "pinnedIds": ["1_2_2", "logit-diff"],
        "hideLinks": ["neg"],
        "sgPos": {"1_2_2": [100, 120]},
        "logitDiff": ["3_100_2", "3_200_2"],
        "densityThreshold": 0.5,
        "clickedId": "logit-diff",
    }
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#save-view")
    expect(page.locator("#toast")).to_contain_text("saved")
    saved = page.input_value("#share-url")
    other = page.context.new_page()
    other.goto(saved)
    other.wait_for_selector(READY)
    assert other.evaluate(f"({keys})(window.__cb.store.state)") == state
    expect(other.locator('#link-filter input[data-tag="neg"]')).not_to_be_checked()
    assert not errors, errors
