"""job kinds (graph, validate), a JSON result for non-graph jobs, the queue (preset) and the worker running it

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs: SQLite and PostgreSQL both add them in place (no table copy, saved views untouched).
    op.add_column("jobs", sa.Column("kind", sa.String(16), nullable=False, server_default="graph"))
    op.add_column("jobs", sa.Column("result", sa.JSON(), nullable=True))
    op.add_column("jobs", sa.Column("queue", sa.String(100), nullable=True))
    op.add_column("jobs", sa.Column("worker", sa.String(100), nullable=True))
    op.create_index("ix_jobs_queue_status", "jobs", ["queue", "status"])


def downgrade() -> None:
    op.drop_index("ix_jobs_queue_status", table_name="jobs")
    for name in ("worker", "queue", "result", "kind"):
        op.drop_column("jobs", name)  # SQLite >= 3.35 drops a column in place
