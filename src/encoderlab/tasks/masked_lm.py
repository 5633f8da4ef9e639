"""Masked-language-model pre-training: encoder + MLM head, loss only at the masked positions."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from encoderlab.tasks.base import EncoderTask


def masked_lm_logits(
    encoder: nn.Module, head: nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [M, V] and targets [M] for the M selected positions of the batch.

    The vocabulary projection runs only where ``labels != -100`` (about 15 % of tokens), which removes most
    of an MLM step's cost at small and medium model sizes; the encoder's last layer, too, finishes only those
    positions (``output_positions``). An optional ``batch["masked_positions"]`` (LongTensor [B, K], a fixed
    count of masked positions per sequence) selects by gather instead: static shapes, no host sync, which
    suits ``torch.compile`` and GPUs; the labels at those positions are the targets.
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


class _VocabCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy over [M, V] logits whose backward writes softmax − one-hot in one pass.

    Equal to ``F.cross_entropy(logits, targets, ignore_index=-100)``; ``F.cross_entropy``'s backward instead
    zero-fills an [M, V] gradient for the NLL step and then runs log-softmax's backward over it, two more
    passes over the largest tensor of an MLM step (M·V floats, e.g. 600 × 30,522).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        valid = targets != -100
        count = valid.sum().clamp_min(1)
        safe_targets = targets.clamp_min(0)[:, None]  # M,1
        lse = torch.logsumexp(logits, dim=-1)  # M
        nll = (lse - logits.gather(1, safe_targets).squeeze(1)) * valid
        ctx.save_for_backward(logits, safe_targets, lse, valid, count)
        return nll.sum() / count

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        logits, safe_targets, lse, valid, count = ctx.saved_tensors
        g = (logits - lse[:, None]).exp_()  # M,V softmax, exponentiated in place
        g.scatter_add_(1, safe_targets, torch.full_like(lse[:, None], -1.0))
        g.mul_((grad / count) * valid[:, None])
        return g, None


def vocab_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy(logits.float(), targets)`` for vocabulary-sized logits, with a leaner backward."""
    return _VocabCrossEntropy.apply(logits.float(), targets)


def masked_lm_loss(encoder: nn.Module, head: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits, targets = masked_lm_logits(encoder, head, batch)
    return vocab_cross_entropy(logits, targets)


class MaskedLMTask(EncoderTask):
    """Logs ``{stage}/loss``, ``{stage}/acc`` (masked-token accuracy) and ``{stage}/perplexity``."""

    def __init__(self, encoder, head, optimizer, scheduler=None) -> None:
        super().__init__(encoder, head, optimizer, scheduler)
        # Token-weighted means. (A vocabulary-sized MulticlassAccuracy would build a V×V confusion count.)
        metrics = MetricCollection({"acc": MeanMetric(), "nll": MeanMetric()})
        self.set_stage_metrics(metrics)

    def _step(self, batch, metrics: MetricCollection, stage: str) -> torch.Tensor:
        logits, targets = masked_lm_logits(self.encoder, self.head, batch)
        loss = vocab_cross_entropy(logits, targets)
        correct = (logits.detach().argmax(-1) == targets).float()
        metrics[f"{stage}/acc"].update(correct.mean(), weight=targets.numel())
        metrics[f"{stage}/nll"].update(loss.detach(), weight=targets.numel())
        if stage == "train":
            self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
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

    def on_train_epoch_end(self):
        self._log_perplexity(self.train_metrics, "train")

    def on_validation_epoch_end(self):
        self._log_perplexity(self.val_metrics, "val")

    def on_test_epoch_end(self):
        self._log_perplexity(self.test_metrics, "test")
