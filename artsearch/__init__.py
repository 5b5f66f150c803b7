"""artsearch: embedding-based similarity search over collections of artwork images.

The import is light on purpose: torch and faiss load only when a function that needs them runs.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.2.0"
