"""What the parts of classification share: constants, options, the labelled set, errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from artsearch.errors import ArtsearchError

FORMAT = "artsearch-classifier/1"
CS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # probe: C tried by cross-validation
ECE_BINS = 15
UNCERTAIN = 0.5  # classify: below this calibrated probability a prediction says "uncertain"

Progress = Callable[[str], None]


class ModelError(ArtsearchError):
    """A model file that cannot be used here (wrong format, other backbone weights)."""


@dataclass
class TrainOptions:
    label: str
    space: str = "content"
    method: str = "probe"  # probe | finetune
    min_per_class: int = 5
    seed: int = 0
    val_size: float = 0.2
    test_size: float = 0.2
    # probe only: after C is chosen, refit on train + validation; calibrate out of fold
    refit: bool = True
    # finetune only
    freeze_until: str | None = None  # None: two named layers before the deepest used
    lr: float = 1e-4
    epochs: int = 10
    batch_size: int = 32
    weight_decay: float = 1e-4
    patience: int = 3
    device: str | None = None
    num_workers: int | None = None
    # Only works matching this filter (catalogue.parse_where: field -> any of these values).
    where: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class LabelledSet:
    artwork_ids: list[int]
    paths: list[str]
    labels: list[str]
    classes: list[str]
    y: np.ndarray
    dropped: dict[str, int]
    unlabelled: int
    vectors: np.ndarray
    fields: dict[str, list[Any]] = field(default_factory=dict)


