"""Crashes: a run SIGKILLed at a seeded moment after a checkpoint resumes to bitwise the same weights and
the same metrics as an uninterrupted run; torn or failed writes never replace a good last.ckpt."""

from __future__ import annotations

import errno
import json
import random
import signal

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from encoderlab.cli.doctor import diagnose
from encoderlab.cli.errors import describe
from encoderlab.cli.export import main as export_main
from encoderlab.files import NoSpaceLeft
from encoderlab.formats import export as export_format
from encoderlab.training.checkpoints import PeriodicLastCheckpoint, RNGState, save_last_checkpoint
from tests.conftest import FAST, cli_env, run_train, start_train
from tests.promises.kills import (
    KillPlan,
    assert_lost_steps,
    checkpoint_step,
    compared_metrics,
    different_weights,
    kill_at,
    marker_override,
)

# 40 steps in four epochs of 10, validation and last.ckpt every 5 steps: checkpoints fall mid-epoch and at
# epoch ends, each just before a validation.
EVERY = 5
SHORT = [
    "encoder=tiny",
    "data.vocab_size=400",
    "data.max_seq_len=32",
    "data.batch_size=8",
    "trainer.limit_train_batches=10",
    "trainer.max_steps=40",
    "trainer.max_epochs=-1",
    "trainer.val_check_interval=5",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.deterministic=true",
    "~callbacks.progress_bar",
    f"callbacks.last_checkpoint.every_n_steps={EVERY}",
]
# Ten optimizer steps per epoch with accumulation too: twenty micro-batches of 8.
ACCUMULATE = [
    "trainer.accumulate_grad_batches=2",
    "trainer.limit_train_batches=20",
    "trainer.val_check_interval=10",
]
CASES = {
    "pretrain": ["experiment=pretrain_mlm"],  # MLM masking and dropout
    "finetune": ["experiment=finetune_sst2"],
    "lora": ["experiment=finetune_sst2", "method=lora"],
    "gradual": [
        "experiment=finetune_sst2",
        "freeze=gradual",
        "freeze.every_n_steps=6",
    ],  # stages at 6, 12, 18
    "accumulate": ["experiment=finetune_sst2", *ACCUMULATE],
    "gradual_accumulate": [
        "experiment=finetune_sst2",
        "freeze=gradual",
        "freeze.every_n_steps=6",
        *ACCUMULATE,
    ],
}
# Seed 0 kills 2 steps after the mid-epoch checkpoint of step 35 (the last epoch: its train/* metrics
# count batches from before and after the kill). The slow matrix kills every other case after the epoch-end
# checkpoint of step 10 and after the mid-epoch ones of steps 25 and 35, and gradual unfreezing with
# accumulation (seed 7) one step after step 15, between two unfreezing stages.
DEFAULT = [("pretrain", 0)]
MATRIX = [(case, seed) for case in CASES if case != "gradual_accumulate" for seed in (1, 5, 2)]
MATRIX += [("gradual_accumulate", 7)]


def kill_and_resume(case: str, seed: int, data_dir, cache_dir, tmp_path) -> None:
    # One thread per process: bitwise comparisons need the same kernels, and it is faster on a busy machine.
    env = cli_env(data_dir, cache_dir, OMP_NUM_THREADS="1")
    unbroken, killed, marker = tmp_path / "unbroken", tmp_path / "killed", tmp_path / "killed.step"
    plan = KillPlan.draw(seed, EVERY, last_checkpoint=35)  # at least 2 steps and the run's end to spare
    args = [*SHORT, *CASES[case]]
    reference = start_train([*args, f"hydra.run.dir={unbroken}"], env)
    victim = start_train([*args, marker_override(marker), f"hydra.run.dir={killed}"], env)
    kill_at(victim, marker, plan)
    assert victim.wait(timeout=60) == -signal.SIGKILL, victim.stderr.read()[-2000:]
    lost = assert_lost_steps(killed, marker, plan)
    assert reference.wait(timeout=240) == 0, reference.stderr.read()[-3000:]

    resumed = run_train([f"resume={killed}"], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert checkpoint_step(killed / "checkpoints/last.ckpt") == 40
    different = different_weights(unbroken, killed)
    assert not different, (
        f"{case}: killed {lost} step(s) after step {plan.checkpoint}: {different[:5]} differ"
    )
    assert compared_metrics(killed) == compared_metrics(unbroken), (case, plan)


@pytest.mark.parametrize(("case", "seed"), DEFAULT, ids=[f"{c}-seed{s}" for c, s in DEFAULT])
def test_a_kill_after_a_checkpoint_resumes_to_the_same_weights_and_metrics(
    case, seed, data_dir, cache_dir, tmp_path
):
    kill_and_resume(case, seed, data_dir, cache_dir, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(("case", "seed"), MATRIX, ids=[f"{c}-seed{s}" for c, s in MATRIX])
def test_kills_in_every_kind_of_run(case, seed, data_dir, cache_dir, tmp_path):
    kill_and_resume(case, seed, data_dir, cache_dir, tmp_path)


class TinyTask(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def tiny_trainer(tmp_path, **kw) -> tuple[pl.Trainer, TinyTask]:
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )
    data = torch.utils.data.TensorDataset(torch.randn(8, 4))
    task = TinyTask()
    trainer.fit(task, torch.utils.data.DataLoader(data, batch_size=4))
    return trainer, task


def no_space_line(err: BaseException) -> str:
    """What encoderlab-train prints for ``err``: exactly one line, and exit status 2."""
    message, status = describe(err)
    assert status == 2 and "\n" not in message, (status, message)
    return f"error: {message}"


def test_a_write_that_fails_halfway_leaves_the_previous_last_ckpt(tmp_path, monkeypatch):
    trainer, _ = tiny_trainer(tmp_path)
    path = save_last_checkpoint(trainer, tmp_path / "checkpoints")
    before = path.read_bytes()

    def torn_write(self, checkpoint, filepath, storage_options=None):
        with open(filepath, "wb") as f:
            f.write(before[: len(before) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", torn_write)
    with pytest.raises(NoSpaceLeft) as err:
        save_last_checkpoint(trainer, tmp_path / "checkpoints")
    assert no_space_line(err.value) == (
        f"error: no space left on device writing {path} — the previous last.ckpt is intact; free space and "
        f"resume: resume={tmp_path}"
    )
    assert path.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    assert checkpoint_step(path) == 2


def test_an_export_that_runs_out_of_space_leaves_the_previous_export(
    pretrained_run, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "export"
    assert export_main([str(pretrained_run), str(out), "--format", "encoderlab"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_save = export_format.save_file

    def save_half_then_fill_the_disk(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:
            f.truncate(len(f.read()) // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_format, "save_file", save_half_then_fill_the_disk)
    capsys.readouterr()
    assert export_main([str(pretrained_run), str(out), "--format", "encoderlab", "--force"]) == 2
    assert capsys.readouterr().err == (
        f"error: no space left on device writing {out} — the previous export is intact; free space and run it "
        "again\n"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary directory left


def test_non_finite_weights_are_never_saved_over_a_good_checkpoint(tmp_path):
    trainer, task = tiny_trainer(tmp_path)
    every = PeriodicLastCheckpoint(str(tmp_path / "checkpoints"), every_n_steps=1)
    every.on_train_batch_end(trainer, task)
    path = tmp_path / "checkpoints/last.ckpt"
    before = path.read_bytes()
    with torch.no_grad():
        task.layer.weight[0, 0] = float("nan")
    # One more optimizer step, as Lightning counts them.
    trainer.fit_loop.epoch_loop.automatic_optimization.optim_progress.optimizer.step.total.completed += 1
    assert trainer.global_step == 3
    every.on_train_batch_end(trainer, task)
    assert path.read_bytes() == before


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    callback = RNGState()
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    torch.save({"rng": callback.state_dict()}, tmp_path / "s.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(2)
    np.random.seed(2)
    random.seed(2)
    callback.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and (got[1] == expected[1]).all() and got[2] == expected[2]


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data_dir, cache_dir, tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "experiment=finetune_sst2",
        *FAST,
        "optimizer.lr=1e30",  # one step to astronomically large weights, then a NaN loss
        "callbacks.last_checkpoint.every_n_steps=1",
        f"hydra.run.dir={run_dir}",
    ]
    result = run_train(args, cli_env(data_dir, cache_dir, OMP_NUM_THREADS="1"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last_line = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last_line.startswith("error: training loss became NaN at step "), last_line
    assert "lower optimizer.lr" in last_line
    checkpoint = run_dir / "checkpoints/last.ckpt"
    assert f"the last good checkpoint is kept at {checkpoint}" in last_line
    step = int(last_line.split(" at step ")[1].split()[0])
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert 1 <= saved["global_step"] <= step
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values() if t.is_floating_point())
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "loss became NaN" in record["error"]
    assert not (run_dir / "metrics.json").exists()
    assert "divergence" in {f.check for f in diagnose(run_dir)}
