"""Writing files and directories so that a crash never leaves a half-written one behind.

A write that fails for lack of space (a full disk or quota) raises ``NoSpaceLeft``, a ``UserError``: one line
naming the path and saying that what was there before is intact.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from encoderlab.errors import UserError

# How a library that writes through its own I/O words a full disk (safetensors' Rust error carries the OS's).
_NO_SPACE_WORDS = ("No space left on device", "StorageFull", "Disk quota exceeded")


class NoSpaceLeft(UserError):
    """A write that failed for lack of space; the file it was to replace is intact."""


def out_of_space(err: BaseException | None) -> bool:
    """Whether ``err``, or what it wraps, is a full disk or quota (ENOSPC / EDQUOT)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(words in str(err) for words in _NO_SPACE_WORDS):
            return True
        err = err.__cause__ or err.__context__
    return False


def no_space_error(path: Path, existed: bool, retry: str = "run it again") -> NoSpaceLeft:
    kept = f"the previous {path.name} is intact" if existed else "nothing half-written was left"
    return NoSpaceLeft(f"no space left on device writing {path} — {kept}; free space and {retry}")


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the body succeeds it replaces ``path`` in one rename.

    If the body raises, the temporary file is removed and an existing ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp's (and safetensors') 0600 would hide run files from other users
        os.replace(tmp, path)
    except Exception as err:
        if out_of_space(err):
            raise no_space_error(path, existed) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, data) -> None:
    """Write JSON atomically (temporary file beside ``path``, then rename)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json_object(path: str | Path) -> dict:
    """A JSON object from ``path``, or {} when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextmanager
def atomic_directory(path: str | Path, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it becomes ``path`` in one rename.

    If the body raises, the temporary directory is removed and an existing ``path`` is left untouched.
    With ``replace=False`` (content-addressed caches) an existing ``path`` wins: another process published
    the same key first and its content is equivalent.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the directory from other users
    try:
        yield tmp
        if replace:
            _replace_directory(tmp, path)
        else:
            try:
                os.replace(tmp, path)
            except OSError:
                if not path.is_dir():
                    raise
    except Exception as err:
        if out_of_space(err):
            raise no_space_error(path, existed) from err
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_directory(new: Path, path: Path) -> None:
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(new, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
