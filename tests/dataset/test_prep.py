"""Dataset preparation on real files: sizes, orientation, colour modes, bad input, caching."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
import struct
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from conftest_data import exif_rotated_jpeg, naive_crop, photo, psnr, tree, write_image
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from wrapper.dataset.images import Geometry, centre_crop
from wrapper.dataset.prep import JpegInject, Plan, prepare, prepare_for_recipe, select_for_jpeg
from wrapper.dataset.scan import MANIFEST
from wrapper.errors import DatasetError

P, L = (64, 96), (96, 64)
CROP = Geometry("crop-orientation", portrait=P, landscape=L)


def run(src, tmp_path, plan=None, **kw):
    return prepare(src, plan or Plan(CROP), tmp_path / "cache", **kw)


def outputs(result) -> dict[str, dict]:
    data = json.loads(result.manifest.read_text(encoding="utf-8"))
    return {f["source"]: f for f in data["files"] if f["op"] != "caption"}


def test_crop_orientation_sizes_and_source_untouched(tmp_path):
    src = tmp_path / "src"
    write_image(src / "portrait.jpg", photo((300, 400)))
    write_image(src / "landscape.png", photo((400, 300)))
    write_image(src / "square.webp", photo((200, 200)), lossless=True)
    before = tree(src)
    result = run(src, tmp_path)
    assert tree(src) == before
    files = outputs(result)
    sizes = {k: Image.open(result.path / v["file"]).size for k, v in files.items()}
    assert sizes == {"portrait.jpg": P, "landscape.png": L, "square.webp": P}  # square -> portrait
    square = run(src, tmp_path, Plan(Geometry("crop-orientation", P, L, square=(70, 70))))
    assert Image.open(square.path / "square.webp").size == (70, 70)
    for entry in files.values():
        data = (result.path / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data) and entry["op"] == "crop-orientation"
    assert (result.path / "portrait.txt").read_text(encoding="utf-8") == "a photo"


def test_draft_decoding_matches_full_decode(tmp_path):
    src = tmp_path / "src"
    path = write_image(src / "big.jpg", photo((960, 1280), 1), quality=92)
    result = run(src, tmp_path, Plan(Geometry("crop-orientation", (120, 180), (180, 120))))
    ours = Image.open(result.path / "big.webp")
    assert ours.size == (120, 180)
    assert psnr(ours, naive_crop(path, (120, 180))) > 45


def test_exif_rotation_is_applied(tmp_path):
    src = tmp_path / "src"
    exif_rotated_jpeg(src / "rotated.jpg", stored=(400, 300), orientation=6)
    result = run(src, tmp_path)
    img = Image.open(result.path / "rotated.webp").convert("RGB")
    assert img.size == P  # stored landscape, shown portrait
    # Orientation 6 turns the picture clockwise: the stored top-left corner ends top-right.
    r, g, b = img.getpixel((P[0] - 3, 3))
    assert r > 200 and g < 60 and b < 60
    uncropped = run(src, tmp_path, Plan(Geometry("uncropped")))
    assert Image.open(uncropped.path / "rotated.webp").size == (300, 400)


def test_colour_modes_become_rgb(tmp_path):
    src = tmp_path / "src"
    write_image(src / "cmyk.jpg", photo((90, 60)).convert("CMYK"))
    grey16 = np.full((60, 90), 32896, dtype=np.uint16)  # 128 * 257
    write_image(src / "grey16.png", Image.fromarray(grey16))
    rgba = Image.new("RGBA", (90, 60), (0, 0, 255, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 45, 60))
    write_image(src / "alpha.png", rgba)
    pal = Image.new("P", (90, 60), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0])
    pal.paste(1, (0, 0, 45, 60))
    write_image(src / "palette.png", pal, transparency=0)
    result = run(src, tmp_path, Plan(Geometry("uncropped")))
    out = {k: Image.open(result.path / v["file"]) for k, v in outputs(result).items()}
    assert all(img.mode == "RGB" and img.size == (90, 60) for img in out.values())
    assert out["grey16.png"].getpixel((10, 10)) == (128, 128, 128)
    assert out["alpha.png"].getpixel((10, 10)) == (0, 0, 255)
    assert out["alpha.png"].getpixel((80, 10)) == (255, 255, 255)  # transparent -> white background
    assert out["palette.png"].getpixel((80, 10)) == (255, 255, 255)
    assert out["palette.png"].getpixel((10, 10)) == (255, 0, 0)
    assert max(out["cmyk.jpg"].getpixel((40, 30))) > 0


def test_bad_files_are_all_listed_and_nothing_is_written(tmp_path):
    src = tmp_path / "src"
    write_image(src / "good.jpg", photo((90, 60)))
    (src / "empty.jpg").write_bytes(b"")
    (src / "empty.txt").write_text("x", encoding="utf-8")
    full = (src / "good.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (src / "truncated.txt").write_text("x", encoding="utf-8")
    (src / "text.jpg").write_text("not a picture", encoding="utf-8")
    (src / "text.txt").write_text("x", encoding="utf-8")
    before = tree(src)
    with pytest.raises(DatasetError) as error:
        run(src, tmp_path)
    message = str(error.value)
    assert "empty.jpg: empty file (0 bytes)" in message
    assert "truncated.jpg: truncated" in message and "text.jpg: not an image" in message
    assert "good.jpg" not in message
    assert tree(src) == before
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_unreadable_file_is_an_error(tmp_path):
    src = tmp_path / "src"
    write_image(src / "good.jpg", photo((90, 60)))
    (src / "gone.jpg").symlink_to(src / "missing-target.jpg")
    (src / "gone.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DatasetError, match="gone.jpg: cannot read"):
        run(src, tmp_path)
    if os.geteuid() != 0:  # root reads anything
        (src / "gone.jpg").unlink()
        write_image(src / "locked.jpg", photo((90, 60))).chmod(0)
        with pytest.raises(DatasetError, match="locked.jpg: cannot read"):
            run(src, tmp_path)


def test_missing_captions_listed_empty_ones_warned(tmp_path):
    src = tmp_path / "src"
    write_image(src / "a.jpg", photo((90, 60)), caption=None)
    write_image(src / "b.jpg", photo((90, 60)), caption=None)
    (src / "b.TXT").write_text("upper", encoding="utf-8")
    write_image(src / "c.jpg", photo((90, 60)), caption="")
    with pytest.raises(DatasetError) as error:
        run(src, tmp_path)
    assert "a.jpg: no caption a.txt" in str(error.value)
    assert "b.jpg: no caption b.txt (found b.TXT" in str(error.value)
    result = run(src, tmp_path, Plan(CROP, allow_empty_captions=True))
    assert (result.path / "a.txt").read_bytes() == b"\n"  # sd-scripts stops on zero-byte captions
    assert (result.path / "c.txt").read_bytes() == b"\n"
    assert any("empty caption" in w and "c.txt" in w for w in result.warnings)


def test_nested_folders_mixed_case_and_name_clash(tmp_path):
    src = tmp_path / "src"
    write_image(src / "a" / "X.JPG", photo((90, 60)))
    write_image(src / "b" / "deeper" / "y.Png", photo((60, 90)))
    (src / "notes.md").write_text("ignored", encoding="utf-8")
    result = run(src, tmp_path, Plan(CROP, format="png"))
    assert Image.open(result.path / "a" / "X.png").size == L
    assert Image.open(result.path / "b" / "deeper" / "y.png").size == P
    assert (result.path / "b" / "deeper" / "y.txt").is_file()
    assert any("notes.md" in w for w in result.warnings)
    write_image(src / "a" / "X.png", photo((90, 60)))
    with pytest.raises(DatasetError, match="would both become a/X"):
        run(src, tmp_path)


def test_cache_reuse_and_keys(tmp_path):
    src = tmp_path / "src"
    write_image(src / "a.jpg", photo((90, 60)))
    first = run(src, tmp_path)
    again = run(src, tmp_path)
    assert not first.reused and again.reused and again.path == first.path
    other = run(src, tmp_path, Plan(Geometry("crop-orientation", P, (120, 80))))
    assert other.path != first.path
    plain = run(src, tmp_path, Plan(Geometry("uncropped")))
    assert run(src, tmp_path, Plan(Geometry("uncropped", portrait=(1, 2)))).path == plain.path  # unused sizes
    (src / "a.txt").write_text("a new caption", encoding="utf-8")
    changed = run(src, tmp_path)
    assert changed.path != first.path and not changed.reused
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no staging left
    (changed.path / "a.webp").unlink()
    with pytest.raises(DatasetError, match="incomplete, 1 file"):
        run(src, tmp_path)


def test_target_folder_rules(tmp_path):
    src = tmp_path / "src"
    write_image(src / "a.jpg", photo((90, 60)))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(DatasetError, match="exists and holds other files"):
        run(src, tmp_path, out=busy)
    assert [p.name for p in busy.iterdir()] == ["mine.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (run(src, tmp_path, out=empty).path / "a.webp").is_file()
    assert run(src, tmp_path, out=empty).reused
    with pytest.raises(DatasetError, match="holds a different preparation"):
        run(src, tmp_path, Plan(Geometry("stretch", size=(64, 64))), out=empty)
    with pytest.raises(DatasetError, match="inside the source"):
        run(src, tmp_path, out=src / "prepared")


def test_disk_full_leaves_nothing(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_image(src / "a.jpg", photo((90, 60)))
    write_image(src / "b.jpg", photo((90, 60)))
    real = pathlib.Path.write_bytes

    def full_disk(self, data):
        if self.suffix == ".webp" and self.stem == "b":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    with pytest.raises(DatasetError, match="b.jpg: no space left on device"):
        run(src, tmp_path, workers=1)
    assert list((tmp_path / "cache").iterdir()) == []


def test_stretch_and_small_images(tmp_path):
    src = tmp_path / "src"
    write_image(src / "wide.jpg", photo((200, 50)))
    write_image(src / "tiny.png", photo((20, 30)))
    result = run(src, tmp_path, Plan(Geometry("stretch", size=(64, 64))))
    assert {Image.open(result.path / f).size for f in ("wide.webp", "tiny.webp")} == {(64, 64)}
    assert any("upscaled" in w and "tiny.png" in w for w in result.warnings)
    with pytest.raises(DatasetError, match="stretch needs a size"):
        run(src, tmp_path, Plan(Geometry("stretch")))


def test_jpeg_inject_is_seeded_and_recorded(tmp_path):
    src = tmp_path / "src"
    for i in range(4):
        write_image(src / f"img{i}.png", photo((90, 60), i))
    plan = Plan(CROP, JpegInject(0.5, quality=7, seed=3))
    result = run(src, tmp_path, plan)
    entries = outputs(result)
    chosen = {k for k, v in entries.items() if v["jpeg_quality"] == 7}
    assert len(chosen) == 2 and chosen == set(select_for_jpeg(sorted(entries), plan.jpeg))
    for name in chosen:
        assert entries[name]["file"].endswith(".jpg") and entries[name]["op"] == "crop-orientation+jpeg-inject"
        assert Image.open(result.path / entries[name]["file"]).format == "JPEG"
    names = [f"x{i}.png" for i in range(200)]
    picks = [set(select_for_jpeg(names, JpegInject(0.25, seed=s))) for s in (0, 0, 1)]
    assert picks[0] == picks[1] != picks[2] and len(picks[0]) == 50


def test_prepare_for_recipe_and_parallel_workers(tmp_path):
    src = tmp_path / "src"
    for i in range(3):
        write_image(src / f"img{i}.jpg", photo((120, 90), i))
    spec = SimpleNamespace(mode="crop-orientation", portrait=P, landscape=L, square=None, stretch_to=None,
                           jpeg_fraction=1 / 3, jpeg_quality=10, seed=0, caption_extension=".txt",
                           allow_empty_captions=False)  # fmt: skip
    result = prepare_for_recipe(src, spec, tmp_path / "cache", workers=2)
    entries = outputs(result)
    assert sum(v["jpeg_quality"] == 10 for v in entries.values()) == 1
    assert {tuple(v["size"]) for v in entries.values()} == {L}
    manifest = json.loads((result.path / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["operation"] == "crop-orientation+jpeg-inject" and manifest["key"] == result.key


@given(st.integers(1, 5000), st.integers(1, 5000), st.tuples(st.integers(1, 2000), st.integers(1, 2000)))
def test_centre_crop_keeps_the_target_aspect(width, height, target):
    left, top, right, bottom = centre_crop(width, height, target)
    assert 0 <= left < right <= width and 0 <= top < bottom <= height
    assert right - left == width or bottom - top == height  # as large as possible
    assert abs((left + right) - width) <= 1 and abs((top + bottom) - height) <= 1  # centred
    # Within rounding (half a pixel on the cropped side) of the target aspect ratio.
    w, h = right - left, bottom - top
    assert abs(w * target[1] - h * target[0]) <= max(target) / 2 + 1 or min(w, h) == 1


def test_transparency_of_every_kind_is_composited(tmp_path):
    src = tmp_path / "src"
    grey16 = np.full((60, 90), 1000, dtype=np.uint16)
    grey16[:, :45] = 32896  # 128 * 257: opaque mid grey on the left, transparent (tRNS 1000) on the right
    write_image(src / "grey16.png", Image.fromarray(grey16), transparency=1000)
    grey = np.full((60, 90), 5, dtype=np.uint8)
    grey[:, :45] = 128
    write_image(src / "grey.png", Image.fromarray(grey), transparency=5)
    rgb = Image.new("RGB", (90, 60), (1, 2, 3))
    rgb.paste((128, 128, 128), (0, 0, 45, 60))
    write_image(src / "rgb.png", rgb, transparency=(1, 2, 3))
    bits = Image.new("1", (90, 60), 0)
    bits.paste(1, (0, 0, 45, 60))
    write_image(src / "bits.png", bits, transparency=0)
    result = run(src, tmp_path, Plan(Geometry("uncropped"), background=(0, 0, 255)))
    out = {k: Image.open(result.path / v["file"]).convert("RGB") for k, v in outputs(result).items()}
    for name, img in out.items():
        assert img.getpixel((80, 10)) == (0, 0, 255), name  # transparent: the background
    assert {name: img.getpixel((10, 10)) for name, img in out.items()} == {
        "grey16.png": (128, 128, 128),
        "grey.png": (128, 128, 128),
        "rgb.png": (128, 128, 128),
        "bits.png": (255, 255, 255),
    }


def test_damaged_png_is_refused_not_prepared(tmp_path):
    src = tmp_path / "src"
    write_image(src / "good.png", photo((90, 60)))
    data = bytearray((src / "good.png").read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 4 + struct.unpack(">I", data[idat - 4 : idat])[0] // 2] ^= 0xFF  # Pillow: "broken data stream"
    (src / "broken.png").write_bytes(bytes(data))
    (src / "broken.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DatasetError, match="broken.png: truncated, corrupt or unreadable"):
        run(src, tmp_path, workers=1)


@pytest.mark.parametrize(
    ("geometry", "label"),
    [
        (Geometry("stretch", size=(100_000, 100_000)), "stretch size 100000x100000"),
        (Geometry("crop-orientation", portrait=(832, 9000)), "portrait 832x9000"),
        (Geometry("crop-orientation", landscape=(63, 64)), "landscape 63x64"),
        (Geometry("crop-orientation", square=(10_000, 10_000)), "square 10000x10000"),
    ],
)
def test_sizes_are_bounded_before_any_work(tmp_path, geometry, label):
    with pytest.raises(DatasetError) as error:
        run(tmp_path / "not-even-there", tmp_path, Plan(geometry))
    assert f"{label}: each side must be 64..8192 px" in str(error.value)
    assert not (tmp_path / "cache").exists()


def test_a_source_past_the_decompression_bomb_limit_is_a_per_file_problem(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_image(src / "big.png", photo((100, 80)))
    write_image(src / "ok.png", photo((64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DatasetError) as error:
            run(src, tmp_path, workers=1)
    message = str(error.value)
    assert "big.png: too large: 100x80" in message and "ok.png" not in message
    assert list((tmp_path / "cache").iterdir()) == []


def test_formats_sd_scripts_skips_are_named(tmp_path):
    src = tmp_path / "src"
    write_image(src / "good.png", photo((90, 60)))
    write_image(src / "anim.gif", photo((90, 60)))
    result = run(src, tmp_path)
    line = next(w for w in result.warnings if "anim.gif" in w)
    assert "format sd-scripts does not train on (.gif" in line and "caption" in line
    assert not any("without an image" in w for w in result.warnings)


def test_a_malformed_manifest_in_the_target_is_an_error(tmp_path):
    src = tmp_path / "src"
    write_image(src / "a.jpg", photo((90, 60)))
    out = tmp_path / "out"
    out.mkdir()
    for text in ('{"key": 1, "files": 3}', '{"files": [{"nofile": 1}]}', "[1, 2]"):
        (out / MANIFEST).write_text(text, encoding="utf-8")
        with pytest.raises(DatasetError, match="unreadable manifest"):
            run(src, tmp_path, out=out)
