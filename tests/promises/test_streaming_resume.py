"""Pre-training streamed from token shards (data=wiki_en_sharded), SIGKILLed mid-epoch after a checkpoint,
resumes to bitwise the weights and the metrics of an uninterrupted run."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import cli_env, start_train
from tests.promises.kills import (
    KillPlan,
    assert_lost_steps,
    checkpoint_step,
    compared_metrics,
    different_weights,
    kill_at,
    marker_override,
)

pytest.importorskip("litdata")

# 12 steps in two epochs of 6 batches, last.ckpt every 3 steps: killed 2 steps after the mid-epoch checkpoint
# of step 3, the resumed run replays the rest of epoch 0 from the shards, then all of epoch 1.
STEPS, EVERY = 12, 3
PLAN = KillPlan(checkpoint=3, lost=2, delay=0.01)
ARGS = [
    "experiment=pretrain_mlm",
    "data=wiki_en_sharded",
    "encoder=tiny",
    "data.vocab_size=400",
    "data.max_seq_len=32",
    "data.batch_size=8",
    "trainer.limit_train_batches=6",
    f"trainer.max_steps={STEPS}",
    "trainer.max_epochs=-1",
    "trainer.val_check_interval=6",
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.deterministic=true",
    "~callbacks.progress_bar",
    f"callbacks.last_checkpoint.every_n_steps={EVERY}",
]


@pytest.mark.slow  # ~22 s on 2 cores; the map-style kill/resume promise stays in the default suite
def test_a_streamed_run_killed_mid_epoch_resumes_to_the_same_weights(data_dir, cache_dir, tmp_path):
    env = cli_env(data_dir, cache_dir, OMP_NUM_THREADS="1")
    unbroken, killed, marker = tmp_path / "unbroken", tmp_path / "killed", tmp_path / "killed.step"
    # The shards are built once, by the first run to get there; the other waits for them.
    reference = start_train([*ARGS, f"hydra.run.dir={unbroken}"], env)
    victim = start_train([*ARGS, marker_override(marker), f"hydra.run.dir={killed}"], env)
    kill_at(victim, marker, PLAN)
    assert victim.wait(timeout=60) == -signal.SIGKILL, victim.stderr.read()[-2000:]
    assert_lost_steps(killed, marker, PLAN)

    resumed = start_train([f"resume={killed}"], env)  # while the reference still runs
    assert reference.wait(timeout=240) == 0, reference.stderr.read()[-3000:]
    assert resumed.wait(timeout=240) == 0, resumed.stderr.read()[-3000:]
    assert checkpoint_step(killed / "checkpoints/last.ckpt") == STEPS
    assert different_weights(unbroken, killed) == []
    assert compared_metrics(killed) == compared_metrics(unbroken)
