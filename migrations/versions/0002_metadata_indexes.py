"""Index the metadata fields that `--where` and `--exclude-same` filter on most.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_FIELDS = ("artist", "style", "genre")


def upgrade() -> None:
    for field in _FIELDS:
        op.create_index(f"ix_artworks_{field}", "artworks", [field])


def downgrade() -> None:
    for field in _FIELDS:
        op.drop_index(f"ix_artworks_{field}", "artworks")
