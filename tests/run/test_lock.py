"""run.lock: one holder at a time, its name in the refusal, stale locks taken over only when provably dead."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from encoderlab.errors import UserError
from encoderlab.run import lock as lock_module
from encoderlab.run.layout import RunDir
from encoderlab.run.lock import RunLock, RunLocked, UnverifiedLock, refuse_if_held


def dead_pid() -> int:
    """The pid of a process that has ended (pids are not reused this quickly)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_holder(run_dir, pid: int, host: str | None = None) -> None:
    text = json.dumps(
        {"pid": pid, "host": host or socket.gethostname(), "started": "2024-01-01T00:00:00+00:00"}
    )
    RunDir(run_dir).lock.write_text(text)


def test_the_lock_names_its_holder_and_is_removed_on_release(tmp_path):
    with RunLock(tmp_path) as held:
        saved = json.loads(RunDir(tmp_path).lock.read_text())
        assert saved["pid"] == os.getpid() and saved["host"] == socket.gethostname()
        assert held.holder.pid == os.getpid()
    assert not RunDir(tmp_path).lock.exists()


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_host(tmp_path):
    # flock belongs to an open file, so a second RunLock in this process is a second holder.
    with RunLock(tmp_path):
        before = RunDir(tmp_path).lock.read_bytes()
        with pytest.raises(RunLocked) as refused:
            RunLock(tmp_path)
        assert isinstance(refused.value, UserError)
        assert f"pid {os.getpid()} on {socket.gethostname()}" in str(refused.value)
        with pytest.raises(RunLocked):
            refuse_if_held(tmp_path)
        assert RunDir(tmp_path).lock.read_bytes() == before
    refuse_if_held(tmp_path)  # released: nobody holds it


def test_a_stale_lock_of_this_host_is_taken_over(tmp_path, caplog):
    pid = dead_pid()
    write_holder(tmp_path, pid)
    with caplog.at_level(logging.WARNING, logger="encoderlab"), RunLock(tmp_path):
        assert json.loads(RunDir(tmp_path).lock.read_text())["pid"] == os.getpid()
    assert f"taking over the lock of pid {pid}" in caplog.text


def test_a_lock_file_of_another_host_is_left_for_the_user(tmp_path):
    write_holder(tmp_path, 4242, host="gpu-node-7")
    before = RunDir(tmp_path).lock.read_bytes()
    with pytest.raises(UnverifiedLock) as refused:
        RunLock(tmp_path)
    message = str(refused.value)
    assert "pid 4242 on gpu-node-7" in message and "cannot be checked from" in message
    assert f"remove {RunDir(tmp_path).lock}" in message
    assert RunDir(tmp_path).lock.read_bytes() == before
    refuse_if_held(tmp_path)  # the refused attempt holds nothing


def test_a_free_lock_naming_a_live_pid_of_this_host_is_left_for_the_user(tmp_path):
    # The kernel says nobody holds it, the pid says someone runs: a reused pid, or a twin host name.
    write_holder(tmp_path, os.getppid())
    with pytest.raises(UnverifiedLock, match=f"pid {os.getppid()} on .* whose pid is alive .* remove "):
        RunLock(tmp_path)


def test_without_file_locks_the_holders_pid_decides(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_module.fcntl, "flock", no_locks)
    write_holder(tmp_path, os.getppid())  # alive
    with pytest.raises(RunLocked, match=f"pid {os.getppid()} on"):
        RunLock(tmp_path)
    write_holder(tmp_path, dead_pid())
    with RunLock(tmp_path):
        assert json.loads(RunDir(tmp_path).lock.read_text())["pid"] == os.getpid()


def test_a_holder_releasing_meanwhile_is_not_shared(tmp_path, monkeypatch):
    """Locking a file its holder has just unlinked must not count: the lock is retried on the new file."""
    real_flock, swapped = fcntl.flock, []

    def flock_after_release(fd, operation):
        if not swapped:  # the holder unlinks and a newcomer recreates the file between open and flock
            swapped.append(True)
            RunDir(tmp_path).lock.unlink()
            RunDir(tmp_path).lock.write_text("")
        return real_flock(fd, operation)

    RunDir(tmp_path).lock.write_text("")
    monkeypatch.setattr(lock_module.fcntl, "flock", flock_after_release)
    with RunLock(tmp_path):
        inode = RunDir(tmp_path).lock.stat().st_ino
        monkeypatch.setattr(lock_module.fcntl, "flock", real_flock)
        with pytest.raises(RunLocked):  # the file now at the path is the one held
            RunLock(tmp_path)
        assert RunDir(tmp_path).lock.stat().st_ino == inode
