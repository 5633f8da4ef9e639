"""The DDP strategy's timeout setting and the one line for a collective that lost a process (the processes
themselves: tests/promises/test_distributed.py)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from hydra.utils import instantiate

from encoderlab.errors import UserError
from encoderlab.training.distributed import DDP, lost_peer
from tests.cli.test_config import compose_train

RESET = (
    "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:53906: Connection reset "
    "by peer. This is typically caused by a remote worker hanging or bugs in the application."
)
TIMED_OUT = (
    "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:446] Timed out waiting 20000ms for recv operation"
)


def fake_trainer(world_size: int = 2, rank: int = 0, timeout_s: float = 20):
    return SimpleNamespace(
        world_size=world_size, global_rank=rank, strategy=SimpleNamespace(launcher=None, timeout_s=timeout_s)
    )


def test_trainer_ddp_waits_60_seconds_unless_told_otherwise():
    strategy = instantiate(compose_train(["trainer=ddp"]).trainer.strategy)
    assert isinstance(strategy, DDP) and strategy._timeout == timedelta(seconds=60)
    assert strategy._ddp_kwargs == {"find_unused_parameters": False}
    overrides = [
        "trainer=ddp",
        "trainer.strategy.timeout_s=5",
        "trainer.strategy.find_unused_parameters=true",
    ]
    strategy = instantiate(compose_train(overrides).trainer.strategy)
    assert strategy._timeout == timedelta(seconds=5) and strategy._ddp_kwargs == {
        "find_unused_parameters": True
    }
    with pytest.raises(UserError, match="trainer.strategy.timeout_s"):
        DDP(timeout_s=0)


@pytest.mark.parametrize(
    ("message", "reason"), [(RESET, "(Connection reset by peer)"), (TIMED_OUT, "(no answer within 20 s)")]
)
def test_a_collective_that_lost_a_process_is_one_line(message, reason):
    error = lost_peer(fake_trainer(rank=1), RuntimeError(message), "/runs/x")
    assert isinstance(error, UserError) and "\n" not in str(error)
    assert str(error).startswith(
        f"process 1 of 2 lost contact with the others of this distributed run {reason}"
    )
    assert "trainer.strategy.timeout_s=20 s" in str(error) and str(error).endswith("resume=/runs/x")


def test_other_failures_are_left_alone():
    assert lost_peer(fake_trainer(world_size=1), RuntimeError(RESET), "/runs/x") is None  # one process
    assert lost_peer(fake_trainer(), RuntimeError("mat1 and mat2 shapes cannot be multiplied"), "/r") is None
    assert lost_peer(fake_trainer(), ValueError(RESET), "/runs/x") is None
