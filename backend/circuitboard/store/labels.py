"""Per-user feature labels in shared mode: each user's own label of a feature, over the atlas's label."""

from __future__ import annotations

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from circuitboard.store.db import Database
from circuitboard.store.models import LabelRow, UserRow, utcnow

Feature = tuple[int, int]


class LabelRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, atlas: str, user_id: int, feature: Feature, label: str) -> None:
        """`label` as the user's label of `feature`; "" removes it (the atlas's label shows again). Of two puts at
        once the last to commit wins."""
        layer, index = feature
        key = {"atlas": atlas, "user_id": user_id, "layer": layer, "feature": index}
        with self.db.session() as s:
            if not label:
                s.execute(delete(LabelRow).filter_by(**key))
                return
            # An upsert, not delete-then-insert: on PostgreSQL two puts of one feature at once would both insert
            # (neither sees the other's uncommitted row) and the second would fail on the unique key.
            insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            stmt = insert(LabelRow).values(**key, label=label, updated_at=utcnow())
            s.execute(
                stmt.on_conflict_do_update(
                    index_elements=list(key),
                    set_={"label": stmt.excluded.label, "updated_at": stmt.excluded.updated_at},
                )
            )

    def of_user(self, atlas: str, user_id: int, features: list[Feature]) -> dict[Feature, str]:
        """The user's labels of those of `features` they labelled."""
        if not features:
            return {}
        out: dict[Feature, str] = {}
        with self.db.session() as s:
            for start in range(0, len(features), 500):  # SQLite caps the parameters of one statement
                chunk = features[start : start + 500]
                rows = s.execute(
                    select(LabelRow.layer, LabelRow.feature, LabelRow.label).where(
                        LabelRow.atlas == atlas,
                        LabelRow.user_id == user_id,
                        tuple_(LabelRow.layer, LabelRow.feature).in_(chunk),
                    )
                )
                out.update({(layer, index): label for layer, index, label in rows})
        return out

    def owners(self, atlas: str, feature: Feature) -> list[tuple[str, str]]:
        """(user name, label) of every user's label of one feature, newest first."""
        with self.db.session() as s:
            rows = s.execute(
                select(UserRow.name, LabelRow.label)
                .join(UserRow, UserRow.id == LabelRow.user_id)
                .where(LabelRow.atlas == atlas, LabelRow.layer == feature[0], LabelRow.feature == feature[1])
                .order_by(LabelRow.updated_at.desc())
            )
            return [(name, label) for name, label in rows]
