"""Backbone registry: pretrained networks described as data, looked up by name.

Importing this package registers the built-in backbones but imports no torch; each spec's
`build` function does that when a model is actually needed.
"""

from __future__ import annotations

from artsearch.backbones import _families, _torchvision  # noqa: F401 - register themselves
from artsearch.backbones._builtin import (  # registers the built-ins
    packaged_file,
    pretrained_timm_model,
)
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
    "packaged_file",
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
