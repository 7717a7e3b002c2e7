"""Subgraph scores (hand-computed), draggable subgraph + auto layout, the logit-difference node, and feature search
in the interventions panel (fake API; tests/browser/fixtures_small.py has the hand-made graph)."""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest
from fixtures import make_graph
from fixtures_small import LINKS
from playwright.sync_api import Page, expect
from scenario import READY, click_node, shot

pytestmark = pytest.mark.browser
SMALL = "scores-fixture"


def errors_of(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def score(page: Page, which: str) -> float:
    return float(page.get_attribute(f"#sg-{which}", "data-value"))


def test_subgraph_scores_hand_computed(page: Page, fake_server, artifacts):
    errors = errors_of(page)
    # Pinned: F2 = 1_2_2, the " yes" logit 3_100_2, and the error Err0 = 0_-1_2 (no inputs: not scored).
    #   F2:    |in| = 3 + 1 + 1 = 5; from pinned/embeddings: E_11_2 (1) -> r = 0.2; from errors: Err0 (1) -> e = 0.2
    #   logit: |in| = 4 + 1 + 3 + 2 = 10; from pinned: F2 (4) -> r = 0.4; errors: 3 + 2 -> e = 0.5
    #   replacement = (0.2 + 0.4) / 2 = 0.3; completeness = 1 - (0.2 + 0.5) / 2 = 0.65
    page.goto(f"{fake_server}/graph/{SMALL}?pinnedIds=1_2_2,3_100_2,0_-1_2")
    page.wait_for_selector(READY)
    expect(page.locator("#sg-scores")).to_contain_text("over 2 nodes")
    assert score(page, "replacement") == pytest.approx(0.3)
    assert score(page, "completeness") == pytest.approx(0.65)
    expect(page.locator("#sg-replacement")).to_have_text("replacement 0.3")
    # Pin F1 = 0_1_1 too: F1 r = 2/2 = 1, e = 0; F2 r = (3 + 1)/5 = 0.8; logit unchanged.
    #   replacement = (1 + 0.8 + 0.4) / 3 = 0.7333; completeness = 1 - (0 + 0.2 + 0.5) / 3 = 0.7667
    click_node(page, "0_1_1", ["Control"])
    expect(page.locator("#sg-scores")).to_contain_text("over 3 nodes")
    assert score(page, "replacement") == pytest.approx(2.2 / 3)
    assert score(page, "completeness") == pytest.approx(1 - 0.7 / 3)
    # Supernode members count as pinned: grouping F1 and F2 changes nothing.
    page.locator('#sg-list li[data-id="0_1_1"] input[type=checkbox]').check()
    page.locator('#sg-list li[data-id="1_2_2"] input[type=checkbox]').check()
    page.click("#group-btn")
    expect(page.locator("#sg-list li.supernode")).to_have_count(1)
    assert score(page, "replacement") == pytest.approx(2.2 / 3)
    # Only nodes without inputs pinned: no score.
    page.goto(f"{fake_server}/graph/{SMALL}?pinnedIds=E_10_1,0_-1_2")
    page.wait_for_selector(READY)
    expect(page.locator("#sg-scores")).to_contain_text("pin nodes that have inputs")
    assert not errors, errors


def sg_pos(page: Page) -> dict:
    return page.evaluate("window.__cb.store.state.sgPos")


def sg_translate(page: Page, item_id: str) -> tuple[float, float]:
    t = page.get_attribute(f'#subgraph .sg-node[data-id="{item_id}"]', "transform")
    x, y = re.match(r"translate\(([-\d.e]+),([-\d.e]+)\)", t).groups()
    return float(x), float(y)


def test_subgraph_drag_and_auto_layout(page: Page, fake_server, artifacts):
    errors = errors_of(page)
    pinned = ["0_1_1", "0_-1_2", "1_2_2", "1_3_2", "3_100_2", "E_11_2"]
    page.goto(f"{fake_server}/graph/{SMALL}?pinnedIds={','.join(pinned)}")
    page.wait_for_selector(READY)
    node = page.locator('#subgraph .sg-node[data-id="0_1_1"] circle')
    node.scroll_into_view_if_needed()
    x0, y0 = sg_translate(page, "0_1_1")
    box = node.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 30, cy - 20, steps=4)
    page.mouse.move(cx + 60, cy - 40, steps=4)
    page.mouse.up()
    pos = sg_pos(page)
    assert list(pos) == ["0_1_1"]
    # Moved by the drag (screen px → viewBox units: the SVG is scaled to the panel's width).
    scale = 520 / page.locator("#subgraph svg.sg-svg").bounding_box()["width"]
    assert pos["0_1_1"][0] == pytest.approx(x0 + 60 * scale, abs=3)
    assert pos["0_1_1"][1] == pytest.approx(y0 - 40 * scale, abs=3)
    assert sg_translate(page, "0_1_1") == tuple(pos["0_1_1"])
    assert page.evaluate("window.__cb.store.state.clickedId") is None  # a drag is not a click
    # The edges follow the node: F1 → F2 starts at F1's new position.
    q = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    assert json.loads(q["sgPos"][0]) == [["0_1_1", *pos["0_1_1"]]]
    # A click without movement still selects.
    page.locator('#subgraph .sg-node[data-id="1_2_2"] circle').click()
    expect(page.locator("#feature-detail code").first).to_have_text("1_2_2")
    # The position comes back from the link.
    page.goto(page.url)
    page.wait_for_selector(READY)
    assert sg_translate(page, "0_1_1") == tuple(pos["0_1_1"])
    expect(page.locator('#subgraph .sg-node[data-id="0_1_1"]')).to_have_class(re.compile(r"\bplaced\b"))
    # Auto layout: one row per layer, lower layers lower down, tokens in order inside a row.
    page.click("#sg-auto-layout")
    pos = sg_pos(page)
    assert set(pos) == set(pinned)
    y = {k: v[1] for k, v in pos.items()}
    assert y["E_11_2"] > y["0_1_1"] == y["0_-1_2"] > y["1_2_2"] == y["1_3_2"] > y["3_100_2"]
    assert pos["0_1_1"][0] < pos["0_-1_2"][0]  # token 1 before token 2
    assert abs(pos["1_2_2"][0] - pos["1_3_2"][0]) >= 46  # same cell: kept apart
    for k, v in pos.items():
        assert sg_translate(page, k) == tuple(v)
    assert "sgPos=" in page.url
    shot(page, artifacts, "tools-subgraph-layout-light")
    page.keyboard.press("t")
    page.locator("#subgraph").screenshot(path=str(artifacts / "tools-subgraph-layout-dark.png"))
    page.keyboard.press("t")
    # Grouping carries positions: the new supernode is laid out by force, the others keep theirs.
    page.locator('#sg-list li[data-id="1_2_2"] input[type=checkbox]').check()
    page.locator('#sg-list li[data-id="1_3_2"] input[type=checkbox]').check()
    page.click("#group-btn")
    after = sg_pos(page)
    assert "1_2_2" not in after and "1_3_2" not in after and after["3_100_2"] == pos["3_100_2"]
    page.click("#sg-reset-layout")
    assert sg_pos(page) == {}
    assert "sgPos" not in page.url
    assert not errors, errors


def connection_rows(page: Page, direction: str) -> dict[str, float]:
    rows = page.eval_on_selector_all(
        f'#connections .conn-list[data-dir="{direction}"] li',
        "els => els.map(e => [e.dataset.id, e.querySelector('.conn-w').textContent])",
    )
    return {k: float(v) for k, v in rows}


def test_logit_difference_node(page: Page, fake_server, artifacts):
    errors = errors_of(page)
    page.goto(f"{fake_server}/graph/{SMALL}")
    page.wait_for_selector(READY)
    page.select_option("#diff-target", "3_100_2")
    page.select_option("#diff-contrast", "3_200_2")
    # " yes" minus " no": F2 4 - 1 = 3, F3 -1 - 2 = -3, Err0 3 - 3 = 0 (dropped), Err1 2 - 0 = 2.
    expect(page.locator("#feature-detail code").first).to_have_text("logit-diff")
    expect(page.locator("#connections .conn-head")).to_contain_text('Logit diff: "·yes" − "·no"')
    assert connection_rows(page, "inputs") == {"1_2_2": 3.0, "1_3_2": -3.0, "1_-1_2": 2.0}
    expect(page.locator('#link-graph .node.diff[data-id="logit-diff"]')).to_have_count(1)
    expect(page).to_have_url(re.compile(r"logitDiff=3_100_2__vs__3_200_2"))
    shot(page, artifacts, "tools-logit-diff", full=False)
    # Pin it; the link restores node, selection and pin.
    page.click("#pin-toggle")
    expect(page.locator('#sg-list li[data-id="logit-diff"]')).to_have_count(1)
    page.goto(page.url)
    page.wait_for_selector(READY)
    assert connection_rows(page, "inputs") == {"1_2_2": 3.0, "1_3_2": -3.0, "1_-1_2": 2.0}
    expect(page.locator('#sg-list li[data-id="logit-diff"]')).to_have_count(1)
    expect(page.locator("#diff-target")).to_have_value("3_100_2")
    # Swapping target and contrast flips the signs.
    page.select_option("#diff-target", "3_200_2")
    page.select_option("#diff-contrast", "3_100_2")
    assert connection_rows(page, "inputs") == {"1_2_2": -3.0, "1_3_2": 3.0, "1_-1_2": -2.0}
    # Clearing removes the node, its pin and the selection.
    page.click("#diff-clear")
    expect(page.locator('#link-graph [data-id="logit-diff"]')).to_have_count(0)
    expect(page.locator('#sg-list li[data-id="logit-diff"]')).to_have_count(0)
    assert "logitDiff" not in page.url and "clickedId" not in page.url
    assert not errors, errors


def test_logit_difference_matches_links(page: Page, fake_server):
    """On the bigger fixture: every incoming weight of the diff node is w(s→A) − w(s→B) from the graph JSON."""
    g = make_graph()
    logits = sorted((n for n in g["nodes"] if n["feature_type"] == "logit"), key=lambda n: -n["token_prob"])
    a, b = logits[0]["node_id"], logits[1]["node_id"]
    want: dict[str, float] = {}
    for link in g["links"]:
        sign = 1 if link["target"] == a else -1 if link["target"] == b else 0
        if sign:
            want[link["source"]] = want.get(link["source"], 0.0) + sign * link["weight"]
    want = {k: v for k, v in want.items() if v != 0}
    page.goto(f"{fake_server}/graph/dallas-austin-fixture?logitDiff={a}__vs__{b}&clickedId=logit-diff")
    page.wait_for_selector(READY)
    got = page.evaluate(
        """() => { const g = window.__cb.store.state.graph, d = g.byId.get('logit-diff'), out = {};
             for (let p = g.adj.inStart[d.i]; p < g.adj.inStart[d.i + 1]; p++) {
               const j = g.adj.inList[p]; out[g.nodes[g.links.src[j]].id] = g.links.w[j]; }
             return out; }"""
    )
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-5)
    expect(page.locator('#connections .conn-list[data-dir="inputs"] li')).to_have_count(min(40, len(want)))
    # The links to the two real logits are untouched.
    n_links = page.evaluate("window.__cb.store.state.graph.base.links.n")
    assert n_links == len(g["links"])


def test_interventions_feature_search(page: Page, fake_server, artifacts):
    errors = errors_of(page)
    page.add_init_script("window.__xss = 0; window.alert = () => { window.__xss++; };")
    page.goto(f"{fake_server}/graph/dallas-austin-fixture")
    page.wait_for_selector(READY)
    page.locator("#iv-search").fill("texas")
    item = page.locator('#iv-search-results li[data-feature="2_4242"]')
    expect(item).to_be_visible()
    expect(item.locator(".iv-search-label")).to_have_text("Texas <b>state</b> names")
    assert page.locator("#iv-search-results b").count() == 0
    item.locator("select.iv-search-pos").select_option("3")
    item.locator("button").click()
    row = page.locator('#interventions tr[data-id="search:2_4242_3"]')
    expect(row).to_contain_text("L2 #4242 @3 · Texas <b>state</b> names")
    expect(row.locator("select.iv-mode")).to_have_value("zero")
    # Another by id, then removed again.
    page.locator("#iv-search").fill("L4/77")
    page.locator('#iv-search-results li[data-feature="4_77"] button').click()
    expect(page.locator('#interventions tr[data-id="search:4_77_10"]')).to_have_count(1)
    page.locator('#interventions tr[data-id="search:4_77_10"] .iv-remove').click()
    expect(page.locator('#interventions tr[data-id="search:4_77_10"]')).to_have_count(0)
    # The run sends the searched feature at its position.
    with page.expect_request("**/api/interventions") as req:
        page.click("#iv-run")
    body = req.value.post_data_json
    assert body["interventions"] == [{"layer": 2, "feature": 4242, "position": 3, "mode": "zero", "value": 0}]
    expect(page.locator("#iv-result .iv-verdict")).to_have_text("Output changed")
    # Pinned features and searched ones live side by side.
    page.locator("#iv-search").fill("always-on")
    expect(page.locator('#iv-search-results li[data-feature="1_9"]')).to_be_visible()
    page.locator("#iv-search").fill("no such thing")
    expect(page.locator("#iv-search-status")).to_have_text("No features found.")
    page.locator("#interventions").scroll_into_view_if_needed()
    shot(page, artifacts, "tools-iv-search", full=False)
    assert page.evaluate("window.__xss") == 0
    assert not errors, errors


def test_interventions_search_without_atlas(page: Page, fake_server):
    page.route("**/api/features/search*", lambda route: route.fulfill(status=404, json={"detail": "no feature atlas"}))
    page.goto(f"{fake_server}/graph/dallas-austin-fixture")
    page.wait_for_selector(READY)
    page.locator("#iv-search").fill("texas")
    expect(page.locator("#iv-search-status")).to_have_text("No feature atlas to search.")


def test_links_fixture_is_consistent():
    """The hand-made graph's links go from lower rows to higher ones (as real graphs do)."""
    row = {"E": 0, "0": 1, "1": 2, "3": 4}
    for s, t, _ in LINKS:
        rs = 0 if s.startswith("E_") else row[s.split("_")[0]]
        assert rs < row[t.split("_")[0]], (s, t)
