"""The registry, weight checks, and the inference rewrites that must not change the features."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from artsearch import backbones
from artsearch.backbones.taps import fuse_conv_bn, remove_same_padding
from artsearch.digest import sha256_file
from artsearch.errors import BackboneError, WeightsError
from artsearch.extract import Extractor
from tests.helpers import FAKE, painting


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


def test_registry_lists_the_issue_backbones_and_families() -> None:
    names = {spec.name for spec in backbones.available()}
    assert {"efficientnet-lite2", "vgg16-hed", "resnet50", "vgg16", "vgg19", "efficientnet_b0",
            "convnext_tiny"} <= names
    assert {f.prefix for f in backbones.families()} == {"timm", "open_clip"}
    assert backbones.get("vgg16-hed").style_layers == (
        "conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


def test_layers_and_dims_follow_the_pooling() -> None:
    lite0 = backbones.get("efficientnet-lite0")
    assert lite0.parse_layers(None) == ("final",)
    assert lite0.parse_layers("stage5, final") == ("stage5", "final")
    assert lite0.dims(("stage5", "final"), "avg") == 112 + 1280
    assert lite0.parse_layers(None, "gram") == lite0.style_layers
    assert lite0.dims(None, "meanstd") == 2 * (80 + 192 + 1280)
    with pytest.raises(BackboneError, match="names a layer twice"):
        lite0.parse_layers("final,final")
    with pytest.raises(BackboneError, match="fixed, packaged weights"):
        backbones.get("vgg16-hed").with_weights(Path("x.pth"))
    tuned = lite0.with_weights(Path("tuned.pt"))  # Lite takes tuned stages (`artsearch learn`)
    assert tuned.extra["base_weights"] is lite0.weights and tuned.weights.sha256 is None


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite2"])
def test_plain_lite_matches_timm_at_every_layer(name: str) -> None:
    """The default backbone is built without timm (a cold query's start-up); it must give
    timm's tf_efficientnet_lite* features, on even (224) and odd (223) inputs alike."""
    from artsearch.backbones.taps import EfficientNetStages

    spec = backbones.get(name)
    if not spec.weights.available()[0]:
        pytest.skip(f"{name} weights not installed")
    layers = tuple(spec.layers)
    plain = spec.build(spec, layers)
    assert "timm" not in type(plain).__module__
    reference = EfficientNetStages(backbones.pretrained_timm_model(spec), layers).eval()
    torch.manual_seed(0)
    for size in (spec.preprocess.size, spec.preprocess.size - 1):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            for got, want, layer in zip(plain(x), reference(x), layers, strict=True):
                assert got.shape == want.shape, layer
                torch.testing.assert_close(got, want, atol=2e-3, rtol=2e-3, msg=layer)


def test_building_the_default_backbone_does_not_import_timm() -> None:
    code = ("import sys; from artsearch import backbones; s = backbones.get("
            "'efficientnet-lite0'); s.build(s, ('final',)); print('timm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_several_stages_come_from_one_pass_and_match_single_ones() -> None:
    import timm

    from artsearch.backbones.taps import EfficientNetStages

    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0").eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        both = EfficientNetStages(model, ("stage3", "final"))(x)
        alone = [EfficientNetStages(model, (n,))(x)[0] for n in ("stage3", "final")]
        reference = model.forward_features(x)
    assert [m.shape[1] for m in both] == [40, 1280]
    for a, b in zip(both, alone, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(both[1], reference)


def test_hed_weights_land_in_torchvision_layout_unflipped() -> None:
    """conv1_1 at one pixel, by hand from the Keras arrays, equals the loaded torch conv."""
    import h5py

    from artsearch.backbones._builtin import load_hed_vgg16

    path = backbones.get("vgg16-hed").weights.verified_path()
    assert path is not None
    state = load_hed_vgg16(path)
    assert len(state) == 26 and state["28.weight"].shape == (512, 512, 3, 3)
    with h5py.File(path, "r") as h5:
        kernel = h5["block1/layers/conv2d/vars/0"][()]  # (kh, kw, in, out)
        bias = h5["block1/layers/conv2d/vars/1"][()]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    out = torch.nn.functional.conv2d(torch.from_numpy(x), state["0.weight"], state["0.bias"])
    by_hand = np.einsum("cij,ijco->o", x[0, :, 1:4, 1:4], kernel) + bias  # centre pixel (2, 2)
    np.testing.assert_allclose(out[0, :, 1, 1].numpy(), by_hand, rtol=1e-4, atol=1e-4)


def test_vgg16_hed_style_maps_from_bgr_input() -> None:
    spec = backbones.get("vgg16-hed")
    ex = Extractor(spec, pooling="gram", precision="fp32", num_workers=0)
    assert ex.layers == spec.style_layers and ex.dims == 5 * 512
    pixels = torch.from_numpy(np.array(painting(3, (224, 224)))).permute(2, 0, 1)[None]
    maps = ex.feature_maps(pixels)
    assert [m.shape[1:] for m in maps] == [(64, 224, 224), (128, 112, 112), (256, 56, 56),
                                           (512, 28, 28), (512, 14, 14)]
    assert all(torch.isfinite(m).all() and (m >= 0).all() for m in maps)  # after ReLU
    flipped = ex.feature_maps(pixels.flip(1))  # RGB<->BGR swapped input
    assert not torch.allclose(maps[0], flipped[0])


def test_torchvision_backbone_takes_a_checkpoint_and_refuses_a_wrong_one(
        tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    ckpt = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), ckpt)
    spec = backbones.resolve("resnet18", ckpt)
    assert spec.weights.checksum() == sha256_file(ckpt)
    ex = Extractor(spec, layer="layer2,layer4", pooling="gem", num_workers=0)
    vecs = ex.embed_images([painting(1, (64, 80)), painting(2, (64, 80))])
    assert vecs.shape == (2, 128 + 512)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)

    wrong = backbones.resolve("resnet18", backbones.get("efficientnet-lite0").weights.locate())
    with pytest.raises(WeightsError, match="not a torchvision resnet18 state dict"):
        Extractor(wrong, num_workers=0).embed_images([painting(1)])


def test_hub_backbones_never_download_unless_allowed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert not backbones.downloads_allowed()
    with pytest.raises(WeightsError, match="--weights PATH .* or --allow-download"):
        backbones.get("resnet50").weights.verified_path()


def test_timm_family_with_a_local_checkpoint(tmp_path: Path) -> None:
    import timm

    spec = backbones.get("timm:test_efficientnet")
    assert spec.family == "timm" and "final" in spec.layers and "stage2" in spec.layers
    with pytest.raises(WeightsError, match="--weights PATH"):
        spec.weights.verified_path()  # nothing in the hub cache, and no download
    torch.manual_seed(0)
    ckpt = tmp_path / "test_efficientnet.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), ckpt)
    ex = Extractor(backbones.resolve("timm:test_efficientnet", ckpt), layer="stage2,final",
                   num_workers=0)
    vecs = ex.embed_images([painting(4, (90, 70))])
    assert vecs.shape == (1, spec.layers["stage2"] + spec.layers["final"])


def test_unknown_family_members_are_named() -> None:
    with pytest.raises(BackboneError, match="timm has no model 'no_such_net'"):
        backbones.get("timm:no_such_net")
    with pytest.raises(BackboneError, match="open_clip has no architecture 'No-Such'"):
        backbones.get("open_clip:No-Such/tag")
    with pytest.raises(BackboneError, match="families: timm:ARCH, open_clip:ARCH/TAG"):
        backbones.get("keras:vgg16")


def test_jpegs_decoded_on_the_device_path_match_the_worker_path(tmp_path: Path) -> None:
    """The nvJPEG path's logic, run with torchvision's CPU decoder: same vectors, same order,
    other formats and odd JPEGs still decoded by the workers, a corrupt one reported."""
    from artsearch.extract import plain_jpeg_size

    paths = []
    for i in range(5):
        paths.append(tmp_path / f"plain_{i}.jpg")
        painting(i, (200 + 10 * i, 150)).save(paths[-1], quality=92)
    paths.append(tmp_path / "grey.jpg")
    painting(7, (160, 200)).convert("L").save(paths[-1])
    paths.append(tmp_path / "prog.jpg")
    painting(8).save(paths[-1], progressive=True)
    paths.append(tmp_path / "lossless.png")
    painting(9).save(paths[-1])
    corrupt = bytearray(paths[0].read_bytes())
    corrupt[400:] = bytes(len(corrupt) - 400)  # header intact, scan data zeroed
    paths.append(tmp_path / "corrupt.jpg")
    paths[-1].write_bytes(bytes(corrupt[: len(corrupt) // 2]))
    assert plain_jpeg_size(paths[0].read_bytes(), 10**9) == (200, 150)
    assert plain_jpeg_size(paths[6].read_bytes(), 10**9) is None  # progressive
    assert plain_jpeg_size(paths[7].read_bytes(), 10**9) is None  # PNG

    spec = backbones.get(FAKE)
    cpu = Extractor(spec, num_workers=0, batch_size=4)
    dev = Extractor(spec, num_workers=0, batch_size=4)
    dev.decode = "gpu"  # decode_jpeg then runs on the CPU: the same code, minus nvJPEG

    def run(ex: Extractor) -> tuple[dict[int, np.ndarray], dict[int, str]]:
        vecs, bad = {}, {}
        for batch in ex.iter_files(paths):
            vecs.update(zip(batch.indices, batch.vectors, strict=True))
            bad.update(batch.failures)
        return vecs, bad

    (a, bad_a), (b, bad_b) = run(cpu), run(dev)
    assert bad_a.keys() == bad_b.keys()
    assert sorted(a) == sorted(b) == list(range(len(paths) - 1))
    assert len(bad_b) == 1 and 8 in bad_b
    for i in a:
        assert float(a[i] @ b[i]) > 0.995, paths[i].name
