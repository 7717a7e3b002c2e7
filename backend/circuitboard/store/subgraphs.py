"""Saved views of a graph (pinned nodes, supernodes, labels, pruning threshold) under short ids."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError

from circuitboard.store.db import Database, changed_rows
from circuitboard.store.models import GraphRow, SubgraphRow, UserRow
from circuitboard.store.records import SubgraphRecord

# No look-alike characters (0/o, 1/l/i): the id is read aloud and typed from screenshots.
_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
_ID_LEN = 8


def new_short_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(_ID_LEN))


class TooManyViews(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"subgraphs: this graph already has {limit} saved views, the most it may have")
        self.limit = limit


def _record(row: SubgraphRow, slug: str, owner: str | None = None) -> SubgraphRecord:
    return SubgraphRecord(
        id=row.id,
        graph_slug=slug,
        name=row.name,
        state=row.state,
        created_at=row.created_at,
        owner_id=row.owner_id,
        owner=owner,
    )


def _of_graph(graph_slug: str) -> Select[SubgraphRow, str]:  # the name is NULL for views made single-user
    return (
        select(SubgraphRow, UserRow.name)
        .join(GraphRow, GraphRow.id == SubgraphRow.graph_id)
        .outerjoin(UserRow, UserRow.id == SubgraphRow.owner_id)
        .where(GraphRow.slug == graph_slug)
    )


class SubgraphRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        graph_slug: str,
        state: dict[str, Any],
        name: str | None,
        *,
        owner_id: int | None = None,
        limit: int | None = None,
    ) -> SubgraphRecord | None:
        """None when the graph does not exist; TooManyViews when it has `limit` saved views already."""
        for _ in range(5):
            try:
                with self.db.session() as s:
                    graph_id = s.scalar(select(GraphRow.id).where(GraphRow.slug == graph_slug))
                    if graph_id is None:
                        return None
                    count = s.scalar(select(func.count()).where(SubgraphRow.graph_id == graph_id)) or 0
                    if limit is not None and count >= limit:
                        raise TooManyViews(limit)
                    row = SubgraphRow(id=new_short_id(), graph_id=graph_id, name=name, state=state, owner_id=owner_id)
                    s.add(row)
                    s.flush()
                    return _record(row, graph_slug)
            except IntegrityError:
                continue  # id collision, ~1 in 8e11: draw again
        raise RuntimeError("could not draw a free subgraph id")

    def get(self, graph_slug: str, subgraph_id: str) -> SubgraphRecord | None:
        with self.db.session() as s:
            found = s.execute(_of_graph(graph_slug).where(SubgraphRow.id == subgraph_id)).one_or_none()
            return None if found is None else _record(found[0], graph_slug, found[1])

    def list(self, graph_slug: str) -> list[SubgraphRecord]:
        with self.db.session() as s:
            rows = s.execute(_of_graph(graph_slug).order_by(SubgraphRow.created_at.desc())).all()
            return [_record(row, graph_slug, owner) for row, owner in rows]

    def delete(self, subgraph_id: str) -> bool:
        with self.db.session() as s:
            return changed_rows(s.execute(delete(SubgraphRow).where(SubgraphRow.id == subgraph_id))) > 0
