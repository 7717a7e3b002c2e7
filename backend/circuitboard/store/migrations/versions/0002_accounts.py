"""accounts (users, API tokens, sessions), owners, slug tombstones, per-user label overrides

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(80), nullable=False, unique=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=True),
        _when("created_at"),
        _when("revoked_at", nullable=True),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("secret_hash", sa.String(200), nullable=False),
        _when("created_at"),
        _when("revoked_at", nullable=True),
    )
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        _when("created_at"),
        _when("expires_at"),
    )
    op.create_table(
        "slug_tombstones",
        sa.Column("slug", sa.String(100), primary_key=True),
        _when("deleted_at"),
        sa.Column("deleted_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
    )
    op.create_table(
        "label_overrides",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("atlas", sa.String(500), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("feature", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        _when("updated_at"),
        sa.UniqueConstraint("atlas", "user_id", "layer", "feature", name="uq_label_overrides_feature"),
    )
    op.create_index("ix_label_overrides_lookup", "label_overrides", ["atlas", "layer", "feature"])
    for table in ("graphs", "subgraphs", "jobs"):
        _add_owner(table)
    op.create_index("ix_jobs_owner_id", "jobs", ["owner_id"])


def _add_owner(table: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # In place: SQLite adds a NULL-default column with a REFERENCES clause without copying the table. (Batch
        # mode would copy and drop `graphs`, and with foreign keys on, dropping it deletes every saved view.)
        op.execute(f"ALTER TABLE {table} ADD COLUMN owner_id INTEGER REFERENCES users (id)")
        return
    op.add_column(table, sa.Column("owner_id", sa.Integer(), nullable=True))
    op.create_foreign_key(f"fk_{table}_owner_id_users", table, "users", ["owner_id"], ["id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_owner_id", table_name="jobs")
    for table in ("jobs", "subgraphs", "graphs"):
        if op.get_bind().dialect.name != "sqlite":
            op.drop_constraint(f"fk_{table}_owner_id_users", table, type_="foreignkey")
        op.drop_column(table, "owner_id")  # SQLite >= 3.35 drops a column in place
    op.drop_index("ix_label_overrides_lookup", table_name="label_overrides")
    for table in ("label_overrides", "slug_tombstones", "sessions", "api_tokens", "users"):
        op.drop_table(table)
