"""Torch modules that cut registered networks at a named layer (imported only when building)."""

from __future__ import annotations

import torch


class EfficientNetStage(torch.nn.Module):
    """Runs a timm EfficientNet up to one named layer and returns that feature map.

    `final` is the 1x1 head convolution after the last stage (1280 channels for Lite0);
    `stageN` is the output of the N-th block stage, where texture dominates over content.
    """

    def __init__(self, model: torch.nn.Module, layer: str) -> None:
        super().__init__()
        self.model = model
        self.layer = layer
        self.stages = 0 if layer == "final" else int(layer.removeprefix("stage"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer == "final":
            return self.model.forward_features(x)  # type: ignore[no-any-return, operator]
        x = self.model.bn1(self.model.conv_stem(x))  # type: ignore[operator]
        for block in self.model.blocks[: self.stages]:  # type: ignore[index]
            x = block(x)
        return x
