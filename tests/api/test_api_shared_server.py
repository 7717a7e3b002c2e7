"""Issue 14.1-4 over a real uvicorn: two modes, accounts, ownership, tombstoned slugs, rate limits, browser
security (hosts, origins, CSRF, headers)."""

from __future__ import annotations

import json

import httpx
import pytest
from cbapi_support import FakeEngine, live_server, make_settings, wait_job
from test_api_import_export import CT_GRAPH

from circuitboard.store import Store


class Lab:
    """A shared-mode server and three accounts: alice and bob (users), root (admin)."""

    def __init__(self, server, tokens: dict[str, str]) -> None:
        self.server, self.tokens = server, tokens

    def client(self, who: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return self.server.client(headers=headers, **kw)


def _users(settings, *specs: tuple[str, bool]) -> dict[str, str]:
    store = Store(settings.resolved_database_url)
    try:
        return {name: store.users.add(name, admin=admin, password=f"{name}-pw")[1] for name, admin in specs}
    finally:
        store.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, database_backend):
    settings = make_settings(tmp_path_factory.mktemp("lab"), auth="required", max_queue_per_user=2)
    tokens = _users(settings, ("alice", False), ("bob", False), ("root", True))
    engine = FakeEngine()
    with live_server(settings, lambda: engine) as server:
        assert server.wait_engine() == "ready"
        yield Lab(server, tokens)


def _graph(c: httpx.Client, prompt: str) -> str:
    r = c.post("/api/graphs", json={"prompt": prompt})
    assert r.status_code in (201, 202), r.text
    return r.json()["slug"] if r.status_code == 201 else wait_job(c, r.json()["job_id"])["slug"]


# Every state-changing endpoint, with a body that is valid once a user is signed in ({slug}, {view}, {job}
# are filled in per test).
CHANGES = [
    ("POST", "/api/graphs", {"json": {"prompt": "matrix trace"}}),
    ("POST", "/api/tokenize", {"json": {"prompt": "a b"}}),
    ("POST", "/api/interventions", {"json": {"prompt": "a b"}}),
    ("POST", "/api/graphs/import", {"json": CT_GRAPH}),
    ("POST", "/api/graphs/{slug}/subgraphs", {"json": {}}),
    ("DELETE", "/api/graphs/{slug}/subgraphs/{view}", {}),
    ("DELETE", "/api/jobs/{job}", {}),
    ("DELETE", "/api/graphs/{slug}", {}),
    ("PUT", "/api/features/0/1/label", {"json": {"label": "x"}}),
    ("POST", "/api/features/labels", {"json": {"features": [[0, 1]]}}),
    ("POST", "/api/features/0/1/explain", {}),
    ("DELETE", "/api/session", {}),
]


def test_anonymous_calls_get_401_in_shared_mode(lab):
    with lab.client("alice") as alice, lab.client() as anon:
        slug = _graph(alice, "owned by alice")
        view = alice.post(f"/api/graphs/{slug}/subgraphs", json={}).json()["id"]
        for method, path, kw in CHANGES:
            if path == "/api/session":
                continue  # signing out needs nobody
            r = anon.request(method, path.format(slug=slug, view=view, job="x"), **kw)
            assert r.status_code == 401, (method, path, r.text)
            assert r.headers["www-authenticate"] == "Bearer" and "sign in" in r.json()["detail"]
        for path in ("/api/config", "/api/graphs", f"/api/graphs/{slug}", "/api/jobs/x"):
            assert anon.get(path).status_code == 401, path
        assert anon.get("/api/health").status_code == 200
        assert anon.get("/api/session").json() == {
            "auth": "required",
            "user": None,
            "via": "anonymous",
            "csrf_token": None,
        }
        assert anon.get("/").status_code == 200 and anon.get("/docs").status_code == 200
        bad = lab.server.client(headers={"Authorization": "Bearer cb_aaaaaaaaaaaa_" + "x" * 43})
        assert bad.get("/api/graphs").status_code == 401


def test_every_state_changing_operation_in_the_schema_needs_a_user(lab):
    """Not only the ones listed above: every POST, PUT, PATCH and DELETE the OpenAPI schema has, now or later."""
    with lab.client("alice") as alice, lab.client() as anon:
        paths = alice.get("/openapi.json").json()["paths"]
        unsafe = [(m.upper(), p) for p, ops in paths.items() for m in ops if m in ("post", "put", "patch", "delete")]
        assert len(unsafe) >= len(CHANGES) - 1
        for method, path in unsafe:
            if path == "/api/session":
                continue
            concrete = path.replace("{", "").replace("}", "")  # any value: the guard answers before routing
            r = anon.request(method, concrete, json={})
            assert r.status_code == 401, (method, path, r.status_code)


def test_owners_and_admins_change_things_others_get_403(lab):
    with lab.client("alice") as alice, lab.client("bob") as bob, lab.client("root") as root:
        slug = _graph(alice, "alice's circuit")
        assert bob.get(f"/api/graphs/{slug}").status_code == 200  # any colleague reads it by its link
        listed = bob.get("/api/graphs", params={"q": "alice"}).json()["items"]
        assert [i["owner"] for i in listed if i["slug"] == slug] == ["alice"]
        view = alice.post(f"/api/graphs/{slug}/subgraphs", json={"name": "mine"}).json()["id"]
        got = bob.get(f"/api/graphs/{slug}/subgraphs/{view}").json()
        assert got["owner"] == "alice" and got["name"] == "mine"
        bobs_view = bob.post(f"/api/graphs/{slug}/subgraphs", json={"name": "bob's"}).json()["id"]
        r = bob.delete(f"/api/graphs/{slug}/subgraphs/{view}")
        assert r.status_code == 403 and "owner" in r.json()["detail"]
        assert alice.delete(f"/api/graphs/{slug}/subgraphs/{bobs_view}").status_code == 403
        assert root.delete(f"/api/graphs/{slug}/subgraphs/{bobs_view}").status_code == 204
        assert alice.delete(f"/api/graphs/{slug}/subgraphs/{view}").status_code == 204
        imported = bob.post("/api/graphs/import", json=CT_GRAPH).json()
        assert imported["owner"] == "bob"
        assert alice.delete(f"/api/graphs/{imported['slug']}").status_code == 403
        assert bob.delete(f"/api/graphs/{imported['slug']}").status_code == 204
        r = bob.delete(f"/api/graphs/{slug}")
        assert r.status_code == 403 and slug in r.json()["detail"]
        assert root.delete(f"/api/graphs/{slug}").status_code == 204


def test_only_the_owner_cancels_a_job(tmp_path):
    settings = make_settings(tmp_path, auth="required")
    tokens = _users(settings, ("alice", False), ("bob", False))
    engine = FakeEngine(hold=True)
    with live_server(settings, lambda: engine) as server:
        lab = Lab(server, tokens)
        with lab.client("alice") as alice, lab.client("bob") as bob:
            job = alice.post("/api/graphs", json={"prompt": "hold it"}).json()
            assert engine.started.wait(5)
            assert bob.get(f"/api/jobs/{job['job_id']}").json()["status"] == "running"
            assert bob.delete(f"/api/jobs/{job['job_id']}").status_code == 403
            assert alice.delete(f"/api/jobs/{job['job_id']}").json()["status"] == "cancelled"
            engine.gate.set()


def test_single_user_mode_needs_no_sign_in(fake_server):
    with fake_server.client() as c:
        slug = _graph(c, "single user graph")
        view = c.post(f"/api/graphs/{slug}/subgraphs", json={}).json()["id"]
        job = c.post("/api/graphs", json={"prompt": "matrix job"}).json().get("job_id", "x")
        for method, path, kw in CHANGES:
            r = c.request(method, path.format(slug=slug, view=view, job=job), **kw)
            assert r.status_code not in (401, 403), (method, path, r.text)
        assert c.get("/api/session").json()["auth"] == "off"
        assert c.post("/api/session", json={"token": "cb_x"}).status_code == 409


def test_deleted_slug_is_never_reused(lab):
    doc = {**CT_GRAPH, "metadata": {**CT_GRAPH["metadata"], "slug": "shared-link"}}
    with lab.client("alice") as alice, lab.client("bob") as bob:
        first = alice.post("/api/graphs/import", json=doc).json()
        assert first["slug"] == "shared-link"
        assert alice.delete("/api/graphs/shared-link").status_code == 204
        forged = bob.post("/api/graphs/import", json=doc).json()
        assert forged["slug"] != "shared-link"
        assert bob.get("/api/graphs/shared-link").status_code == 404
        r = bob.post("/api/graphs", json={"prompt": "take the link", "slug": "shared-link"})
        assert r.status_code == 409 and "slug" in r.json()["detail"]


def test_sessions_cookie_csrf_and_sign_out(lab):
    with lab.server.client() as c:
        assert c.post("/api/session", json={"name": "alice", "password": "wrong"}).status_code == 401
        r = c.post("/api/session", json={"name": "alice", "password": "alice-pw"})
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"]
        assert "cb_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        body = r.json()
        assert body["user"] == {"name": "alice", "is_admin": False} and body["via"] == "session"
        csrf = body["csrf_token"]
        assert c.get("/api/session").json()["user"]["name"] == "alice"
        assert c.get("/api/graphs").status_code == 200
        r = c.post("/api/tokenize", json={"prompt": "a b"})
        assert r.status_code == 403 and "csrf" in r.json()["detail"]
        assert c.post("/api/tokenize", json={"prompt": "a b"}, headers={"X-CSRF-Token": "nope"}).status_code == 403
        assert c.post("/api/tokenize", json={"prompt": "a b"}, headers={"X-CSRF-Token": csrf}).status_code == 200
        assert c.delete("/api/session", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert c.get("/api/graphs").status_code == 401
    with lab.server.client() as c:
        r = c.post("/api/session", json={"token": lab.tokens["bob"]})
        assert r.status_code == 200 and r.json()["user"]["name"] == "bob"


def test_revoked_user_is_signed_out_everywhere(tmp_path, fake_engine):
    settings = make_settings(tmp_path, auth="required")
    tokens = _users(settings, ("carol", False))
    with live_server(settings, lambda: fake_engine) as server, server.client() as c:
        session = server.client()
        session.post("/api/session", json={"token": tokens["carol"]})
        auth = {"Authorization": f"Bearer {tokens['carol']}"}
        assert c.get("/api/graphs", headers=auth).status_code == 200
        store = Store(settings.resolved_database_url)
        assert store.users.revoke("carol")
        store.close()
        assert c.get("/api/graphs", headers=auth).status_code == 401
        assert session.get("/api/graphs").status_code == 401
        session.close()


def test_non_loopback_bind_means_shared_mode():
    from circuitboard.config import Settings

    assert Settings(host="0.0.0.0").auth_required and Settings(host="10.1.2.3").auth_required
    assert not Settings(host="127.0.0.1").auth_required and not Settings(host="::1").auth_required
    assert not Settings(host="0.0.0.0", public_host="127.0.0.1").auth_required  # a container published on loopback
    assert Settings(host="127.0.0.1", auth="required").auth_required
    assert not Settings(host="0.0.0.0", auth="off").auth_required


def test_per_user_share_of_the_queue(tmp_path):
    settings = make_settings(tmp_path, auth="required", max_queue_per_user=1)
    tokens = _users(settings, ("alice", False), ("bob", False))
    engine = FakeEngine(hold=True)
    with live_server(settings, lambda: engine) as server:
        lab = Lab(server, tokens)
        with lab.client("alice") as alice, lab.client("bob") as bob:
            assert alice.post("/api/graphs", json={"prompt": "one"}).status_code == 202
            r = alice.post("/api/graphs", json={"prompt": "two"})
            assert r.status_code == 429 and "queue" in r.json()["detail"] and r.headers["retry-after"]
            assert bob.post("/api/graphs", json={"prompt": "bob's"}).status_code == 202
            engine.gate.set()


def test_labels_are_per_user_and_travel_with_saved_views(tmp_path):
    from atlas_support import small_atlas

    small_atlas(tmp_path / "atlas.sqlite", {(0, 3): (0.1, "atlas label"), (1, 1): (0.2, "other")})
    settings = make_settings(tmp_path, auth="required", atlas_path=tmp_path / "atlas.sqlite")
    tokens = _users(settings, ("alice", False), ("bob", False))
    engine = FakeEngine()
    with live_server(settings, lambda: engine) as server:
        lab = Lab(server, tokens)
        with lab.client("alice") as alice, lab.client("bob") as bob:
            rec = alice.put("/api/features/0/3/label", json={"label": "alice's name for it"}).json()
            assert rec["label"] == "alice's name for it" and rec["label_by"] == "alice"
            assert bob.get("/api/features/0/3").json()["label"] == "atlas label"
            labels = bob.post("/api/features/labels", json={"features": [[0, 3]]}).json()["labels"]
            assert labels == {"0_3": "atlas label"}
            assert alice.post("/api/features/labels", json={"features": [[0, 3]]}).json()["labels"] == {
                "0_3": "alice's name for it"
            }
            slug = _graph(alice, "labelled graph")  # FakeEngine's graph has feature 0_3_{last}
            feature = next(
                n["node_id"]
                for n in alice.get(f"/api/graphs/{slug}").json()["nodes"]
                if n["node_id"].startswith("0_3_")
            )  # noqa: E501
            view = alice.post(f"/api/graphs/{slug}/subgraphs", json={"pinnedIds": [feature]}).json()["id"]
            seen = bob.get(f"/api/graphs/{slug}/subgraphs/{view}").json()
            assert seen["clerps"] == [[feature, "alice's name for it"]]
            alice.put("/api/features/0/3/label", json={"label": ""})
            assert alice.get("/api/features/0/3").json()["label"] == "atlas label"


def test_rate_limits_answer_429_with_retry_after(tmp_path, fake_engine):
    settings = make_settings(tmp_path, rate_limits={"tokenize": "3/minute", "imports": "2/minute"})
    with live_server(settings, lambda: fake_engine) as server, server.client() as c:
        assert c.get("/api/config").json()["rate_limits"]["tokenize"] == "3/minute"
        codes = [c.post("/api/tokenize", json={"prompt": "a"}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.post("/api/tokenize", json={"prompt": "a"})
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60 and "tokenize" in r.json()["detail"]
        assert [c.post("/api/graphs/import", json=CT_GRAPH).status_code for _ in range(3)] == [201, 201, 429]
        assert c.get("/api/graphs").status_code == 200  # reads are not limited


def test_rate_limits_count_users_apart(tmp_path, fake_engine):
    settings = make_settings(tmp_path, auth="required", rate_limits={"tokenize": "2/minute"})
    tokens = _users(settings, ("alice", False), ("bob", False))
    with live_server(settings, lambda: fake_engine) as server:
        lab = Lab(server, tokens)
        with lab.client("alice") as alice, lab.client("bob") as bob:
            assert [alice.post("/api/tokenize", json={"prompt": "a"}).status_code for _ in range(3)] == [200, 200, 429]
            assert bob.post("/api/tokenize", json={"prompt": "a"}).status_code == 200


# ------------------------------------------------------------------------------------------- browser security
def test_cross_origin_changes_are_refused(shared_server):
    own = shared_server.url
    with shared_server.client() as c:
        for headers in (
            {"Origin": "https://evil.example"},
            {"Origin": "null"},
            {"Referer": "https://evil.example/page"},
            {"Sec-Fetch-Site": "cross-site"},
        ):
            files = {"file": ("g.json", json.dumps(CT_GRAPH), "application/json")}
            r = c.post("/api/graphs/import", files=files, headers=headers)
            assert r.status_code == 403 and "origin" in r.json()["detail"], headers
            plain = {**headers, "content-type": "text/plain"}
            assert c.post("/api/graphs/import", content=json.dumps(CT_GRAPH), headers=plain).status_code == 403
            assert c.post("/api/features/0/1/explain", headers=headers).status_code == 403
        files = {"file": ("g.json", json.dumps(CT_GRAPH), "application/json")}
        assert c.post("/api/graphs/import", files=files, headers={"Origin": own}).status_code == 201
        assert c.post("/api/graphs/import", json=CT_GRAPH, headers={"Referer": f"{own}/graph/x"}).status_code == 201
        assert c.post("/api/graphs/import", json=CT_GRAPH).status_code == 201  # no browser: a script
        # a bearer token is never sent by a browser on its own: no origin check
        auth = {"Origin": "https://evil.example", "Authorization": "Bearer anything"}
        assert c.post("/api/tokenize", json={"prompt": "a"}, headers=auth).status_code == 200
        assert c.get("/api/graphs", headers={"Origin": "https://evil.example"}).status_code == 200  # reads are fine


def test_unknown_host_headers_are_refused(shared_server):
    with shared_server.client() as c:
        assert c.get("/api/health", headers={"Host": "evil.example"}).status_code == 400
        assert c.get("/", headers={"Host": "evil.example:8000"}).status_code == 400
        assert c.get("/api/health", headers={"Host": f"localhost:{shared_server.port}"}).status_code == 200


def test_allowed_hosts_setting(tmp_path, fake_engine):
    settings = make_settings(tmp_path, allowed_hosts="circuits.lab.example, 127.0.0.1")
    with live_server(settings, lambda: fake_engine) as server, server.client() as c:
        assert c.get("/api/health", headers={"Host": "circuits.lab.example"}).status_code == 200
        assert c.get("/api/health", headers={"Host": "localhost"}).status_code == 400


def test_security_headers(shared_server):
    with shared_server.client() as c:
        for path in ("/", "/api/health", "/docs", "/redoc", "/api/graphs/nope", "/docs-assets/swagger-init.js"):
            r = c.get(path)
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
            assert "frame-ancestors 'none'" in csp
            assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        docs = c.get("/docs").text
        assert "<script>" not in docs and "cdn" not in docs.lower()
        assert c.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
        assert c.get("/docs-assets/redoc.standalone.js").status_code == 200
