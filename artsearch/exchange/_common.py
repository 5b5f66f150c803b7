"""What export, reading and import share: the layout's names and the limits."""

from __future__ import annotations

from typing import Any

from artsearch.errors import ArtsearchError
from artsearch.index.store import METADATA_FIELDS

__all__ = ["BATCH_ROWS", "COLUMNS", "EXPORT_VERSION", "FORMATS", "IMPORT_MAX_BYTES",
           "IMPORT_MAX_ROWS", "MAX_PATH_CHARS", "POOLINGS", "SHARD_ROWS", "UNIT_TOLERANCE",
           "pyarrow"]

FORMATS = ("parquet", "npy")
SHARD_ROWS = 100_000
EXPORT_VERSION = 2  # 2: export ids, npy metadata naming its emb/ file's SHA-256
COLUMNS = ("id", "path", "sha256", *METADATA_FIELDS, "extra")
# Tolerance on a vector's length before it is counted as "not unit length" and normalised.
UNIT_TOLERANCE = 1e-3
# What one import may hold: the vectors live in memory (FAISS's exact store) while they are
# added, so a file that claims more is refused before its data is read.
IMPORT_MAX_ROWS = 5_000_000
IMPORT_MAX_BYTES = 8 << 30  # of float32 vectors
BATCH_ROWS = 65_536
MAX_PATH_CHARS = 1024
POOLINGS = ("avg", "cavg", "max", "gem", "rmac", "meanstd", "gram")



def pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401 - the submodule is what reads and writes files
    except ImportError:
        raise ArtsearchError("Parquet needs pyarrow: pip install 'artsearch[exchange]'") from None
    return pa


