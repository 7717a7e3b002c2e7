"""Per-user label overrides when two requests label one feature at once, on PostgreSQL and on SQLite."""

from __future__ import annotations

import pytest
from test_postgres_store import _race

from circuitboard.store import Store


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.distributed), "sqlite"])
def test_racing_puts_of_one_label_leave_one_row(backend, request, tmp_path):
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'l.sqlite'}"
    store = Store(url)
    try:
        user, _ = store.users.add("alice")
        for feature in range(10):  # several rounds: one race that happens to serialise must not pass by luck
            results = _race(4, lambda i, f=feature: store.labels.put("atlas", user.id, (1, f), f"label {i}"))
            assert [r for r in results if isinstance(r, Exception)] == []
        got = store.labels.of_user("atlas", user.id, [(1, f) for f in range(10)])
        assert len(got) == 10 and all(v.startswith("label ") for v in got.values())
        store.labels.put("atlas", user.id, (1, 0), "")  # "" removes it
        assert (1, 0) not in store.labels.of_user("atlas", user.id, [(1, 0)])
    finally:
        store.close()
