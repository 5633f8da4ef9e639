"""One process per run directory: ``run.lock``, held for the run's life.

The lock is ``flock`` on an open file. The kernel drops it when the process ends however it ends (even with
``kill -9``), so on one machine a lock file that nobody holds was left by a process that is gone: it is
taken over. The file names its holder (pid, host, start time) for the refusal message.

Other machines: on NFS, Linux turns ``flock`` into a lock held by the server, so a process on another
client is seen holding it; some file systems keep such locks per machine. A free lock file naming another
host is therefore never taken over: that host may still be running the run, and only its user can say it
is not. A file system without locks at all (``ENOLCK``, ``ENOSYS``) gets the same check from the file's
contents alone (a live pid on this host refuses), with a warning that two processes starting at the same
instant could both pass.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from encoderlab.errors import UserError
from encoderlab.run.layout import RunDir

log = logging.getLogger("encoderlab")
NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
READ_TRIES = 20  # a holder writes its name right after locking: wait up to 20 x 50 ms to read it


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a run directory's lock, as its lock file says."""

    pid: int
    host: str
    started: str

    @classmethod
    def me(cls) -> Holder:
        return cls(os.getpid(), socket.gethostname(), datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["host"]), str(data["started"]))
        except (ValueError, KeyError, TypeError):
            return None  # empty (its holder has not written yet) or not ours

    def is_local(self) -> bool:
        return self.host == socket.gethostname()

    def is_alive(self) -> bool:
        """Whether a process with this pid runs on this host (meaningful only when ``is_local``)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # someone else's process
        return True

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host} (since {self.started})"


class RunLocked(UserError):
    """Another process writes this run directory."""

    def __init__(self, run_dir: Path, holder: Holder | None) -> None:
        who = str(holder) if holder else "another process"
        super().__init__(
            f"{run_dir} is in use by {who} — wait for that process to end, or choose another run directory "
            "(two processes never write one run)"
        )
        self.holder = holder


class UnverifiedLock(UserError):
    """A lock file nobody holds whose holder this process cannot prove gone: only the user can say so."""

    def __init__(self, run_dir: Path, path: Path, holder: Holder, why: str) -> None:
        super().__init__(
            f"{run_dir} is locked by {holder}, {why} — if no process of this run is alive on {holder.host}, "
            f"remove {path} and try again"
        )
        self.holder = holder


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode("utf-8", errors="replace")


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a releasing holder unlinks it first)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _holder_of_locked(fd: int) -> Holder | None:
    for _ in range(READ_TRIES):
        holder = Holder.parse(_read(fd))
        if holder is not None:
            return holder
        time.sleep(0.05)
    return None


def _lock(fd: int, path: Path) -> bool:
    """Take the flock; False when this file system has no locks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in NO_LOCKS:
            raise  # BlockingIOError: held
        log.warning("%s: this file system has no file locks; checking the holder's pid only", path)
        return False
    return True


class RunLock:
    """This process's hold on a run directory; ``release`` (or the end of the process) gives it up."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        """Take the lock of ``run_dir`` or raise ``RunLocked`` / ``UnverifiedLock``; takes over a stale one."""
        self.run_dir = Path(run_dir)
        self.path = RunDir(run_dir).lock
        self.holder = Holder.me()
        self._fd: int | None = None
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                self._fd = self._claim(fd)
            except BaseException:
                os.close(fd)
                raise
            if self._fd is None:
                os.close(fd)  # the holder released and unlinked it meanwhile: lock the new file

    def _claim(self, fd: int) -> int | None:
        try:
            locked = _lock(fd, self.path)
        except BlockingIOError:
            raise RunLocked(self.run_dir, _holder_of_locked(fd)) from None
        if not _same_file(fd, self.path):
            return None
        previous = Holder.parse(_read(fd))
        if previous is not None and previous.pid != os.getpid():
            self._refuse_unless_gone(previous, locked)
        if previous is not None:
            log.warning(
                "%s: taking over the lock of %s, which ended without releasing it", self.run_dir, previous
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(self.holder)).encode(), 0)
        os.fsync(fd)  # readers on other NFS clients see the name as soon as the lock
        return fd

    def _refuse_unless_gone(self, previous: Holder, locked: bool) -> None:
        """Raise unless the process named by a lock file nobody holds has provably ended."""
        if not previous.is_local():
            why = f"which cannot be checked from {socket.gethostname()}"
            raise UnverifiedLock(self.run_dir, self.path, previous, why)
        if previous.is_alive() and not locked:
            raise RunLocked(self.run_dir, previous)  # no file locks here: a live pid is the holder
        if previous.is_alive():
            why = (
                "whose pid is alive without holding the lock (a reused pid, or another machine of that name)"
            )
            raise UnverifiedLock(self.run_dir, self.path, previous, why)

    def release(self) -> None:
        """Remove the lock file, then drop the lock (in that order: a waiter re-checks the path)."""
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink()
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def refuse_if_held(run_dir: str | os.PathLike) -> None:
    """Raise ``RunLocked`` when a process holds ``run_dir``'s lock now; touches nothing (a shared lock,
    dropped at once), for a command that will not write the run anyway."""
    try:
        fd = os.open(RunDir(run_dir).lock, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunLocked(Path(run_dir), _holder_of_locked(fd)) from None
    except OSError:
        return  # no locks on this file system: nobody can be seen holding one
    finally:
        os.close(fd)
