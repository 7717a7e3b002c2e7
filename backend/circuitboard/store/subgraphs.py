"""Saved views of a graph (pinned nodes, supernodes, labels, pruning threshold) under short ids."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from circuitboard.store.db import Database
from circuitboard.store.models import GraphRow, SubgraphRow
from circuitboard.store.records import SubgraphRecord

# No look-alike characters (0/o, 1/l/i): the id is read aloud and typed from screenshots.
_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
_ID_LEN = 8


def new_short_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(_ID_LEN))


def _record(row: SubgraphRow, slug: str) -> SubgraphRecord:
    return SubgraphRecord(id=row.id, graph_slug=slug, name=row.name, state=row.state, created_at=row.created_at)


class SubgraphRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, graph_slug: str, state: dict[str, Any], name: str | None) -> SubgraphRecord | None:
        """None when the graph does not exist."""
        for _ in range(5):
            try:
                with self.db.session() as s:
                    graph_id = s.scalar(select(GraphRow.id).where(GraphRow.slug == graph_slug))
                    if graph_id is None:
                        return None
                    row = SubgraphRow(id=new_short_id(), graph_id=graph_id, name=name, state=state)
                    s.add(row)
                    s.flush()
                    return _record(row, graph_slug)
            except IntegrityError:
                continue  # id collision, ~1 in 8e11: draw again
        raise RuntimeError("could not draw a free subgraph id")

    def get(self, graph_slug: str, subgraph_id: str) -> SubgraphRecord | None:
        with self.db.session() as s:
            row = s.scalar(
                select(SubgraphRow)
                .join(GraphRow, GraphRow.id == SubgraphRow.graph_id)
                .where(GraphRow.slug == graph_slug, SubgraphRow.id == subgraph_id)
            )
            return None if row is None else _record(row, graph_slug)

    def list(self, graph_slug: str) -> list[SubgraphRecord]:
        with self.db.session() as s:
            rows = s.scalars(
                select(SubgraphRow)
                .join(GraphRow, GraphRow.id == SubgraphRow.graph_id)
                .where(GraphRow.slug == graph_slug)
                .order_by(SubgraphRow.created_at.desc())
            ).all()
            return [_record(r, graph_slug) for r in rows]
