"""Helpers of the issue-12 page tests (test_page_reading.py, test_page_first_steps.py)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

from playwright.sync_api import Page
from scenario import READY, connected_features

DALLAS = "dallas-research"
SIZES = ((1600, 1000), (1280, 800))


def errors_of(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def shots(page: Page, artifacts: Path, name: str, full: bool = False, scroll_to: str | None = None) -> None:
    """The page at both sizes (the link graph re-lays out on resize), scrolled to `scroll_to` when given."""
    for w, hgt in SIZES:
        page.set_viewport_size({"width": w, "height": hgt})
        page.wait_for_timeout(450)
        if scroll_to:
            page.locator(scroll_to).evaluate("e => e.scrollIntoView({block: 'start'})")
            page.evaluate("window.scrollBy(0, -50)")  # below the sticky header
        page.screenshot(path=str(artifacts / f"reading-{name}-{w}.png"), full_page=full)
    page.set_viewport_size({"width": 1440, "height": 1000})
    # The link graph re-lays out 150 ms after a window resize (debounced): a node's box read before that is
    # stale, and a click there misses it.
    page.wait_for_timeout(450)


def open_graph(page: Page, base: str, slug: str, query: str = "") -> None:
    page.goto(f"{base}/graph/{slug}{'?' + query if query else ''}")
    page.wait_for_selector(READY)


def pin_two_supernodes(page: Page, base: str) -> list[str]:
    """Pin six connected features over several layers and group them into two supernodes (by URL)."""
    open_graph(page, base, DALLAS)
    feats = connected_features(page)
    by_layer: dict[str, str] = {}
    for f in feats:
        by_layer.setdefault(f.split("_")[0], f)
    picks = list(by_layer.values())[:6]
    assert len(picks) == 6, picks
    sn = [["Texas things", picks[0], picks[1]], ["say Austin", picks[2], picks[3]]]
    q = urllib.parse.urlencode({"pinnedIds": ",".join(picks), "supernodes": json.dumps(sn)})
    open_graph(page, base, DALLAS, q)
    return picks
