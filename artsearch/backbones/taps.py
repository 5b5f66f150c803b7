"""Torch modules that cut registered networks at a named layer (imported only when building)."""

from __future__ import annotations

from typing import Any

import torch


class EfficientNetStages(torch.nn.Module):
    """Runs a timm EfficientNet as far as the deepest named layer; returns each named map.

    `stageN` is the output of the N-th block stage (early stages: texture and brushwork; late
    ones: parts and objects); `final` is the 1x1 head convolution after the last stage (1280
    channels for Lite0 and Lite2).
    """

    def __init__(self, model: torch.nn.Module, layers: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.layers = layers
        self.depths = [len(model.blocks) if n == "final"  # type: ignore[arg-type]
                       else int(n.removeprefix("stage")) for n in layers]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self.model
        out: dict[int, torch.Tensor] = {}
        x = m.bn1(m.conv_stem(x))  # type: ignore[operator]
        for depth, block in enumerate(m.blocks[: max(self.depths)], 1):  # type: ignore[index]
            x = block(x)
            out[depth] = x
        maps = []
        for name, depth in zip(self.layers, self.depths, strict=True):
            maps.append(m.bn2(m.conv_head(out[depth])) if name == "final"  # type: ignore[operator]
                        else out[depth])
        return maps


class SequentialTaps(torch.nn.Module):
    """Runs a sequential stack (VGG's `features`) and returns the outputs at chosen indices."""

    def __init__(self, stack: torch.nn.Sequential, taps: list[int]) -> None:
        super().__init__()
        last = max(taps)
        # Typed loosely: torch's stubs for slicing a Sequential differ between releases.
        part: Any = stack[: last + 1]
        self.stack = part
        self.taps = taps
        for m in part:
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False  # a tapped output must not be overwritten later

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        wanted = set(self.taps)
        stack: Any = self.stack
        for i, m in enumerate(stack):
            x = m(x)
            if i in wanted:
                out[i] = x
        return [out[i] for i in self.taps]


class GraphTaps(torch.nn.Module):
    """Any torchvision model cut at named graph nodes (torch.fx feature extraction)."""

    def __init__(self, model: torch.nn.Module, nodes: list[str]) -> None:
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.nodes = nodes
        self.body = create_feature_extractor(model, {n: n for n in dict.fromkeys(nodes)})

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.body(x)
        return [out[n] for n in self.nodes]


class TimmTaps(torch.nn.Module):
    """A timm model's stage outputs (`forward_intermediates`) and/or its final features."""

    def __init__(self, model: torch.nn.Module, indices: list[int | None]) -> None:
        super().__init__()
        self.model = model
        self.indices = indices  # None: forward_features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stages = sorted({i for i in self.indices if i is not None})
        got: dict[int | None, torch.Tensor] = {}
        if stages:
            maps = self.model.forward_intermediates(  # type: ignore[operator]
                x, indices=stages, intermediates_only=True)
            got.update(zip(stages, maps, strict=True))
        if None in self.indices:
            final = self.model.forward_features(x)  # type: ignore[operator]
            if final.ndim == 3:  # a transformer's tokens: (N, T, C) -> (N, C, T, 1)
                final = final.transpose(1, 2)[..., None]
            got[None] = final
        return [got[i] for i in self.indices]


class OpenClipImage(torch.nn.Module):
    """An open_clip model's image tower as a 1x1 'feature map', and its text tower beside it."""

    def __init__(self, model: torch.nn.Module, tokenizer: object) -> None:
        super().__init__()
        self.clip = model
        self.tokenizer = tokenizer

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.clip.encode_image(x)[:, :, None, None]]  # type: ignore[operator]

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        device = next(self.clip.parameters()).device
        tokens = self.tokenizer(texts).to(device)  # type: ignore[operator]
        return self.clip.encode_text(tokens)  # type: ignore[operator, no-any-return]


def fuse_conv_bn(module: torch.nn.Module) -> int:
    """Fold each BatchNorm that directly follows a convolution into that convolution.

    Exact in eval mode (the running statistics are constants), and it removes a full pass over
    every feature map: on the 2-core CPU this is most of the gap between the model and its
    convolutions. timm's BatchNormAct2d keeps its activation. Returns how many pairs it fused.
    """
    fused = 0
    children = list(module.named_children())
    for (_, first), (name, second) in zip(children, children[1:], strict=False):
        if (
            isinstance(first, torch.nn.Conv2d)
            and type(second).__name__ in ("BatchNorm2d", "BatchNormAct2d")
            and isinstance(second, torch.nn.BatchNorm2d)
            and second.num_features == first.out_channels
            and second.running_mean is not None
            and second.running_var is not None
        ):
            _fold(first, second)
            tail = [m for m in (getattr(second, "drop", None), getattr(second, "act", None))
                    if m is not None]
            setattr(module, name, torch.nn.Sequential(*tail))
            fused += 1
    for child in module.children():
        fused += fuse_conv_bn(child)
    return fused


@torch.no_grad()
def _fold(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d) -> None:
    assert bn.running_var is not None and bn.running_mean is not None
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (bias - bn.running_mean) * scale
    if bn.bias is not None:
        new_bias = new_bias + bn.bias
    conv.bias = torch.nn.Parameter(new_bias)


class StridedSameConv(torch.nn.Module):
    """TF "same" padding for a stride-2, odd-kernel convolution, without a padding pass.

    On an even-sized input, TF pads one pixel more on the right and bottom than on the left
    and top. Prepending a zero row and column to the kernel turns that into the symmetric
    padding conv2d does internally, so the separate (single-threaded, slow) F.pad disappears.
    The result is the same sum of the same products. Odd-sized inputs take the original path.
    """

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        k = conv.kernel_size[0]
        self.pad = (k - 1) // 2
        self.weight = torch.nn.Parameter(
            torch.nn.functional.pad(conv.weight.detach(), (1, 0, 1, 0)), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            return self.conv(x)  # type: ignore[no-any-return]
        return torch.nn.functional.conv2d(
            x, self.weight, self.conv.bias, stride=2, padding=self.pad, groups=self.conv.groups)


def remove_same_padding(module: torch.nn.Module) -> int:
    """Swap timm's Conv2dSame (stride 2, odd square kernel) for `StridedSameConv`."""
    swapped = 0
    for name, child in list(module.named_children()):
        if (
            type(child).__name__ == "Conv2dSame"
            and isinstance(child, torch.nn.Conv2d)
            and child.stride == (2, 2)
            and child.dilation == (1, 1)
            and child.kernel_size[0] == child.kernel_size[1]
            and child.kernel_size[0] % 2 == 1
        ):
            setattr(module, name, StridedSameConv(child))
            swapped += 1
        else:
            swapped += remove_same_padding(child)
    return swapped
