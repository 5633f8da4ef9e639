"""encoderlab-reproduce: a deterministic CPU run re-run from its saved config gives identical metrics."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import FAST, REPO, cli_env, run_train


def reproduce(args, env):
    return subprocess.run(
        [sys.executable, "-m", "encoderlab.cli.reproduce", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_reproduced_metrics_are_identical(data_dir, cache_dir, tmp_path):
    env = cli_env(data_dir, cache_dir)
    run_dir = tmp_path / "run"
    args = [
        "experiment=finetune_sst2",
        *FAST,
        "trainer.deterministic=true",
        "seed=7",
        "kernels.min_gflop=1e-9",  # the tiny model's kernels measured, as a real run's would be
        "kernels.cache=null",
        f"hydra.run.dir={run_dir}",
    ]
    assert run_train(args, env).returncode == 0
    result = reproduce([str(run_dir), "--out", str(tmp_path / "again")], env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    saved = json.loads((run_dir / "metrics.json").read_text())
    again = json.loads((tmp_path / "again/metrics.json").read_text())
    compared = [k for k in saved if not k.startswith("time/")]
    assert len(compared) >= 8
    assert {k: again[k] for k in compared} == {k: saved[k] for k in compared}
    assert "metrics reproduced" in result.stdout
    # The re-run is told the kernels the run measured instead of measuring again (a new measurement may differ).
    kernels = json.loads((run_dir / "run.json").read_text())["kernels"]
    again_kernels = json.loads((tmp_path / "again/run.json").read_text())["kernels"]
    assert kernels["how"] == "measured" and kernels["timings_ms"]["linear"]
    assert again_kernels["how"] == "forced"
    assert {k: again_kernels[k] for k in ("linear", "dropout", "attention")} == {
        k: kernels[k] for k in ("linear", "dropout", "attention")
    }


@pytest.mark.slow
def test_reproduce_reports_differences(data_dir, cache_dir, tmp_path):
    env = cli_env(data_dir, cache_dir)
    run_dir = tmp_path / "run"
    assert run_train(["experiment=finetune_sst2", *FAST, f"hydra.run.dir={run_dir}"], env).returncode == 0
    result = reproduce([str(run_dir), "--out", str(tmp_path / "again"), "optimizer.lr=0.5"], env)
    assert result.returncode == 1 and "differ" in result.stderr


def test_reproduce_without_a_saved_config(tmp_path):
    (tmp_path / "run").mkdir()
    result = reproduce([str(tmp_path / "run")], None)
    assert result.returncode == 2 and "has no .hydra/config.yaml" in result.stderr
