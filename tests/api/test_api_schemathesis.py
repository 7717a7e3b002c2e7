"""Issue 14.5: schemathesis over every operation of the OpenAPI schema, on a real uvicorn with the FakeEngine,
with a bounded number of examples per operation: no input may make the server answer 5xx.

Each operation's cases come from schemathesis (`APIOperation.as_strategy`) and are drawn by hypothesis here,
rather than through schemathesis' pytest plugin."""

from __future__ import annotations

import pytest
from atlas_support import small_atlas
from cbapi_support import FakeEngine, live_server, make_settings
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = 40  # per operation: about 1,000 requests in all


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    engine = FakeEngine()
    # Generous rates: the fuzzer is one client and must reach the validation, not the rate limits.
    rates = {name: "100000/minute" for name in ("traces", "interventions", "tokenize", "imports", "explain")}
    tmp = tmp_path_factory.mktemp("fuzz")
    small_atlas(tmp / "atlas.sqlite", {(0, 1): (0.1, "one"), (1, 765): (0.2, "two")})
    settings_ = make_settings(tmp, rate_limits=rates, max_queue=1000, atlas_path=tmp / "atlas.sqlite")
    with live_server(settings_, lambda: engine) as server:
        assert server.wait_engine() == "ready"
        yield server


def _fuzz(operation, base_url: str) -> list[str]:
    errors: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(operation.as_strategy())
    def run(case) -> None:
        response = case.call(base_url=base_url, timeout=30)
        if response.status_code >= 500 and not _no_worker(response):
            errors.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

    run()
    return errors


def _no_worker(response) -> bool:
    """A preset no worker serves: the documented 503 naming it (issue 15), an answer about the input, not a fault."""
    return response.status_code == 503 and str(response.json().get("detail", "")).startswith("preset:")


def test_no_input_is_a_server_error(fuzz_server):
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    errors = [e for op in operations for e in _fuzz(op, fuzz_server.url)]
    assert errors == [], "\n".join(errors[:20])
