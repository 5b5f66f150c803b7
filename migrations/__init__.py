"""Alembic migrations for the artsearch SQLite schema (installed as `artsearch.migrations`)."""
