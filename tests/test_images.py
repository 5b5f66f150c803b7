"""Decoding and scanning: every awkward file either decodes correctly or fails with a reason."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artsearch.errors import BadImageError
from artsearch.images import decode_image, scan
from tests.helpers import painting


def _bytes(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_rgb_jpeg_decodes_with_original_size() -> None:
    img, size = decode_image(_bytes(painting(1, (200, 120)), "JPEG"))
    assert img.mode == "RGB" and size == (200, 120) and img.size == (200, 120)


def test_draft_mode_reduces_large_jpeg_but_keeps_enough_pixels() -> None:
    data = _bytes(painting(2, (2000, 1600)), "JPEG")
    img, size = decode_image(data, min_side=224)
    assert size == (2000, 1600)
    assert min(img.size) >= 224 and img.size[0] < 2000


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img, size = decode_image(_bytes(painting(3, (120, 60)), "JPEG", exif=exif))
    assert size == (120, 60) and img.size == (60, 120)


@pytest.mark.parametrize("mode", ["CMYK", "L", "P", "RGBA", "LA", "1"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    src = painting(4).convert(mode)
    fmt = "JPEG" if mode in ("CMYK", "L") else "PNG"
    img, _ = decode_image(_bytes(src, fmt))
    assert img.mode == "RGB" and img.size == src.size


def test_transparency_is_flattened_onto_white() -> None:
    src = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent red
    img, _ = decode_image(_bytes(src, "PNG"))
    assert img.getpixel((5, 5)) == (255, 255, 255)


def test_sixteen_bit_png_is_rescaled_not_clipped() -> None:
    arr = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    src = Image.fromarray(arr)
    assert src.mode.startswith("I;16")
    img, _ = decode_image(_bytes(src, "PNG"))
    values = np.asarray(img)[..., 0]
    assert values.min() == 0 and values.max() == 255
    assert len(np.unique(values)) > 200  # a clip would leave almost everything at 255


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_files_give_their_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in [(250, 0, 0), (0, 0, 250)]]
    data = _bytes(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
    img, _ = decode_image(data)
    r, _, b = img.getpixel((16, 16))
    assert r > 200 and b < 50


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"this is a text file, not a picture", "not an image"),
        (b"\x00\x05\x16\x07" + b"\x00" * 100, "AppleDouble"),
    ],
)
def test_non_images_fail_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BadImageError, match=reason):
        decode_image(data)


def test_truncated_jpeg_fails_with_a_reason() -> None:
    data = _bytes(painting(5, (400, 300)), "JPEG")
    with pytest.raises(BadImageError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused_before_decoding() -> None:
    data = _bytes(Image.new("1", (12000, 12000)), "PNG")  # small file, 144 MP
    assert len(data) < 1_000_000
    with pytest.raises(BadImageError, match="exceeds the limit.*--max-pixels"):
        decode_image(data, max_pixels=100_000_000)


def test_scan_reports_links_and_skips_hidden_folders(tmp_path: Path) -> None:
    root = tmp_path / "c"
    (root / "sub").mkdir(parents=True)
    (root / ".thumbs").mkdir()
    painting(1).save(root / "sub" / "ok.jpg")
    painting(2).save(root / ".thumbs" / "cache.jpg")
    painting(3).save(root / ".hidden-but-real.jpg")
    (root / "notes.txt").write_text("not an image extension: ignored")
    os.symlink("self.jpg", root / "self.jpg")  # a link to itself
    os.symlink("nowhere.jpg", root / "dangling.jpg")
    os.symlink("..", root / "sub" / "loop")  # a folder that contains itself
    entries, failures = scan(root)
    assert [e.rel for e in entries] == [".hidden-but-real.jpg", "sub/ok.jpg"]
    reasons = {f.rel: f.reason for f in failures}
    assert "symbolic link loop" in reasons["self.jpg"]
    assert "broken symbolic link" in reasons["dangling.jpg"]
    assert "contains itself" in reasons["sub/loop"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_fails_with_permission_reason(tmp_path: Path) -> None:
    from artsearch.images import read_file

    path = tmp_path / "locked.jpg"
    painting(1).save(path)
    path.chmod(0)
    with pytest.raises(BadImageError, match="permission denied"):
        read_file(path)


def test_permission_errors_become_a_readable_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root (as in CI) can read anything, so the OS error is raised by hand here."""
    from artsearch.images import read_file

    def denied(self: Path, *args: object, **kwargs: object) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(BadImageError, match=r"permission denied; make the file readable"):
        read_file(tmp_path / "x.jpg")
