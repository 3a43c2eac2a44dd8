"""Outputs whole or absent: a file or folder is written under a temporary name beside its place and swapped in at
the end; leftovers of killed writers are removed by the next one; a full or read-only disk is a one-line error.
Text files are read as UTF-8, with one error message for a file that is not."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from csra.errors import CSRAError

NEARLY_FULL = 1 << 20  # bytes: a write that fails with less free space than this failed for want of space
_DISK_ERRORS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied"}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


@contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Turn a failed write at path into one line when the disk is the cause: no space, quota, read-only,
    permissions (some writers, torch.save among them, report a full disk without an errno)."""
    try:
        yield
    except OSError as e:
        if e.errno in _DISK_ERRORS:
            raise CSRAError(f"{_DISK_ERRORS[e.errno]}: {path}") from None
        raise
    except (RuntimeError, ValueError):
        free = _free_bytes(path if path.is_dir() else path.parent)
        if free is not None and free < NEARLY_FULL:
            raise CSRAError(f"no space left on device: {path}") from None
        raise


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(path: Path) -> None:
    """Remove what killed writers of path left beside it: temp files and folders of processes that are gone,
    and restore path from a swap that was cut between its two renames."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\..*\.tmp")
    for sibling in path.parent.glob(f".{path.name}.*"):
        match = pattern.fullmatch(sibling.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(sibling) if sibling.is_dir() else sibling.unlink(missing_ok=True)
    old = path.with_name(f".{path.name}.old")
    if old.exists() and not path.exists():
        os.replace(old, path)
    elif old.exists():
        shutil.rmtree(old, ignore_errors=True)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temp file next to `path`, then rename it onto `path`; on any error the temp file
    goes and `path` stays as it was."""
    path = Path(path)
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            write(Path(tmp))
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def decode_text(data: bytes, path: Path) -> str:
    """data (the bytes of the file at path) as UTF-8 text, or a CSRAError naming the file and the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CSRAError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_text(path: Path) -> str:
    """The UTF-8 text of the file at path (which exists), or a CSRAError naming the file and the first bad byte."""
    return decode_text(path.read_bytes(), path)


def file_md5(path: Path) -> str:
    """The MD5 of a file's bytes (DVC's hash of a file), read in 1 MiB blocks."""
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any, indent: int | None = None) -> Path:
    return write_text(path, json.dumps(obj, indent=indent) + ("\n" if indent is not None else ""))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


KEPT = (".gitignore",)  # bookkeeping of the version-control tools, not an output: carried into the new folder


def replace_dir(tmp: Path, path: Path) -> None:
    """Put the folder tmp in path's place, path's old content removed (but for KEPT files): in one step where the
    system swaps folders atomically, else by two renames that remove_leftovers completes if they are cut apart."""
    for name in KEPT:
        if (path / name).is_file() and not (tmp / name).exists():
            shutil.copy2(path / name, tmp / name)
    if not path.exists():
        os.replace(tmp, path)
    elif _exchange(tmp, path):
        shutil.rmtree(tmp)
    else:
        old = path.with_name(f".{path.name}.old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder to fill; on success it replaces `path` whole, on error it is removed and `path` stays
    exactly as it was."""
    path = Path(path)
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        with disk_errors(path):
            os.chmod(tmp, 0o777 & ~_umask())
            replace_dir(tmp, path)
    except CSRAError as e:  # name the destination, not the temp folder it was being written in
        raise CSRAError(str(e).replace(str(tmp), str(path))) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
