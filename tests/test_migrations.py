"""Schema migrations: old databases upgrade with their data, newer ones are refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from artsearch.errors import SchemaTooNewError
from artsearch.index import ArtIndex
from artsearch.index.store import Base, Store


def test_a_0001_database_upgrades_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    Store(db, upgrade=False).upgrade("0001")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO artworks (path, sha256, size, mtime, artist, added_at, updated_at) "
            "VALUES ('a.jpg', 'abc', 10, 1.0, 'Vermeer', '2026-01-01', '2026-01-01')")
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    store = Store(db)
    assert store.revision() == store.head()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT path, artist FROM artworks").fetchall()
        assert rows == [("a.jpg", "Vermeer")]
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM artworks WHERE artist = 'Vermeer'").fetchall()
    assert "ix_artworks_artist" in str(plan)


def test_migrations_build_exactly_the_models_schema(tmp_path: Path) -> None:
    store = Store(tmp_path / "new.db")
    with store.engine.connect() as conn:  # the FTS5 index (0005) is SQLite's, not a model
        context = MigrationContext.configure(conn, opts={
            "include_name": lambda name, type_, _parent: not (
                type_ == "table" and name.startswith("artworks_fts"))})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_a_newer_schema_is_refused_with_a_fix(tmp_path: Path) -> None:
    Store(tmp_path / "artsearch.db")
    with sqlite3.connect(tmp_path / "artsearch.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(SchemaTooNewError, match="newer artsearch; upgrade artsearch"):
        ArtIndex(tmp_path)


def test_a_0002_space_gains_empty_params(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    Store(db, upgrade=False).upgrade("0002")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO spaces (name, backbone, weights_sha256, layer, pooling, dims, "
            "preprocessing, faiss_factory, next_faiss_id, created_at) VALUES ('content', "
            "'efficientnet-lite0', 'abc', 'final', 'avg', 1280, '{}', 'IDMap2,Flat', 7, "
            "'2026-01-01')")
    store = Store(db)
    with store.session() as s:
        from artsearch.index.store import Space

        space = s.get(Space, 1)
    assert space is not None and space.params == {} and space.next_faiss_id == 7


def test_the_known_revisions_are_the_migration_scripts_in_order() -> None:
    from alembic.script import ScriptDirectory

    from artsearch.index.store import SCHEMA_REVISIONS, _alembic_config

    script = ScriptDirectory.from_config(_alembic_config())
    assert [r.revision for r in reversed(list(script.walk_revisions()))] == list(
        SCHEMA_REVISIONS)
    assert script.get_current_head() == Store.head()


def test_full_text_search_follows_inserts_updates_and_deletes(tmp_path: Path) -> None:
    """Migration 0005 indexes works already there, and its triggers keep step."""
    db = tmp_path / "old.db"
    Store(db, upgrade=False).upgrade("0004")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO artworks (path, sha256, size, mtime, title, artist, added_at, "
            "updated_at) VALUES ('a.jpg', 'abc', 10, 1.0, 'Peasant Dance', 'Adriaen van "
            "Ostade', '2026-01-01', '2026-01-01')")
    Store(db)

    def found(word: str) -> list[int]:
        with sqlite3.connect(db) as conn:
            return [r[0] for r in conn.execute(
                "SELECT rowid FROM artworks_fts WHERE artworks_fts MATCH ?", (word,))]

    assert found("ostade") == [1] and found("dance") == [1]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE artworks SET title = 'Tavern Scene' WHERE id = 1")
    assert found("dance") == [] and found("tavern") == [1]
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM artworks WHERE id = 1")
    assert found("tavern") == []


def test_search_covers_every_catalogue_field_with_accents_folded(tmp_path: Path) -> None:
    """Migration 0006: an index made at 0005 gains source, style, ... and `extra` in its
    full-text search, for works already there and works added later."""
    db = tmp_path / "old.db"
    Store(db, upgrade=False).upgrade("0005")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO artworks (path, sha256, size, mtime, title, artist, source, extra, "
            "added_at, updated_at) VALUES ('a.jpg', 'abc', 10, 1.0, 'Still Life', "
            "'Jean-Siméon Chardin', 'Rijksmuseum', '{\"inventory\": \"SK-A-1234\"}', "
            "'2026-01-01', '2026-01-01')")
    Store(db)

    def found(word: str) -> list[int]:
        with sqlite3.connect(db) as conn:
            return [r[0] for r in conn.execute(
                "SELECT rowid FROM artworks_fts WHERE artworks_fts MATCH ?", (word,))]

    assert found("rijksmuseum") == [1] and found("simeon") == [1] and found("SK") == [1]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE artworks SET style = 'Baroque' WHERE id = 1")
    assert found("baroque") == [1]
