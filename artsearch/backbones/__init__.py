"""Backbone registry: pretrained networks described as data, looked up by name.

Importing this package registers the built-in backbones but imports no torch; each spec's
`build` function does that when a model is actually needed.
"""

from __future__ import annotations

from artsearch.backbones import _families, _torchvision  # noqa: F401 - register themselves
from artsearch.backbones._builtin import pretrained_timm_model  # registers the built-ins
from artsearch.backbones._registry import (
    BackboneSpec,
    Family,
    Preprocess,
    WeightsSource,
    allow_downloads,
    available,
    downloads_allowed,
    families,
    get,
    register,
    resolve,
    unregister,
)

__all__ = [
    "BackboneSpec",
    "DEFAULT_BACKBONE",
    "Family",
    "Preprocess",
    "WeightsSource",
    "allow_downloads",
    "available",
    "downloads_allowed",
    "families",
    "get",
    "pretrained_timm_model",
    "register",
    "resolve",
    "unregister",
]

DEFAULT_BACKBONE = "efficientnet-lite0"
