"""Atomic writes: the file at the path is the old one or the whole new one, never a half-written one, and a failed
or interrupted write leaves no temporary file behind."""

import os
import stat

import pytest

from csra.fileio import atomic_write, write_json, write_text


def test_the_new_file_appears_whole_and_only_at_the_end(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    seen = {}

    def write(tmp):
        tmp.write_text("new, first half")
        seen["during"] = path.read_text()  # the reader of path still sees the old file
        seen["tmp"] = tmp
        with tmp.open("a") as f:
            f.write(", second half")

    assert atomic_write(path, write) == path
    assert seen["during"] == "old" and seen["tmp"].parent == path.parent and seen["tmp"] != path
    assert path.read_text() == "new, first half, second half"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temporary file left


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temp_file(tmp_path, error):
    path = tmp_path / "out.json"
    write_json(path, {"old": True})

    def fails_midway(tmp):
        tmp.write_text('{"new": ')
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, fails_midway)
    assert path.read_text() == '{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_failed_first_write_leaves_nothing(tmp_path):
    def fails(tmp):
        tmp.write_text("partial")
        raise OSError("no space left on device")

    with pytest.raises(OSError):
        atomic_write(tmp_path / "sub" / "new.txt", fails)
    assert list((tmp_path / "sub").iterdir()) == []


def test_outputs_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
