"""Atlas builds as queued jobs (issue 15.1: "... validations and atlas work to the queue of the requested preset")
on the local worker thread, and the dedup of identical validation requests."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from cbapi_support import FakeEngine, live_server, make_settings, sse_events, wait_job

from circuitboard.atlas.records import feature_record
from circuitboard.atlas.store import AtlasStore
from circuitboard.devtools.tiny import build_tiny_checkpoint
from circuitboard.jobs.atlas import AtlasBuilder, atlas_sources
from circuitboard.jobs.events import JobEvents
from circuitboard.jobs.host import EngineHost
from circuitboard.jobs.queue import JobQueue
from circuitboard.jobs.runner import JobRunner
from circuitboard.store import Store

PRESET = "gemma-3-270m"  # the settings' default preset: the one this server's worker thread holds
TEXTS = [
    "The capital of Texas is Austin, and Dallas is in the state of Texas.",
    "The opposite of hot is cold. The opposite of big is small.",
    "Michael Jordan plays the sport of basketball. Roses are red, violets are blue.",
    "One plus one is two. The quick brown fox jumps over the lazy dog.",
] * 6


def tiny_atlas_world(root: Path) -> SimpleNamespace:
    """A tiny checkpoint (3 layers, 128 features each) with an activation cache of 16 sequences of 32 tokens
    beside its transcoders, where an atlas job of settings with these paths looks for it."""
    from circuitboard.data.activations import cache_from_texts, load_cache_model

    model_dir, tc_dir = build_tiny_checkpoint(root, arch="llama", seed=0)
    model, tokenizer = load_cache_model(model_dir)
    cache_from_texts(model, tokenizer, TEXTS, tc_dir.parent / "activations", n_seqs=16, seq_len=32)
    return SimpleNamespace(model_dir=model_dir, tc_dir=tc_dir, atlas=tc_dir.parent / "atlas.sqlite")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> SimpleNamespace:
    return tiny_atlas_world(tmp_path_factory.mktemp("tiny"))


def _settings(tmp: Path, world: SimpleNamespace, **kw):
    return make_settings(tmp, model_path=str(world.model_dir), transcoders_path=str(world.tc_dir), device="cpu", **kw)


@pytest.fixture(scope="module")
def server(tmp_path_factory, world):
    """The real engine of the tiny checkpoint."""
    with live_server(_settings(tmp_path_factory.mktemp("srv"), world)) as srv:
        assert srv.wait_engine() == "ready"
        yield srv


def _named(r, field: str) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    detail = r.json()["detail"]
    text = detail if isinstance(detail, str) else " ".join(f"{'.'.join(map(str, d['loc']))} {d['msg']}" for d in detail)
    assert field in text, text


def _built(c, body: dict) -> tuple[dict, list[tuple[str, dict]]]:
    """POST an atlas job (202), follow its events to the end; (its result, its events)."""
    r = c.post(f"/api/presets/{PRESET}/atlas", json=body)
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert job["kind"] == "atlas" and job["status"] in ("queued", "running") and job["result_url"] is None
    events = sse_events(c, f"/api/jobs/{job['id']}/events")
    assert events[-1][0] == "done", events[-1]
    done = c.get(f"/api/jobs/{job['id']}").json()
    assert done["kind"] == "atlas" and done["fraction"] == 1.0 and done["result_url"] == f"/api/jobs/{job['id']}/result"
    result = c.get(done["result_url"])
    assert result.status_code == 200, result.text
    return result.json(), events


def test_atlas_job_builds_with_progress_and_reads_see_it(server, world):
    with server.client() as c:
        assert c.get("/api/features/0/0").status_code == 404  # no atlas yet
        result, events = _built(c, {"precision": "fp32"})
        progress = [e for name, e in events if name == "progress" and e["phase"] == "atlas"]
        assert progress and all(e["kind"] == "atlas" and 0 <= e["done"] <= e["total"] > 0 for e in progress)
        fractions = [e["fraction"] for e in progress]
        assert fractions == sorted(fractions) and 0 < fractions[-1] <= 1
        assert result["path"] == str(world.atlas) and result["layers"] == 3 and result["layers_built"] == [0, 1, 2]
        assert result["features"] == AtlasStore(world.atlas).n_features() > 0 and result["tokens"] > 0
        assert result["seconds"] > 0

        # The feature routes read the new atlas without a restart ...
        index = list(AtlasStore(world.atlas).iter_layer(1))[0]["idx"]
        r = c.get(f"/api/features/1/{index}")
        assert r.status_code == 200, r.text
        before = r.json()

        # ... and a rebuild over fewer tokens (another build) replaces what they read.
        again, _ = _built(c, {"precision": "fp32", "max_tokens": 64, "resume": False})
        assert again["tokens"] < result["tokens"] and again["layers_built"] == [0, 1, 2]
        now = feature_record(AtlasStore(world.atlas), 1, index)
        r = c.get(f"/api/features/1/{index}")
        if now is None:
            assert r.status_code == 404  # not active in the smaller corpus
        else:
            assert r.status_code == 200 and r.json()["n_active"] == now["n_active"] <= before["n_active"]

        # Up to date: a resumed build of the same parameters builds nothing.
        same, _ = _built(c, {"precision": "fp32", "max_tokens": 64})
        assert same["layers_built"] == [] and same["features"] == again["features"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"layers": []}, "layers"),
        ({"layers": [-1]}, "layers"),
        ({"layers": [0, 3]}, "layers.1"),  # the tiny model has layers 0..2
        ({"precision": "fp8"}, "precision"),
        ({"resume": "perhaps"}, "resume"),
        ({"max_token": 10}, "max_token"),
    ],
)
def test_bad_atlas_requests_name_the_field(server, body, field):
    with server.client() as c:
        _named(c.post(f"/api/presets/{PRESET}/atlas", json=body), field)


def test_atlas_of_a_preset_this_server_does_not_hold_is_503(server):
    with server.client() as c:
        r = c.post("/api/presets/qwen3-0.6b/atlas")  # no body: every default
        assert r.status_code == 503 and "qwen3-0.6b" in r.json()["detail"]
        _named(c.post("/api/presets/not a preset!/atlas", json={}), "preset")


def test_only_admins_build_atlases_on_a_shared_server(tmp_path, world):
    settings = _settings(tmp_path, world, auth="required", atlas_path=tmp_path / "atlas.sqlite")
    store = Store(settings.resolved_database_url)
    try:
        tokens = {name: store.users.add(name, admin=admin)[1] for name, admin in (("alice", False), ("root", True))}
    finally:
        store.close()
    with live_server(settings, FakeEngine) as srv:
        assert srv.wait_engine() == "ready"
        with srv.client() as anon:
            assert anon.post(f"/api/presets/{PRESET}/atlas", json={}).status_code == 401
        with srv.client(headers={"Authorization": f"Bearer {tokens['alice']}"}) as alice:
            r = alice.post(f"/api/presets/{PRESET}/atlas", json={})
            assert r.status_code == 403 and "admin" in r.json()["detail"]
        with srv.client(headers={"Authorization": f"Bearer {tokens['root']}"}) as root:
            r = root.post(f"/api/presets/{PRESET}/atlas", json={"max_tokens": 32})
            assert r.status_code == 202, r.text
            job = wait_job(root, r.json()["job"]["id"])
            assert job["status"] == "done", job


def test_identical_validations_and_atlas_builds_share_a_job(tmp_path):
    engine = FakeEngine()
    with live_server(make_settings(tmp_path), lambda: engine) as srv:
        assert srv.wait_engine() == "ready"
        with srv.client() as c:
            slug = wait_job(c, c.post("/api/graphs", json={"prompt": "a b c"}).json()["job_id"])["slug"]
            engine.gate.clear()  # the next trace holds the worker: what follows stays queued
            engine.started.clear()
            held = c.post("/api/graphs", json={"prompt": "held trace"}).json()["job_id"]
            assert engine.started.wait(10)

            body = {"supernodes": [["g", "0_3_3"]], "modes": ["frozen"]}
            first = c.post(f"/api/graphs/{slug}/validate", json=body)
            assert first.status_code == 202, first.text
            second = c.post(f"/api/graphs/{slug}/validate", json={**body, "targets": None})  # same, defaults filled
            assert second.json()["job"]["id"] == first.json()["job"]["id"]
            other = c.post(f"/api/graphs/{slug}/validate", json={**body, "modes": ["free"]}).json()["job"]
            assert other["id"] != first.json()["job"]["id"]

            atlas = c.post(f"/api/presets/{PRESET}/atlas", json={"max_tokens": 100}).json()["job"]
            assert c.post(f"/api/presets/{PRESET}/atlas", json={"max_tokens": 100}).json()["job"]["id"] == atlas["id"]
            busy = c.post(f"/api/presets/{PRESET}/atlas", json={"max_tokens": 200})
            assert busy.status_code == 409 and atlas["id"] in busy.json()["detail"]

            # Once it has ended, the same request is a new job.
            for job_id in (first.json()["job"]["id"], other["id"], atlas["id"], held):
                assert c.delete(f"/api/jobs/{job_id}").json()["status"] == "cancelled"
            again = c.post(f"/api/graphs/{slug}/validate", json=body).json()["job"]
            assert again["id"] != first.json()["job"]["id"]
            engine.gate.set()


def test_a_cancelled_atlas_job_stops_at_its_first_progress_report(tmp_path, world):
    """In the runner itself: cancelled as it starts, the build raises from its progress function before the
    first layer is written, and the job stays cancelled with no result."""
    settings = _settings(tmp_path, world, atlas_path=tmp_path / "atlas.sqlite")
    store = Store(settings.resolved_database_url)
    host = EngineHost(FakeEngine, settings.max_prompt_tokens)
    host.load()
    events = JobEvents()
    queue = JobQueue(store.jobs, events)
    runner = JobRunner(host, queue, events, store.graphs, threading.Event(), atlas=AtlasBuilder(settings))
    try:
        queue.add("atlas", {"precision": "fp32"}, None, kind="atlas")
        job = queue.claim_next()
        assert job is not None and job.kind == "atlas"
        events.request_cancel(job.id)
        assert queue.finish(job.id, "cancelled")
        runner.run(job)
        rec = queue.get(job.id)
        assert rec is not None and rec.status == "cancelled" and rec.result is None
        assert AtlasStore(atlas_sources(settings).atlas).done_layers() == set()

        # A host without atlas building fails the job, saying so.
        bare = JobRunner(host, queue, events, store.graphs, threading.Event())
        queue.add("atlas", {}, None, kind="atlas")
        job = queue.claim_next()
        assert job is not None
        bare.run(job)
        rec = queue.get(job.id)
        assert rec is not None and rec.status == "failed" and "atlas" in (rec.error or "")
    finally:
        store.close()
