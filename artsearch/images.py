"""Finding image files in a collection and decoding them safely, one clear reason per failure."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from artsearch.digest import sha256_bytes, sha256_stream
from artsearch.errors import BadImageError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "FileRead",
    "IMAGE_EXTENSIONS",
    "FileEntry",
    "ScanFailure",
    "decode_image",
    "decoded",
    "display_name",
    "hash_file",
    "read_file",
    "read_work",
    "read_snapshot",
    "scan",
    "decoded",
    "read_work",
    "sha256_bytes",
    "thumbnail_jpeg",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp"}
)
# Large museum scans reach 100 MP; above this a file is more likely a decompression bomb.
DEFAULT_MAX_PIXELS = 150_000_000
# An uncompressed 150 MP, 16-bit RGB TIFF is about 900 MB; a file is read into memory whole.
DEFAULT_MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class FileEntry:
    """A candidate image found by `scan`: its path relative to the collection root."""

    rel: str
    path: Path
    size: int
    mtime: float


@dataclass(frozen=True)
class ScanFailure:
    rel: str
    reason: str


LINK_OUT = ("a link to {target}, outside the collection: not indexed (pass --follow-links "
            "to index what links point to)")


def scan(root: Path, *, follow_links: bool = False
         ) -> tuple[list[FileEntry], list[ScanFailure]]:
    """Walk `root` for image files, following links within it but never around a loop; a
    file or folder link that leads out of the collection is reported, not followed, unless
    `follow_links`.

    Hidden folders (a leading dot: .git, .thumbnails) are skipped; hidden files are not, since
    real collections hold images named that way.
    Returns entries sorted by relative path, and the files that could not even be stat'ed.
    """
    entries: list[FileEntry] = []
    failures: list[ScanFailure] = []
    root = root.resolve()
    for rel, path in _walk(root, root, set(), failures, follow_links):
        if not _utf8(rel):
            failures.append(ScanFailure(display_name(rel), (
                "the file name is not valid UTF-8 (an old encoding such as Latin-1), so it "
                "cannot be stored; rename it (e.g. `convmv -f latin1 -t utf8`)")))
            continue
        try:
            st = os.stat(path)
        except OSError as e:
            failures.append(ScanFailure(rel, _os_reason(e)))
            continue
        if not stat.S_ISREG(st.st_mode):
            failures.append(ScanFailure(rel, "not a regular file; point artsearch at image files"))
            continue
        entries.append(FileEntry(rel, path, st.st_size, st.st_mtime))
    entries.sort(key=lambda e: e.rel)
    return entries, failures


def _leaves(root: Path, path: Path) -> str | None:
    """Where a link leads when that is outside `root` (None: inside, or not a link)."""
    if not path.is_symlink():
        return None
    try:
        target = path.resolve()
    except (OSError, RuntimeError):
        return None  # a loop or a dangling link: the walk reports it as such
    return None if target.is_relative_to(root) else str(target)


def _walk(
    root: Path, folder: Path, seen: set[tuple[int, int]], failures: list[ScanFailure],
    follow_links: bool = False,
) -> Iterator[tuple[str, Path]]:
    try:
        st = os.stat(folder)
    except OSError as e:
        failures.append(ScanFailure(_rel(root, folder), _os_reason(e)))
        return
    key = (st.st_dev, st.st_ino)
    if key in seen:
        failures.append(
            ScanFailure(_rel(root, folder), "symbolic link loop: this folder contains itself")
        )
        return
    seen = seen | {key}
    try:
        children = sorted(os.scandir(folder), key=lambda d: d.name)
    except OSError as e:
        failures.append(ScanFailure(_rel(root, folder), _os_reason(e)))
        return
    for child in children:
        path = Path(child.path)
        if not follow_links and child.is_symlink():
            outside = _leaves(root, path)
            if outside is not None:
                if Path(child.name).suffix.lower() in IMAGE_EXTENSIONS or (
                        path.is_dir() and not child.name.startswith(".")):
                    failures.append(ScanFailure(_rel(root, path), LINK_OUT.format(
                        target=display_name(outside))))
                continue
        try:
            is_dir = child.is_dir(follow_symlinks=True)
        except OSError as e:
            if Path(child.name).suffix.lower() in IMAGE_EXTENSIONS:
                failures.append(ScanFailure(_rel(root, path), _os_reason(e)))
            continue
        if is_dir:
            if child.name.startswith("."):
                continue
            yield from _walk(root, path, seen, failures, follow_links)
        elif Path(child.name).suffix.lower() in IMAGE_EXTENSIONS:
            yield _rel(root, path), path


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_name(text: str) -> str:
    """A path as it can be printed and stored: undecodable bytes shown as \\xNN."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix() if path != root else "."


def _os_reason(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "symbolic link loop; remove or repoint the link"
    if e.errno == errno.ENOENT:
        return "broken symbolic link (its target does not exist); remove or repoint the link"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied; make the file readable (chmod a+r) and re-run"
    return f"cannot read: {e.strerror or e}"


@dataclass(frozen=True)
class FileRead:
    """What one read of a file saw: the hash of exactly those bytes, and the file's size and
    modification time as they were when it was opened."""

    sha256: str
    size: int
    mtime: float


def _too_big(size: int, max_bytes: int) -> BadImageError:
    return BadImageError(f"{size:,} bytes exceeds the limit of {max_bytes:,}; raise --max-bytes "
                         "if the image is genuine")


def read_snapshot(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[bytes, FileRead]:
    """The file's bytes (one read, at most `max_bytes`) with their hash, size and time."""
    try:
        with path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_size > max_bytes:
                raise _too_big(st.st_size, max_bytes)
            data = fh.read(max_bytes + 1)
    except OSError as e:
        raise BadImageError(_os_reason(e)) from e
    if len(data) > max_bytes:  # grew since it was opened
        raise _too_big(len(data), max_bytes)
    return data, FileRead(sha256_bytes(data), len(data), st.st_mtime)


def read_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The file's bytes, with OS errors turned into one-line reasons."""
    return read_snapshot(path, max_bytes)[0]


def hash_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """SHA-256 of the file's content, streamed: memory stays small whatever its size."""
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise _too_big(size, max_bytes)
            return sha256_stream(fh)
    except OSError as e:
        raise BadImageError(_os_reason(e)) from e


def decode_image(data: bytes, *, min_side: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS
                 ) -> tuple[Image.Image, tuple[int, int]]:
    """Decode image bytes to an 8-bit RGB picture the right way up.

    JPEGs are decoded at reduced scale (draft mode) when they are much larger than
    `min_side`, the size the model will see; animated files give their first frame;
    transparency is flattened onto white; 16-bit and float images are rescaled, not clipped.
    Returns the picture and the file's own (width, height) before any reduction.
    """
    if not data:
        raise BadImageError("empty file (0 bytes); re-export or remove it")
    if data[:4] == b"\x00\x05\x16\x07":
        raise BadImageError("macOS resource fork (AppleDouble), not an image; safe to delete")
    with warnings.catch_warnings(), _pillow_limit(max_pixels):
        # We apply our own pixel limit below, with a message that says how to raise it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise BadImageError(f"{e}; raise --max-pixels if the image is genuine") from e
        except UnidentifiedImageError as e:
            raise BadImageError(
                "not an image Pillow can read (wrong extension or corrupt header); "
                "convert it to JPEG or PNG"
            ) from e
        except OSError as e:
            raise BadImageError(f"unreadable image header ({e}); re-export the file") from e
    width, height = img.size
    if width * height > max_pixels:
        raise BadImageError(
            f"{width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
            "(possible decompression bomb); raise --max-pixels if the image is genuine"
        )
    try:
        if img.format == "JPEG" and min_side and img.mode in ("RGB", "L", "CMYK"):
            img.draft(img.mode, (min_side, min_side))
        with _pillow_limit(max_pixels):
            img.load()
        turned = ImageOps.exif_transpose(img)
        return _to_rgb(turned), (width, height)
    except BadImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadImageError(
            f"truncated or corrupt image data ({e}); re-export or re-download the file"
        ) from e


@contextlib.contextmanager
def _pillow_limit(max_pixels: int) -> Iterator[None]:
    """Let Pillow open what `max_pixels` allows: it refuses above twice its own limit
    (about 179 MP) whatever ours says, so a raised --max-pixels would not take effect."""
    own = Image.MAX_IMAGE_PIXELS
    if own is None or max_pixels <= 2 * own:
        yield
        return
    Image.MAX_IMAGE_PIXELS = max_pixels // 2 + 1
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = own


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_depth_to_rgb(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    import numpy as np

    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        arr = arr / 257.0
    else:  # 32-bit int or float: stretch the file's own range
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    gray = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
    return gray.convert("RGB")


def read_work(root: Path | None, path: str) -> bytes | None:
    """The bytes of an indexed work's file (`path` relative to the collection `root`), or
    None when it cannot be read: unreadable, a link out of the collection, or no root."""
    from artsearch.errors import ArtsearchError
    from artsearch.paths import work_file

    try:
        return read_file(work_file(root, path))
    except (ArtsearchError, OSError):
        return None


def decoded(data: bytes | None, min_side: int = 0) -> Image.Image | None:
    """The picture as the extractor decodes it (JPEG draft scaling down to `min_side`), or
    None for no bytes or bytes that are not a picture."""
    if data is None:
        return None
    try:
        return decode_image(data, min_side=min_side)[0]
    except BadImageError:
        return None


THUMB_QUALITY = 85  # JPEG quality of every thumbnail, in reports and in the app


def thumbnail_jpeg(data: bytes, side: int) -> bytes:
    """The one thumbnailer: a picture's bytes as a JPEG at most `side` px on its long side
    (decoded at twice that, then Lanczos-reduced, so the small copy stays sharp). Raises
    BadImageError for bytes that are not a picture."""
    img, _ = decode_image(data, min_side=2 * side)
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    return out.getvalue()
