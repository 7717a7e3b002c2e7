"""The analysis pieces of the page against the real API (create_app, tiny random model): the shapes the page reads
are the server's. Suggest -> accept all -> validate, and the diff page of two traced prompts."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import Page, expect
from scenario import READY

pytestmark = pytest.mark.browser


def traced(base: str, prompt: str) -> str:
    r = httpx.post(f"{base}/api/graphs", json={"prompt": prompt}, timeout=60)
    assert r.status_code in (201, 202), r.text
    if r.status_code == 201:
        return r.json()["slug"]
    jid, deadline = r.json()["job_id"], time.time() + 240
    while time.time() < deadline:
        job = httpx.get(f"{base}/api/jobs/{jid}", timeout=30).json()
        if job["status"] == "done":
            return job["slug"]
        assert job["status"] not in ("failed", "cancelled"), job
        time.sleep(0.3)
    raise AssertionError("trace did not finish")


def test_analysis_real_server(page: Page, real_server, artifacts):
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    a = traced(real_server, "The capital of the state containing Dallas is")
    b = traced(real_server, "The capital of the state containing Chicago is")
    page.goto(f"{real_server}/graph/{a}")
    page.wait_for_selector(READY)
    expect(page.locator("#signin")).to_have_count(0)  # single-user server: no sign-in
    page.locator("#suggest-pinned-only").uncheck()
    page.click("#suggest-btn")
    expect(page.locator("#suggest-preview")).to_be_visible(timeout=30_000)
    n = page.locator("#suggest-preview .suggest-item").count()
    page.screenshot(path=str(artifacts / "analysis-real-suggest.png"))
    if n and page.locator("#suggest-accept-all").count():
        page.click("#suggest-accept-all")
        expect(page.locator("#subgraph svg .sg-node.supernode").first).to_be_attached()
        with page.expect_response("**/validate") as resp:
            page.click("#validate-btn")
        assert resp.value.status == 202, resp.value.text()  # a job in the queue (issue 13)
        expect(page.locator("#validation-plot circle.vpoint").first).to_be_attached(timeout=60_000)
        assert page.evaluate("window.__cbValidationLog.at(-1).status") == "done"
        expect(page.locator("#validation-failed")).to_have_count(0)
        page.locator("#validation").scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "analysis-real-validation.png"))
    expect(page.locator("#analysis-error")).to_have_count(0)
    page.goto(f"{real_server}/diff/{a}/{b}")
    expect(page.locator("#diff-summary")).to_contain_text("only in A", timeout=30_000)
    expect(page.locator("#diff-svg circle.diff-node").first).to_be_attached()
    page.screenshot(path=str(artifacts / "analysis-real-diff.png"), full_page=True)
    assert not errors
