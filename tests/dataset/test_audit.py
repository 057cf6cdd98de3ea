"""The dataset audit on real folders: bad images, captions, token lengths, buckets, output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest_data import exif_rotated_jpeg, photo, write_image
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

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
    done = prepare(src, Plan(Geometry("crop-orientation", (60, 90), (90, 60))), tmp_path / "cache")
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
