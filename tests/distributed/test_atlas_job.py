"""Atlas work over the queue (issue 15.1): the API, which loads no model, queues an atlas build on the preset's
queue; a real `circuitboard worker` of the preset builds it from the activation cache beside its transcoders,
into the file the API reads (one shared folder here, the `models` volume in compose)."""

from __future__ import annotations

import pytest
from cluster import wait_job

from circuitboard.atlas.store import AtlasStore

pytestmark = pytest.mark.distributed

TEXTS = [
    "The capital of Texas is Austin, and Dallas is in the state of Texas.",
    "The opposite of hot is cold. Michael Jordan plays the sport of basketball.",
] * 10


@pytest.fixture(scope="module")
def lab(cluster, checkpoints):
    from circuitboard.data.activations import cache_from_texts, load_cache_model

    model_dir, tc_dir = checkpoints["tiny-a"]
    model, tokenizer = load_cache_model(model_dir)
    cache_from_texts(model, tokenizer, TEXTS, tc_dir.parent / "activations", n_seqs=12, seq_len=32)
    atlas = tc_dir.parent / "atlas.sqlite"  # where the worker's atlas job writes it (beside its transcoders)
    worker = cluster.worker("tiny-a", slow=False)
    api = cluster.api("tiny-a", atlas_path=atlas)
    cluster.wait_workers("tiny-a", 1)
    return {"api": api, "worker": worker, "atlas": atlas}


def test_a_worker_builds_the_atlas_from_a_queued_job(lab):
    with lab["api"].client() as c:
        assert c.get("/api/features/0/0").status_code == 404  # no atlas yet
        r = c.post("/api/presets/tiny-a/atlas", json={"precision": "fp32"})
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["job"]["id"])
        assert job["status"] == "done" and job["kind"] == "atlas", (job, lab["worker"].tail())
        result = c.get(job["result_url"]).json()
        assert result["path"] == str(lab["atlas"]) and result["layers"] == 3 and result["layers_built"] == [0, 1, 2]
        store = AtlasStore(lab["atlas"])
        assert result["features"] == store.n_features() > 0
        index = list(store.iter_layer(2))[0]["idx"]
        feature = c.get(f"/api/features/2/{index}")  # the API reads what the worker wrote
        assert feature.status_code == 200 and feature.json()["index"] == index, feature.text


def test_atlas_of_a_preset_without_live_worker_is_503(lab):
    with lab["api"].client() as c:
        r = c.post("/api/presets/tiny-b/atlas", json={})
        assert r.status_code == 503 and "'tiny-b'" in r.json()["detail"], r.text
