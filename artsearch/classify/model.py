"""A trained model file, checked and ready to classify images with calibrated probabilities."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artsearch.classify._base import FORMAT, ModelError
from artsearch.classify.calibration import softmax
from artsearch.classify.finetune import Network
from artsearch.errors import IndexMismatchError

# -- using a model --------------------------------------------------------------------------------

class Classifier:
    """A trained model file, ready to classify images with calibrated probabilities."""

    def __init__(self, path: Path, model: dict[str, Any], weights: Path | None = None,
                 device: str | None = None) -> None:
        from artsearch import backbones

        self.path, self.model = path, model
        self.id = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        self.classes: list[str] = list(model["classes"])
        self.label: str = model["label"]
        self.spec = backbones.resolve(model["backbone"], weights or model.get("weights_path"))
        size = (model.get("preprocess") or {}).get("size")
        if size:  # a space built with --input-size: the model reads pictures at that size
            self.spec = self.spec.at_size(int(size))
        dims = self.spec.dims(tuple(model["layers"]), model["pooling"])
        if model["head_weight"].shape[1] != dims:
            raise ModelError(f"{path}: damaged model file (head takes "
                             f"{model['head_weight'].shape[1]} features, {model['backbone']} "
                             f"gives {dims}); train it again with `artsearch train`")
        found = self.spec.weights.checksum()
        if found != model["weights_sha256"]:
            raise ModelError(
                f"{path}: trained on {model['backbone']} weights {model['weights_sha256'][:12]}, "
                f"but the weights found here are {found[:12]} ({self.spec.weights.description}); "
                "install or pass (--weights) the ones it was trained with")
        self.device = device
        self._net: Network | None = None

    def check_space(self, space: Any) -> None:
        """Refuse a space built with another backbone, weights, layers or pooling."""
        made = (space.backbone, space.weights_sha256, space.layer, space.pooling,
                (space.preprocessing or {}).get("size", self.spec.preprocess.size))
        wanted = (self.model["backbone"], self.model["weights_sha256"],
                  ",".join(self.model["layers"]), self.model["pooling"],
                  self.spec.preprocess.size)
        if made != wanted:
            raise IndexMismatchError(
                f"space {space.name!r} uses {space.backbone} ({space.layer}, {space.pooling}, "
                f"{made[4]} px), but model {self.path.name} was trained on {wanted[0]} "
                f"({wanted[2]}, {wanted[3]}, {wanted[4]} px); classify into an index whose "
                "space matches")

    @property
    def network(self) -> Network:
        if self._net is None:
            from artsearch.extract import pick_device

            m = self.model
            params = {k: v.numpy() for k, v in m["pooling_params"].items()}
            net = Network(self.spec, m["layers"], m["pooling"], params,
                          m["head_weight"].numpy(), m["head_bias"].numpy(),
                          pick_device(self.device))
            if m["trunk_state"]:
                missing = set(m["trunk_state"]) - set(dict(net.trunk.named_parameters()))
                if missing:
                    raise ModelError(f"{self.path}: fine-tuned layers {sorted(missing)[:3]} "
                                     f"do not exist in {m['backbone']} as built here (a "
                                     "model made by an older artsearch?); train it again")
                net.trunk.load_state_dict(m["trunk_state"], strict=False)
            net.trunk.requires_grad_(False)
            self._net = net
        return self._net

    def probabilities(self, images: Sequence[Any]) -> np.ndarray:
        """Calibrated class probabilities for decoded RGB pictures."""
        import torch

        from artsearch.extract import prepare

        if not images:
            return np.zeros((0, len(self.classes)), np.float32)
        pixels = torch.stack([prepare(im, self.spec.preprocess) for im in images])
        with torch.no_grad():
            logits = self.network.logits(pixels).float().cpu().numpy()
        return softmax(logits / self.model["temperature"])


def load_model(path: Path, *, weights: Path | None = None, device: str | None = None
               ) -> Classifier:
    import torch

    try:
        model = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file; make one with `artsearch train`") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ModelError(f"{path}: not an artsearch model file ({type(e).__name__}); make one "
                         "with `artsearch train`") from e
    if not isinstance(model, dict) or model.get("format") != FORMAT:
        raise ModelError(f"{path}: not an artsearch model file (format "
                         f"{model.get('format') if isinstance(model, dict) else None!r}, "
                         f"expected {FORMAT})")
    _check_model(path, model)
    return Classifier(path, model, weights, device)


_MODEL_KEYS = ("label", "classes", "backbone", "weights_sha256", "space", "layers", "pooling",
               "pooling_params", "head_weight", "head_bias", "temperature", "trunk_state")


def _check_model(path: Path, model: dict[str, Any]) -> None:
    """Refuse a damaged or hand-edited model file with the reason, not a traceback later."""
    import torch

    def bad(why: str) -> ModelError:
        return ModelError(f"{path}: damaged model file ({why}); train it again with "
                          "`artsearch train`")

    missing = [k for k in _MODEL_KEYS if k not in model]
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    classes, w, b, t = (model["classes"], model["head_weight"], model["head_bias"],
                        model["temperature"])
    if not isinstance(classes, list) or len(classes) < 2:
        raise bad("fewer than two classes")
    if not (isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor)) or w.ndim != 2 \
            or b.shape != (len(classes),) or w.shape[0] != len(classes):
        raise bad(f"head of shape {tuple(getattr(w, 'shape', ()))} for {len(classes)} classes")
    if not bool(torch.isfinite(w).all()) or not bool(torch.isfinite(b).all()):
        raise bad("non-finite head weights")
    if not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
        raise bad(f"temperature {t!r}; it must be a finite number above 0")
