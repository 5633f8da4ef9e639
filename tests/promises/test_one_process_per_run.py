"""One process per run directory, with real processes: while a run trains, a second start in its
directory, a resume of it and a sweep job reusing it are refused in one line naming the holder, and leave
the directory exactly as it was; the first run then completes. A run killed with SIGKILL leaves a stale
lock that a resume takes over."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FAST, assert_clean_failure, cli_env, run_train, start_train

FINETUNE = ["experiment=finetune_sst2", *FAST, "test=false"]


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def holder_pid(run_dir: Path) -> int | None:
    try:
        return json.loads((run_dir / "run.lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None  # not there yet, or being written


def snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns) for p in run_dir.rglob("*")}


@pytest.mark.slow
def test_a_second_process_is_refused_while_the_first_trains(data_dir, cache_dir, tmp_path):
    env = cli_env(data_dir, cache_dir)
    sweep_dir = tmp_path / "sweep"
    run_dir = sweep_dir / "0"  # also job 0 of a sweep in sweep_dir
    first = start_train([*FINETUNE, f"hydra.run.dir={run_dir}"], env)
    wait_for(lambda: holder_pid(run_dir) == first.pid and (run_dir / "run.json").is_file(), first)
    first.send_signal(signal.SIGSTOP)  # it keeps its lock; nothing in its directory changes while stopped
    try:
        before = snapshot(run_dir)
        holder = f"in use by pid {first.pid} on {socket.gethostname()}"
        again = run_train([*FINETUNE, f"hydra.run.dir={run_dir}"], env)
        assert again.returncode == 2 and assert_clean_failure(again, holder)
        resumed = run_train([f"resume={run_dir}"], env)
        assert resumed.returncode == 2 and assert_clean_failure(resumed, holder)
        sweep = run_train(["-m", *FINETUNE, f"hydra.sweep.dir={sweep_dir}", "seed=7"], env)
        assert sweep.returncode != 0 and f"error: {run_dir} is {holder}" in sweep.stdout + sweep.stderr
        assert (
            snapshot(run_dir) == before
        )  # no .hydra/resumed-*, run.json, train.log and the lock as they were
        assert not list(run_dir.glob(".hydra/resumed-*"))
    finally:
        first.send_signal(signal.SIGCONT)

    assert first.wait(timeout=240) == 0, first.stderr.read()[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and "resumes" not in record and record["seed"] == 42
    assert (run_dir / "metrics.json").is_file() and not (run_dir / "run.lock").exists()


@pytest.mark.slow
def test_a_resume_takes_over_the_lock_of_a_killed_run(data_dir, cache_dir, tmp_path):
    env = cli_env(data_dir, cache_dir)
    run_dir = tmp_path / "run"
    longer = [o for o in FINETUNE if not o.startswith(("trainer.max_steps", "trainer.limit_train_batches"))]
    args = [
        *longer,
        "trainer.max_steps=40",
        "callbacks.last_checkpoint.every_n_steps=1",
        f"hydra.run.dir={run_dir}",
    ]
    victim = start_train(args, env)
    wait_for(lambda: (run_dir / "checkpoints/last.ckpt").is_file(), victim)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL
    assert holder_pid(run_dir) == victim.pid  # the file stays; the kernel dropped the lock with the process

    result = run_train([f"resume={run_dir}", "trainer.max_steps=2"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"taking over the lock of pid {victim.pid} on {socket.gethostname()}"
        in (run_dir / "train.log").read_text()
    )
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and len(record["resumes"]) == 1
    assert not (run_dir / "run.lock").exists()
