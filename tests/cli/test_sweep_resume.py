"""``encoderlab-sweep resume``: a sweep killed with SIGKILL is finished by one command, with the results of a
sweep that was never interrupted; each job state becomes what docs/reliability.md says."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from encoderlab.cli import sweep as sweep_cli
from encoderlab.cli.sweep_plan import BASIC_SWEEPER, KEEP, RESTART, RESUME, START, plan
from encoderlab.errors import UserError
from encoderlab.run.lock import RunLock
from tests.cli.test_sweeps import compose_hydra
from tests.conftest import FAST, REPO, cli_env, start_train

SEEDS = "seed=1,2,3"
# FAST, but 30 steps with last.ckpt every 2: the second job has a checkpoint long before it ends.
SWEEP = [
    "experiment=finetune_sst2",
    *FAST,
    "data.hub=null",
    "trainer.limit_train_batches=30",
    "trainer.max_steps=30",
    "callbacks.last_checkpoint.every_n_steps=2",
]


def write_multirun(sweep_dir: Path, task: list[str], hydra: list[str] = (), **sweeper) -> Path:
    """A ``multirun.yaml`` with the keys Hydra saves and the resume reads."""
    sweeper = {"_target_": BASIC_SWEEPER, "max_batch_size": None, "params": None, **sweeper}
    data = {
        "hydra": {
            "sweep": {"dir": str(sweep_dir), "subdir": "${hydra.job.num}"},
            "sweeper": sweeper,
            "overrides": {
                "hydra": [f"hydra.sweep.dir={sweep_dir}", "hydra.mode=MULTIRUN", *hydra],
                "task": task,
            },
            "runtime": {"cwd": str(REPO)},
        },
        "task_name": "finetune_sst2",
        "optimized_metric": "val/acc",
        "optimized_mode": "max",
    }
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump(data))
    return sweep_dir


def write_job(
    job_dir: Path, overrides, status: str | None, checkpoint: bool = False, acc: float = 0.5
) -> None:
    """A job directory as a sweep leaves it: Hydra's files, and run.json unless ``status`` is None."""
    (job_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (job_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": 1}))
    if status is not None:
        (job_dir / "run.json").write_text(json.dumps({"status": status, "overrides": list(overrides)}))
    if status == "completed":
        (job_dir / "metrics.json").write_text(json.dumps({"val/acc": acc}))
    if checkpoint:
        (job_dir / "checkpoints").mkdir(exist_ok=True)
        (job_dir / "checkpoints" / "last.ckpt").write_bytes(b"weights")


@pytest.fixture
def five_jobs(tmp_path) -> tuple[Path, list[tuple[str, ...]]]:
    """A sweep of 5 jobs, one in each state: completed, interrupted with a checkpoint, failed without one,
    killed before it recorded anything, never started."""
    sweep_dir = write_multirun(tmp_path / "sweep", ["trainer.max_steps=4", "seed=range(1,6)"])
    jobs = [("trainer.max_steps=4", f"seed={s}") for s in range(1, 6)]
    write_job(sweep_dir / "0", jobs[0], "completed", checkpoint=True, acc=0.7)
    write_job(sweep_dir / "1", jobs[1], "running", checkpoint=True)
    write_job(sweep_dir / "2", jobs[2], "failed")
    (sweep_dir / "3").mkdir()
    return sweep_dir, jobs


def test_jobs_are_expanded_in_hydras_order_with_its_spelling(tmp_path):
    task = ["experiment=finetune_sst2", "optimizer.lr=1e-4,3e-4", "trainer.enable_progress_bar=false"]
    task += ["~callbacks.progress_bar", "seed=1,2"]
    hydra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.searchpath=[file:///x]"]
    sweep_dir = write_multirun(tmp_path / "s", task, hydra, params={"data.batch_size": "8,16"})
    found = plan(sweep_dir)
    # The sweeper's params come first, then the command line; the last key varies fastest.
    fixed = ("experiment=finetune_sst2", "trainer.enable_progress_bar=False", "~callbacks.progress_bar=null")
    expected = [
        (f"data.batch_size={b}", fixed[0], f"optimizer.lr={lr}", *fixed[1:], f"seed={s}")
        for b in (8, 16)
        for lr in ("0.0001", "0.0003")  # Hydra parses swept values: 1e-4 is saved as 0.0001
        for s in (1, 2)
    ]
    assert [job.overrides for job in found.jobs] == expected
    assert [job.dir for job in found.jobs] == [sweep_dir.resolve() / str(n) for n in range(8)]
    assert {job.action for job in found.jobs} == {START}
    assert found.hydra_overrides == ["hydra.searchpath=[file:///x]"]  # sweeping and launching ones dropped
    assert found.sweep_id == "finetune_sst2/s" and found.cwd == REPO


def test_each_job_state_becomes_what_the_docs_say(five_jobs):
    sweep_dir, jobs = five_jobs
    found = plan(sweep_dir)
    assert [job.action for job in found.jobs] == [KEEP, RESUME, RESTART, RESTART, START]
    assert [job.status for job in found.jobs] == ["completed", "running", "failed", "unknown", "not started"]
    job1, job4 = found.jobs[1], found.jobs[4]
    assert job1.train_args(["hydra.verbose=true"]) == [
        f"resume={job1.dir}",
        "hydra.verbose=true",
        "hydra.mode=RUN",
    ]
    assert job4.train_args([]) == [*jobs[4], "hydra.mode=RUN", f"hydra.run.dir={job4.dir}"]
    text = "\n".join(found.lines())
    assert "5 jobs — 1 completed (kept), 1 to resume, 2 to start over, 1 to start" in text
    assert "job 1: interrupted — resumed from checkpoints/last.ckpt: seed=2" in text


def test_a_job_still_running_or_a_directory_of_another_sweep_is_refused(five_jobs):
    sweep_dir, jobs = five_jobs
    with RunLock(sweep_dir / "1"), pytest.raises(UserError, match="is in use by pid"):
        plan(sweep_dir)
    write_job(sweep_dir / "2", ["seed=9"], "failed")
    with pytest.raises(
        UserError, match="ran with seed=9, but job 2 of this sweep is trainer.max_steps=4 seed=3"
    ):
        plan(sweep_dir)
    write_job(sweep_dir / "2", jobs[2], "failed")
    (sweep_dir / "7").mkdir()
    with pytest.raises(UserError, match="holds job directories 7 but its overrides expand to 5 jobs"):
        plan(sweep_dir)


def test_resume_reruns_only_what_it_needs_and_rewrites_the_report(five_jobs, monkeypatch, capsys):
    sweep_dir, jobs = five_jobs
    calls = []

    def fake_train(args, cwd, env, stdout, stderr, text):
        """What encoderlab-train leaves: job 4 fails (a user mistake), the others complete."""
        calls.append(args[3:])
        job_dir = Path(
            args[3].split("=", 1)[1] if args[3].startswith("resume=") else args[-1].split("=", 1)[1]
        )
        overrides = (
            yaml.safe_load((job_dir / ".hydra/overrides.yaml").read_text())
            if job_dir.exists()
            else args[3:-2]
        )
        fails = job_dir.name == "4"
        write_job(
            job_dir, overrides, "failed" if fails else "completed", acc=0.9 if job_dir.name == "1" else 0.6
        )
        assert env["ENCODERLAB_SWEEP"] == "finetune_sst2/sweep" and Path(cwd) == REPO
        return subprocess.CompletedProcess(args, 2 if fails else 0, None, "error: data file not found — fix")

    monkeypatch.setattr(sweep_cli.subprocess, "run", fake_train)
    monkeypatch.delenv("ENCODERLAB_SWEEP", raising=False)
    assert sweep_cli.main(["resume", str(sweep_dir)]) == 1
    d = sweep_dir.resolve()
    assert calls == [[f"resume={d / '1'}", "hydra.mode=RUN"]] + [
        [*jobs[n], "hydra.mode=RUN", f"hydra.run.dir={d / str(n)}"] for n in (2, 3, 4)
    ]
    aside = sorted(p.name.split("-")[0] for p in (sweep_dir / ".attempts").iterdir())
    assert aside == ["2", "3"]  # the failed run and the empty directory, kept out of the way
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert summary["completed"] == 4 and summary["failed"] == ["4"] and summary["best"]["job"] == "1"
    out, err = capsys.readouterr()
    assert "job 1: completed" in out and "job 4: failed — data file not found — fix" in out
    assert err.strip().splitlines() == [f"error: 1 of 5 sweep jobs failed (jobs 4) — see {d / 'sweep.json'}"]

    calls.clear()  # resumed again: only the failed job runs (and fails again, as a user mistake does)
    assert sweep_cli.main(["resume", str(sweep_dir), "--jobs", "2"]) == 1
    assert calls == [[*jobs[4], "hydra.mode=RUN", f"hydra.run.dir={d / '4'}"]]


def test_optuna_sweeps_and_other_directories_are_refused_in_one_line(tmp_path, capsys):
    cfg = compose_hydra(["experiment=finetune_sst2", "hparams_search=finetune_optuna"])
    sweep_dir = tmp_path / "optuna"
    sweep_dir.mkdir()
    OmegaConf.save(cfg, sweep_dir / "multirun.yaml")
    (sweep_dir / "0").mkdir()
    assert sweep_cli.main(["resume", str(sweep_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {sweep_dir.resolve()} was swept by OptunaSweeper")
    assert "cannot be re-run one by one" in err[0]
    assert sweep_cli.main(["resume", str(tmp_path / "0")]) == 2
    assert sweep_cli.main(["resume", str(tmp_path)]) == 2
    assert "is not a sweep directory" in capsys.readouterr().err
    assert not any(p.name == "run.lock" for p in tmp_path.iterdir())


def metrics(job_dir: Path) -> dict:
    """A job's final metrics without timings and speeds (time/*, train/examples_per_s, ...)."""
    data = json.loads((job_dir / "metrics.json").read_text())
    return {k: v for k, v in data.items() if not (k.startswith("time/") or k.endswith("_per_s"))}


def kill_when_training(proc: subprocess.Popen, checkpoint: Path, timeout: float = 240) -> None:
    """SIGKILL the sweep's launcher as soon as its second job has saved a checkpoint (it is still training)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and not checkpoint.is_file():
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


@pytest.mark.slow
def test_a_killed_sweep_resumes_to_the_results_of_an_unbroken_one(
    data_dir, cache_dir, tmp_path, monkeypatch, capsys
):
    env = cli_env(data_dir, cache_dir)
    unbroken, killed = tmp_path / "unbroken", tmp_path / "killed"
    reference = start_train(["-m", *SWEEP, SEEDS, f"hydra.sweep.dir={unbroken}"], env)
    victim = start_train(["-m", *SWEEP, SEEDS, f"hydra.sweep.dir={killed}"], env)
    kill_when_training(victim, killed / "1" / "checkpoints" / "last.ckpt")
    assert victim.returncode == -signal.SIGKILL, victim.stderr.read()[-2000:]
    records = {p.parent.name: json.loads(p.read_text())["status"] for p in killed.glob("*/run.json")}
    assert records == {"0": "completed", "1": "running"}  # job 2 never started

    # The command in this process (its imports are done); its jobs are real encoderlab-train processes.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert sweep_cli.main(["resume", str(killed), "--jobs", "2"]) == 0, capsys.readouterr()
    assert "1 completed (kept), 1 to resume, 0 to start over, 1 to start" in capsys.readouterr().out
    assert reference.wait(timeout=240) == 0, reference.stderr.read()[-3000:]

    for n in range(3):
        record = json.loads((killed / str(n) / "run.json").read_text())
        assert record["status"] == "completed"
        assert len(record.get("resumes", [])) == (n == 1)  # only the interrupted job continued a checkpoint
        assert metrics(killed / str(n)) == metrics(unbroken / str(n)), n
    report, expected = (json.loads((d / "sweep.json").read_text()) for d in (killed, unbroken))
    assert report["completed"] == 3 and report["failed"] == [] and report["best"] == expected["best"]
    assert [j["overrides"] for j in report["jobs"]] == [j["overrides"] for j in expected["jobs"]]
    # Hydra's own job list, as the resume expands it, is what the unbroken sweep ran.
    assert [list(job.overrides) for job in plan(unbroken).jobs] == [j["overrides"] for j in expected["jobs"]]
