"""Issue 12, the graph page: a first view that reads, the whole prompt on screen, filtered connections, the layered
subgraph, named saved views with a short link, and the feature page (fake API with graphs the size of real traces,
tests/browser/conftest.py `reading_server`). Screenshots at 1600x1000 and 1280x800 go to test-artifacts/."""

from __future__ import annotations

import re
import urllib.parse
from collections import Counter

import pytest
from playwright.sync_api import Page, expect
from reading_helpers import DALLAS, SIZES, errors_of, open_graph, pin_two_supernodes, shots
from scenario import READY, click_node, connected_features, node_center

pytestmark = pytest.mark.browser

# Links that pass the page's filters: both ends drawn (what "all links" draws).
DRAWABLE_LINKS = """() => {
  const g = window.__cb.store.state.graph;
  const shown = new Set([...document.querySelectorAll('#link-graph .node')].map(e => e.dataset.id));
  let n = 0;
  for (let j = 0; j < g.links.n; j++) {
    if (shown.has(g.nodes[g.links.src[j]].id) && shown.has(g.nodes[g.links.dst[j]].id)) n++;
  }
  return n;
}"""


def test_first_view_reads(page: Page, reading_server, artifacts):
    errors = errors_of(page)
    open_graph(page, reading_server, DALLAS)
    n_feat = page.locator("#link-graph .node.feature").count()
    assert 100 <= n_feat <= 150, n_feat
    text = page.inner_text("#pruning-text")
    m = re.search(r"hiding (\d+) of (\d+) nodes \(least influential; opened to show (\d+) features\)", text)
    assert m, text
    assert int(m.group(3)) == n_feat
    # Only the strongest few hundred links in the background; "all links" draws every one (and is in the URL).
    drawable = page.evaluate(DRAWABLE_LINKS)
    assert drawable > 1000
    assert page.evaluate("window.__cb.lg.drawnLinks()") == 600
    shots(page, artifacts, "fresh-graph")
    page.locator("#all-links").check()
    expect(page).to_have_url(re.compile(r"allLinks=1"))
    assert page.evaluate("window.__cb.lg.drawnLinks()") == drawable
    page.locator("#all-links").uncheck()
    assert page.evaluate("window.__cb.lg.drawnLinks()") == 600
    # Influence as a rank, with a one-line explanation.
    feat = connected_features(page)[0]
    click_node(page, feat)
    expect(page.locator("#fd-influence")).to_contain_text(re.compile(r"#\d+ of \d+"))
    expect(page.locator("#feature-detail .fd-help")).to_contain_text("rank among all nodes")
    page.mouse.move(*node_center(page, feat))
    expect(page.locator("#link-graph .tooltip")).to_contain_text(re.compile(r"influence #\d+ of \d+"))
    assert not errors, errors


def test_pruning_keeps_the_crossing_node(page: Page, reading_server):
    """At the graph's own node threshold nothing is hidden (the server kept the node that crosses it); at any t the
    page shows the nodes with influence <= t and the first one past t."""
    open_graph(page, reading_server, DALLAS, "pruningThreshold=0.8")
    expect(page.locator("#pruning-text")).to_contain_text("hiding 0 of")
    open_graph(page, reading_server, DALLAS, "pruningThreshold=0.5")
    got = page.evaluate(
        """() => {
          const g = window.__cb.store.state.graph;
          const shown = new Set([...document.querySelectorAll('#link-graph .node')].map(e => e.dataset.id));
          const ranked = g.nodes.filter(n => (n.kind === 'feature' || n.kind === 'error') && n.influence !== null)
            .sort((a, b) => a.influence - b.influence);
          const past = ranked.find(n => n.influence > 0.5);
          return {bad: ranked.filter(n => shown.has(n.id) !== (n.influence <= 0.5 || n === past)).length,
                  crossing: shown.has(past.id), hidden: ranked.filter(n => !shown.has(n.id)).length};
        }"""
    )
    assert got["bad"] == 0 and got["crossing"], got
    expect(page.locator("#pruning-text")).to_contain_text(f"hiding {got['hidden']} of")


def test_whole_prompt_fits(page: Page, reading_server, artifacts):
    errors = errors_of(page)
    for slug in ("long-31", "limit-64"):
        for w, hgt in SIZES:
            page.set_viewport_size({"width": w, "height": hgt})
            open_graph(page, reading_server, slug)
            n_tok = page.evaluate("window.__cb.store.state.graph.tokens.length")
            # No horizontal scrolling: every position's label, and the logit list, inside the window.
            wrap = page.evaluate(
                "(() => { const w = document.querySelector('#link-graph .lg-wrap'); "
                "return [w.scrollWidth, w.clientWidth]; })()"
            )
            assert wrap[0] <= wrap[1], (slug, w, wrap)
            xs = page.eval_on_selector_all(
                "#link-graph .lg-xlabel", "els => els.map(e => e.getBoundingClientRect()).map(r => [r.left, r.right])"
            )
            assert len(xs) == n_tok
            assert all(0 <= a and b <= w for a, b in xs), (slug, w)
            rows = page.locator("#lg-logits li")
            assert rows.count() == page.locator("#link-graph .node.logit").count() > 0
            box = page.locator("#lg-logits").bounding_box()
            assert box["x"] + box["width"] <= w
            # Each logit reads as its token and probability.
            expect(rows.first).to_contain_text(re.compile(r"\S+\s*\d+(\.\d)?%"))
            if slug == "long-31":
                page.screenshot(path=str(artifacts / f"reading-31-tokens-{w}.png"))
    page.set_viewport_size({"width": 1440, "height": 1000})
    # Hover a logit in the list: the node is highlighted in the plot.
    open_graph(page, reading_server, "long-31")
    first = page.locator("#lg-logits li").first
    first.hover()
    assert page.evaluate("window.__cb.lg.hoveredId()") == first.get_attribute("data-id")
    first.click()
    assert page.evaluate("window.__cb.store.state.clickedId") == first.get_attribute("data-id")
    assert not errors, errors


def input_texts(page: Page, cls: str) -> list[str]:
    return page.eval_on_selector_all(
        f'#connections .conn-list[data-dir="inputs"] .{cls}', "els => els.map(e => e.textContent)"
    )


def test_connections_filter(page: Page, reading_server, artifacts):
    errors = errors_of(page)
    graph = page.context.request.get(f"{reading_server}/api/graphs/{DALLAS}").json()
    logit = max((n for n in graph["nodes"] if n["feature_type"] == "logit"), key=lambda n: n["token_prob"])
    sources = [lk["source"] for lk in graph["links"] if lk["target"] == logit["node_id"]]
    layers = Counter(s.split("_")[0] for s in sources if not s.startswith("E_"))
    layer = f"L{layers.most_common(1)[0][0]}"
    open_graph(page, reading_server, DALLAS, f"pruningThreshold=1&clickedId={urllib.parse.quote(logit['node_id'])}")
    head = page.locator("#connections .conn-section h3").first
    total = int(re.search(r"\((\d+)\)", head.inner_text()).group(1))
    assert total == len(sources) > 40
    page.select_option("#conn-filter-layer", layer)
    expect(head).to_contain_text(re.compile(rf"Inputs \({layers.most_common(1)[0][1]} of {total}\)"))
    wheres = input_texts(page, "conn-where")
    assert wheres and all(w.startswith(layer) for w in wheres), wheres
    page.select_option("#conn-filter-kind", "feature")
    assert all(not lbl.startswith("Error") for lbl in input_texts(page, "conn-label"))
    page.select_option("#conn-filter-layer", "")
    page.fill("#conn-filter-q", "texas")
    labels = input_texts(page, "conn-label")
    assert labels and all("texas" in lbl.lower() for lbl in labels), labels
    page.fill("#conn-filter-q", "")
    page.select_option("#conn-filter-kind", "")
    page.select_option("#conn-filter-ctx", "9")
    rows = '#connections .conn-list[data-dir="inputs"] li'
    ids = page.eval_on_selector_all(rows, "els => els.map(e => e.dataset.id)")
    assert ids and all(i.endswith("_9") for i in ids), ids
    assert len(ids) == min(40, sum(1 for s in sources if s.endswith("_9")))
    page.locator("#connections").screenshot(path=str(artifacts / "reading-connections-filter.png"))
    # The filter stays while another node is clicked.
    page.locator('#connections .conn-list[data-dir="inputs"] li').first.click()
    expect(page.locator("#conn-filter-ctx")).to_have_value("9")
    assert not errors, errors


BOXES = """els => els.map(e => {
  const r = e.getBoundingClientRect();
  return {x: r.left, y: r.top, r: r.right, b: r.bottom, id: e.closest('[data-id]').dataset.id};
})"""


def boxes(page: Page, selector: str) -> list[dict]:
    return page.eval_on_selector_all(selector, BOXES)


def inside(a: dict, b: dict) -> bool:
    return b["x"] - 1 <= a["x"] and a["r"] <= b["r"] + 1 and b["y"] - 1 <= a["y"] and a["b"] <= b["b"] + 1


def apart(a: dict, b: dict) -> bool:
    return a["r"] <= b["x"] or b["r"] <= a["x"] or a["b"] <= b["y"] or b["b"] <= a["y"]


def test_subgraph_layered_layout(page: Page, reading_server, artifacts):
    errors = errors_of(page)
    picks = pin_two_supernodes(page, reading_server)
    expect(page.locator("#subgraph .sg-node.supernode")).to_have_count(2)
    expect(page.locator("#subgraph .sg-node")).to_have_count(4)
    page.locator("#subgraph").scroll_into_view_if_needed()
    # Labels sit inside their own box, and no label overlaps another box.
    rects = {b["id"]: b for b in boxes(page, "#subgraph .sg-box")}
    for lb in boxes(page, "#subgraph .sg-label"):
        assert inside(lb, rects[lb["id"]]), lb
        assert all(apart(lb, o) for other, o in rects.items() if other != lb["id"]), lb
    # Boxes do not overlap each other.
    ids = list(rects)
    assert all(apart(rects[a], rects[b]) for i, a in enumerate(ids) for b in ids[i + 1 :])
    # Edge widths follow |weight|; hovering an edge shows its weight.
    widths = page.eval_on_selector_all(
        "#subgraph path.sg-edge", "els => els.map(e => Number(e.getAttribute('stroke-width')))"
    )
    assert widths
    if len(widths) > 1:
        assert max(widths) > min(widths)
    hit = page.locator("#subgraph path.sg-edge-hit").first
    title = hit.locator("title").text_content()
    weight = title.rsplit(": ", 1)[1]
    hit.dispatch_event("mouseenter")
    expect(page.locator("#subgraph .sg-weight")).to_have_attribute("visibility", "visible")
    expect(page.locator("#subgraph .sg-weight-text")).to_contain_text(weight.lstrip("-"))
    shots(page, artifacts, "subgraph-two-supernodes", scroll_to="#subgraph")
    page.locator("#subgraph").screenshot(path=str(artifacts / "reading-subgraph-panel.png"))
    assert len(picks) == 6
    assert not errors, errors


def test_saved_views_by_name_and_short_link(page: Page, reading_server, artifacts):
    errors = errors_of(page)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    pin_two_supernodes(page, reading_server)
    expect(page.locator("#view-name")).to_have_attribute("placeholder", "name: 2 supernodes, 2 pinned")
    page.fill("#view-name", "Dallas two-hop")
    page.click("#save-view")
    expect(page.locator("#toast")).to_contain_text('View "Dallas two-hop" saved')
    sid = page.input_value("#share-url").split("subgraph=")[1]
    expect(page).to_have_url(re.compile(rf"/graph/{DALLAS}\?subgraph={sid}$"))
    page.click("#save-view")  # no name: the page names it
    expect(page.locator("#toast")).to_contain_text('View "2 supernodes, 2 pinned" saved')
    # The list reloads after the toast shows (a second request): wait for it, not a fixed time.
    expect(page.locator('#saved-views option:not([value=""])')).to_have_count(2)
    opts = page.eval_on_selector_all("#saved-views option", "els => els.map(e => [e.value, e.textContent])")
    names = [t for v, t in opts if v]
    assert len(names) == 2
    assert names[0].startswith("2 supernodes, 2 pinned — ") and names[1].startswith("Dallas two-hop — "), names
    # Opening the short link keeps it in the address bar until the view changes.
    page.goto(f"{reading_server}/graph/{DALLAS}?subgraph={sid}")
    page.wait_for_selector(READY)
    page.wait_for_timeout(300)
    assert page.url.endswith(f"?subgraph={sid}"), page.url
    expect(page.locator("#subgraph .sg-node.supernode")).to_have_count(2)
    page.locator('#link-filter input[data-tag="neg"]').uncheck()
    expect(page).to_have_url(re.compile(r"pinnedIds=.*hideLinks=neg"))
    page.locator('#link-filter input[data-tag="neg"]').check()  # back to the saved view: the short link again
    expect(page).to_have_url(re.compile(rf"\?subgraph={sid}$"))
    assert not errors, errors


def test_feature_page(page: Page, reading_server, artifacts):
    errors = errors_of(page)
    open_graph(page, reading_server, DALLAS)
    graph = page.evaluate(
        "window.__cb.store.state.graph.nodes.filter(n => n.kind === 'feature' && n.featIndex % 2 === 0).map(n => n.id)"
    )
    shown = set(page.eval_on_selector_all("#link-graph .node.feature", "els => els.map(e => e.dataset.id)"))
    feat = next(f for f in graph if f in shown)
    click_node(page, feat)
    link = page.locator("#fd-feature-page")
    href = link.get_attribute("href")
    layer, index = feat.split("_")[:2]
    act = page.evaluate("id => window.__cb.store.state.graph.byId.get(id).activation", feat)
    assert href == f"/feature/{layer}/{index}?act={act}&graph={DALLAS}", href
    expect(page.locator("#fd-density")).to_contain_text("1 in 830 tokens")
    page.goto(f"{reading_server}{href}")
    expect(page.locator("#fp-label")).to_have_text(f"atlas label {layer}/{index}")
    expect(page.locator("#fp-facts")).to_contain_text("active on 1 in 830 tokens")
    expect(page.locator("#fp-facts")).to_contain_text(f"In graph {DALLAS}")
    expect(page.locator("#fp-facts")).to_contain_text("of its activations")
    expect(page.locator("#feature-page .histogram .hist-axis")).to_have_count(2)
    expect(page.locator("#feature-page .histogram .hist-mark")).to_have_count(1)
    expect(page.locator("#feature-page .hist-mark-label")).to_contain_text("this prompt")
    expect(page.locator("#fp-examples .ex-band")).to_have_count(5)
    expect(page.locator("#fp-examples .ex-band h3").nth(1)).to_contain_text("Interval 1")
    # Real spaces, whitespace only faintly marked; markup stays text.
    first = page.locator("#fp-examples .example").first
    assert "The city of Dallas <b>x</b>" in first.text_content()
    assert first.locator(".ws.space").count() == 4
    assert page.locator("#feature-page b").count() == 0
    expect(page.locator("#label-legend")).to_contain_text("output token the feature promotes most")
    expect(page.locator("#feature-page .input-tokens tbody tr")).to_have_count(3)
    shots(page, artifacts, "feature-page", full=True)
    page.click("text=← graph dallas-research")
    page.wait_for_selector(READY)
    # Unknown feature: a sentence.
    page.goto(f"{reading_server}/feature/2/7")
    expect(page.locator("#feature-status")).to_contain_text("There is no atlas record for feature L2 #7")
    assert not errors, errors


def test_feature_search_says_what_matched(page: Page, reading_server):
    open_graph(page, reading_server, DALLAS)
    page.locator("#iv-search").fill("texas")
    why = '#iv-search-results li[data-feature="{}"] .iv-search-why'
    expect(page.locator(why.format("2_4242"))).to_have_text("matched the label")
    page.locator("#iv-search").fill("L4/77")
    expect(page.locator(why.format("4_77"))).to_have_text("matched the feature id")


def test_fullscreen_keeps_the_controls(page: Page, reading_server, artifacts):
    open_graph(page, reading_server, DALLAS)
    page.click("#lg-fullscreen")
    expect(page.locator("#link-graph")).to_have_class(re.compile(r"\bfullscreen\b"))
    for sel in ("#pruning", "#pruning-text", "#link-filter", "#all-links", "#lg-logits"):
        expect(page.locator(sel)).to_be_in_viewport()
    before = page.locator("#link-graph .node.feature").count()
    t = round(page.evaluate("window.__cb.store.state.pruningThreshold") + 0.1, 2)
    page.locator("#pruning").fill(str(t))
    expect(page.locator("#pruning-text")).to_contain_text(f"{t} —")
    assert page.locator("#link-graph .node.feature").count() > before
    shots(page, artifacts, "fullscreen")
    page.keyboard.press("Escape")
