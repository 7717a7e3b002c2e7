"""Issue 14.4: /docs and /redoc render offline in Chromium, under the server's CSP (no inline scripts)."""

from __future__ import annotations

import os
import tempfile

import pytest
from cbapi_support import live_server, make_settings

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory):
    with live_server(make_settings(tmp_path_factory.mktemp("docs"), load_engine=False)) as server:
        yield server


@pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: run scripts/install-chromium.sh")
def test_docs_render_offline_under_the_csp(docs_server):
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as home, sync_api.sync_playwright() as pw:
        os.environ.setdefault("XDG_CONFIG_HOME", home)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        # offline: anything not served by this server is refused
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(docs_server.url) else r.abort())
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{docs_server.url}/docs")
        sync_api.expect(page.locator(".swagger-ui .info .title")).to_contain_text("Circuitboard", timeout=20_000)
        sync_api.expect(page.locator(".opblock-summary-path").first).to_be_visible()
        assert page.locator(".opblock").count() >= 20
        page.goto(f"{docs_server.url}/redoc")
        sync_api.expect(page.locator("h1").first).to_contain_text("Circuitboard", timeout=20_000)
        browser.close()
    # ReDoc's footer logo is an image on its CDN: the CSP blocks it, as it should offline; nothing else may be
    blocked = [p for p in problems if "Content Security Policy" in p and "cdn.redoc.ly" not in p]
    assert blocked == [], blocked
