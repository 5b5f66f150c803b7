"""Clustering runs and their assignments, so reports and later commands can name a run.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("space_id", sa.Integer(), sa.ForeignKey("spaces.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "cluster_assignments",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("cluster_runs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("artwork_id", sa.Integer(),
                  sa.ForeignKey("artworks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("cluster", sa.Integer(), nullable=False),
        sa.Column("distance", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cluster_assignments")
    op.drop_table("cluster_runs")
