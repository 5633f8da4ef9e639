"""Sweeps: Optuna / launcher configs compose, and a job that fails inside a sweep is recorded, the other
jobs keep their results, and the sweep report names it (job, overrides, error line)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_class
from omegaconf import OmegaConf

from encoderlab.cli.sweep_report import SweepReport, report_lines, summarize
from encoderlab.run.read import find_runs
from tests import fake_slurm
from tests.cli.test_compare import write_run
from tests.conftest import CONF_DIR, FAST, cli_env, run_train


def compose_hydra(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    ("experiment", "search", "direction"),
    [("finetune_sst2", "finetune_optuna", "maximize"), ("pretrain_mlm", "pretrain_optuna", "minimize")],
)
def test_optuna_searches_optimise_the_experiments_metric(experiment, search, direction):
    cfg = compose_hydra([f"experiment={experiment}", f"hparams_search={search}"])
    sweeper = cfg.hydra.sweeper
    assert get_class(sweeper._target_).__name__ == "OptunaSweeper"
    assert sweeper.direction == direction  # follows optimized_mode, the metric train returns
    assert sweeper.max_failure_rate == 1.0  # a failed trial is recorded as FAIL, the study goes on
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key) is not None, f"search space key {key} is not in the config"


@pytest.mark.parametrize("launcher", ["parallel", "slurm", "joblib", "submitit_local"])
def test_launcher_configs_compose(launcher, tmp_path):
    cfg = compose_hydra([f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path}"])
    assert get_class(cfg.hydra.launcher._target_)
    if launcher == "parallel":
        assert cfg.hydra.launcher.n_jobs >= 1
    if launcher == "slurm":
        assert cfg.hydra.launcher.submitit_folder == f"{tmp_path}/.submitit/%j"


def test_sweep_report_callback_is_registered():
    cfg = compose_hydra([])
    assert cfg.hydra.callbacks.sweep_report._target_ == "encoderlab.cli.sweep_report.SweepReport"


def test_summary_names_failed_jobs_with_overrides_and_error(tmp_path):
    write_run(tmp_path / "0", ["seed=1"], {"val/acc": 0.6, "val/loss": 0.4})
    write_run(tmp_path / "1", ["seed=2"], {"val/acc": 0.7, "val/loss": 0.3})
    write_run(
        tmp_path / "2", ["seed=3", "data.batch_size=0"], None, "failed", "UserError: batch_size=0 — fix it"
    )
    summary = summarize(tmp_path, "val/acc", "max")
    assert summary["completed"] == 2 and summary["failed"] == ["2"]
    assert summary["best"] == {"job": "1", "val/acc": 0.7}
    text = "\n".join(report_lines(summary))
    assert "3 jobs, 2 completed, 1 failed" in text
    assert f"FAILED job 2 ({tmp_path / '2'}): seed=3 data.batch_size=0" in text
    assert "UserError: batch_size=0 — fix it" in text
    assert summarize(tmp_path, "val/loss", "min")["best"]["job"] == "1"


def test_sweep_with_a_failing_job_keeps_the_others_and_reports_it(tmp_path, data_dir, cache_dir):
    """A real 2-job multirun through the CLI; job 1's data file does not exist (a user error)."""
    sweep_dir = tmp_path / "sweep"
    good, missing = data_dir / "sst2" / "train.tsv", tmp_path / "missing.tsv"
    result = run_train(
        [
            "-m",
            "experiment=finetune_sst2",
            *FAST,
            "data.hub=null",
            f"data.train_file={good},{missing}",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cli_env(data_dir, cache_dir),
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]  # the sweep ran to the end, then says some jobs failed
    assert "Traceback" not in out, out[-3000:]

    job0, job1 = sweep_dir / "0", sweep_dir / "1"
    assert json.loads((job0 / "run.json").read_text())["status"] == "completed"
    assert "val/acc" in json.loads((job0 / "metrics.json").read_text())
    assert (job0 / "checkpoints" / "last.ckpt").is_file()
    record = json.loads((job1 / "run.json").read_text())
    assert record["status"] == "failed" and "missing.tsv" in record["error"]

    assert "2 jobs, 1 completed, 1 failed" in result.stdout
    assert f"FAILED job 1 ({job1}): " in result.stdout and f"data.train_file={missing}" in result.stdout
    assert "data file not found" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 of 2 sweep jobs failed (jobs 1)")
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert summary["failed"] == ["1"] and summary["best"]["job"] == "0"
    assert [r.status for r in find_runs([sweep_dir])] == ["completed", "failed"]


@pytest.mark.slow  # two training jobs through submitit: ~30 s on 2 cores
def test_a_sweep_on_slurm_runs_every_job_as_an_array_task(tmp_path, data_dir, cache_dir):
    """``hydra/launcher=slurm`` end to end against a one-machine stand-in for SLURM's commands
    (tests/fake_slurm.py): the sbatch script submitit writes, its array, srun, the results collected back
    and the sweep report."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'encoderlab[sweeps]'")
    sweep_dir = tmp_path / "sweep"
    env = cli_env(data_dir, cache_dir, **fake_slurm.install(tmp_path / "bin", tmp_path / "slurm"))
    result = run_train(
        [
            "-m",
            "hydra/launcher=slurm",
            "hydra.launcher.partition=cpu",
            "hydra.launcher.gpus_per_node=0",
            "experiment=finetune_sst2",
            *FAST,
            "test=false",
            "seed=1,2",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        env,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    for _ in range(100):  # the stand-in notes a task's end just after submitit has read its result
        [job] = [json.loads(p.read_text()) for p in (tmp_path / "slurm").glob("*.json")]
        if set(job["states"].values()) == {"COMPLETED"}:
            break
        time.sleep(0.1)
    assert job["flags"]["partition"] == "cpu" and job["flags"]["array"].startswith("0-1%")
    assert set(job["states"].values()) == {"COMPLETED"} and len(job["states"]) == 2  # one array, two tasks
    for n, seed in (("0", 1), ("1", 2)):
        record = json.loads((sweep_dir / n / "run.json").read_text())
        assert record["status"] == "completed" and "val/acc" in json.loads(
            (sweep_dir / n / "metrics.json").read_text()
        )
        assert f"seed={seed}" in (sweep_dir / n / ".hydra" / "overrides.yaml").read_text()
    assert "2 jobs, 2 completed" in result.stdout
    assert any((sweep_dir / ".submitit").rglob("*_result.pkl"))  # submitit's own results, read back


def test_report_does_not_fail_the_process_when_asked(tmp_path, capsys):
    write_run(tmp_path / "0", ["seed=1"], None, "failed", "RuntimeError: boom")
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}, "optimized_metric": "val/acc"})
    SweepReport(fail_on_error=False).on_multirun_end(cfg)
    assert "RuntimeError: boom" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        SweepReport().on_multirun_end(cfg)
    assert exit_.value.code == 1
    assert Path(tmp_path / "sweep.json").is_file()
