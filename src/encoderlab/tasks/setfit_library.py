"""The SetFit library itself (setfit 1.2.0) as one method of the few-shot study, for a side-by-side reference:
``method=setfit_library``.

When the fit begins, the run's encoder (whatever ``init=`` built: MiniLM, a Hugging Face directory, an
encoderlab export) is written as a sentence-transformers model with its source's pooling and unit length
(:mod:`encoderlab.formats.sentence_transformers`), and the library's ``Trainer`` trains a ``SetFitModel`` on
the run's own labelled sample (the same draw as every other method of that seed) with the library's own pair
sampling, loss, schedule and logistic-regression head. Its tuned body is then loaded back into the run's
encoder and its head into a :class:`~encoderlab.models.fitted_heads.VectorClassifier`, so validation, test,
``metrics.json``, the checkpoint and ``encoderlab-predict`` are the ones every method has: the library
trained, encoderlab only measured.

``params/trainable`` counts the whole encoder (the library tunes every body weight) and the head's fit; the
run's wall time includes the library's.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch

from encoderlab.data.base import Targets
from encoderlab.extras import require
from encoderlab.formats import hf
from encoderlab.formats.sentence_transformers import export_sentence_transformers
from encoderlab.models.fitted_heads import VectorClassifier
from encoderlab.models.heads import sentence_pooling
from encoderlab.tasks.fitted_head import FittedHeadTask
from encoderlab.validate import at_least, check, positive

log = logging.getLogger("encoderlab")


def quiet_progress_bars() -> None:
    """No progress bars from the libraries where they let us (the trainer's tqdm bar goes with TQDM_DISABLE=1
    in the environment, which encoderlab-suite / encoderlab-study give their jobs)."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    for name in ("sentence_transformers", "setfit", "transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.WARNING)


class SetFitLibraryTask(FittedHeadTask):
    kind = "setfit_library"
    head_kind = VectorClassifier
    targets = Targets.CLASSES
    usage = (
        "task=setfit_library goes with head=logistic_regression and data with one class per text (e.g. "
        "method=setfit_library experiment=fewshot_sst2); pip install 'encoderlab[fewshot]'"
    )

    def __init__(
        self,
        encoder,
        head,
        optimizer=None,
        scheduler=None,
        num_labels: int = 2,
        label_names=None,
        num_iterations: int = 20,
        batch_size: int = 16,
        num_epochs: int = 1,
        max_steps: int = -1,
        body_learning_rate: float = 2.0e-5,
    ):
        super().__init__(encoder, head, optimizer, scheduler, num_labels=num_labels, label_names=label_names)
        check("task.num_iterations", num_iterations, at_least(1))
        check("task.batch_size", batch_size, at_least(1))
        check("task.num_epochs", num_epochs, at_least(1))
        check("task.body_learning_rate", body_learning_rate, positive)
        if max_steps != -1:
            check("task.max_steps", max_steps, at_least(1))
        self.library_args = {
            "num_iterations": num_iterations,
            "batch_size": batch_size,
            "num_epochs": num_epochs,
            "max_steps": max_steps,
            "body_learning_rate": body_learning_rate,
        }
        self._library_trained = False

    def settings(self) -> dict:
        return {**super().settings(), **self.library_args}

    def fit_head_if_stale(self) -> None:
        if self._library_trained or self._fitted_at_step is not None:
            return  # trained once, or restored from a checkpoint the library's training ended in
        datamodule = self.trainer.datamodule
        texts, labels = datamodule.labelled_texts("train")
        self.train_with_library(
            texts, labels, datamodule.tokenizer_dir, datamodule.max_seq_len, datamodule.seed
        )
        self._fitted_at_step = self.global_step

    def train_with_library(self, texts, labels, tokenizer_dir, max_seq_len: int, seed: int):
        """Train a SetFitModel on (texts, labels) from this encoder, take its body and head; the model."""
        setfit = require("setfit", for_="method=setfit_library")
        datasets = require("datasets", for_="method=setfit_library")
        quiet_progress_bars()
        pooling = self.head.pooling or sentence_pooling(self.encoder)
        normalize = bool(getattr(self.encoder, "source_normalize", False))
        with tempfile.TemporaryDirectory() as tmp, torch.inference_mode(False):
            body_dir = Path(tmp) / "body"
            export_sentence_transformers(
                self.encoder,
                tokenizer_dir,
                body_dir,
                pooling=pooling,
                normalize=normalize,
                max_seq_len=max_seq_len,
            )
            model = setfit.SetFitModel.from_pretrained(str(body_dir), local_files_only=True)
            args = setfit.TrainingArguments(
                output_dir=str(Path(tmp) / "out"),
                seed=seed,
                report_to="none",
                show_progress_bar=False,
                max_length=max_seq_len,
                **self.library_args,
            )
            train = datasets.Dataset.from_dict({"text": list(texts), "label": list(labels)})
            setfit.Trainer(model=model, args=args, train_dataset=train).train()
            tuned_dir = Path(tmp) / "tuned"
            model.model_body.save(str(tuned_dir))
            tuned = hf.load_hf_encoder(tuned_dir)
        with torch.no_grad():
            self.encoder.load_state_dict(tuned.state_dict())
        self.head.pooling, self.head.normalize = pooling, normalize
        self.head.load_logistic_regression(model.model_head)
        self._library_trained = True
        log.info("the SetFit library trained the encoder and its head on %d labelled examples", len(labels))
        return model

    def fitted_parameters(self) -> dict[str, int]:
        body = {f"encoder.{name}": p.numel() for name, p in self.encoder.named_parameters()}
        return {**body, **super().fitted_parameters()}
