"""``kernels=``: the CPU kernels a run trains with, measured for the machine at hand or forced.

Each switch (``kernels.linear=onednn|torch``, ``kernels.dropout=rand|torch``, ``kernels.attention=math|sdpa``)
is ``auto`` by default: at the start of training on a CPU in fp32, a short calibration on the run's shapes
(:mod:`encoderlab.training.kernel_calibration`) picks each custom kernel only where it is measurably faster
than the plain PyTorch op, and the answer is cached per CPU model, instruction set, torch version, thread
count and shape (``kernels.cache``), so later runs start at once. An encoder whose layers are too small for
the choice to matter (``kernels.min_gflop``) keeps the custom kernels without measuring. The choice goes
into ``run.json`` (``kernels``) and into the checkpoint, so a resumed run keeps it, and
``encoderlab-reproduce`` forces it. The heads follow the encoder's choice.

``kernels.allocator=retain|system`` (:mod:`encoderlab.training.allocator`) is the process's ``malloc``
policy; ``auto`` keeps freed memory for the next step when training on CPU an encoder big enough to be
measured: a rule, not a measurement, because the page faults it removes cost the same on every instruction
set (measured on both CPU kinds, docs/performance.md) and the setting cannot be undone within a process.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch

from encoderlab.models.encoder import Encoder
from encoderlab.models.kernels import CPU_KERNELS, set_cpu_kernels
from encoderlab.training.allocator import ALLOCATOR_OPTIONS, apply_allocator
from encoderlab.training.kernel_calibration import CUSTOM, measured_choice, step_gflop
from encoderlab.validate import check, one_of, positive

log = logging.getLogger("encoderlab")
FP32 = ("32", "32-true")


class KernelChoice(pl.Callback):
    def __init__(
        self,
        linear: str = "auto",
        dropout: str = "auto",
        attention: str = "auto",
        cache: str | None = None,
        min_gflop: float = 1.0,
        max_gflop: float = 8.0,
        allocator: str = "auto",
    ) -> None:
        self.requested = {"linear": linear, "dropout": dropout, "attention": attention}
        for name, value in self.requested.items():
            check(f"kernels.{name}", value, one_of("auto", *CPU_KERNELS[name]))
        check("kernels.allocator", allocator, one_of("auto", *ALLOCATOR_OPTIONS))
        self.requested_allocator = allocator
        self.allocator: str | None = None
        check("kernels.min_gflop", min_gflop, positive)
        check("kernels.max_gflop", max_gflop, positive)
        self.cache = Path(cache) if cache else None
        self.min_gflop, self.max_gflop = min_gflop, max_gflop
        self.choice: dict[str, str] | None = None
        self.facts: dict = {}
        self.restored: dict[str, str] | None = None

    # --- the checkpoint: a resumed run keeps the kernels (and so the dropout masks) it started with ----------
    def state_dict(self) -> dict:
        return {"choice": self.choice} if self.choice else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self.restored = state_dict.get("choice")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The allocator first: the calibration then measures the kernels under the memory policy they train in.
        self.allocator = apply_allocator(self._allocator_option(trainer, pl_module))
        choice, facts = self.choose(trainer, pl_module)
        choice = trainer.strategy.broadcast(choice, src=0)  # every process trains with rank 0's kernels
        set_cpu_kernels(pl_module, **choice)
        self.choice, self.facts = choice, facts
        log.info(
            "CPU kernels: %s allocator=%s (%s)",
            " ".join(f"{k}={v}" for k, v in choice.items()),
            self.allocator,
            facts["how"],
        )

    def describe(self) -> dict:
        """What the run records in ``run.json``: the switches, how they were decided, the timings."""
        allocator = {"allocator": self.allocator} if self.allocator else {}
        return {**(self.choice or {}), **allocator, **self.facts}

    def _allocator_option(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
        if self.requested_allocator != "auto":
            return self.requested_allocator
        workload = self._workload(trainer, pl_module)
        if workload is None or pl_module.device.type != "cpu":
            return "system"
        encoder, batch, seq, train = workload
        big_enough = step_gflop(encoder.config, batch, seq, train) >= self.min_gflop  # the calibration's rule
        return "retain" if big_enough else "system"

    def choose(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[dict[str, str], dict]:
        fixed = {name: value for name, value in self.requested.items() if value != "auto"}
        defaults = {**CUSTOM, **fixed}
        if self.restored:
            return {**self.restored, **fixed}, {"how": "kept from the checkpoint"}
        if len(fixed) == len(CPU_KERNELS):
            return fixed, {"how": "forced"}
        workload = self._workload(trainer, pl_module)
        precision = str(trainer.precision)
        if workload is None or pl_module.device.type != "cpu" or precision not in FP32:
            where = pl_module.device.type if pl_module.device.type != "cpu" else f"precision {precision}"
            return defaults, {"how": f"not measured ({where}: the custom kernels only run on CPU fp32)"}
        encoder, batch, seq, train = workload
        if not trainer.is_global_zero:
            return defaults, {"how": "rank 0's"}  # replaced by rank 0's choice in on_fit_start
        decoder = self._vocabulary_projection(pl_module, encoder, batch, seq) if train else None
        return measured_choice(
            encoder, batch, seq, train, fixed, self.cache, self.min_gflop, self.max_gflop, decoder
        )

    @classmethod
    def _workload(cls, trainer: pl.Trainer, pl_module: pl.LightningModule):
        """(the largest encoder, batch, tokens, whether it trains), or None for a module without one."""
        encoders = [m for m in pl_module.modules() if isinstance(m, Encoder)]
        if not encoders:
            return None
        encoder = max(encoders, key=lambda e: sum(p.numel() for p in e.parameters()))
        batch, seq = cls._shape(trainer, encoder)
        return encoder, batch, seq, any(p.requires_grad for p in encoder.parameters())

    @staticmethod
    def _vocabulary_projection(pl_module, encoder: Encoder, batch: int, seq: int):
        """(rows, width, vocabulary) of a head's projection onto the vocabulary (an MLM or generator head),
        which the step runs once besides the layers; rows: the 15 % of positions an MLM batch predicts."""
        inside = {id(m) for m in encoder.modules()}
        vocab = encoder.config.vocab_size
        for m in pl_module.modules():
            if isinstance(m, torch.nn.Linear) and id(m) not in inside and m.out_features == vocab:
                return max(1, int(0.15 * batch * seq)), m.in_features, vocab
        return None

    @staticmethod
    def _shape(trainer: pl.Trainer, encoder: Encoder) -> tuple[int, int]:
        """(sequences, tokens) of a training batch, from the data module; BERT's 32 × 128 if it says none."""
        data = trainer.datamodule
        batch = getattr(data, "batch_size", None) or 32
        seq = getattr(data, "max_seq_len", None) or 128
        return int(batch), int(min(seq, encoder.config.max_sequence_length))


def recorded_overrides(record: dict) -> list[str]:
    """The overrides that make a re-run use the kernels a run recorded (``run.json``'s ``kernels``)."""
    kernels = record.get("kernels") or {}
    forced = [
        f"kernels.{name}={kernels[name]}" for name in CPU_KERNELS if kernels.get(name) in CPU_KERNELS[name]
    ]
    if kernels.get("allocator") in ALLOCATOR_OPTIONS:
        forced.append(f"kernels.allocator={kernels['allocator']}")
    return forced
