"""Full-text search over every catalogue text field (date, style, genre, source, licence and
the other CSV columns kept in `extra`, beside title, artist and file name), accents folded:
the web app's search box finds "rijksmuseum" in a source and "simeon" in "Siméon".

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OLD = "title, artist, path"
COLUMNS = "title, artist, path, date, style, genre, source, license, extra"


def _table(columns: str) -> None:
    fields = [c.strip() for c in columns.split(",")]
    new = ", ".join(f"new.{c}" for c in fields)
    old = ", ".join(f"old.{c}" for c in fields)
    op.execute(f"CREATE VIRTUAL TABLE artworks_fts USING fts5({columns}, content='artworks', "
               "content_rowid='id', tokenize='unicode61 remove_diacritics 2')")
    op.execute(f"""CREATE TRIGGER artworks_fts_insert AFTER INSERT ON artworks BEGIN
        INSERT INTO artworks_fts(rowid, {columns}) VALUES (new.id, {new}); END""")
    op.execute(f"""CREATE TRIGGER artworks_fts_delete AFTER DELETE ON artworks BEGIN
        INSERT INTO artworks_fts(artworks_fts, rowid, {columns})
        VALUES ('delete', old.id, {old}); END""")
    op.execute(f"""CREATE TRIGGER artworks_fts_update AFTER UPDATE OF {columns}
        ON artworks BEGIN
        INSERT INTO artworks_fts(artworks_fts, rowid, {columns}) VALUES ('delete', old.id, {old});
        INSERT INTO artworks_fts(rowid, {columns}) VALUES (new.id, {new}); END""")
    op.execute("INSERT INTO artworks_fts(artworks_fts) VALUES ('rebuild')")


def _drop() -> None:
    for trigger in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER artworks_fts_{trigger}")
    op.execute("DROP TABLE artworks_fts")


def upgrade() -> None:
    _drop()
    _table(COLUMNS)


def downgrade() -> None:
    _drop()
    _table(OLD)
