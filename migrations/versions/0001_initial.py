"""Initial schema: settings, artworks, spaces, embeddings, failures.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settings",
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("value", sa.String(), nullable=False),
    )
    op.create_table(
        "artworks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("path", sa.String(), nullable=False, unique=True),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("mtime", sa.Float(), nullable=False),
        sa.Column("width", sa.Integer()),
        sa.Column("height", sa.Integer()),
        sa.Column("title", sa.String()),
        sa.Column("artist", sa.String()),
        sa.Column("date", sa.String()),
        sa.Column("style", sa.String()),
        sa.Column("genre", sa.String()),
        sa.Column("license", sa.String()),
        sa.Column("source", sa.String()),
        sa.Column("extra", sa.JSON()),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_artworks_sha256", "artworks", ["sha256"])
    op.create_table(
        "spaces",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False, unique=True),
        sa.Column("backbone", sa.String(), nullable=False),
        sa.Column("weights_sha256", sa.String(), nullable=False),
        sa.Column("layer", sa.String(), nullable=False),
        sa.Column("pooling", sa.String(), nullable=False),
        sa.Column("dims", sa.Integer(), nullable=False),
        sa.Column("preprocessing", sa.JSON(), nullable=False),
        sa.Column("faiss_factory", sa.String(), nullable=False),
        sa.Column("next_faiss_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "embeddings",
        sa.Column(
            "space_id", sa.Integer(), sa.ForeignKey("spaces.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "artwork_id", sa.Integer(), sa.ForeignKey("artworks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("faiss_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.UniqueConstraint("space_id", "faiss_id"),
    )
    op.create_table(
        "failures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("path", sa.String(), nullable=False, unique=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("failures", "embeddings", "spaces", "artworks", "settings"):
        op.drop_table(table)
