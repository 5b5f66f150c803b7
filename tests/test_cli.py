"""The command line: exit codes, one-line errors, the summary, JSON, and an instant --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import FAKE, index_args, invoke, painting

ROOT = Path(__file__).resolve().parents[1]


def test_index_then_query_then_info(collection: Path, isolated_home: Path) -> None:
    code, out, _ = invoke(*index_args(collection))
    assert code == 0, out
    assert "12 artworks indexed (12 embedded, 0 unchanged)" in out
    assert (isolated_home / "default" / "artsearch.db").exists()  # ARTSEARCH_HOME honoured

    code, out, _ = invoke("query", str(collection / "a" / "work_001.jpg"), "-k", "3")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["#", "sim", "path"]
    assert lines[1].split()[:3] == ["1", "1.000", "a/work_001.jpg"]
    assert len(lines) == 4

    code, out, _ = invoke("info", "--json")
    data = json.loads(out)
    assert data["artworks"] == 12 and data["spaces"][0]["backbone"] == FAKE
    assert data["spaces"][0]["dims"] == 48 and data["bytes"]["faiss"] > 0


def test_rerun_without_backbone_keeps_the_spaces_own(collection: Path) -> None:
    assert invoke(*index_args(collection))[0] == 0
    code, out, _ = invoke("index", str(collection), "--workers", "0")
    assert code == 0 and "0 embedded, 12 unchanged" in out


def test_query_json_by_indexed_path_and_id(collection: Path) -> None:
    invoke(*index_args(collection))
    code, out, _ = invoke("query", "b/work_002.jpg", "--json", "-k", "2")
    assert code == 0
    data = json.loads(out)
    assert data["query"]["path"] == "b/work_002.jpg" and len(data["results"]) == 2
    first_id = data["results"][0]["id"]
    code, out, _ = invoke("query", "--id", str(first_id), "--json", "-k", "1")
    assert json.loads(out)["results"][0]["path"] == "b/work_002.jpg"


def test_bad_files_get_one_line_each_and_exit_zero(collection: Path) -> None:
    (collection / "zero.jpg").write_bytes(b"")
    (collection / "fake.jpg").write_text("<html>not a picture</html>")
    code, out, err = invoke(*index_args(collection))
    assert code == 0
    skipped = [line for line in err.splitlines() if line.startswith("skipped ")]
    assert sorted(skipped) == [
        "skipped fake.jpg: not an image Pillow can read (wrong extension or corrupt header); "
        "convert it to JPEG or PNG",
        "skipped zero.jpg: empty file (0 bytes); re-export or remove it",
    ]
    assert "2 failed" in out
    code, out, _ = invoke("info", "--failures")
    assert "failed    zero.jpg: empty file" in out


def test_strict_turns_failures_into_an_error(collection: Path) -> None:
    (collection / "zero.jpg").write_bytes(b"")
    code, _, err = invoke(*index_args(collection, "--strict"))
    assert code == 1 and "1 file(s) failed (--strict)" in err
    code, out, _ = invoke("info", "--json")
    assert json.loads(out)["artworks"] == 12  # the good files were still indexed


def test_nothing_indexable_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    code, _, err = invoke(*index_args(folder))
    assert code == 1 and "no image could be indexed" in err
    code, _, err = invoke(*index_args(tmp_path / "missing"))
    assert code == 1 and "not a folder" in err


def test_errors_are_one_line_with_a_fix(collection: Path, tmp_path: Path) -> None:
    code, _, err = invoke("query", "x.jpg", "--index", str(tmp_path / "none"))
    assert code == 1 and err.count("\n") == 1 and "artsearch index DIR" in err
    invoke(*index_args(collection))
    code, _, err = invoke("query", "nope.jpg")
    assert code == 1 and "no such artwork" in err
    code, _, err = invoke("query", "a/work_001.jpg", "--exclude-same", "artist", "--where", "x")
    assert code == 2 and "FIELD=VALUE" in err  # a usage error (issue 25)
    code, _, err = invoke("index", str(collection), "--backbone", "no-such-net")
    assert code == 1 and "unknown backbone 'no-such-net'" in err


def test_metadata_and_filters_from_the_command_line(collection: Path, tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("path,artist,genre\na/work_001.jpg,Monet,landscape\n"
                   "a/work_003.jpg,Monet,landscape\nb/work_000.jpg,Sisley,landscape\n")
    code, out, _ = invoke(*index_args(collection, "--metadata", str(csv)))
    assert "metadata: 3 of 3 rows matched" in out
    code, out, _ = invoke("query", "a/work_001.jpg", "--where", "genre=landscape",
                          "--exclude-same", "artist", "--json")
    results = json.loads(out)["results"]
    assert [r["artist"] for r in results] == ["Sisley"]


def test_an_outside_query_image_works_from_the_cli(collection: Path, tmp_path: Path) -> None:
    invoke(*index_args(collection))
    outside = tmp_path / "new.png"
    painting(4242).save(outside)
    code, out, _ = invoke("query", str(outside), "--json", "-k", "12")
    data = json.loads(out)
    assert code == 0 and data["query"]["indexed"] is False and len(data["results"]) == 12


def test_help_imports_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from artsearch.cli import cli\n"
        "for args in (['--help'], ['index', '--help'], ['query', '--help'], ['info', '--help'],\n"
        "             ['backbones', '--help']):\n"
        "    r = CliRunner().invoke(cli, args)\n"
        "    assert r.exit_code == 0, r.output\n"
        "heavy = sorted(m for m in ('torch', 'faiss', 'open_clip', 'timm', 'sqlalchemy')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_backbones_lists_the_registry_and_what_is_ready() -> None:
    code, out, _ = invoke("backbones", "--json")
    assert code == 0
    data = json.loads(out)
    rows = {r["name"]: r for r in data["backbones"]}
    assert rows["efficientnet-lite0"]["offline"] and rows["efficientnet-lite0"]["dims"] == 1280
    assert rows["vgg16-hed"]["offline"] and "conv5_1" in rows["vgg16-hed"]["layers"]
    assert "--weights PATH" in rows["resnet50"]["weights"] or rows["resnet50"]["offline"]
    assert [f["pattern"] for f in data["families"]] == ["timm:ARCH", "open_clip:ARCH/TAG"]
    code, out, _ = invoke("backbones")
    assert code == 0 and "efficientnet-lite0" in out and "open_clip:ARCH/TAG" in out


def test_style_space_and_blend_from_the_command_line(collection: Path) -> None:
    invoke(*index_args(collection))
    code, out, err = invoke("index", str(collection), "--space", "style", "--backbone",
                            "efficientnet-lite0", "--pooling", "meanstd", "--workers", "0")
    assert code == 0, err
    assert "[style]: 12 artworks indexed" in out
    code, out, _ = invoke("query", "a/work_001.jpg", "--space", "style", "--json", "-k", "3")
    assert code == 0 and json.loads(out)["results"][0]["path"] == "a/work_001.jpg"
    code, out, _ = invoke("query", "a/work_001.jpg", "--mix", "content=0.5,style=0.5", "-k", "3")
    assert code == 0 and "a/work_001.jpg" in out.splitlines()[1] and "z" in out.splitlines()[0]
    code, _, err = invoke("query", "a/work_001.jpg", "--mix", "content=1,nope=1")
    assert code == 1 and "no embedding space 'nope'" in err
    code, _, err = invoke("query", "--text", "a stormy sea")
    assert code == 1 and "no text encoder" in err


def _bad_input_corpus(root: Path) -> tuple[set[str], set[str]]:
    """Write every awkward kind of file; return (names that must index, names that must fail)."""
    import io

    import numpy as np
    from PIL import Image

    def save(name: str, img: Image.Image, fmt: str, **kw: object) -> None:
        img.save(root / name, fmt, **kw)

    base = painting(7, (120, 90))
    save("cmyk.jpg", base.convert("CMYK"), "JPEG")
    save("sixteen.png", Image.fromarray((np.arange(120 * 90).reshape(90, 120) * 6)
                                        .astype(np.uint16)), "PNG")
    save("palette.png", base.convert("P"), "PNG")
    save("rgba.png", base.convert("RGBA"), "PNG")
    frames = [painting(8, (64, 64)), painting(9, (64, 64))]
    save("animated.gif", frames[0], "GIF", save_all=True, append_images=frames[1:])
    save("animated.webp", frames[0], "WEBP", save_all=True, append_images=frames[1:])
    good = {"cmyk.jpg", "sixteen.png", "palette.png", "rgba.png", "animated.gif",
            "animated.webp"}

    buf = io.BytesIO()
    base.save(buf, "JPEG")
    (root / "truncated.jpg").write_bytes(buf.getvalue()[:700])
    (root / "zero.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("Not a picture at all.")
    (root / "._resource.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(80))
    Image.new("1", (12000, 12000)).save(root / "bomb.png")
    (root / "loop.jpg").symlink_to("loop.jpg")
    (root / "dangling.jpg").symlink_to("gone.jpg")
    bad = {"truncated.jpg", "zero.jpg", "text.jpg", "._resource.jpg", "bomb.png", "loop.jpg",
           "dangling.jpg"}
    return good, bad


def test_the_bad_input_corpus_indexes_without_a_crash(collection: Path) -> None:
    assert invoke(*index_args(collection))[0] == 0
    good, bad = _bad_input_corpus(collection)
    code, out, err = invoke(*index_args(collection, "--max-pixels", "100000000"))
    assert code == 0
    skipped = {line.split(":", 1)[0].removeprefix("skipped "): line
               for line in err.splitlines() if line.startswith("skipped ")}
    assert set(skipped) == bad
    assert len(err.splitlines()) == len(bad)  # one line per bad file, nothing else
    assert "exceeds the limit of 100,000,000" in skipped["bomb.png"]
    assert "symbolic link loop" in skipped["loop.jpg"]
    assert "truncated or corrupt" in skipped["truncated.jpg"]
    code, out, _ = invoke("info", "--json")
    data = json.loads(out)
    assert data["artworks"] == 12 + len(good)  # the earlier works are all still there
    assert data["failures"] == len(bad)


def test_ray_engine_without_ray_says_how_to_install_it(collection: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code, _, err = invoke(*index_args(collection, "--index", str(tmp_path / "i"),
                                      "--engine", "ray"))
    assert code == 1 and "pip install 'artsearch[ray]'" in err
    assert not (tmp_path / "i").exists()  # refused before anything was made
