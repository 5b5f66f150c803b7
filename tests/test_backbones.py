"""The registry, weight checks, and the inference rewrites that must not change the features."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from artsearch import backbones
from artsearch.backbones._modules import fuse_conv_bn, remove_same_padding
from artsearch.errors import BackboneError, WeightsError
from artsearch.extract import Extractor
from tests.conftest import FAKE, painting


def test_registry_holds_the_default_and_the_fake() -> None:
    names = [spec.name for spec in backbones.available()]
    assert backbones.DEFAULT_BACKBONE in names and FAKE in names
    lite0 = backbones.get("efficientnet-lite0")
    assert lite0.dims() == 1280 and lite0.default_layer == "final"
    assert len(lite0.weights.sha256) == 64


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(BackboneError, match="unknown backbone 'resnet9000'.*efficientnet-lite0"):
        backbones.get("resnet9000")
    with pytest.raises(BackboneError, match="no layer 'fc'.*stage1"):
        backbones.get("efficientnet-lite0").check_layer("fc")


def test_damaged_weights_are_refused(tmp_path: Path) -> None:
    spec = backbones.get("efficientnet-lite0")
    bad = tmp_path / "weights.pth"
    data = bytearray(spec.weights.verified_path().read_bytes())  # type: ignore[union-attr]
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    broken = dataclasses.replace(spec.weights, locate=lambda: bad)
    with pytest.raises(WeightsError, match="SHA-256 .* reinstall"):
        broken.verified_path()


def test_inference_rewrites_keep_the_features() -> None:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0").eval()
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        reference = model.forward_features(x)
        assert fuse_conv_bn(model) == 49 and remove_same_padding(model) == 5
        rewritten = model.forward_features(x)
        odd = model.forward_features(x[:, :, :223, :223])  # falls back to explicit padding
    torch.testing.assert_close(rewritten, reference, atol=1e-3, rtol=1e-3)
    assert odd.shape == reference.shape


@pytest.mark.slow
def test_lite0_gives_unit_1280d_vectors_that_know_a_flip() -> None:
    ex = Extractor(backbones.get("efficientnet-lite0"), precision="fp32")
    a, b = painting(1, (300, 240)), painting(2, (300, 240))
    vecs = ex.embed_images([a, a.transpose(0), b])  # 0 = FLIP_LEFT_RIGHT
    assert vecs.shape == (3, 1280)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]
    again = ex.embed_images([a])
    np.testing.assert_allclose(again[0], vecs[0], atol=1e-5)
