"""Crashes: a run killed with SIGKILL mid-epoch resumes to bitwise the same weights; torn writes never
replace a good last.ckpt."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from safetensors.torch import load_file

from encoderlab.cli.doctor import diagnose
from encoderlab.training.checkpoints import PeriodicLastCheckpoint, RNGState, save_last_checkpoint
from tests.conftest import FAST, cli_env, run_train, start_train

# Four short epochs (10 batches each), validation every 5 batches, last.ckpt every 5 steps: checkpoints fall
# mid-epoch and at epoch ends, each just before a validation.
PRETRAIN = [
    "experiment=pretrain_mlm",
    "encoder=tiny",
    "data.vocab_size=400",
    "data.max_seq_len=32",
    "data.batch_size=8",
    "trainer.limit_train_batches=10",
    "trainer.max_steps=40",
    "trainer.val_check_interval=5",
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.deterministic=true",
    "~callbacks.progress_bar",
    "callbacks.last_checkpoint.every_n_steps=5",
]


def checkpoint_step(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def kill_after_checkpoint(proc: subprocess.Popen, checkpoint, at_step: int, timeout: float = 240) -> int:
    """SIGKILL ``proc`` as soon as ``checkpoint`` holds step ``at_step`` or later; the step it held."""
    seen, deadline = None, time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            inode = checkpoint.stat().st_ino  # every save is a new file renamed into place
            if inode != seen:
                seen = inode
                if checkpoint_step(checkpoint) >= at_step:
                    proc.send_signal(signal.SIGKILL)
                    break
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    proc.wait(timeout=60)
    return checkpoint_step(checkpoint)


def test_kill_mid_epoch_and_resume_gives_bitwise_the_same_weights(data_dir, cache_dir, tmp_path):
    # One thread per process: bitwise comparisons need the same kernels, and it is faster on a busy machine.
    env = cli_env(data_dir, cache_dir, OMP_NUM_THREADS="1")
    unbroken, killed = tmp_path / "unbroken", tmp_path / "killed"
    at_step = random.Random().randrange(3, 26)  # kills at step 5, 10, 15, 20 or 25; 15+ steps to spare
    reference = start_train([*PRETRAIN, f"hydra.run.dir={unbroken}"], env)
    victim = start_train([*PRETRAIN, f"hydra.run.dir={killed}"], env)
    step = kill_after_checkpoint(victim, killed / "checkpoints/last.ckpt", at_step)
    assert victim.returncode == -signal.SIGKILL, victim.stderr.read()[-2000:]
    assert at_step <= step < 40, (at_step, step)
    assert reference.wait(timeout=240) == 0, reference.stderr.read()[-3000:]

    resumed = run_train([f"resume={killed}"], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert checkpoint_step(killed / "checkpoints/last.ckpt") == 40

    expected = load_file(unbroken / "encoder/model.safetensors")
    got = load_file(killed / "encoder/model.safetensors")
    assert expected.keys() == got.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f"killed at step {step}: {different[:5]} differ"
    heads = [load_file(run / "mlm_head.safetensors") for run in (unbroken, killed)]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])


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


def test_a_write_that_fails_halfway_leaves_the_previous_last_ckpt(tmp_path, monkeypatch):
    trainer, _ = tiny_trainer(tmp_path)
    path = save_last_checkpoint(trainer, tmp_path / "checkpoints")
    before = path.read_bytes()

    def torn_write(self, checkpoint, filepath, storage_options=None):
        with open(filepath, "wb") as f:
            f.write(before[: len(before) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", torn_write)
    with pytest.raises(OSError, match="No space left"):
        save_last_checkpoint(trainer, tmp_path / "checkpoints")
    assert path.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    assert checkpoint_step(path) == 2


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
