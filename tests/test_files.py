"""Atomic writes: a reader sees the old file or the new one."""

from __future__ import annotations

import json

import pytest

from wrapper import files


def test_write_atomic_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "config.toml"
    target.write_text("old")

    class Boom(Exception):
        pass

    def explode(*_a, **_k):
        raise Boom

    monkeypatch.setattr(files.os, "replace", explode)
    with pytest.raises(Boom):
        files.write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


def test_write_json_and_bytes(tmp_path):
    files.write_json(tmp_path / "a.json", {"ü": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == {"ü": [1, 2]}
    files.write_atomic(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"


def test_write_atomic_keeps_a_files_mode_and_makes_new_ones_readable(tmp_path):
    new = tmp_path / "report.html"
    files.write_atomic(new, "a")
    assert new.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600: a report folder can be served or shared
    kept = tmp_path / "notes.md"
    kept.write_text("a")
    kept.chmod(0o640)
    files.write_atomic(kept, "b")
    assert kept.stat().st_mode & 0o777 == 0o640 and kept.read_text() == "b"
