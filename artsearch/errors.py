"""The exceptions artsearch raises: one family, each message naming the thing and the fix."""

from __future__ import annotations

__all__ = [
    "ArtsearchError",
    "BackboneError",
    "BadImageError",
    "IndexDamagedError",
    "IndexLockedError",
    "IndexMismatchError",
    "IndexReadOnlyError",
    "MetadataError",
    "NotIndexedError",
    "OptionError",
    "PruneRefusedError",
    "SchemaTooNewError",
    "SchemaTooOldError",
    "WeightsError",
]


class ArtsearchError(Exception):
    """Base class: every error a user can act on. The CLI prints its message on one line."""


class BackboneError(ArtsearchError):
    """An unknown backbone, layer or pooling name."""


class WeightsError(BackboneError):
    """Pretrained weights are missing, unreadable, or fail their checksum."""


class BadImageError(ArtsearchError):
    """One image could not be decoded; the message is the one-line reason stored in `failures`."""


class IndexMismatchError(ArtsearchError):
    """An index was built with something other than what this run asks for."""


class SchemaTooNewError(ArtsearchError):
    """The database was written by a newer artsearch than this one."""


class IndexLockedError(ArtsearchError):
    """Another artsearch process is writing to the same index."""


class MetadataError(ArtsearchError):
    """A metadata CSV or a `--where` filter cannot be used as given."""


class OptionError(MetadataError):
    """An option's value cannot be used as written (`--mix`, `--where`, `-k` ...): a usage
    error, exit status 2, as click gives for its own."""


class NotIndexedError(ArtsearchError):
    """A query names an artwork or an index that does not exist."""


class SchemaTooOldError(ArtsearchError):
    """A reader found a database an older artsearch wrote; a writer must upgrade it first."""


class IndexReadOnlyError(ArtsearchError):
    """A command that writes was pointed at an index folder it cannot write."""


class IndexDamagedError(ArtsearchError):
    """A vector file does not match what the index recorded when it was saved."""


class PruneRefusedError(ArtsearchError):
    """--prune would remove so much of the index that the folder is more likely wrong."""
