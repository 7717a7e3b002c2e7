"""The store on its own: migrations match the models, settings pick the database."""

from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from circuitboard.config import Settings
from circuitboard.store import Store
from circuitboard.store.models import Base


def test_migrations_match_models(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'm.sqlite'}")
    with store.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    store.close()
    assert diff == []
    assert mode == "wal"
    Store(f"sqlite:///{tmp_path / 'm.sqlite'}").close()  # upgrading an up-to-date database is a no-op


def test_database_url_from_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("CIRCUITBOARD_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/elsewhere.sqlite")
    assert Settings().resolved_database_url == "sqlite:////tmp/elsewhere.sqlite"
    monkeypatch.setenv("CIRCUITBOARD_DATABASE_URL", "sqlite:////tmp/preferred.sqlite")
    assert Settings().resolved_database_url == "sqlite:////tmp/preferred.sqlite"
    monkeypatch.delenv("CIRCUITBOARD_DATABASE_URL")
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("CIRCUITBOARD_DATA_DIR", str(tmp_path))
    assert Settings().resolved_database_url == f"sqlite:///{tmp_path / 'circuitboard.sqlite'}"
    monkeypatch.setenv("CIRCUITBOARD_MAX_QUEUE", "3")
    monkeypatch.setenv("CIRCUITBOARD_PARAMS__MAX_N_LOGITS__MAX", "30")
    s = Settings()
    assert s.max_queue == 3 and s.params.max_n_logits.max == 30


def test_alembic_command_line(tmp_path):
    from circuitboard.store.migrate import MIGRATIONS_DIR

    env = {"CIRCUITBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite'}", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(MIGRATIONS_DIR / "alembic.ini"), "upgrade", "head"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    store = Store(f"sqlite:///{tmp_path / 'cli.sqlite'}")
    assert store.graphs.list(None, 1, 10) == ([], 0)
    store.close()
