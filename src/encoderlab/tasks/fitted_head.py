"""Classification by a head fitted on the labelled examples' vectors (:mod:`encoderlab.models.fitted_heads`):
``task=embed_probe`` (a logistic regression on the encoder's sentence vectors) and ``task=knn`` (the nearest
labelled examples vote); the base of ``task=setfit`` (:mod:`encoderlab.tasks.setfit`), whose training steps
tune the encoder before the head is fitted.

When the head is fitted, so that every evaluation and the saved checkpoint see a head fitted to the
encoder as it is: when the fit begins (a run without training steps, ``trainer.max_steps=0``, is then
complete), when the training steps end, and before a validation or test whenever the encoder has taken
optimizer steps since the last fit. The step of the last fit is kept in the checkpoint, so a resumed run
does not fit again for nothing. The vectors come from the data module's ``train_examples_dataloader()``
(every training example once, in length-sorted batches), with the encoder in eval mode and no gradient.

Validation and test log what the classifier logs (``{stage}/loss``, ``{stage}/acc``, ``{stage}/f1_macro``)
and ``encoderlab-predict`` writes the classifier's rows: the head's logits go through the same softmax.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import torch

from encoderlab.data.base import Targets
from encoderlab.errors import UserError
from encoderlab.models.fitted_heads import NearestNeighbourClassifier, VectorClassifier, VectorHead
from encoderlab.tasks.classification import SequenceClassificationTask

log = logging.getLogger("encoderlab")
FITTED_STATE = "encoderlab_fitted_head"  # the checkpoint's entry: the global step of the head's last fit


class FittedHeadTask(SequenceClassificationTask):
    """A classifier whose head is fitted on vectors of the labelled examples rather than trained by the
    optimizer. Subclasses that take no training steps of their own (``takes_training_steps = False``)
    build no optimizer and refuse a run that asks for steps (``trainer.fast_dev_run``'s check passes)."""

    head_kind = VectorHead
    takes_training_steps: ClassVar[bool] = False
    hf_problem_type = None  # a head on pooled sentence vectors is no Hugging Face classification head

    def __init__(self, encoder, head, optimizer=None, scheduler=None, num_labels: int = 2, label_names=None):
        super().__init__(encoder, head, optimizer, scheduler, num_labels=num_labels, label_names=label_names)
        self._fitted_at_step: int | None = None

    # ------------------------------------------------------------------------- when the head is fitted
    def on_fit_start(self) -> None:
        self.fit_head_if_stale()

    def on_train_start(self) -> None:
        super().on_train_start()
        # Steps that train nothing would never reach max_steps; fast_dev_run's single batch is only a check.
        if not self.takes_training_steps and not self.trainer.fast_dev_run:
            raise UserError(
                f"task={self.kind} fits its head on the labelled examples' vectors and takes no training "
                f"steps — set trainer.max_steps=0 (method={self.kind} does), or tune the encoder first with "
                "method=setfit"
            )

    def training_step(self, batch, batch_idx):
        if not self.takes_training_steps:
            return None  # (fast_dev_run) nothing trains by gradient: Lightning skips the step
        return super().training_step(batch, batch_idx)

    def on_train_end(self) -> None:
        self.fit_head_if_stale()

    def on_validation_start(self) -> None:
        self.fit_head_if_stale()

    def on_test_start(self) -> None:
        self.fit_head_if_stale()

    def fit_head_if_stale(self) -> None:
        """Fit the head on the training examples unless it was fitted at the current optimizer step."""
        if self._fitted_at_step == self.global_step:
            return
        datamodule = self.trainer.datamodule
        if datamodule is None:
            raise RuntimeError(
                f"task={self.kind} fits its head on a data module's training examples: pass one"
            )
        self.fit_head(datamodule.train_examples_dataloader(), seed=datamodule.seed)
        self._fitted_at_step = self.global_step

    def fit_head(self, loader, seed: int = 0) -> None:
        """Fit the head on the vectors of ``loader``'s labelled batches (with ``seed`` for what it draws)."""
        # Evaluation runs under inference mode, whose tensors cannot become a module's state or be trained
        # on: the fit makes ordinary ones.
        with torch.inference_mode(False):
            vectors, labels = self.example_vectors(loader)
            with torch.enable_grad():
                self.head.fit(vectors, labels, seed)
        log.info("fitted the %s head on %d labelled examples", type(self.head).__name__, len(labels))

    def example_vectors(self, loader) -> tuple[torch.Tensor, torch.Tensor]:
        """(vectors [N, H], class ids [N]) of ``loader``'s batches: the head's pooling of the encoder's
        states, eval mode (no dropout), no gradient."""
        modes = {module: module.training for module in self.modules()}
        self.eval()
        vectors, labels = [], []
        try:
            with torch.no_grad():
                for batch in loader:
                    batch = {k: v.to(self.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
                    mask = batch.get("attention_mask")
                    hidden = self.encoder(batch["input_ids"], mask, batch.get("token_type_ids"))
                    vectors.append(self.head.vectors(hidden, mask))
                    labels.append(batch["labels"])
        finally:
            for module, training in modes.items():
                module.train(training)
        return torch.cat(vectors), torch.cat(labels)

    def fitted_parameters(self) -> dict[str, int]:
        """Parameters the head's last fit set, name → elements: trained, although by no optimizer step."""
        return {f"head.{name}": size for name, size in self.head.fitted_sizes.items()}

    # ------------------------------------------------------------------------- training and resuming
    def configure_optimizers(self):
        if not self.takes_training_steps:
            return None  # nothing trains by gradient: Lightning runs the (empty) fit without an optimizer
        return super().configure_optimizers()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[FITTED_STATE] = {"step": self._fitted_at_step}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self._fitted_at_step = (checkpoint.get(FITTED_STATE) or {}).get("step")


class EmbeddingProbeTask(FittedHeadTask):
    """The frozen encoder's sentence vectors and a logistic regression fitted on the labelled examples'."""

    kind = "embed_probe"
    head_kind = VectorClassifier
    targets = Targets.CLASSES
    usage = (
        "task=embed_probe goes with head=logistic_regression and data with one class per text (e.g. "
        "method=embed_probe experiment=fewshot_sst2)"
    )


class NearestNeighbourTask(FittedHeadTask):
    """The frozen encoder's sentence vectors; the ``k`` most similar labelled examples vote."""

    kind = "knn"
    head_kind = NearestNeighbourClassifier
    targets = Targets.CLASSES
    usage = (
        "task=knn goes with head=knn and data with one class per text (e.g. method=knn "
        "experiment=fewshot_sst2)"
    )
