"""The store's side of shared mode: the 0001 -> 0002 migration keeps stored graphs, users and their secrets."""

from __future__ import annotations

import gzip
import json

from sqlalchemy import text

from circuitboard.store import Store
from circuitboard.store.db import Database
from circuitboard.store.migrate import upgrade


def test_a_database_of_the_first_schema_upgrades_with_its_graphs(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    db = Database(url)
    upgrade(db.engine, "0001")
    graph = {"metadata": {"slug": "old-graph", "prompt_tokens": ["a"]}, "qParams": {}, "nodes": [], "links": []}
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO graphs (slug, prompt, model, transcoders, source, n_nodes, n_links, size_bytes, data,"
                " created_at) VALUES ('old-graph', 'a', 'm', 't', 'imported', 0, 0, 10, :data, '2025-01-01')"
            ),
            {"data": gzip.compress(json.dumps(graph).encode())},
        )
        view = "INSERT INTO subgraphs (id, graph_id, name, state, created_at) VALUES ('abcd2345', 1, 'v', '{}', :at)"
        conn.execute(text(view), {"at": "2025-01-01"})
    db.dispose()
    store = Store(url)  # migrates to the newest schema
    try:
        assert store.graphs.get("old-graph") == graph
        assert store.graphs.owner("old-graph") == (True, None)
        assert [v.id for v in store.subgraphs.list("old-graph")] == ["abcd2345"]
        assert store.graphs.delete("old-graph") and store.graphs.taken("old-graph")
    finally:
        store.close()


def test_users_tokens_passwords_and_sessions(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'u.sqlite'}")
    try:
        user, token = store.users.add("ada", admin=True, password="s3cret")
        assert token.startswith("cb_") and store.users.by_token(token) == user
        assert store.users.by_token(token) == user  # the second check is the cached one
        assert store.users.by_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
        assert store.users.by_password("ada", "s3cret") == user and store.users.by_password("ada", "no") is None
        with store.db.engine.connect() as conn:
            stored = " ".join(str(v) for row in conn.execute(text("SELECT * FROM api_tokens")) for v in row)
            stored += " ".join(str(v) for row in conn.execute(text("SELECT * FROM users")) for v in row)
        assert token.split("_", 2)[2] not in stored and "s3cret" not in stored and "$argon2id$" in stored
        session, csrf = store.users.open_session(user.id)
        assert store.users.by_session(session) == (user, csrf)
        second = store.users.add_token(user.id)
        assert store.users.revoke("ada")
        assert store.users.by_token(token) is None and store.users.by_token(second) is None
        assert store.users.by_session(session) is None and store.users.by_password("ada", "s3cret") is None
        assert [u.revoked for u in store.users.list()] == [True]
    finally:
        store.close()
