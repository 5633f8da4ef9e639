"""Components added from outside the package, as docs/architecture.md's recipes say: each is its own
class here plus its YAML (written by the test into a config directory on ``hydra.searchpath``); no file
of ``encoderlab`` names them."""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from encoderlab.cli.errors import run_command
from encoderlab.data.base import Targets
from encoderlab.models.heads import MaskedLMHead, pool
from encoderlab.run.read import load_run
from encoderlab.tasks.base import EncoderTask
from encoderlab.tasks.masked_lm import MaskedLMTask, masked_lm_logits

# ------------------------------------------------------------- recipe 1: a pre-training objective


class SmoothedMLMTask(MaskedLMTask):
    """Masked-token prediction with label smoothing: a new objective over the same corpus and MLM head.

    Subclassing keeps what a pre-training task leaves in the run (the encoder export, the kept head);
    only the loss differs."""

    kind = "smoothed_mlm"
    usage = "task=smoothed_mlm goes with head=mlm and an unlabelled corpus"

    def __init__(self, encoder, head, optimizer=None, scheduler=None, smoothing: float = 0.1) -> None:
        super().__init__(encoder, head, optimizer, scheduler)
        self.smoothing = smoothing
        self.set_stage_metrics(MetricCollection({"acc": MeanMetric(), "nll": MeanMetric()}))

    def settings(self) -> dict:
        return {"smoothing": self.smoothing}

    def _step(self, batch, metrics, stage):
        logits, targets = masked_lm_logits(self.encoder, self.head, batch)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.smoothing)
        metrics[f"{stage}/acc"].update((logits.detach().argmax(-1) == targets).float().mean())
        metrics[f"{stage}/nll"].update(F.cross_entropy(logits.detach().float(), targets))
        if stage == "train":  # val/test loss and perplexity come from the epoch's mean NLL (MaskedLMTask)
            self.log("train/loss", loss, on_step=True, on_epoch=False)
        self.log(f"{stage}/acc", metrics[f"{stage}/acc"], on_step=False, on_epoch=True)
        return loss


# ------------------------------------------------------------- recipe 2: a task with its own head


class MaxMeanHead(nn.Module):
    """[max-pool ; mean-pool] of the hidden states → linear: a head the package does not have."""

    def __init__(self, encoder, num_labels: int) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.out = nn.Linear(2 * encoder.config.hidden, num_labels)

    def settings(self) -> dict:
        return {"num_labels": self.num_labels}

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        both = torch.cat([pool(hidden, attention_mask, "max"), pool(hidden, attention_mask, "mean")], -1)
        return self.out(both)


class MarginClassificationTask(EncoderTask):
    """Multi-class hinge loss on one class per text; predicts the label and its margin over the runner-up."""

    kind = "margin_classify"
    head_kind = MaxMeanHead
    targets = Targets.CLASSES
    usage = "task=margin_classify goes with head=max_mean and data with one class per text"

    def __init__(self, encoder, head, optimizer=None, scheduler=None, num_labels=2, label_names=None):
        super().__init__(encoder, head, optimizer, scheduler)
        self.num_labels, self.label_names = num_labels, list(label_names or range(num_labels))
        self.set_stage_metrics(MetricCollection({"acc": MulticlassAccuracy(num_classes=num_labels)}))

    def settings(self) -> dict:
        return {"num_labels": self.num_labels, "label_names": [str(n) for n in self.label_names]}

    def _step(self, batch, metrics, stage):
        scores = self(batch).float()
        loss = F.multi_margin_loss(scores, batch["labels"])
        metrics.update(scores.detach().argmax(-1), batch["labels"])
        self.log_loss_and_metrics(loss, metrics, stage)
        return loss

    def predict_step(self, batch, batch_idx=0):
        return self(batch).float()

    def prediction_rows(self, items, outputs):
        top = outputs.topk(2, dim=-1)
        return [
            {"label": str(self.label_names[int(i[0])]), "margin": float(v[0] - v[1])}
            for v, i in zip(top.values, top.indices, strict=True)
        ]


# ------------------------------------------------------------- recipe 3: a command


def main(argv: list[str] | None = None) -> int:
    """``encoderlab-summary RUN_DIR``: one line per run — what it trained and its final value of a metric."""
    parser = argparse.ArgumentParser(prog="encoderlab-summary")
    parser.add_argument("run_dir")
    parser.add_argument("--metric", default="val/loss")
    args = parser.parse_args(argv)

    def body() -> None:
        run = load_run(args.run_dir)  # a UserError (exit 2, one line) when it is not a run
        kind = run.task.kind if run.task else "unknown"
        print(f"{run.name}: task={kind} status={run.status} {args.metric}={run.final(args.metric)}")

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["MaskedLMHead", "MarginClassificationTask", "MaxMeanHead", "SmoothedMLMTask", "main"]
