"""The end-to-end scenario of issue 6, shared by the fake-API and the real-server tests.

trace a prompt with progress → click a node, see its connections → pin three → group two into a labelled
supernode → copy the link, open it in a new page, find the same view → save view (short id) → run an intervention
and see the output change → browse and delete. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

READY = "body[data-graph-ready='1']"


def shot(page: Page, artifacts: Path, name: str, full: bool = True) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=full)


def node_center(page: Page, node_id: str) -> tuple[float, float]:
    node = page.locator(f'#link-graph [data-id="{node_id}"]')
    # The link graph may redraw its node layer after a click or pin; wait for this node rather than race it.
    expect(node).to_be_visible(timeout=5000)
    box = node.bounding_box()
    assert box, f"node {node_id} not drawn"
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def click_node(page: Page, node_id: str, modifiers: list[str] | None = None) -> None:
    """Click a node of the link graph at its centre (by coordinates: the hover canvas lies over the nodes)."""
    page.locator("#link-graph .lg-wrap").scroll_into_view_if_needed()
    x, y = settled_center(page, node_id)
    page.mouse.move(x, y)
    if modifiers:
        for m in modifiers:
            page.keyboard.down(m)
    page.mouse.click(x, y)
    if modifiers:
        for m in modifiers:
            page.keyboard.up(m)


def settled_center(page: Page, node_id: str) -> tuple[float, float]:
    """The node's centre once it stays put for longer than the link graph's resize debounce (150 ms): read
    during a pending re-layout, the box is stale and a click there lands on empty plot."""
    prev = node_center(page, node_id)
    for _ in range(25):
        page.wait_for_timeout(200)
        cur = node_center(page, node_id)
        if cur == prev:
            return cur
        prev = cur
    raise AssertionError(f"node {node_id} kept moving for 5 s")


def visible_ids(page: Page, kind: str) -> list[str]:
    return page.eval_on_selector_all(f"#link-graph .node.{kind}", "els => els.map(e => e.dataset.id)")


def connected_features(page: Page) -> list[str]:
    """Visible feature nodes that have at least one visible link, most connected first."""
    return page.evaluate(
        """() => {
          const g = window.__cb.store.state.graph;
          const shown = new Set([...document.querySelectorAll('#link-graph .node')].map(e => e.dataset.id));
          const deg = new Map();
          for (let j = 0; j < g.links.n; j++) {
            const s = g.nodes[g.links.src[j]].id, t = g.nodes[g.links.dst[j]].id;
            if (!shown.has(s) || !shown.has(t)) continue;
            deg.set(s, (deg.get(s) || 0) + 1); deg.set(t, (deg.get(t) || 0) + 1);
          }
          return g.nodes.filter(n => n.kind === 'feature' && shown.has(n.id) && deg.get(n.id))
            .sort((a, b) => deg.get(b.id) - deg.get(a.id)).map(n => n.id);
        }"""
    )


def trace(page: Page, base: str, artifacts: Path, prompt: str, prefix: str) -> str:
    page.goto(f"{base}/trace")
    page.fill("#trace-prompt", prompt)
    expect(page.locator("#trace-tokens .tok").first).to_be_visible(timeout=30_000)
    expect(page.locator("#trace-next .tok").first).to_be_visible()
    shot(page, artifacts, f"{prefix}-1-trace-form")
    page.click("#trace-submit")
    # A cached prompt opens at once; otherwise the progress bar shows the job's events.
    page.wait_for_function(
        "() => !document.getElementById('trace-progress')?.hidden || location.pathname.startsWith('/graph/')"
    )
    if "/trace" in page.url:
        page.screenshot(path=str(artifacts / f"{prefix}-2-trace-progress.png"), full_page=True)
    page.wait_for_url(re.compile(r".*/graph/[^/?]+.*"), timeout=180_000)
    page.wait_for_selector(READY, timeout=60_000)
    # The progress the page showed, from the job's events: real phases with rows done / total, then done.
    log = page.evaluate("window.__cbJobLog || []")
    assert any(e["status"] == "running" and e.get("total") for e in log), log
    assert log[-1]["status"] == "done", log
    return page.url.split("/graph/")[1].split("?")[0]


def run_scenario(page: Page, base: str, artifacts: Path, prefix: str, prompt: str) -> None:
    context = page.context
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    slug = trace(page, base, artifacts, prompt, prefix)
    expect(page.locator("#graph-prompt")).to_have_text(prompt)
    expect(page.locator("#pruning-text")).to_contain_text("hiding")

    feats = connected_features(page)
    if len(feats) < 3:  # small graphs: show every node
        for _ in range(20):
            page.keyboard.press("]")
        page.wait_for_timeout(200)
        feats = connected_features(page)
    assert len(feats) >= 3, f"need three connected features, got {feats}"

    # Click a node: its connections and details show.
    click_node(page, feats[0])
    expect(page.locator("#connections .conn-row").first).to_be_visible()
    expect(page.locator("#feature-detail code").first).to_have_text(feats[0])
    expect(page.locator(f'#link-graph [data-id="{feats[0]}"]')).to_have_class(re.compile(r"\bclicked\b"))
    shot(page, artifacts, f"{prefix}-3-graph-clicked")

    # Pin three (ctrl-click), group two into a labelled supernode.
    for fid in feats[:3]:
        click_node(page, fid, ["Control"])
    expect(page.locator("#sg-list li")).to_have_count(3)
    for fid in feats[:3]:
        expect(page.locator(f'#link-graph [data-id="{fid}"]')).to_have_class(re.compile(r"\bpinned\b"))
    page.locator(f'#sg-list li[data-id="{feats[0]}"] input[type=checkbox]').check()
    page.locator(f'#sg-list li[data-id="{feats[1]}"] input[type=checkbox]').check()
    page.fill("#group-label", "say <b>Austin</b>")
    page.click("#group-btn")
    expect(page.locator("#sg-list li.supernode .sg-name")).to_have_text("say <b>Austin</b>")
    expect(page.locator("#sg-list li")).to_have_count(2)
    expect(page.locator("#subgraph svg .sg-node.supernode")).to_have_count(1)
    shot(page, artifacts, f"{prefix}-4-subgraph-supernode")

    # Copy the link; open it in a new page: same view.
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy-link")
    expect(page.locator("#toast")).to_contain_text("copied")
    link = page.input_value("#share-url")
    assert f"/graph/{slug}?" in link and "pinnedIds=" in link and "supernodes=" in link
    clip = page.evaluate("navigator.clipboard.readText()")
    assert clip == link
    expected = view_of(page)
    page2 = context.new_page()
    page2.goto(link)
    page2.wait_for_selector(READY)
    expect(page2.locator("#sg-list li")).to_have_count(2)
    assert view_of(page2) == expected
    shot(page2, artifacts, f"{prefix}-5-shared-link")
    page2.close()

    # Save view (short id) and open that.
    page.click("#save-view")
    expect(page.locator("#toast")).to_contain_text("saved")
    saved = page.input_value("#share-url")
    assert "subgraph=" in saved
    page3 = context.new_page()
    page3.goto(saved)
    page3.wait_for_selector(READY)
    expect(page3.locator("#sg-list li")).to_have_count(2)
    assert view_of(page3) == expected
    page3.close()
    # ... and it is listed under "Saved views".
    saved_id = saved.split("subgraph=")[1]
    expect(page.locator(f'#saved-views option[value="{saved_id}"]')).to_have_count(1)

    # Intervention: set the supernode's features to a large value at every position.
    row = page.locator("#interventions tr", has_text="say <b>Austin</b>")
    row.locator("select.iv-mode").select_option("set")
    row.locator("input.iv-value").fill("60")
    row.locator("input[type=checkbox]").check()
    page.click("#iv-run")
    expect(page.locator("#iv-result")).to_be_visible(timeout=120_000)
    before = page.inner_text("#iv-result [data-side=before]").replace("Before", "", 1)
    after = page.inner_text("#iv-result [data-side=after]").replace("After", "", 1)
    assert before != after, f"intervention changed nothing: {before!r}"
    page.locator("#interventions").scroll_into_view_if_needed()
    shot(page, artifacts, f"{prefix}-6-intervention")

    # Dark theme + help overlay.
    page.keyboard.press("Escape")
    page.keyboard.press("t")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    shot(page, artifacts, f"{prefix}-7-graph-dark", full=False)
    page.keyboard.press("?")
    expect(page.locator("#help-overlay")).to_be_visible()
    shot(page, artifacts, f"{prefix}-8-help", full=False)
    page.keyboard.press("Escape")
    page.keyboard.press("t")

    # Browse and delete.
    page.goto(f"{base}/")
    page.fill("#browse-search", slug)
    item = page.locator(f'.browse-item[data-slug="{slug}"]')
    expect(item).to_be_visible()
    expect(page.locator(".browse-item")).to_have_count(1)
    shot(page, artifacts, f"{prefix}-9-browse")
    item.locator("[data-action=delete]").click()
    expect(item.locator("[data-action=delete]")).to_have_text("Confirm delete")
    item.locator("[data-action=delete]").click()
    expect(item).to_have_count(0)
    assert not errors, errors


def view_of(page: Page) -> dict:
    s = page.evaluate(
        """() => { const s = window.__cb.store.state;
           return {pinned: s.pinnedIds, supernodes: s.supernodes, clerps: s.clerps, clicked: s.clickedId,
                   threshold: s.pruningThreshold, slug: s.graph.slug}; }"""
    )
    s["sg"] = page.eval_on_selector_all("#sg-list li", "els => els.map(e => e.dataset.id)")
    s["hiding"] = page.inner_text("#pruning-text")
    return s
