"""`circuitboard db upgrade|current` (cli/db.py), on SQLite and on PostgreSQL."""

from __future__ import annotations

import argparse

import pytest

from circuitboard.cli import db
from circuitboard.store.migrate import head_revision


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="circuitboard")
    db.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["db", *argv])
    return int(args.func(args))


def _upgrade_then_current(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("--db", url, "current") == 1  # empty: behind the newest
    assert "current (empty)" in capsys.readouterr().out
    assert _run("--db", url, "upgrade") == 0
    assert f"database at revision {head_revision()}" in capsys.readouterr().out
    assert _run("--db", url, "upgrade") == 0  # again: nothing to do
    assert _run("--db", url, "current") == 0
    assert capsys.readouterr().out.strip().endswith(f"current {head_revision()}, newest {head_revision()}")


def test_db_upgrade_and_current_on_sqlite(tmp_path, capsys):
    _upgrade_then_current(f"sqlite:///{tmp_path / 'cb.sqlite'}", capsys)


@pytest.mark.distributed
def test_db_upgrade_and_current_on_postgres(postgres_url, capsys):
    _upgrade_then_current(postgres_url, capsys)


def test_db_url_from_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIRCUITBOARD_DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite'}")
    assert _run("upgrade") == 0
    assert (tmp_path / "env.sqlite").exists()
