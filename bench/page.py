"""Page speed: open a synthetic graph with 5,000 nodes / 100,000 links in headless chromium and hover it.

Prints the time to open (navigation start -> graph drawn and painted; target < 2 s) and the hover frame time
(mousemove -> highlight drawn -> next frame; target < 16 ms), with ratios against the targets, for the hardest case
(every node and every link drawn: `?pruningThreshold=1&allLinks=1`); then, for the default view (the graph opened
bare: its opening threshold, the strongest links only), the nodes and links drawn and the time to the first full
frame.

    .venv/bin/python bench/page.py [--nodes 5000] [--links 100000] [--runs 3] [--hovers 60]

Needs the built page (npm --prefix frontend run build) and chromium (scripts/install-chromium.sh). Serves the
graph from the fake API in tests/browser/fake_api.py (same page, same JSON schema as the real API).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

OPEN_TARGET_MS = 2000.0
HOVER_TARGET_MS = 16.0

HOVER_JS = """async (n) => {
  const lg = window.__cb.lg;
  const inner = document.querySelector('#link-graph .lg-inner');
  const ids = [...document.querySelectorAll('#link-graph .node')].map(e => e.dataset.id);
  const pick = []; for (let k = 0; k < n; k++) pick.push(ids[Math.floor((k * 7919) % ids.length)]);
  const frame = () => new Promise(r => requestAnimationFrame(() => r()));
  // After this frame's style/layout/paint: a message posted from a rAF callback runs after the frame is rendered.
  const afterPaint = () => new Promise(r => {
    const c = new MessageChannel(); c.port1.onmessage = () => r(); c.port2.postMessage(0);
  });
  const handler = [], total = [];
  inner.scrollIntoView({block: 'nearest', inline: 'nearest'});
  await frame();
  for (const id of pick) {
    const q = lg.nodePoint(id);
    if (!q) continue;
    // Start at the beginning of a frame, so no vsync wait is counted: handler + rendering of that frame.
    const r = await new Promise(res => requestAnimationFrame(async () => {
      const t0 = performance.now();
      inner.dispatchEvent(new MouseEvent('mousemove', {clientX: q.x, clientY: q.y, bubbles: true}));
      const t1 = performance.now();
      await afterPaint();
      res([t1 - t0, performance.now() - t0]);
    }));
    handler.push(r[0]); total.push(r[1]);
    await frame();
  }
  return {handler, total};
}"""


def open_graph(page, url: str) -> dict:
    """Open a graph page; what was drawn and when the first full frame was painted (the page's cb-graph-drawn)."""
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("body[data-graph-ready='1']", timeout=60_000)
    wall = (time.perf_counter() - t0) * 1000
    return {
        "open_ms": page.evaluate("performance.getEntriesByName('cb-graph-drawn')[0].startTime"),
        "wall_ms": wall,
        "inpage_ms": page.evaluate("window.__cbGraphOpenMs"),
        "marks": page.evaluate(
            "Object.fromEntries(performance.getEntriesByType('mark').map(m => [m.name, Math.round(m.startTime)]))"
        ),
        "nodes": page.locator("#link-graph .node").count(),
        "features": page.locator("#link-graph .node.feature").count(),
        "links": page.evaluate("window.__cb.lg.drawnLinks()"),
        "threshold": page.evaluate("window.__cb.store.state.pruningThreshold"),
    }


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


@contextlib.contextmanager
def make_server(kind: str, graph: dict):
    from conftest import ServerThread

    if kind == "fake":
        from fake_api import create_fake_app

        with ServerThread(create_fake_app({"bench-5k": graph})) as srv:
            yield srv
        return
    import httpx

    from circuitboard.api.app import create_app
    from circuitboard.config import Settings

    tmp = Path(tempfile.mkdtemp(prefix="cb-bench-db-"))
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'cb.sqlite'}",
        data_dir=tmp,
        frontend_dist=ROOT / "frontend" / "dist",
        load_engine=False,
    )
    with ServerThread(create_app(settings)) as srv:
        r = httpx.post(
            f"{srv.url}/api/graphs/import",
            content=json.dumps(graph),
            timeout=300,
            headers={"Content-Type": "application/json"},
        )
        r.raise_for_status()
        assert r.json()["slug"] == "bench-5k", r.json()
        yield srv


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--links", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hovers", type=int, default=60)
    ap.add_argument(
        "--threshold",
        type=float,
        default=1.0,
        help="pruningThreshold in the URL (1.0 = draw every node, the hardest case; every link is drawn too)",
    )
    ap.add_argument(
        "--server",
        choices=["fake", "real"],
        default="fake",
        help="fake: tests/browser/fake_api.py; real: circuitboard.api create_app (no engine), graph imported",
    )
    ap.add_argument("--json", action="store_true", help="also print one JSON line with the figures")
    args = ap.parse_args()

    if not (ROOT / "frontend" / "dist" / "app.js").exists():
        print("frontend/dist missing: npm --prefix frontend ci && npm --prefix frontend run build", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="cb-bench-")
    os.environ.setdefault("XDG_CONFIG_HOME", os.path.join(tmp, "config"))
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(tmp, "cache"))

    from conftest import CHROMIUM_ARGS, chromium_path
    from fixtures import make_big_graph
    from playwright.sync_api import sync_playwright

    graph = make_big_graph(args.nodes, args.links)
    size_mb = len(json.dumps(graph)) / 1e6
    n_nodes, n_links = len(graph["nodes"]), len(graph["links"])
    opens, inpage, handler, total = [], [], [], []
    defaults = []
    with make_server(args.server, graph) as srv, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
        for run in range(args.runs):
            page = ctx.new_page()
            o = open_graph(page, f"{srv.url}/graph/bench-5k?pruningThreshold={args.threshold}&allLinks=1")
            opens.append(o["open_ms"])
            inpage.append(o["inpage_ms"])
            print("   marks (ms from navigation start):", o["marks"])
            print(
                f"run {run + 1}: open {o['open_ms']:.0f} ms from navigation start (wall {o['wall_ms']:.0f} ms, "
                f"fetch+parse+draw {o['inpage_ms']:.0f} ms), {o['nodes']} nodes, {o['links']} links drawn"
            )
            if run == args.runs - 1:
                (ROOT / "test-artifacts").mkdir(exist_ok=True)
                page.screenshot(path=str(ROOT / "test-artifacts" / "bench-5k.png"))
                res = page.evaluate(HOVER_JS, args.hovers)
                handler, total = res["handler"], res["total"]
            page.close()
            page = ctx.new_page()
            defaults.append(open_graph(page, f"{srv.url}/graph/bench-5k"))
            page.close()
        browser.close()

    open_med = statistics.median(opens)
    hov_med = statistics.median(total)
    hov_p95 = pct(total, 0.95)
    print(f"server: {args.server}")
    print(f"graph: {n_nodes} nodes, {n_links} links, {size_mb:.1f} MB JSON")
    print(f"open:  median {open_med:.0f} ms  (target {OPEN_TARGET_MS:.0f} ms, ratio {open_med / OPEN_TARGET_MS:.2f})")
    print(
        f"hover: median {hov_med:.1f} ms, p95 {hov_p95:.1f} ms per frame; handler median "
        f"{statistics.median(handler):.2f} ms (target {HOVER_TARGET_MS:.0f} ms, ratio {hov_med / HOVER_TARGET_MS:.2f})"
    )
    d = defaults[-1]
    first_frame = statistics.median(x["open_ms"] for x in defaults)
    print(
        f"default view: {d['nodes']} nodes ({d['features']} features), {d['links']} links drawn "
        f"(pruning {d['threshold']}); first full frame median {first_frame:.0f} ms from navigation start"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "nodes": n_nodes,
                    "links": n_links,
                    "open_ms": open_med,
                    "hover_ms": hov_med,
                    "hover_p95_ms": hov_p95,
                    "open_ratio": open_med / OPEN_TARGET_MS,
                    "hover_ratio": hov_med / HOVER_TARGET_MS,
                    "default_nodes": d["nodes"],
                    "default_links": d["links"],
                    "default_first_frame_ms": first_frame,
                }
            )
        )
    return 0 if open_med < OPEN_TARGET_MS and hov_med < HOVER_TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
