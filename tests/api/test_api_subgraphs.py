"""Saved views (subgraphs) under short ids."""

from __future__ import annotations

from cbapi_support import wait_job


def _graph(c) -> tuple[str, dict]:
    job = c.post("/api/graphs", json={"prompt": "The capital of Texas is"}).json()
    slug = wait_job(c, job["job_id"])["slug"]
    return slug, c.get(f"/api/graphs/{slug}").json()


def test_save_and_load_subgraph(fake_server):
    with fake_server.client() as c:
        slug, graph = _graph(c)
        ids = [n["node_id"] for n in graph["nodes"]]
        view = {
            "name": "texas circuit",
            "pinnedIds": ids[:3],
            "supernodes": [["say Austin", ids[-3], ids[-2]]],
            "clerps": [[ids[-3], "Texas feature"]],
            "pruningThreshold": 0.6,
            "clickedId": ids[-1],
        }
        r = c.post(f"/api/graphs/{slug}/subgraphs", json=view)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        assert len(sid) == 8 and r.json()["url"] == f"/graph/{slug}?subgraph={sid}"
        got = c.get(f"/api/graphs/{slug}/subgraphs/{sid}").json()
        assert {k: got[k] for k in view} == view
        assert got["id"] == sid and got["created_at"]
        second = c.post(f"/api/graphs/{slug}/subgraphs", json={"pinnedIds": [ids[0]]}).json()
        listed = c.get(f"/api/graphs/{slug}/subgraphs").json()
        assert [s["id"] for s in listed] == [second["id"], sid]
        missing = c.get(f"/api/graphs/{slug}/subgraphs/zzzzzzzz")
        assert missing.status_code == 404 and "subgraph" in missing.json()["detail"]


def test_saved_view_keeps_link_filter_positions_and_logit_diff(fake_server):
    with fake_server.client() as c:
        slug, graph = _graph(c)
        ids = [n["node_id"] for n in graph["nodes"]]
        logit = next(n["node_id"] for n in graph["nodes"] if n.get("feature_type") == "logit")
        pair = [logit, next(i for i in ids if i != logit)]  # the server checks the ids exist; the page picks logits
        view = {
            "pinnedIds": [ids[0], "logit-diff"],
            "clickedId": "logit-diff",
            "densityThreshold": 0.01,
            "hideLinks": ["neg", "error"],
            "sgPos": [[ids[0], 120.0, 80.0], ["supernode-0", 30.5, 200.0]],
            "logitDiff": pair,
        }
        r = c.post(f"/api/graphs/{slug}/subgraphs", json=view)
        assert r.status_code == 201, r.text
        got = c.get(f"/api/graphs/{slug}/subgraphs/{r.json()['id']}").json()
        assert {k: got[k] for k in view} == view
        old = c.post(f"/api/graphs/{slug}/subgraphs", json={"pinnedIds": [ids[0]]}).json()
        got = c.get(f"/api/graphs/{slug}/subgraphs/{old['id']}").json()
        assert got["hideLinks"] == [] and got["sgPos"] == [] and got["logitDiff"] is None
        for body, field in [
            ({"pinnedIds": ["logit-diff"]}, "pinnedIds"),  # the synthetic node needs its logit pair
            ({"logitDiff": [logit, "nope"]}, "logitDiff"),
            ({"hideLinks": ["purple"]}, "hideLinks"),
            ({"sgPos": [[ids[0], "x", 1]]}, "sgPos"),
        ]:
            r = c.post(f"/api/graphs/{slug}/subgraphs", json=body)
            assert r.status_code == 422, (body, r.text)
            assert field in r.text


def test_subgraph_validation(fake_server):
    with fake_server.client() as c:
        slug, graph = _graph(c)
        ok = graph["nodes"][0]["node_id"]
        for body, field in [
            ({"pinnedIds": [ok, "99_1_1"]}, "pinnedIds"),
            ({"supernodes": [["label only"]]}, "supernodes"),
            ({"supernodes": [["label", "nope"]]}, "supernodes"),
            ({"clerps": [["a"]]}, "clerps"),
            ({"pruningThreshold": 3}, "pruningThreshold"),
            ({"clickedId": "nope"}, "clickedId"),
            ({"pinnedIds": "a,b"}, "pinnedIds"),
            ({"colour": "red"}, "colour"),
        ]:
            r = c.post(f"/api/graphs/{slug}/subgraphs", json=body)
            assert r.status_code == 422, (body, r.text)
            assert field in r.text


def test_deleting_a_graph_deletes_its_subgraphs(fake_server):
    with fake_server.client() as c:
        slug, graph = _graph(c)
        sid = c.post(f"/api/graphs/{slug}/subgraphs", json={"pinnedIds": []}).json()["id"]
        assert c.delete(f"/api/graphs/{slug}").status_code == 204
        assert c.get(f"/api/graphs/{slug}/subgraphs/{sid}").status_code == 404
