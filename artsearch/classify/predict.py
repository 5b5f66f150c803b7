"""Using a model on images and on an index: calibrated predictions, "uncertain" below a
threshold, the works a field is missing for, and predictions written beside the catalogue."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artsearch.errors import ArtsearchError, BadImageError, MetadataError, NotIndexedError
from artsearch.index import ArtIndex, catalogue
from artsearch.index.store import METADATA_FIELDS

__all__ = ["BATCH", "predict_files", "prediction", "prediction_field_problem",
           "unlabelled_works", "write_predictions"]

BATCH = 32  # images decoded at a time: memory stays bounded however many are given


def prediction(image: str, probs: np.ndarray, classes: Sequence[str], top: int,
               threshold: float) -> dict[str, Any]:
    """One image's answer: the best label, or "uncertain" when its calibrated probability is
    below `threshold` (an attribution is a claim, and the model may not know), and the top
    labels with their probabilities."""
    order = np.argsort(-probs)[:top]
    best = float(probs[order[0]])
    return {"image": image,
            "prediction": classes[order[0]] if best >= threshold else "uncertain",
            "probability": round(best, 4),
            "top": [{"label": classes[i], "probability": round(float(probs[i]), 4)}
                    for i in order]}


def predict_files(model: Any, paths: Sequence[Path], *, top: int, threshold: float,
                  on_error: Callable[[Path, str], None]) -> Iterator[dict[str, Any]]:
    """Predictions for image files, a batch at a time; an unreadable file is passed to
    `on_error` with its reason and skipped."""
    from artsearch.images import decode_image, read_file

    for start in range(0, len(paths), BATCH):
        batch, decoded = [], []
        for path in paths[start:start + BATCH]:
            try:
                img, _ = decode_image(read_file(path), min_side=model.spec.preprocess.resize)
            except BadImageError as e:
                on_error(path, str(e))
                continue
            batch.append(path)
            decoded.append(img)
        for path, probs in zip(batch, model.probabilities(decoded), strict=True):
            yield prediction(str(path), probs, model.classes, top, threshold)


def unlabelled_works(index: ArtIndex, model: Any) -> list[Path]:
    """Files of the works in the model's space that have no value for its field."""
    model.check_space(index.space(model.model["space"]))
    if index.root is None:
        raise NotIndexedError(f"{index.path}: the index does not know its collection folder")
    from artsearch.paths import inside

    root = index.root
    return [file for a in catalogue.embedded_works(index, model.model["space"])
            if not catalogue.field_value(a, model.label)
            and (file := inside(root, a.path)) is not None]


def prediction_field_problem(field: str, label: str) -> str | None:
    """Why `field` cannot hold predictions (None when it can): it must end in _predicted, so
    predictions never mix with catalogued values."""
    if not field.endswith("_predicted") or field in METADATA_FIELDS:
        return (f"--write {field}: name the field FIELD_predicted (e.g. {label}_predicted), "
                "so predictions never mix with catalogued values")
    return None


def write_predictions(index: ArtIndex, model: Any, results: Sequence[dict[str, Any]],
                      field: str, warn: Callable[[str], None] = lambda _m: None
                      ) -> dict[str, int]:
    """Store each prediction as FIELD_predicted (with its probability and the model id) on
    the indexed work it was made for, found by path under the collection root or by content.
    A catalogued column of that name is never overwritten. Takes the writer's lock."""
    from artsearch.images import hash_file

    problem = prediction_field_problem(field, model.label)
    if problem:
        raise MetadataError(problem)
    index.lock()
    model.check_space(index.space(model.model["space"]))
    counts = {"written": 0, "kept": 0, "not_indexed": 0}
    values: dict[int, dict[str, Any]] = {}
    for r in results:
        path = Path(r["image"])
        art = catalogue.find_artwork(index, path=path.resolve())
        if art is None:
            try:
                art = catalogue.find_artwork(index, sha256=hash_file(path))
            except ArtsearchError:
                art = None
        if art is None:
            counts["not_indexed"] += 1
            warn(f"{r['image']}: not an indexed work; index it first to store its prediction")
            continue
        extra = art.extra or {}
        if field in extra and f"{field}_model" not in extra:
            counts["kept"] += 1  # a catalogued column of that name: never overwrite
            continue
        values[art.id] = {field: r["prediction"], f"{field}_probability": r["probability"],
                          f"{field}_model": model.id}
        counts["written"] += 1
    catalogue.set_extra(index, values)
    index.touch()
    return counts
