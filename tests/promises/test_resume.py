"""resume=RUN_DIR continues a run in place; resume with nothing to resume is a clear error."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import FAST, cli_env, run_train


def ckpt_step(run_dir) -> int:
    return torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["global_step"]


@pytest.mark.slow  # ~17 s: two runs; the kill-and-resume promise (tests/promises/test_fault_tolerance.py) stays
def test_resume_continues_in_the_same_directory(data_dir, cache_dir, tmp_path):
    env = cli_env(data_dir, cache_dir)
    run_dir = tmp_path / "run"
    first = [o for o in FAST if not o.startswith(("trainer.limit_train_batches", "trainer.max_steps"))]
    args = ["experiment=pretrain_mlm", *first, "trainer.max_steps=2", f"hydra.run.dir={run_dir}"]
    assert run_train(args, env).returncode == 0
    assert ckpt_step(run_dir) == 2
    original_config = (run_dir / ".hydra/config.yaml").read_text()

    result = run_train([f"resume={run_dir}", "trainer.max_steps=4"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ckpt_step(run_dir) == 4
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and len(record["resumes"]) == 1
    assert (run_dir / ".hydra/config.yaml").read_text() == original_config
    assert list((run_dir / ".hydra").glob("resumed-*/overrides.yaml"))
    assert (run_dir / "encoder/model.safetensors").is_file()


@pytest.mark.slow  # ~8 s; the bad-input catalogue refuses a resume in the default suite
def test_resume_with_nothing_to_resume(data_dir, cache_dir, tmp_path):
    result = run_train([f"resume={tmp_path / 'empty'}"], cli_env(data_dir, cache_dir))
    assert result.returncode == 2
    assert "nothing to resume" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow  # ~16 s on 2 cores: two runs; the one-line refusals are in the bad-input catalogue too
def test_resume_refuses_to_swap_a_component(data_dir, cache_dir, tmp_path):
    env = cli_env(data_dir, cache_dir)
    run_dir = tmp_path / "run"
    assert run_train(["experiment=finetune_sst2", *FAST, f"hydra.run.dir={run_dir}"], env).returncode == 0
    result = run_train([f"resume={run_dir}", "encoder=mini"], env)
    assert result.returncode == 2 and "cannot change 'encoder'" in result.stderr


@pytest.mark.slow
def test_resume_continues_the_same_wandb_run(data_dir, cache_dir, tmp_path):
    env = cli_env(data_dir, cache_dir, WANDB_MODE="offline", WANDB_SILENT="true")
    run_dir = tmp_path / "run"
    first = [o for o in FAST if not o.startswith(("trainer.limit_train_batches", "trainer.max_steps"))]
    args = [
        "experiment=pretrain_mlm",
        *first,
        "logger=wandb",
        "trainer.max_steps=2",
        f"hydra.run.dir={run_dir}",
    ]
    assert run_train(args, env).returncode == 0
    (first_run,) = (run_dir / "wandb").glob("offline-run-*")
    wandb_id = first_run.name.rsplit("-", 1)[-1]
    result = run_train([f"resume={run_dir}", "trainer.max_steps=3"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    offline_runs = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(name.endswith(f"-{wandb_id}") for name in offline_runs)
