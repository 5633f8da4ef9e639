"""trainer=ddp through the real CLI on two CPU processes (gloo): the same weights as one process with the same
global batch (and not as a run with another batch), one run directory (rank 0's), a partly frozen encoder;
a process killed mid-run ends the other in one line, and the run resumes to the same weights."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import FAST, REPO, cli_env, run_train, start_train
from tests.promises.kills import (
    KillPlan,
    assert_lost_steps,
    checkpoint_step,
    compared_metrics,
    different_weights,
    kill_at,
    marker_override,
)

# Same samples per optimizer step in every run but the control (no length grouping; 18 full global batches
# of 16 per epoch, so no epoch ends with a partial batch that 2 x 8 and 1 x 16 would average differently);
# no dropout anywhere (each process draws its own masks); the embeddings frozen (DDP must not complain).
# 60 AdamW steps move val/loss from 0.69 (chance) to 0.46.
STEPS = 60
COMMON = [
    "experiment=finetune_sst2",
    *[o for o in FAST if not o.startswith(("data.batch_size", "trainer.limit_", "trainer.max_steps"))],
    f"trainer.max_steps={STEPS}",
    "trainer.max_epochs=-1",
    "trainer.limit_train_batches=18",
    "trainer.limit_val_batches=1.0",
    "test=false",
    "data.group_by_length=false",
    "encoder.dropout=0.0",
    "encoder.attention_dropout=0.0",
    "head.dropout=0.0",
    "head.pooling=mean",
    "optimizer.lr=1e-3",
    "freeze=bottom_k",
    "freeze.k=0",
    "callbacks.last_checkpoint.every_n_steps=5",
]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.strategy.timeout_s=30", "data.batch_size=8"]
# Measured: the largest weight difference between 2 x 8 and 1 x 16 is 1.7e-5 (summation order); the control
# (1 x 8: other batches) ends 3.6e-2 away. The tolerance sits between them, about 60x and 36x from each.
WEIGHT_TOLERANCE = 1e-3
KILL = KillPlan.draw(3, 5, last_checkpoint=50)  # 3 steps after the mid-epoch checkpoint of step 20


def importable_tests() -> str:
    """PYTHONPATH for runs outside the repository: the step marker lives in its tests/."""
    return os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])


def weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def largest_difference(a, b) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point())


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture(scope="module")
def ddp_runs(data_dir, cache_dir, tmp_path_factory):
    """One process x 16, two x 8, the control one x 8, and two x 8 whose second process is SIGKILLed at
    ``KILL``: all at once, from a working directory that must stay empty."""
    root = tmp_path_factory.mktemp("ddp")
    cwd, outputs = root / "cwd", root / "outputs"
    cwd.mkdir()
    # PYTHONPATH: the step marker is imported from this repository's tests/, outside the working directory.
    env = cli_env(
        data_dir,
        cache_dir,
        OMP_NUM_THREADS="1",
        ENCODERLAB_OUTPUT_DIR=str(outputs),
        PYTHONPATH=importable_tests(),
    )
    runs = SimpleNamespace(root=root, cwd=cwd, outputs=outputs, env=env, marker=root / "killed.step")
    plans = {
        "single": ["data.batch_size=16"],
        "ddp": DDP,
        "control": ["data.batch_size=8"],
        "killed": [*DDP, marker_override(runs.marker)],
    }
    procs = {
        name: start_train([*COMMON, *args, f"hydra.run.dir={root / name}"], env, cwd)
        for name, args in plans.items()
    }
    for name in plans:
        setattr(runs, name, root / name)
    victim = procs.pop("killed")
    kill_at(victim, runs.marker, KILL, local_rank=1)
    killed_at = time.monotonic()
    runs.survivor_status = victim.wait(timeout=120)
    runs.survivor_seconds = time.monotonic() - killed_at
    runs.survivor_stderr = victim.stderr.read()
    for name, proc in procs.items():
        assert proc.wait(timeout=600) == 0, f"{name}: {proc.stderr.read()[-3000:]}"
    return runs


@pytest.mark.slow  # two DDP runs and a control: ~35 s on 2 cores; keeps the default suite under 10 minutes on 2 cores; `make test-all` runs it
def test_ddp_on_two_cpu_processes_matches_one_process_and_a_control_does_not(ddp_runs):
    one, two, control = (
        json.loads((d / "metrics.json").read_text())
        for d in (ddp_runs.single, ddp_runs.ddp, ddp_runs.control)
    )
    assert one["val/loss"] < 0.6, one  # it trained: chance is ln 2 = 0.69
    # Same data per step and gradients averaged over the same 16 examples: only the summation order differs.
    reference = weights(ddp_runs.single)
    ddp_difference = largest_difference(weights(ddp_runs.ddp), reference)
    control_difference = largest_difference(weights(ddp_runs.control), reference)
    assert ddp_difference < WEIGHT_TOLERANCE < control_difference, (ddp_difference, control_difference)
    assert abs(one["val/loss"] - two["val/loss"]) < 1e-3 < abs(one["val/loss"] - control["val/loss"])
    assert two["params/trainable"] == one["params/trainable"] < two["params/total"]

    # One run directory, rank 0's: no stray Hydra output directories, no second config, one run record.
    assert not ddp_runs.outputs.exists() and sorted(p.name for p in ddp_runs.cwd.iterdir()) == []
    ddp_dir = ddp_runs.ddp
    assert sorted(p.name for p in (ddp_dir / ".hydra").iterdir()) == [
        "config.yaml",
        "hydra.yaml",
        "overrides.yaml",
    ]
    strategy = OmegaConf.load(ddp_dir / ".hydra/config.yaml").trainer.strategy
    assert strategy["_target_"] == "encoderlab.training.distributed.DDP" and strategy.timeout_s == 30
    record = json.loads((ddp_dir / "run.json").read_text())
    assert record["status"] == "completed" and "resumes" not in record
    assert (ddp_dir / "checkpoints/last.ckpt").is_file() and (ddp_dir / "label_map.json").is_file()
    assert not list(ddp_runs.root.glob("**/.last.ckpt.tmp"))


@pytest.mark.slow  # shares the DDP runs above
def test_killing_one_process_ends_the_other_in_one_line(ddp_runs):
    # Rank 0 finds rank 1 gone at its next collective (gloo: connection reset), well within the timeout.
    assert ddp_runs.survivor_status == 2, ddp_runs.survivor_stderr[-3000:]
    assert ddp_runs.survivor_seconds < 30, ddp_runs.survivor_seconds
    assert "Traceback" not in ddp_runs.survivor_stderr
    (line,) = error_lines(ddp_runs.survivor_stderr)
    assert line.startswith("error: process 0 of 2 lost contact with the others of this distributed run ("), (
        line
    )
    assert "trainer.strategy.timeout_s=30 s" in line and line.endswith(f"resume={ddp_runs.killed}"), line
    record = json.loads((ddp_runs.killed / "run.json").read_text())
    assert record["status"] == "failed" and record["error"] == "UserError: " + line.removeprefix("error: ")


@pytest.mark.slow
def test_the_killed_ddp_run_resumes_to_the_same_weights(ddp_runs):
    assert_lost_steps(ddp_runs.killed, ddp_runs.marker, KILL)
    resumed = run_train([f"resume={ddp_runs.killed}"], ddp_runs.env, ddp_runs.cwd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert checkpoint_step(ddp_runs.killed / "checkpoints/last.ckpt") == STEPS
    assert different_weights(ddp_runs.ddp, ddp_runs.killed) == []
    assert compared_metrics(ddp_runs.killed) == compared_metrics(ddp_runs.ddp)
    assert json.loads((ddp_runs.killed / "run.json").read_text())["status"] == "completed"


def test_fsdp_config_builds_its_strategy():
    from hydra.utils import instantiate
    from pytorch_lightning.strategies import FSDPStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from encoderlab.models.encoder import Layer
    from tests.cli.test_config import compose_train

    cfg = compose_train(["trainer=fsdp", "experiment=pretrain_mlm"])
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.use_distributed_sampler is False
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy) and policy._module_classes == {Layer}
    assert strategy.kwargs["use_orig_params"] is True and strategy._state_dict_type == "full"


def start_ddp(data_dir, cache_dir, run_dir, *extra: str):
    """A two-process run of ``COMMON`` with a step marker beside ``run_dir``."""
    env = cli_env(data_dir, cache_dir, OMP_NUM_THREADS="1", PYTHONPATH=importable_tests())
    marker = run_dir.with_suffix(".step")
    return start_train(
        [*COMMON, *DDP, *extra, marker_override(marker), f"hydra.run.dir={run_dir}"], env
    ), marker


def process_ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # a zombie: ended
    except FileNotFoundError:
        return True


@pytest.mark.slow
def test_killing_rank_0_ends_the_other_in_one_line(data_dir, cache_dir, tmp_path):
    run_dir = tmp_path / "run"
    victim, marker = start_ddp(data_dir, cache_dir, run_dir)
    kill_at(victim, marker, KILL)  # rank 0: the process that started the other one
    assert victim.wait(timeout=60) == -signal.SIGKILL
    # Rank 1 writes to the same stderr, which closes when rank 1 has ended too.
    _, stderr = victim.communicate(timeout=60)
    (line,) = error_lines(stderr)
    assert line.startswith("error: process 1 of 2 lost contact with the others"), line
    assert "Traceback" not in stderr and line.endswith(f"resume={run_dir}"), line


@pytest.mark.slow
def test_a_hung_process_ends_the_run_at_the_timeout(data_dir, cache_dir, tmp_path):
    run_dir = tmp_path / "run"
    victim, marker = start_ddp(data_dir, cache_dir, run_dir, "trainer.strategy.timeout_s=20")
    stopped = kill_at(victim, marker, KILL, local_rank=1, signum=signal.SIGSTOP)  # alive, never answers
    started = time.monotonic()
    assert victim.wait(timeout=120) == 2, victim.stderr.read()[-3000:]
    waited = time.monotonic() - started
    assert 15 < waited < 50, waited  # the 20 s timeout, then the report; not Lightning's 30 minutes
    (line,) = error_lines(victim.stderr.read())
    assert "(no answer within 20 s)" in line and "trainer.strategy.timeout_s=20 s" in line, line
    deadline = time.monotonic() + 10
    while not process_ended(stopped) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process_ended(stopped)  # rank 0 ended the hung process it had started


@pytest.mark.slow
def test_a_ddp_run_with_dropout_resumes_to_the_same_weights(data_dir, cache_dir, tmp_path):
    """Each process's own random states are in the checkpoint: dropout resumes on every rank."""
    dropout = ["encoder.dropout=0.1", "encoder.attention_dropout=0.1", "head.dropout=0.1"]
    unbroken, killed = tmp_path / "unbroken", tmp_path / "killed"
    reference, _ = start_ddp(data_dir, cache_dir, unbroken, *dropout)
    victim, marker = start_ddp(data_dir, cache_dir, killed, *dropout)
    kill_at(victim, marker, KILL, local_rank=1)
    assert victim.wait(timeout=120) == 2, victim.stderr.read()[-3000:]
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]
    assert_lost_steps(killed, marker, KILL)
    env = cli_env(data_dir, cache_dir, OMP_NUM_THREADS="1", PYTHONPATH=importable_tests())
    resumed = run_train([f"resume={killed}"], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert different_weights(unbroken, killed) == []
    assert compared_metrics(killed) == compared_metrics(unbroken)
