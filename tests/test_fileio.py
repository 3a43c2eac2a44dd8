"""Atomic writes: the file at the path is the old one or the whole new one, never a half-written one, and a failed
or interrupted write leaves no temporary file behind."""

import os
import stat
import subprocess
import sys

import pytest

from csra.fileio import atomic_dir, atomic_write, write_json, write_text


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


def test_a_writer_that_starts_leaves_a_live_writers_temp_folder_and_removes_a_dead_ones(tmp_path):
    out = tmp_path / "results"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".results.{int(gone.stdout)}.abc.tmp"  # a killed writer's leftover
    dead.mkdir()
    with atomic_dir(out) as first:
        (first / "a.txt").write_text("first")
        with atomic_dir(out) as second:  # another writer starts while the first is still writing
            (second / "b.txt").write_text("second")
            assert (first / "a.txt").read_text() == "first"
            assert not dead.exists()
    assert [p.name for p in out.iterdir()] == ["a.txt"]  # the first to finish wrote last
    assert [p.name for p in tmp_path.iterdir()] == ["results"]


def test_a_replaced_output_folder_gets_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        for _ in range(2):  # made, then replaced
            with atomic_dir(tmp_path / "out") as tmp:
                (tmp / "a.txt").write_text("x")
            assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    finally:
        os.umask(mask)


def test_a_replaced_folder_keeps_its_gitignore_unless_the_new_content_has_one(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".gitignore").write_text("/model.pt\n")
    (out / "old.txt").write_text("old")
    with atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [".gitignore", "new.txt"]
    assert (out / ".gitignore").read_text() == "/model.pt\n"
    with atomic_dir(out) as tmp:
        (tmp / ".gitignore").write_text("/other.pt\n")
    assert (out / ".gitignore").read_text() == "/other.pt\n"
