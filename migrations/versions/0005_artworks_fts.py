"""Full-text search over titles, artists and file names (SQLite FTS5), kept in step by
triggers, so the web app's search box stays fast at 100,000 works.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# An external-content table: the text lives in `artworks`, the index beside it.
COLUMNS = "title, artist, path"


def upgrade() -> None:
    op.execute(f"CREATE VIRTUAL TABLE artworks_fts USING fts5({COLUMNS}, content='artworks', "
               "content_rowid='id', tokenize='unicode61 remove_diacritics 2')")
    op.execute(f"""CREATE TRIGGER artworks_fts_insert AFTER INSERT ON artworks BEGIN
        INSERT INTO artworks_fts(rowid, {COLUMNS}) VALUES (new.id, new.title, new.artist,
                                                           new.path); END""")
    op.execute(f"""CREATE TRIGGER artworks_fts_delete AFTER DELETE ON artworks BEGIN
        INSERT INTO artworks_fts(artworks_fts, rowid, {COLUMNS})
        VALUES ('delete', old.id, old.title, old.artist, old.path); END""")
    op.execute(f"""CREATE TRIGGER artworks_fts_update AFTER UPDATE OF title, artist, path
        ON artworks BEGIN
        INSERT INTO artworks_fts(artworks_fts, rowid, {COLUMNS})
        VALUES ('delete', old.id, old.title, old.artist, old.path);
        INSERT INTO artworks_fts(rowid, {COLUMNS}) VALUES (new.id, new.title, new.artist,
                                                           new.path); END""")
    op.execute("INSERT INTO artworks_fts(artworks_fts) VALUES ('rebuild')")


def downgrade() -> None:
    for trigger in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER artworks_fts_{trigger}")
    op.execute("DROP TABLE artworks_fts")
