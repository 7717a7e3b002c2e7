"""Graph repository: graphs stored as gzip'd JSON blobs with their listing metadata beside them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.exc import IntegrityError

from circuitboard.store.codec import decode_graph, encode_graph
from circuitboard.store.db import Database, changed_rows
from circuitboard.store.models import GraphRow, SlugTombstone, UserRow, utcnow
from circuitboard.store.records import GraphSource, GraphSummary
from circuitboard.store.slugs import slug_candidates

_SUMMARY_COLUMNS = (
    GraphRow.slug,
    GraphRow.prompt,
    GraphRow.model,
    GraphRow.transcoders,
    GraphRow.created_at,
    GraphRow.n_nodes,
    GraphRow.n_links,
    GraphRow.source,
    UserRow.name.label("owner"),
)


def _summaries() -> Select[*tuple[Any, ...]]:
    return select(*_SUMMARY_COLUMNS).outerjoin(UserRow, UserRow.id == GraphRow.owner_id)


class SlugUnavailable(Exception):
    """No free slug among the candidates (practically only when a requested slug is taken)."""


def _summary(row: Any) -> GraphSummary:
    return GraphSummary.model_validate(row._mapping)


def _fit(value: str, column: Any) -> str:
    """Cut to the column's length. PostgreSQL enforces VARCHAR lengths (SQLite does not): an imported file may
    name its model with any string, and the listing's copy must not fail the import. The blob keeps it whole."""
    return value[: column.type.length]


def _escape_like(q: str) -> str:
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class GraphRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        graph: dict[str, Any],
        *,
        prompt: str,
        model: str,
        transcoders: str,
        source: GraphSource,
        digest: str,
        cache_key: str | None = None,
        requested_slug: str | None = None,
        owner_id: int | None = None,
    ) -> GraphSummary:
        """Store a graph under the first free slug candidate and return its summary.

        With a cache key already stored, returns the stored graph instead (two identical jobs racing).
        The slug is written into `metadata.slug` so an exported file names itself."""
        if cache_key is not None:
            existing = self.by_cache_key(cache_key)
            if existing is not None:
                return existing
        candidates = slug_candidates(prompt, digest, requested_slug)
        for slug in candidates:
            if self.taken(slug):
                continue
            metadata = graph.setdefault("metadata", {})
            if isinstance(metadata, dict):
                metadata["slug"] = slug
            blob, size = encode_graph(graph)
            row = GraphRow(
                slug=slug,
                prompt=prompt,
                model=_fit(model, GraphRow.model),
                transcoders=_fit(transcoders, GraphRow.transcoders),
                source=source,
                cache_key=cache_key,
                n_nodes=len(graph.get("nodes") or []),
                n_links=len(graph.get("links") or []),
                size_bytes=size,
                data=blob,
                owner_id=owner_id,
            )
            try:
                with self.db.session() as s:
                    s.add(row)
                    s.flush()
                    return self._summary_of(s, slug)
            except IntegrityError:
                # Lost a race for this slug (or the cache key): look again.
                if cache_key is not None and (hit := self.by_cache_key(cache_key)) is not None:
                    return hit
                continue
        raise SlugUnavailable(candidates[0])

    @staticmethod
    def _summary_of(s: Any, slug: str) -> GraphSummary:
        return _summary(s.execute(_summaries().where(GraphRow.slug == slug)).one())

    def exists(self, slug: str) -> bool:
        with self.db.session() as s:
            return s.scalar(select(GraphRow.id).where(GraphRow.slug == slug)) is not None

    def taken(self, slug: str) -> bool:
        """In use, or used by a graph since deleted (a slug is never given to a second graph)."""
        with self.db.session() as s:
            if s.scalar(select(GraphRow.id).where(GraphRow.slug == slug)) is not None:
                return True
            return s.get(SlugTombstone, slug) is not None

    def owner(self, slug: str) -> tuple[bool, int | None]:
        """(exists, owner id) of a graph."""
        with self.db.session() as s:
            row = s.execute(select(GraphRow.owner_id).where(GraphRow.slug == slug)).one_or_none()
            return (False, None) if row is None else (True, row[0])

    def by_cache_key(self, cache_key: str) -> GraphSummary | None:
        with self.db.session() as s:
            row = s.execute(_summaries().where(GraphRow.cache_key == cache_key)).one_or_none()
            return None if row is None else _summary(row)

    def blob(self, slug: str) -> bytes | None:
        """The stored gzip bytes, for sending without decompressing."""
        with self.db.session() as s:
            return s.scalar(select(GraphRow.data).where(GraphRow.slug == slug))

    def get(self, slug: str) -> dict[str, Any] | None:
        blob = self.blob(slug)
        return None if blob is None else decode_graph(blob)

    def list(self, q: str | None, page: int, per_page: int) -> tuple[list[GraphSummary], int]:
        """Newest first; `q` matches the prompt or the slug, case-insensitively."""
        where = []
        if q:
            pattern = f"%{_escape_like(q.strip())}%"
            where.append(or_(GraphRow.prompt.ilike(pattern, escape="\\"), GraphRow.slug.ilike(pattern, escape="\\")))
        with self.db.session() as s:
            total = s.scalar(select(func.count()).select_from(GraphRow).where(*where)) or 0
            rows = s.execute(
                _summaries()
                .where(*where)
                .order_by(GraphRow.created_at.desc(), GraphRow.id.desc())
                .offset((page - 1) * per_page)
                .limit(per_page)
            ).all()
        return [_summary(r) for r in rows], total

    def delete(self, slug: str, by: int | None = None) -> bool:
        """Delete a graph (its saved views go with it) and keep its slug as a tombstone."""
        with self.db.session() as s:
            if changed_rows(s.execute(delete(GraphRow).where(GraphRow.slug == slug))) == 0:
                return False
            s.merge(SlugTombstone(slug=slug, deleted_at=utcnow(), deleted_by=by))
            return True
