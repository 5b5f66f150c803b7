"""The index layer: an opened index folder and everything that reads or writes it — the
SQLite store (SQLAlchemy models, Alembic migrations), the catalogue of works and their
metadata, one FAISS file per space and its upkeep. SQL lives here and nowhere else
(tests/test_layers.py holds every other module to that); features ask these modules by name.

Modules, lowest first: `store` (tables, sessions, migrations), `vectors` (the FAISS files),
`ann` (choosing and checking approximate search), `metadata` (sidecar fields), `catalogue`
(finding works, filters, facets), `clusters` (stored runs), `writer` (what a run records),
`upkeep` (the vector files, checked and kept current), `folder` (`ArtIndex`: the folder,
its lock and spaces).
"""

from __future__ import annotations

from artsearch.index.folder import DB_NAME, ArtIndex, Repair, check_space

__all__ = ["DB_NAME", "ArtIndex", "Repair", "check_space"]
