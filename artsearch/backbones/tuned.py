"""The tuned-weights file a space is built with (`--weights`, or the lite0-art preset): its
format, written atomically and read back checked against the backbone it is laid over.
`artsearch learn` writes it; the backbones read it without importing the learner."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from artsearch.errors import WeightsError

if TYPE_CHECKING:
    from artsearch.backbones._registry import BackboneSpec

WEIGHTS_FORMAT = "artsearch-tuned-lite"
WEIGHTS_VERSION = 1


def write_tuned(out: Path, spec: BackboneSpec, tune_from: int, state: dict[str, Any],
                learnt: dict[str, Any]) -> None:
    """Write a tuned-weights file (float16 tensors; `learnt`: what they learnt from)
    atomically."""
    import os

    import torch

    base = spec.extra["base_weights"].checksum()
    record = {
        "format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "backbone": spec.extra["base"],
        "base_sha256": base, "tune_from": tune_from,
        "state": {k: v.half() for k, v in state.items()},
        "learnt": learnt,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save(record, tmp)
    os.replace(tmp, out)


def load_tuned(path: Path, spec: BackboneSpec) -> dict[str, Any]:
    """A tuned-weights file for `spec`, checked: its format, the backbone and base weights it
    was tuned from, and every tensor's name and shape against the network."""
    import torch

    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file; check the --weights path") from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a file it cannot read
        raise WeightsError(f"{path}: not a weights file artsearch can read "
                           f"({type(e).__name__}); give a file `artsearch learn` wrote") from e
    if not isinstance(record, dict) or record.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path}: not tuned weights for an EfficientNet-Lite space; give a "
                           "file `artsearch learn` wrote")
    if record.get("backbone") != spec.extra.get("base"):
        raise WeightsError(f"{path}: tuned from {record.get('backbone')}, not "
                           f"{spec.extra.get('base')}; build the space with --backbone "
                           f"{record.get('backbone')}")
    base = spec.extra["base_weights"].checksum()
    if record.get("base_sha256") != base:
        raise WeightsError(f"{path}: tuned from {record.get('backbone')} weights "
                           f"{str(record.get('base_sha256'))[:12]}, but those installed here "
                           f"are {base[:12]}; install the same base weights")
    state = record.get("state")
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"{path}: holds no tensors")
    checked: dict[str, Any] = record
    return checked
