"""Page tests against the fake API (tests/browser/fake_api.py): the full scenario plus focused checks."""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest
from playwright.sync_api import Page, expect
from scenario import READY, click_node, connected_features, run_scenario, shot

pytestmark = pytest.mark.browser


def test_scenario_fake(page: Page, fake_server, artifacts):
    run_scenario(page, fake_server, artifacts, "fake", "The capital of the state containing Dallas is")


def test_user_strings_are_escaped(page: Page, fake_server, artifacts):
    """Prompts, token strings and labels from URLs/graphs are text, never HTML."""
    page.add_init_script("window.__xss = 0; window.alert = () => { window.__xss++; };")
    clerps = json.dumps([["E_0_0", "x"], ["nonexistent", "<img src=x onerror=alert(2)>"]])
    sn = json.dumps([["<script>alert(3)</script>", "a", "b"]])
    page.goto(
        f"{fake_server}/graph/xss-fixture?clerps={urllib.parse.quote(clerps)}&supernodes={urllib.parse.quote(sn)}"
    )
    page.wait_for_selector(READY)
    expect(page.locator("#graph-prompt")).to_have_text("<img src=x onerror=alert(1)> is")
    assert page.locator("main img").count() == 0
    assert page.locator("main script").count() == 0
    assert page.evaluate("window.__xss") == 0
    page.goto(f"{fake_server}/")
    page.wait_for_selector(".browse-item")
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__xss") == 0
    shot(page, artifacts, "fake-escaped-browse")


def test_pruning_slider_and_url_restore(page: Page, fake_server, artifacts):
    page.goto(f"{fake_server}/graph/dallas-austin-fixture?pruningThreshold=0.3")
    page.wait_for_selector(READY)
    text_low = page.inner_text("#pruning-text")
    n_low = page.locator("#link-graph .node").count()
    m = re.search(r"hiding (\d+) of (\d+)", text_low)
    assert m and int(m.group(1)) > 0
    assert int(m.group(2)) - int(m.group(1)) == n_low
    page.keyboard.press("]")
    page.keyboard.press("]")
    expect(page.locator("#pruning-text")).to_contain_text("0.4")
    assert page.locator("#link-graph .node").count() >= n_low
    assert "pruningThreshold=0.4" in page.url
    # clicked + clerps from the URL
    feat = connected_features(page)[0]
    click_node(page, feat)
    page.fill("#label-input", "my label")
    page.keyboard.press("Enter")
    expect(page.locator("#fd-label")).to_have_text("my label")
    assert "clerps=" in page.url and "clickedId=" in page.url
    url = page.url
    page.goto("about:blank")
    page.goto(url)
    page.wait_for_selector(READY)
    expect(page.locator("#fd-label")).to_have_text("my label")
    expect(page.locator(f'#link-graph [data-id="{feat}"]')).to_have_class(re.compile(r"\bclicked\b"))


def test_hover_tooltip_and_shortcuts(page: Page, fake_server, artifacts):
    page.goto(f"{fake_server}/graph/dallas-austin-fixture")
    page.wait_for_selector(READY)
    feat = connected_features(page)[0]
    box = page.locator(f'#link-graph [data-id="{feat}"]').bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2 + 3, box["y"] + box["height"] / 2 + 3)
    expect(page.locator("#link-graph .tooltip")).to_be_visible()
    shot(page, artifacts, "fake-hover", full=False)
    click_node(page, feat)
    page.keyboard.press("p")
    expect(page.locator("#sg-list li")).to_have_count(1)
    page.keyboard.press("p")
    expect(page.locator("#sg-list li")).to_have_count(0)
    page.keyboard.press("Escape")
    assert "clickedId" not in page.url
    page.keyboard.press("n")
    expect(page).to_have_url(re.compile(r".*/trace$"))
    expect(page.locator("#trace-prompt")).to_be_focused()
    page.keyboard.press("Escape")  # leave the prompt box: shortcuts do not fire while typing
    page.keyboard.press("b")
    expect(page).to_have_url(re.compile(r".*/$"))
    page.keyboard.press("/")
    expect(page.locator("#browse-search")).to_be_focused()


def test_cached_prompt_opens_at_once(page: Page, fake_server):
    page.goto(f"{fake_server}/trace")
    page.fill("#trace-prompt", "Fact: the capital of the state containing Dallas is")
    page.click("#trace-submit")
    page.wait_for_url(re.compile(r".*/graph/dallas-austin-fixture"))
    page.wait_for_selector(READY)
    assert page.locator("#trace-progress").count() == 0


def test_supernode_group_rename_ungroup(page: Page, fake_server, artifacts):
    page.goto(f"{fake_server}/graph/dallas-austin-fixture")
    page.wait_for_selector(READY)
    feats = connected_features(page)[:3]
    # Hold G and click: pins and selects for grouping (as in the reference viewers).
    page.locator("#link-graph .lg-wrap").scroll_into_view_if_needed()
    page.keyboard.down("g")
    for fid in feats:
        click_node(page, fid)
    page.keyboard.up("g")
    expect(page.locator("#sg-list li")).to_have_count(3)
    expect(page.locator("#group-btn")).to_have_text("Group selected (3)")
    page.click("#group-btn")  # no label: a default one
    expect(page.locator("#sg-list li.supernode .sg-name")).to_have_text("group 1")
    page.click("#sg-list li.supernode .sg-name")
    page.fill(".rename-input", "Texas things")
    page.keyboard.press("Enter")
    expect(page.locator("#sg-list li.supernode .sg-name")).to_have_text("Texas things")
    assert "Texas+things" in page.url or "Texas%20things" in page.url
    shot(page, artifacts, "fake-supernode-renamed")
    page.click("#sg-list li.supernode .icon-btn")
    expect(page.locator("#sg-list li")).to_have_count(3)
    expect(page.locator("#sg-list li.supernode")).to_have_count(0)


def test_import_graph_json(page: Page, fake_server, tmp_path):
    from fixtures import make_graph

    path = tmp_path / "g.json"
    path.write_text(json.dumps(make_graph(slug="imported-one", n_features=10, n_links=40, seed=9)))
    page.goto(f"{fake_server}/")
    page.wait_for_selector(".browse-item")
    page.set_input_files("input[type=file]", str(path))
    page.wait_for_url(re.compile(r".*/graph/imported-one"))
    page.wait_for_selector(READY)
    expect(page.locator("#graph-prompt")).to_have_text("Fact: the capital of the state containing Dallas is")


def test_browse_search_ignores_late_responses(page: Page, fake_server):
    """A slow answer to an earlier list request (the unfiltered first load) must not overwrite the newer,
    filtered list: that re-render also disarmed a two-step delete mid-click in a clean-clone run."""
    page.add_init_script("""
      window.__slow = 0;
      const f = window.fetch;
      window.fetch = (u, o) => {
        if (String(u).includes("/api/graphs?q=&")) {
          window.__slow++;
          return new Promise((r) => setTimeout(r, 1200)).then(() => f(u, o));
        }
        return f(u, o);
      };""")
    want = page.request.get(f"{fake_server}/api/graphs?q=dallas").json()["total"]
    everything = page.request.get(f"{fake_server}/api/graphs").json()["total"]
    assert 0 < want < everything
    page.goto(f"{fake_server}/")
    page.fill("#browse-search", "dallas")
    expect(page.locator(".browse-item")).to_have_count(want)
    page.wait_for_timeout(1800)  # the unfiltered answer has come back by now
    assert page.evaluate("window.__slow") >= 1
    expect(page.locator(".browse-item")).to_have_count(want)
