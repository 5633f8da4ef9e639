"""The run directory: every file name a run leaves, spelled once.

Writers (the entry point, tasks saving their artifacts, callbacks) and readers (predict, export, compare,
doctor, reproduce) both go through :class:`RunDir`, so a renamed file is renamed everywhere::

    <run>/
      .hydra/config.yaml  .hydra/hydra.yaml  .hydra/overrides.yaml   Hydra's own
      run.json        what the run was (code, packages, seed, times, status)        run/record.py
      run.lock        the process writing the run, while it runs (pid, host)        run/lock.py
      metrics.json    final metrics                                                  the entry point
      task.json       what the run trained: task, head, encoder config, labels      tasks (save_artifacts)
      label_map.json  label names in id order                                        labelled data
      tokenizer/      the tokenizer the run used                                     tasks
      encoder/        the encoder export (pre-training; merged LoRA on request)      tasks
      sentence_transformers/  the encoder + pooling as a sentence-transformers model  ContrastiveTask
      mlm_head.safetensors   the pre-training head, kept for prompt-style reuse      MaskedLMTask
      generator/      ELECTRA's generator, laid out as a run: encoder/ + mlm_head   ElectraTask
      adapter/        LoRA tensors + head                                            tasks
      checkpoints/last.ckpt  csv/metrics.csv  csv/hparams.yaml  train.log
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HYDRA_DIR = ".hydra"
CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT_FILE = "last.ckpt"
CSV_DIR = "csv"  # Lightning's CSVLogger writes here (conf/logger/csv.yaml names it too)
SWEEP_REPORT_FILE = "sweep.json"  # in a multirun directory, beside the jobs
MULTIRUN_FILE = "multirun.yaml"
# In a multirun directory: job directories that `encoderlab-sweep resume` started over are kept here
# (a dot name, so readers of the sweep never count them as its runs).
SWEEP_ATTEMPTS_DIR = ".attempts"
# An evaluation suite's directory (encoderlab-suite) is a multirun directory with, beside its jobs: the plan and
# results, the table as HTML and PNG, the sweep's own output, and the config options its jobs compose.
SUITE_REPORT_FILE = "suite.json"
SUITE_HTML_FILE = "suite.html"
SUITE_PLOT_FILE = "suite.png"
SUITE_LOG_FILE = "suite.log"
SUITE_CONF_DIR = "conf"
STUDY_TABLE_FILE = "study.md"  # a study's grids (a suite with report: study), with its recommendations
STUDY_PLOT_FILE = "study.png"


@dataclass(frozen=True)
class RunDir:
    """A run directory's paths. Constructing one touches nothing on disk."""

    path: Path

    def __init__(self, path: str | os.PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    # ------------------------------------------------------------------ written by encoderlab
    @property
    def record(self) -> Path:
        return self.path / "run.json"

    @property
    def lock(self) -> Path:
        return self.path / "run.lock"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def task(self) -> Path:
        return self.path / "task.json"

    @property
    def label_map(self) -> Path:
        return self.path / "label_map.json"

    @property
    def tokenizer(self) -> Path:
        return self.path / "tokenizer"

    @property
    def encoder(self) -> Path:
        return self.path / "encoder"

    @property
    def sentence_transformers(self) -> Path:
        """The encoder with its pooling as a directory ``SentenceTransformer(path)`` loads (contrastive runs)."""
        return self.path / "sentence_transformers"

    @property
    def mlm_head(self) -> Path:
        return self.path / "mlm_head.safetensors"

    @property
    def generator(self) -> Path:
        """ELECTRA's generator, kept beside the exported discriminator: ``RunDir(run.generator)`` has its
        ``encoder`` export and ``mlm_head``, so it loads as a pre-training run's encoder and head do."""
        return self.path / "generator"

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT_FILE

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    # ------------------------------------------------------------------ written by Hydra / Lightning
    @property
    def hydra(self) -> Path:
        return self.path / HYDRA_DIR

    @property
    def config(self) -> Path:
        return self.hydra / "config.yaml"

    @property
    def hydra_runtime(self) -> Path:
        return self.hydra / "hydra.yaml"

    @property
    def overrides(self) -> Path:
        return self.hydra / "overrides.yaml"

    @property
    def curves(self) -> Path:
        return self.path / CSV_DIR / "metrics.csv"

    @property
    def logged_hparams(self) -> Path:
        return self.path / CSV_DIR / "hparams.yaml"

    # ------------------------------------------------------------------ what makes a run
    def is_run(self) -> bool:
        """A run directory: what ``encoderlab-train`` leaves from its first second (run.json or the config)."""
        return self.path.is_dir() and (self.record.is_file() or self.config.is_file())

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:  # a RunDir is a path: Path(run), open(run / ...), RunDir(run)
        return str(self.path)
