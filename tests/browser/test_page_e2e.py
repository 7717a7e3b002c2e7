"""Issue 6's end-to-end scenario against the real server (create_app) with a tiny random model."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page
from scenario import run_scenario

pytestmark = pytest.mark.browser


def test_scenario_real_server(page: Page, real_server, artifacts):
    run_scenario(page, real_server, artifacts, "real", "The capital of Texas is")
