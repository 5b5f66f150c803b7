"""Pooling: how a feature map (N, C, H, W) becomes one vector per image.

Kept free of a torch import (the functions only call tensor methods), so planning code can ask
for dimensions without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from artsearch.errors import BackboneError

if TYPE_CHECKING:
    import torch

__all__ = ["POOLINGS", "Pooling", "get_pooling"]


@dataclass(frozen=True)
class Pooling:
    name: str
    pool: Callable[[torch.Tensor], torch.Tensor]
    dims: Callable[[int], int]  # output size for C input channels
    description: str


def _avg(fmap: torch.Tensor) -> torch.Tensor:
    return fmap.mean(dim=(2, 3))


POOLINGS: dict[str, Pooling] = {
    p.name: p
    for p in [
        Pooling("avg", _avg, lambda c: c, "global average: what is present, wherever it is"),
    ]
}


def get_pooling(name: str) -> Pooling:
    try:
        return POOLINGS[name]
    except KeyError:
        raise BackboneError(
            f"unknown pooling {name!r}; choose one of: {', '.join(POOLINGS)}"
        ) from None
