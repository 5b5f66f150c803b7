"""Embeddings in and out: one space exported as Parquet or .npy for the tools around artsearch
(pandas, pyarrow, embedding-reader, autofaiss, clip-retrieval's layout), and vectors computed
elsewhere imported as a space.

Parquet (`--format parquet`): DIR/SPACE-00000.parquet, ... (100,000 rows each), columns
`id` (the artwork id), `path` (relative to the collection root), `sha256`, the catalogue
fields, `extra` (JSON text) and `embedding` (a fixed-size list of float32), the layout
embedding-reader reads as `file_format="parquet"`. The schema's metadata carries the space's
description under the key `artsearch`.

npy (`--format npy`): DIR/emb/SPACE-00000.npy (float32 rows) and DIR/metadata/SPACE-00000.parquet
(the same rows' columns without the vectors), aligned file by file and row by row, the layout
embedding-reader reads as `file_format="parquet_npy"`.

Both write DIR/_SPACE.export.json (the space, the files, an export id, provenance; the leading
underscore keeps pyarrow and pandas from reading it as data) and, for a fitted pooling,
DIR/_SPACE.pooling.npz, so an import into another index embeds new queries the same way.

An export never touches a file it did not write: its shards are written under temporary
names, renamed into place together, and only the files a previous export of the same space
recorded in its _SPACE.export.json are removed when no longer part of it. Every shard carries
the export id, and each npy metadata file the SHA-256 of its emb/ file, so an import refuses
a folder that a killed export left half old, half new, instead of pairing one work's row with
another's vector.

Imports are bounded (IMPORT_MAX_ROWS rows, IMPORT_MAX_BYTES of float32 vectors), read in
batches, normalised in float64, and all or nothing: a refused import binds no root, adds no
space and creates no database.
"""

from __future__ import annotations

from artsearch.exchange._common import FORMATS, IMPORT_MAX_BYTES, IMPORT_MAX_ROWS
from artsearch.exchange.export import export_space, space_description
from artsearch.exchange.imports import ImportReport, import_vectors
from artsearch.exchange.read import Vectors, read_vectors

__all__ = ["FORMATS", "IMPORT_MAX_BYTES", "IMPORT_MAX_ROWS", "ImportReport", "Vectors",
           "export_space", "import_vectors", "read_vectors", "space_description"]
