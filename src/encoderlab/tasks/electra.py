"""ELECTRA pre-training (Clark et al., 2020): replaced-token detection with a small MLM generator.

A generator (a narrower encoder sharing the discriminator's embedding tables, with an MLM head) fills the
masked positions with tokens sampled from its predictions; the discriminator (the task's ``encoder`` and
its :class:`ReplacedTokenHead`) says for every real token whether it is the original or a replacement.
loss = MLM(generator) + ``rtd_weight`` · RTD(discriminator). The discriminator is what the run exports.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score

from encoderlab.adapt.adapters import merged_copy
from encoderlab.data.base import Targets
from encoderlab.data.collators import IGNORE_INDEX
from encoderlab.formats.export import export_encoder, save_mlm_head
from encoderlab.models.encoder import Encoder, EncoderConfig
from encoderlab.models.heads import MaskedLMHead, ReplacedTokenHead
from encoderlab.models.kernels import vocab_cross_entropy
from encoderlab.run.layout import RunDir
from encoderlab.tasks.base import EncoderTask
from encoderlab.tasks.masked_lm import MaskedLMTask, masked_lm_logits, target_accuracy
from encoderlab.validate import at_least, check, in_range, non_negative

log = logging.getLogger("encoderlab")

MIN_HEAD_SIZE = 32  # the generator keeps attention heads at least this wide (or a single head)
SHARED_TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")
# Sampling keys: a stage's draws never repeat another stage's.
STAGE_KEYS = {"train": 0, "val": 1, "test": 2}


def generator_config(
    discriminator: EncoderConfig, fraction: float = 0.25, layers: int | None = None
) -> EncoderConfig:
    """The discriminator's config at ``fraction`` of its hidden and intermediate sizes.

    Heads scale with the width but stay at least ``MIN_HEAD_SIZE`` wide (a single head when even that does
    not fit); ``layers`` None keeps the discriminator's depth, as ELECTRA's generators do. The embeddings
    keep the discriminator's width (they are its tables) and are projected to the generator's hidden size.
    """
    hidden = max(1, round(discriminator.hidden * fraction))
    heads = max(1, round(discriminator.heads * fraction))
    while heads > 1 and (hidden % heads or hidden // heads < MIN_HEAD_SIZE):
        heads -= 1
    return dataclasses.replace(
        discriminator,
        hidden=hidden,
        heads=heads,
        intermediate=max(1, round(discriminator.intermediate * fraction)),
        layers=discriminator.layers if layers is None else layers,
        embedding_size=discriminator.embedding_size,
    )


class Generator(nn.Module):
    """ELECTRA's generator: an ``encoder`` whose token, position and segment tables are the discriminator's
    own Parameters (tied, trained by both losses), and a ``head`` (MLM, decoder = the shared token table)."""

    def __init__(self, discriminator: Encoder, fraction: float = 0.25, layers: int | None = None) -> None:
        super().__init__()
        self.encoder = Encoder(
            generator_config(discriminator.config, fraction, layers),
            onednn_cpu_linear=getattr(discriminator, "onednn_cpu_linear", True),
        )
        for name in SHARED_TABLES:
            table = getattr(discriminator.embeddings, name, None)
            if table is not None:
                getattr(self.encoder.embeddings, name).weight = table.weight
        self.head = MaskedLMHead(self.encoder)  # after the tie: its decoder is the shared token table


def replace_masked(
    batch: dict[str, torch.Tensor], sampled: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(discriminator input [B, S], replaced [B, S] bool): the masked positions hold ``sampled`` (one id per
    masked position, in :func:`masked_lm_logits`' order); a token is replaced where it differs from the
    original, so a sample equal to the original counts as original, as in ELECTRA."""
    input_ids, labels = batch["input_ids"], batch["labels"]
    positions = batch.get("masked_positions")
    if positions is None:
        selected = labels != IGNORE_INDEX  # B,S
        corrupted = input_ids.masked_scatter(selected, sampled)
        original = torch.where(selected, labels, input_ids)
    else:  # B,K indices; a filler slot (label -100) keeps its token
        targets = labels.gather(1, positions)
        filler = targets == IGNORE_INDEX
        corrupted = input_ids.scatter(
            1, positions, torch.where(filler, input_ids.gather(1, positions), sampled.view_as(positions))
        )
        original = input_ids.scatter(
            1, positions, torch.where(filler, input_ids.gather(1, positions), targets)
        )
    return corrupted, corrupted != original


class ElectraTask(EncoderTask):
    """Logs ``{stage}/mlm_loss`` and ``{stage}/mlm_acc`` (the generator at the masked positions),
    ``{stage}/rtd_loss``, ``{stage}/rtd_acc``, ``{stage}/replaced_f1`` (F1 of the "replaced" class) and
    ``{stage}/replaced_rate`` (its base rate: always answering "original" scores 1 − replaced_rate), and
    ``{stage}/loss`` = mlm_loss + ``rtd_weight`` · rtd_loss.

    Leaves in the run the discriminator as ``encoder/`` (what fine-tuning starts from) and the generator
    beside it as ``generator/`` (its own ``encoder/`` export and ``mlm_head.safetensors``).
    """

    kind = "electra"
    head_kind = ReplacedTokenHead
    targets = Targets.TOKENS
    usage = (
        "task=electra goes with head=rtd and an unlabelled corpus (objective=electra with "
        "experiment=pretrain_mlm sets all three)"
    )
    # A pre-training run predicts no labels: the same refusal as masked-LM pre-training.
    prediction_rows = MaskedLMTask.prediction_rows
    # Its generator learns from masked tokens: the same refusal of unmasked data (data.masking=none).
    check_data = MaskedLMTask.__dict__["check_data"]

    def __init__(
        self,
        encoder,
        head,
        optimizer=None,
        scheduler=None,
        generator_fraction: float = 0.25,
        generator_layers: int | None = None,
        rtd_weight: float = 50.0,
        seed: int = 0,
    ) -> None:
        super().__init__(encoder, head, optimizer, scheduler)
        check("task.generator_fraction", generator_fraction, in_range(0, 1, low_open=True))
        check("task.generator_layers", generator_layers, at_least(1), optional=True)
        check("task.rtd_weight", rtd_weight, non_negative)
        check("task.seed", seed, at_least(0))
        self.generator_fraction = generator_fraction
        self.generator_layers = generator_layers
        self.rtd_weight = rtd_weight
        self.seed = seed
        self.generator = Generator(encoder, generator_fraction, generator_layers)
        metrics = MetricCollection(
            {
                "mlm_loss": MeanMetric(),
                "mlm_acc": MeanMetric(),
                "rtd_loss": MeanMetric(),
                "rtd_acc": BinaryAccuracy(),
                "replaced_f1": BinaryF1Score(),
                "replaced_rate": MeanMetric(),
            },
            compute_groups=False,  # updated one by one below
        )
        self.set_stage_metrics(metrics)

    def settings(self) -> dict:
        return {
            "generator_fraction": self.generator_fraction,
            "generator_layers": self.generator_layers,
            "rtd_weight": self.rtd_weight,
            "seed": self.seed,
        }

    # ------------------------------------------------------------------------- the losses
    def _sampling_generator(self, stage: str, batch_idx: int, device: torch.device) -> torch.Generator:
        """The generator's samples come from a torch.Generator seeded by (seed, stage, step, micro-batch,
        rank), not from the global RNG: a resumed run draws what the uninterrupted one would have, and every
        validation draws the same replacements, so its losses compare across steps."""
        if stage == "train":
            accumulate = self._trainer.accumulate_grad_batches if self._trainer is not None else 1
            key = [self.seed, STAGE_KEYS[stage], self.global_step, batch_idx % accumulate]
        else:
            key = [self.seed, STAGE_KEYS[stage], batch_idx]
        seed = np.random.SeedSequence([*key, self.global_rank]).generate_state(1, np.uint64)[0]
        return torch.Generator(device=device).manual_seed(int(seed))

    def losses(
        self, batch: dict[str, torch.Tensor], stage: str = "train", batch_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        """The generator's MLM loss and the discriminator's RTD loss on ``batch`` (an MLM-masked batch),
        with what the metrics read: ``mlm_logits``/``mlm_targets`` [M, V]/[M] and ``rtd_logits``/
        ``replaced`` [R] over the R real tokens."""
        mlm_logits, mlm_targets = masked_lm_logits(self.generator.encoder, self.generator.head, batch)
        mlm_loss = vocab_cross_entropy(mlm_logits, mlm_targets)
        with torch.no_grad():
            probs = torch.softmax(mlm_logits.detach().float(), dim=-1)
            draws = self._sampling_generator(stage, batch_idx, probs.device)
            sampled = torch.multinomial(probs, 1, generator=draws).squeeze(1)  # M
        corrupted, replaced = replace_masked(batch, sampled)
        mask = batch.get("attention_mask")
        hidden = self.encoder(corrupted, mask, batch.get("token_type_ids"))  # B,S,H
        rtd_logits = self.head(hidden, mask)  # B,S
        real = torch.ones_like(replaced) if mask is None else mask.bool()
        rtd_logits, replaced = rtd_logits[real].float(), replaced[real]  # R
        rtd_loss = F.binary_cross_entropy_with_logits(rtd_logits, replaced.float())
        return {
            "loss": mlm_loss + self.rtd_weight * rtd_loss,
            "mlm_loss": mlm_loss,
            "rtd_loss": rtd_loss,
            "mlm_logits": mlm_logits,
            "mlm_targets": mlm_targets,
            "rtd_logits": rtd_logits,
            "replaced": replaced,
        }

    def _step(self, batch, metrics: MetricCollection, stage: str, batch_idx: int = 0) -> torch.Tensor:
        out = self.losses(batch, stage, batch_idx)
        mlm_acc, n_masked = target_accuracy(out["mlm_logits"], out["mlm_targets"])
        n_real = out["replaced"].numel()
        replaced = out["replaced"].long()
        probability = torch.sigmoid(out["rtd_logits"].detach())
        metrics[f"{stage}/mlm_loss"].update(out["mlm_loss"].detach(), weight=n_masked)
        metrics[f"{stage}/mlm_acc"].update(mlm_acc, weight=n_masked)
        metrics[f"{stage}/rtd_loss"].update(out["rtd_loss"].detach(), weight=n_real)
        metrics[f"{stage}/rtd_acc"].update(probability, replaced)
        metrics[f"{stage}/replaced_f1"].update(probability, replaced)
        metrics[f"{stage}/replaced_rate"].update(replaced.float().mean(), weight=n_real)
        if stage == "train":
            self.log("train/loss", out["loss"], prog_bar=True, on_step=True, on_epoch=False)
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return out["loss"]

    def training_step(self, batch, batch_idx):
        return self._step(batch, self.train_metrics, "train", batch_idx)

    def validation_step(self, batch, batch_idx):
        self._step(batch, self.val_metrics, "val", batch_idx)

    def test_step(self, batch, batch_idx):
        self._step(batch, self.test_metrics, "test", batch_idx)

    def _log_total(self, metrics: MetricCollection, stage: str) -> None:
        # The epoch's loss from the epoch's token-weighted means: val/loss == val/mlm_loss + λ·val/rtd_loss.
        mlm, rtd = metrics[f"{stage}/mlm_loss"], metrics[f"{stage}/rtd_loss"]
        if stage != "train" and mlm.update_count:
            self.log(f"{stage}/loss", mlm.compute() + self.rtd_weight * rtd.compute(), prog_bar=True)

    def on_validation_epoch_end(self):
        self._log_total(self.val_metrics, "val")

    def on_test_epoch_end(self):
        self._log_total(self.test_metrics, "test")

    # ------------------------------------------------------------------------- what the run leaves
    def save_artifacts(self, run: RunDir, datamodule) -> None:
        super().save_artifacts(run, datamodule)
        export_encoder(merged_copy(self.encoder), datamodule.tokenizer_dir, run.encoder)
        kept = RunDir(run.generator)
        export_encoder(self.generator.encoder, datamodule.tokenizer_dir, kept.encoder)
        save_mlm_head(self.generator.head, kept.mlm_head)
        log.info("discriminator exported to %s, generator kept in %s", run.encoder, kept)
