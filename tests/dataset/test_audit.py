"""The dataset audit on real folders: bad images, captions, token lengths, buckets, output."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest_data import exif_rotated_jpeg, photo, write_image
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from wrapper.dataset import audit as audit_module
from wrapper.dataset.audit import audit_dataset
from wrapper.dataset.images import Geometry
from wrapper.dataset.prep import Plan, prepare
from wrapper.dataset.scan import read_caption
from wrapper.errors import DatasetError

WORDS = ["red", "blue", "green", "cat", "dog"] * 60  # one CLIP token each


def test_clean_dataset_has_no_problems(image_dir):
    report = audit_dataset(image_dir, resolution=(64, 64), buckets={"enabled": True, "min_reso": 64})
    assert report.problems == () and report.required_max_token_length() is None
    assert report.max_tokens == 6  # "a portrait photo of a coat"
    assert {i.file: i.bucket for i in report.images} == {"landscape.png": (64, 64), "portrait.png": (64, 64)}
    assert report.aspect_ratios == {"2:3": 1, "3:2": 1}


def test_bad_images_are_problems(tmp_path):
    write_image(tmp_path / "good.jpg", photo((90, 60)))
    full = (tmp_path / "good.jpg").read_bytes()
    for name, data in (("empty.jpg", b""), ("truncated.jpg", full[:-300]), ("text.jpg", b"hello")):
        (tmp_path / name).write_bytes(data)
        (tmp_path / name).with_suffix(".txt").write_text("x", encoding="utf-8")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "gone.txt").write_text("x", encoding="utf-8")
    report = audit_dataset(tmp_path)
    problems = "\n".join(report.problems)
    assert "empty.jpg: empty file" in problems and "truncated.jpg: truncated" in problems
    assert "text.jpg: not an image" in problems and "gone.png: cannot read" in problems
    assert "good.jpg" not in problems


def test_caption_problems_and_warnings(tmp_path):
    write_image(tmp_path / "missing.png", photo((60, 60)), caption=None)
    write_image(tmp_path / "zero.png", photo((60, 60)), caption="")
    write_image(tmp_path / "blank.png", photo((60, 60)), caption="  \n")
    write_image(tmp_path / "latin1.png", photo((60, 60)), caption=None)
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    write_image(tmp_path / "multi.png", photo((60, 60)), caption="first line\nsecond line")
    report = audit_dataset(tmp_path)
    problems, warnings = "\n".join(report.problems), "\n".join(report.warnings)
    assert "1 image(s) without a caption: missing.png" in problems
    assert "zero.txt: zero-byte caption file" in problems and "latin1.txt: not UTF-8" in problems
    assert "empty caption(s): blank.txt" in warnings and "several lines" in warnings
    assert {c.file: c.tokens for c in report.captions}["multi.txt"] == 2  # first line only
    relaxed = audit_dataset(tmp_path, allow_empty_captions=True)
    assert "missing.png" in "\n".join(relaxed.warnings) and "missing.png" not in "\n".join(relaxed.problems)


def test_long_captions_and_required_max_token_length(tmp_path):
    for name, n in (("short", 10), ("mid", 120), ("long", 200), ("huge", 240)):
        write_image(tmp_path / f"{name}.png", photo((60, 60)), caption=" ".join(WORDS[:n]))
    report = audit_dataset(tmp_path)
    assert report.max_tokens == 240 and report.required_max_token_length() == 225
    assert [c.file for c in report.over(75)] == ["huge.txt", "long.txt", "mid.txt"]
    assert [c.file for c in report.over(150)] == ["huge.txt", "long.txt"]
    huge = report.over(225)[0]
    assert huge.cut[225] == " ".join(WORDS[225:240])
    assert any("huge.txt: 240 tokens; even 225 loses: " + huge.cut[225] in w for w in report.warnings)
    (tmp_path / "huge.txt").unlink()
    (tmp_path / "long.txt").unlink()
    assert audit_dataset(tmp_path, allow_empty_captions=True).required_max_token_length() == 150


def test_image_warnings(tmp_path):
    exif_rotated_jpeg(tmp_path / "rotated.jpg", (120, 90))
    write_image(tmp_path / "alpha.png", Image.new("RGBA", (60, 60), (1, 2, 3, 0)))
    write_image(tmp_path / "cmyk.jpg", photo((60, 60)).convert("CMYK"))
    write_image(tmp_path / "odd.Jpg", photo((60, 60)))
    write_image(tmp_path / "sub" / "nested.png", photo((60, 60)))
    write_image(tmp_path / "small.png", photo((40, 40)))
    shutil.copy(tmp_path / "small.png", tmp_path / "copy.png")
    shutil.copy(tmp_path / "small.txt", tmp_path / "copy.txt")
    (tmp_path / "notes.md").write_text("x", encoding="utf-8")
    report = audit_dataset(tmp_path, resolution=(64, 64), buckets=None)
    warnings = "\n".join(report.warnings)
    assert "EXIF rotation" in warnings and "rotated.jpg" in warnings
    assert "transparency" in warnings and "CMYK" in warnings
    assert "case sd-scripts' glob misses (it skips them): odd.Jpg" in warnings
    assert "subfolders" in warnings and "sub/nested.png" in warnings
    assert "identical files: copy.png, small.png" in warnings
    assert "would be upscaled" in warnings and "small.png" in warnings
    assert "notes.md" in warnings and report.problems == ()
    assert report.bucket_counts == {"64x64": 7}  # buckets off: the one training size
    assert {i.file: i.size for i in report.images}["rotated.jpg"] == (120, 90)  # stored size


def test_prepared_dataset_is_trusted_by_hash_but_rechecked_when_changed(tmp_path):
    src = tmp_path / "src"
    for i in range(2):
        write_image(src / f"img{i}.jpg", photo((90, 60), i))
    done = prepare(src, Plan(Geometry("crop-orientation", (64, 96), (96, 64))), tmp_path / "cache")
    assert audit_dataset(done.path).problems == ()
    target = done.path / "img0.webp"
    target.write_bytes(target.read_bytes()[:200])
    assert "img0.webp: truncated" in "\n".join(audit_dataset(done.path).problems)
    (done.path / "img1.webp").unlink()
    assert "listed in gaze-manifest.json are missing: img1.webp" in "\n".join(audit_dataset(done.path).problems)


def test_json_and_text_output(tmp_path):
    write_image(tmp_path / "a.png", photo((60, 90)), caption=" ".join(WORDS[:80]))
    report = audit_dataset(tmp_path, resolution=(512, 512), buckets={"enabled": True}, family="sdxl")
    data = json.loads(report.to_json())
    assert data["required_max_token_length"] == 150 and data["over"]["75"] == ["a.txt"]
    assert data["images"][0]["bucket"] == [384, 640] and data["family"] == "sdxl"
    text = report.to_text()
    assert "captions over 75 tokens (1)" in text and ">75: " + " ".join(WORDS[75:80]) in text
    assert "384x640" in text and "no blocking problems" in text


def test_empty_folder_and_unknown_family(tmp_path):
    report = audit_dataset(tmp_path)
    assert "no images" in report.problems[0]
    with pytest.raises(DatasetError, match="did you mean 'sdxl'"):
        audit_dataset(tmp_path, family="sdx1")


def test_audit_does_not_import_torch(image_dir):
    code = (
        "import sys, pathlib; from wrapper.dataset.audit import audit_dataset; "
        f"audit_dataset(pathlib.Path({str(image_dir)!r})); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(["a", " ", "\n", "\r", "\t", "é", "\x0b", "\x1c", "\u2028", "\x85"])))
def test_read_caption_matches_text_mode_readlines(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cap") / "c.txt"
    path.write_bytes(text.encode("utf-8"))
    with open(path, encoding="utf-8") as f:  # what sd-scripts' read_caption does
        lines = f.readlines()
    assert read_caption(text.encode("utf-8")) == ((lines[0].strip() if lines else ""), len(lines))


def damaged_pngs() -> dict[str, bytes]:
    """PNGs whose header reads but whose pixels do not: cut short, a flipped byte in the image data (so
    its CRC is wrong), garbage after the image data's chunk header."""
    buf = io.BytesIO()
    photo((64, 64)).save(buf, "PNG")
    good = buf.getvalue()
    idat = good.index(b"IDAT")
    length = struct.unpack(">I", good[idat - 4 : idat])[0]

    flipped = bytearray(good)
    flipped[idat + 4 + length // 2] ^= 0xFF
    garbage = bytes((i * 37 + 11) % 256 for i in range(length))
    return {
        "truncated.png": good[: idat + 4 + length // 2],
        "short-idat.png": good[: idat - 4] + _chunk(b"IDAT", good[idat + 4 : idat + 4 + length // 2]),
        "bad-crc.png": bytes(flipped),
        "garbage.png": good[: idat - 4] + _chunk(b"IDAT", garbage) + _chunk(b"IEND", b""),
    }


def sd_scripts_load(path: Path) -> None:
    """What sd-scripts' train_util.load_image does with an image (without its logging)."""
    with Image.open(path) as image:
        if image.mode != "RGB":
            image = image.convert("RGB")
        np.array(image, np.uint8)


@pytest.mark.parametrize("exif", [False, True], ids=["plain", "with-exif"])
def test_damaged_pngs_are_blocking_problems(tmp_path, exif):
    for name, data in damaged_pngs().items():
        if exif:  # an eXIf chunk before the image data: reading it must not hide the damage
            tags = Image.Exif()
            tags[0x0112] = 1
            data = data[:33] + _chunk(b"eXIf", tags.tobytes()) + data[33:]
        (tmp_path / name).write_bytes(data)
        (tmp_path / name).with_suffix(".txt").write_text("x", encoding="utf-8")
        with pytest.raises(OSError):
            sd_scripts_load(tmp_path / name)
    report = audit_dataset(tmp_path)
    problems = "\n".join(report.problems)
    for name in damaged_pngs():
        assert f"{name}: " in problems and ("truncated" in problems or "corrupt" in problems)
    assert len(report.problems) == 4


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_captions_beside_formats_sd_scripts_skips(tmp_path):
    write_image(tmp_path / "good.png", photo((64, 64)))
    write_image(tmp_path / "anim.gif", photo((64, 64)))
    write_image(tmp_path / "scan.TIFF", photo((64, 64)))
    write_image(tmp_path / "bare.tif", photo((64, 64)), caption=None)
    (tmp_path / "lonely.txt").write_text("no image at all", encoding="utf-8")
    report = audit_dataset(tmp_path)
    warnings = "\n".join(report.warnings)
    assert "caption(s) without an image: lonely.txt" in warnings
    assert "anim" not in warnings.split("without an image")[1].split("\n")[0]
    line = next(w for w in report.warnings if "anim.gif" in w)
    assert "bare.tif" in line and "scan.TIFF" in line and ".gif" in line and ".tiff" in line
    assert "does not train on" in line and ".png, .jpg, .jpeg, .webp, .bmp" in line
    assert [i.file for i in report.images] == ["good.png"] and report.problems == ()


def test_transparency_of_every_kind_is_noticed(tmp_path):
    grey16 = np.full((64, 64), 1000, dtype=np.uint16)
    write_image(tmp_path / "grey16.png", Image.fromarray(grey16), transparency=1000)
    write_image(tmp_path / "grey.png", Image.new("L", (64, 64), 5), transparency=5)
    write_image(tmp_path / "rgb.png", Image.new("RGB", (64, 64), (1, 2, 3)), transparency=(1, 2, 3))
    write_image(tmp_path / "opaque.png", Image.new("RGB", (64, 64), (1, 2, 3)))
    report = audit_dataset(tmp_path)
    assert {i.file for i in report.images if i.alpha} == {"grey16.png", "grey.png", "rgb.png"}


def test_an_image_past_the_decompression_bomb_limit_is_a_problem(tmp_path, monkeypatch):
    write_image(tmp_path / "big.png", photo((100, 80)))
    write_image(tmp_path / "small.png", photo((64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # big.png: 8000 pixels, below Pillow's 2x error
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not be what is left
        report = audit_dataset(tmp_path)
    assert len(report.problems) == 1 and report.problems[0].startswith("big.png: too large: 100x80")
    assert "5000" in report.problems[0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # past 2x: Pillow itself refuses to open it
    assert audit_dataset(tmp_path).problems[0].startswith("big.png: too large")


@pytest.mark.parametrize(
    ("resolution", "buckets", "expected"),
    [
        ((512, 512), {"reso_steps": 0}, "bucket_reso_steps = 0: expected a whole number of pixels >= 1"),
        ((512, 512), {"reso_steps": -64}, "bucket_reso_steps = -64: expected a whole number of pixels >= 1"),
        ((512, 512), {"min_reso": 1024, "max_reso": 512}, "min_bucket_reso = 1024 is above max_bucket_reso = 512"),
        ((832, 1216), {"max_reso": 1024}, "resolution 832x1216 is larger than max_bucket_reso = 1024"),
        ((512, 512), {"min_reso": 640}, "resolution 512x512 is smaller than min_bucket_reso = 640"),
        ((512, 512), {"min_reso": 32}, "min_bucket_reso = 32 rounds down to 0"),
        ((512, 512), {"reso_steps": 32}, "bucket_reso_steps = 32: train_network.py asserts it is divisible by 64"),
        ((512, 512), {"max_reso": 100_000}, "max_bucket_reso = 100000: expected at most 8192"),
        ((100_000, 512), None, "resolution 100000x512: each side must be 64..8192 px"),
        ((0, 512), None, "resolution 0x512: each side must be 64..8192 px"),
    ],
)
def test_bucket_settings_sd_scripts_refuses_are_refused_before_scanning(
    tmp_path, monkeypatch, resolution, buckets, expected
):
    monkeypatch.setattr(audit_module, "scan", lambda *a, **k: pytest.fail("scanned before checking the settings"))
    rules = {"enabled": True, **buckets} if buckets is not None else None
    with pytest.raises(DatasetError) as error:
        audit_dataset(tmp_path, resolution=resolution, buckets=rules)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)


def test_bucket_settings_sd_scripts_accepts(tmp_path):
    write_image(tmp_path / "a.png", photo((64, 96)))
    ok = {"enabled": True, "min_reso": 256, "max_reso": 1000, "reso_steps": 64}  # 1000 rounds up to 1024
    assert audit_dataset(tmp_path, resolution=(1024, 1024), buckets=ok).problems == ()
    sdxl = {"enabled": True, "reso_steps": 32}
    assert audit_dataset(tmp_path, resolution=(512, 512), buckets=sdxl, family="sdxl").problems == ()
    assert audit_dataset(tmp_path, resolution=(512, 512), buckets={"enabled": False, "reso_steps": 0}).problems == ()
    with pytest.raises(DatasetError, match="caption extension '' should look like '.txt'"):
        audit_dataset(tmp_path, caption_extension="")
