"""Masked-language-model pre-training: encoder + MLM head, loss only at the masked positions."""

from __future__ import annotations

import logging

import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from encoderlab.adapt.adapters import merged_copy
from encoderlab.data.base import Targets
from encoderlab.data.masking import NO_MASKING
from encoderlab.errors import UserError
from encoderlab.formats.export import export_encoder, save_mlm_head
from encoderlab.models.heads import MaskedLMHead
from encoderlab.models.kernels import vocab_cross_entropy
from encoderlab.run.layout import RunDir
from encoderlab.tasks.base import EncoderTask

log = logging.getLogger("encoderlab")


def masked_lm_logits(
    encoder: nn.Module, head: nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [M, V] and targets [M] for the M selected positions of the batch.

    The vocabulary projection runs only where ``labels != -100`` (about 15 % of tokens), which removes most
    of an MLM step's cost at small and medium model sizes; the encoder's last layer, too, finishes only those
    positions (``output_positions``). An optional ``batch["masked_positions"]`` (LongTensor [B, K], a fixed
    count of masked positions per sequence) selects by gather instead: static shapes, no host sync, which
    suits ``torch.compile`` and GPUs; the labels at those positions are the targets (-100 at the filler
    slots of a sequence with fewer targets, which the loss and :func:`target_accuracy` skip).
    """
    labels = batch["labels"]
    positions = batch.get("masked_positions")
    selected = labels != -100 if positions is None else positions  # B,S bool | B,K long
    hidden = encoder(
        batch["input_ids"],
        batch.get("attention_mask"),
        batch.get("token_type_ids"),
        output_positions=selected,
    )  # M,H
    targets = labels[selected] if positions is None else labels.gather(1, positions).flatten()
    return head(hidden), targets  # [M,V], [M]


def target_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(accuracy, count) over the real targets of [M, V] logits: filler slots (-100) are not counted. On
    tensors throughout, so a GPU step does not wait for the host."""
    valid = targets != -100
    count = valid.sum()
    correct = ((logits.detach().argmax(-1) == targets) & valid).sum()
    return correct / count.clamp(min=1), count


def masked_share(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The share of the batch's real tokens that are targets: the realised masking rate (its denominator
    counts [CLS] and [SEP], which are never masked, so it sits a little under data.mlm_probability)."""
    targets = (batch["labels"] != -100).sum().float()
    mask = batch.get("attention_mask")
    real = mask.sum() if mask is not None else torch.tensor(batch["labels"].numel())
    return targets / real.clamp(min=1)


def masked_lm_loss(encoder: nn.Module, head: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits, targets = masked_lm_logits(encoder, head, batch)
    return vocab_cross_entropy(logits, targets)


class MaskedLMTask(EncoderTask):
    """Logs ``{stage}/loss``, ``{stage}/acc`` (masked-token accuracy) and ``{stage}/perplexity``.

    Leaves in the run what stage 2 starts from: the encoder alone (``encoder/``) and the MLM head kept
    aside (``mlm_head.safetensors``) for prompt-style reuse.
    """

    kind = "pretrain"
    head_kind = MaskedLMHead
    targets = Targets.TOKENS
    usage = "task=pretrain goes with head=mlm and an unlabelled corpus (data=text_corpus, data=wiki_en)"

    def __init__(self, encoder, head, optimizer=None, scheduler=None) -> None:
        super().__init__(encoder, head, optimizer, scheduler)
        # Token-weighted means. (A vocabulary-sized MulticlassAccuracy would build a V×V confusion count.)
        metrics = MetricCollection({"acc": MeanMetric(), "nll": MeanMetric()})
        self.set_stage_metrics(metrics)

    def predictions(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [M, V] and targets [M] where the batch has targets (a subclass may predict elsewhere)."""
        return masked_lm_logits(self.encoder, self.head, batch)

    @classmethod
    def check_data(cls, datamodule) -> None:
        if getattr(datamodule, "masking", None) == NO_MASKING:
            raise UserError(
                f"task={cls.kind} predicts masked tokens, but data.masking={NO_MASKING} masks nothing — set "
                "data.masking=token|whole_word|span (objective=mlm|wwm|span), or use objective=clm"
            )

    def _step(self, batch, metrics: MetricCollection, stage: str) -> torch.Tensor:
        logits, targets = self.predictions(batch)
        loss = vocab_cross_entropy(logits, targets)
        accuracy, count = target_accuracy(logits, targets)
        metrics[f"{stage}/acc"].update(accuracy, weight=count)
        metrics[f"{stage}/nll"].update(loss.detach(), weight=count)
        if stage == "train":
            self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
            self.log("train/mask_rate", masked_share(batch), on_step=True, on_epoch=False)
        self.log(
            f"{stage}/acc", metrics[f"{stage}/acc"], on_step=False, on_epoch=True, prog_bar=stage == "val"
        )
        return loss

    def _log_perplexity(self, metrics: MetricCollection, stage: str) -> None:
        # Epoch loss and perplexity from one token-weighted mean, so perplexity == exp(loss) exactly.
        nll = metrics[f"{stage}/nll"]
        if nll.update_count:
            mean_nll = nll.compute()
            if stage != "train":
                self.log(f"{stage}/loss", mean_nll, prog_bar=True)
            self.log(f"{stage}/perplexity", torch.exp(mean_nll), prog_bar=stage == "val")
        nll.reset()

    def logged_metrics(self) -> set[str]:
        perplexities = {f"{stage}/perplexity" for stage in ("train", "val", "test")}
        return super().logged_metrics() | perplexities | {"train/mask_rate"}

    def save_artifacts(self, run: RunDir, datamodule) -> None:
        super().save_artifacts(run, datamodule)
        export_encoder(merged_copy(self.encoder), datamodule.tokenizer_dir, run.encoder)
        save_mlm_head(self.head, run.mlm_head)
        log.info("encoder exported to %s", run.encoder)

    def prediction_rows(self, items, outputs):
        raise UserError(
            "a pre-training run predicts masked tokens, not labels — fine-tune it first (init=pretrained "
            "init.path=RUN/encoder), or export it with encoderlab-export"
        )

    def on_train_epoch_end(self):
        self._log_perplexity(self.train_metrics, "train")

    def on_validation_epoch_end(self):
        self._log_perplexity(self.val_metrics, "val")

    def on_test_epoch_end(self):
        self._log_perplexity(self.test_metrics, "test")
