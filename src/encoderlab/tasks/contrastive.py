"""Contrastive training of the encoder: texts and their positives pulled together, the batch's other texts
pushed apart (InfoNCE / MultipleNegativesRankingLoss with in-batch negatives).

Pairs from the data train supervised (STS-B pairs scoring 4 or more, any (anchor, positive) file); single
texts train unsupervised SimCSE (Gao et al. 2021): each text goes through the encoder twice, and the two
dropout masks make it a positive pair. The head is pooling only (:class:`PoolingHead`); the run leaves the
encoder export (``encoder/``) and a sentence-transformers model (``sentence_transformers/``).

Logs ``train/loss`` and ``train/in_batch_acc`` (how often a text's positive is its best match in the
process's batch); ``val/loss`` and ``val/retrieval_acc`` (each held-out anchor's positive ranked first among
all held-out positives) and, with STS data, ``val/spearman`` (Spearman between the embeddings' cosine
similarity and the gold score over the whole STS split).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, Metric, MetricCollection, SpearmanCorrCoef

from encoderlab.adapt.adapters import merged_copy
from encoderlab.data.base import Targets
from encoderlab.data.pairs import POSITIVE
from encoderlab.errors import UserError
from encoderlab.formats.export import export_encoder
from encoderlab.formats.sentence_transformers import export_sentence_transformers
from encoderlab.models.heads import PoolingHead
from encoderlab.models.length_groups import encode_in_length_groups
from encoderlab.models.similarity import info_nce, ranked_first
from encoderlab.run.layout import RunDir
from encoderlab.tasks.base import EncoderTask
from encoderlab.validate import boolean, check, positive

log = logging.getLogger("encoderlab")


class PairRetrievalAccuracy(Metric):
    """The share of anchors whose own positive ranks first among all positives seen in the epoch.

    Embeddings are kept (``cat`` states, so every process ranks against the whole split) and scored once,
    in ``compute``: a pair's rank depends on every other pair, which no per-batch count can give.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("anchors", default=[], dist_reduce_fx="cat")
        self.add_state("positives", default=[], dist_reduce_fx="cat")

    def update(self, anchors: torch.Tensor, positives: torch.Tensor) -> None:
        self.anchors.append(anchors.detach().float())
        self.positives.append(positives.detach().float())

    def compute(self) -> torch.Tensor:
        anchors, positives = self.anchors, self.positives
        if isinstance(anchors, list):  # not synchronised: this process's list of batches
            anchors, positives = torch.cat(anchors), torch.cat(positives)
        return ranked_first(anchors, positives).float().mean()


class ContrastiveTask(EncoderTask):
    """Encoder + pooling head trained by InfoNCE over in-batch negatives (see the module docstring)."""

    kind = "contrastive"
    head_kind = PoolingHead
    targets = Targets.TEXT_PAIRS
    usage = (
        "task=contrastive goes with head=pooling and texts or text pairs (data=text_pairs, data=stsb_pairs; "
        "experiment=simcse_wiki or experiment=contrastive_stsb)"
    )

    def __init__(
        self,
        encoder,
        head,
        optimizer=None,
        scheduler=None,
        temperature: float = 0.05,
        symmetric: bool = False,
    ) -> None:
        super().__init__(encoder, head, optimizer, scheduler)
        self.temperature = float(check("task.temperature", temperature, positive))
        self.symmetric = check("task.symmetric", symmetric, boolean)
        evaluation = MetricCollection(
            {"retrieval_acc": PairRetrievalAccuracy(), "spearman": SpearmanCorrCoef()}
        )
        self.set_stage_metrics(MetricCollection({"in_batch_acc": MeanMetric()}), evaluation)

    def settings(self) -> dict:
        return {"temperature": self.temperature, "symmetric": self.symmetric}

    # ------------------------------------------------------------------------- embedding
    def embed(self, batch: dict[str, torch.Tensor], prefix: str = "") -> torch.Tensor:
        """[B, H] embeddings of the batch's texts (``prefix=POSITIVE``: of their positives)."""
        return encode_in_length_groups(  # texts drawn at random: grouped by length, not padded to the longest
            self.encoder,
            self.head,
            batch[prefix + "input_ids"],
            batch.get(prefix + "attention_mask"),
            batch.get(prefix + "token_type_ids"),
        )

    def pair_embeddings(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(anchors, positives), [B, H] each. Without positives in the batch (single texts) the same texts
        are embedded a second time: in training, other dropout masks make them differ (SimCSE)."""
        anchors = self.embed(batch)
        has_positives = POSITIVE + "input_ids" in batch
        return anchors, self.embed(batch, POSITIVE if has_positives else "")

    # ------------------------------------------------------------------------- steps
    def _step(self, batch, metrics: MetricCollection, stage: str) -> torch.Tensor | None:
        anchors, positives = self.pair_embeddings(batch)
        if "scores" in batch:  # scored STS pairs: how similarity ranks them, no loss
            similarity = F.cosine_similarity(anchors, positives, dim=-1)
            metrics[f"{stage}/spearman"].update(similarity, batch["scores"].float())
            self.log(
                f"{stage}/spearman", metrics[f"{stage}/spearman"], add_dataloader_idx=False, prog_bar=True
            )
            return None
        loss = info_nce(anchors, positives, self.temperature, self.symmetric)
        if stage == "train":
            found = ranked_first(anchors.detach(), positives.detach()).float()
            metrics["train/in_batch_acc"].update(found.mean(), weight=found.numel())
            self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
            self.log("train/in_batch_acc", metrics["train/in_batch_acc"], on_step=False, on_epoch=True)
            return loss
        metrics[f"{stage}/retrieval_acc"].update(anchors, positives)
        self.log(f"{stage}/loss", loss, add_dataloader_idx=False, prog_bar=True)
        self.log(
            f"{stage}/retrieval_acc",
            metrics[f"{stage}/retrieval_acc"],
            add_dataloader_idx=False,
            prog_bar=True,
        )
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._step(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._step(batch, self.test_metrics, "test")

    # ------------------------------------------------------------------------- what it leaves
    def save_artifacts(self, run: RunDir, datamodule) -> None:
        """The encoder export (``init=pretrained init.path=RUN/encoder`` goes on from it) and the encoder with
        this run's pooling as a sentence-transformers model."""
        super().save_artifacts(run, datamodule)
        encoder = merged_copy(self.encoder)
        export_encoder(encoder, datamodule.tokenizer_dir, run.encoder)
        log.info("encoder exported to %s", run.encoder)
        try:
            export_sentence_transformers(
                encoder,
                datamodule.tokenizer_dir,
                run.sentence_transformers,
                pooling=self.head.pooling,
                normalize=self.head.normalize,
                max_seq_len=datamodule.max_seq_len,
            )
        except UserError as err:  # an encoder shape Hugging Face lacks: the training itself is not lost
            log.warning("no sentence-transformers export: %s", err)
            return
        log.info("sentence-transformers model written to %s", run.sentence_transformers)

    def predict_step(self, batch, batch_idx=0):
        return self.embed(batch)

    def prediction_rows(self, items, outputs):
        """``{"embedding": [...]}`` per text."""
        return [{"embedding": vector} for vector in outputs.float().tolist()]
