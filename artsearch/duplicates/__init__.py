"""Typed near-duplicates (`artsearch duplicates`): `find` compares shortlisted pairs with
local features (RootSIFT and RANSAC over an embedding shortlist) and types each pair
(exact, re-encoded, mirrored, crop, detail, related); `fit` fits the thresholds on the
collection itself from synthesised derivatives, or on a curator's labelled pairs; `verdict`
applies the same test to a picture from outside the index (an upload) and its nearest works."""

from __future__ import annotations

from artsearch.duplicates.find import TYPES, Pair, Thresholds, find_duplicates, load_thresholds

__all__ = ["TYPES", "Pair", "Thresholds", "find_duplicates", "load_thresholds"]
