"""SQLite metadata store: the schema as SQLAlchemy models, opened and upgraded through Alembic."""

from __future__ import annotations

import datetime as dt
import sqlite3
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from artsearch.errors import SchemaTooNewError

__all__ = [
    "METADATA_FIELDS",
    "SCHEMA_REVISIONS",
    "Artwork",
    "Base",
    "ClusterAssignment",
    "ClusterRun",
    "Embedding",
    "Failure",
    "Setting",
    "Space",
    "Store",
    "migrations_dir",
    "utcnow",
]

# The migrations in migrations/versions, oldest first (tests/test_migrations.py checks this
# against Alembic's own reading of the scripts). A new migration adds its revision here.
SCHEMA_REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006")

# Catalogue fields with their own columns; any other CSV column goes to Artwork.extra.
METADATA_FIELDS = ("title", "artist", "date", "style", "genre", "license", "source")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Setting(Base):
    """Index-wide facts, such as the collection root the paths are relative to."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(String)


class Artwork(Base):
    """One image file of the collection, with its catalogue metadata."""

    __tablename__ = "artworks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String, unique=True)  # POSIX, relative to the root
    sha256: Mapped[str] = mapped_column(String, index=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime: Mapped[float] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    title: Mapped[str | None] = mapped_column(String)
    artist: Mapped[str | None] = mapped_column(String, index=True)
    date: Mapped[str | None] = mapped_column(String)
    style: Mapped[str | None] = mapped_column(String, index=True)
    genre: Mapped[str | None] = mapped_column(String, index=True)
    license: Mapped[str | None] = mapped_column(String)
    source: Mapped[str | None] = mapped_column(String)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    embeddings: Mapped[list[Embedding]] = relationship(
        back_populates="artwork", cascade="all, delete-orphan", passive_deletes=True
    )

    def field(self, name: str) -> Any:
        """A metadata value by name: a catalogue column, or a key of `extra`."""
        if name in METADATA_FIELDS:
            return getattr(self, name)
        return (self.extra or {}).get(name)


class Space(Base):
    """An embedding space: one backbone, layer and pooling, and the FAISS index that holds it."""

    __tablename__ = "spaces"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    backbone: Mapped[str] = mapped_column(String)
    weights_sha256: Mapped[str] = mapped_column(String)
    layer: Mapped[str] = mapped_column(String)
    pooling: Mapped[str] = mapped_column(String)
    dims: Mapped[int] = mapped_column(Integer)
    preprocessing: Mapped[dict[str, Any]] = mapped_column(JSON)
    faiss_factory: Mapped[str] = mapped_column(String)
    # The rest of what made the space: "weights" (a user's checkpoint path), "pooling_file"
    # and "pooling_sha256" (a fitted pooling's stored projection), "layers" (names, in order).
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    # FAISS ids are never reused, so an id present in both stores always means the same vector.
    next_faiss_id: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Embedding(Base):
    """Which FAISS id holds an artwork's vector in a space, and which file content it encodes."""

    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("space_id", "faiss_id"),)
    space_id: Mapped[int] = mapped_column(
        ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True
    )
    artwork_id: Mapped[int] = mapped_column(
        ForeignKey("artworks.id", ondelete="CASCADE"), primary_key=True
    )
    faiss_id: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String)

    artwork: Mapped[Artwork] = relationship(back_populates="embeddings")


class ClusterRun(Base):
    """One clustering of a space: how it was made, and how well it agrees with the catalogue."""

    __tablename__ = "cluster_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String)
    k: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)  # how k was chosen, iterations, ...
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)  # agreement with metadata fields
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ClusterAssignment(Base):
    """Which cluster an artwork fell in, and its cosine distance to the cluster's centre."""

    __tablename__ = "cluster_assignments"
    run_id: Mapped[int] = mapped_column(
        ForeignKey("cluster_runs.id", ondelete="CASCADE"), primary_key=True)
    artwork_id: Mapped[int] = mapped_column(
        ForeignKey("artworks.id", ondelete="CASCADE"), primary_key=True)
    cluster: Mapped[int] = mapped_column(Integer)
    distance: Mapped[float] = mapped_column(Float)


class Failure(Base):
    """The latest reason a file could not be indexed; cleared when it indexes."""

    __tablename__ = "failures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String, unique=True)
    reason: Mapped[str] = mapped_column(String)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def migrations_dir() -> Path:
    return Path(str(files("artsearch.migrations")))


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def _on_connect(readonly: bool) -> Any:
    def connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver must not manage transactions itself: it would commit before every DDL
        # statement, so a migration killed half-way left a schema no version describes.
        # `_on_begin` emits BEGIN instead, which makes DDL transactional too.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if not readonly:
            # WAL: readers are never blocked by an indexing run and read one committed
            # snapshot per transaction; a killed writer loses only its open transaction.
            cur.execute("PRAGMA journal_mode=WAL")
        cur.close()
    return connect


def _on_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN " + conn.get_execution_options().get("sqlite_begin", ""))


class Store:
    """The index's SQLite database.

    Opening it checks the schema: a newer one is refused; an older one is upgraded only by
    `upgrade()`, which a writer calls under the index's lock. `readonly` opens the file
    without writing anything (for an index folder this user cannot write).
    """

    def __init__(self, path: Path, *, upgrade: bool = True, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        if readonly:
            # immutable: no locks, no -wal/-shm files, which a read-only folder cannot hold.
            uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
            self.engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(
                uri, uri=True, check_same_thread=False))
        else:
            self.engine = create_engine(f"sqlite:///{path}")
        event.listen(self.engine, "connect", _on_connect(readonly))
        event.listen(self.engine, "begin", _on_begin)
        if upgrade:
            self.upgrade()
        else:
            self.check_not_newer()

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def revision(self) -> str | None:
        """The schema revision recorded in the database (Alembic's table), None when new.

        Read with plain SQL: importing Alembic and parsing the migration scripts would add a
        quarter of a second to every command, and only a writer needs them.
        """
        with self.engine.connect() as conn:
            exists = conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
            ).first()
            if exists is None:
                return None
            row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        return row[0] if row else None

    @staticmethod
    def head() -> str | None:
        """The newest schema revision this artsearch knows."""
        return SCHEMA_REVISIONS[-1]

    def check_not_newer(self) -> str | None:
        """The database's revision; refuse one written by a newer artsearch."""
        current = self.revision()
        if current is not None and current not in SCHEMA_REVISIONS:
            raise SchemaTooNewError(
                f"{self.path}: database schema {current!r} was written by a newer artsearch; "
                "upgrade artsearch (pip install -U artsearch) to open it"
            )
        return current

    def is_current(self) -> bool:
        return self.check_not_newer() == self.head()

    def upgrade(self, target: str = "head") -> None:
        """Apply pending migrations in one transaction: all of them, or none.

        BEGIN IMMEDIATE takes SQLite's write lock first, so a second process cannot start
        the same upgrade; a kill or a full disk mid-way rolls back to the old schema.
        """
        current = self.check_not_newer()
        if target == "head" and current == self.head():
            return
        from alembic import command

        cfg = _alembic_config()
        with self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, \
                conn.begin():
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, target)

    def get_setting(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(Setting, key)
            return row.value if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self.session() as s, s.begin():
            s.merge(Setting(key=key, value=value))

    def close(self) -> None:
        self.engine.dispose()
