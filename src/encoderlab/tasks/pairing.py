"""Does the chosen task fit the head, the data and the metric to optimise? Checked before any training.

Every mismatch is a ``UserError`` naming the options that go together, so ``task=regress data=sst2`` or
``task=tag head=classifier`` fails in a line instead of deep inside a loss function.
"""

from __future__ import annotations

from torchmetrics import MetricCollection

from encoderlab.data.datamodules import TextClassificationDataModule
from encoderlab.data.multilabel import MultiLabelClassificationDataModule
from encoderlab.data.token_classification import TokenClassificationDataModule
from encoderlab.errors import UserError
from encoderlab.models.heads import TokenClassifier
from encoderlab.tasks.classification import SequenceClassificationTask
from encoderlab.tasks.multilabel import MultiLabelClassificationTask
from encoderlab.tasks.regression import SequenceRegressionTask
from encoderlab.tasks.token_classification import TokenClassificationTask

TAGGING = "task=tag head=token_classifier with word-tagged data (data=conll2003 or data=token_classification)"


def _data_kind(datamodule) -> str:
    if isinstance(datamodule, TokenClassificationDataModule):
        return "tags"
    if isinstance(datamodule, MultiLabelClassificationDataModule):
        return "multilabel"
    if isinstance(datamodule, TextClassificationDataModule):
        return "regression" if datamodule.regression else "classes"
    return "other"


# What each task needs from the data, and the fix to print when it gets something else.
NEEDS = {
    SequenceClassificationTask: (
        "classes",
        "task=classify needs labelled classes; for one numeric target (data.num_labels=1) use task=regress, "
        "for label sets data=multilabel_classification task=multilabel, for word tags " + TAGGING,
    ),
    SequenceRegressionTask: (
        "regression",
        "task=regress needs one numeric target per example — use data with data.num_labels=1 (e.g. data=stsb)",
    ),
    MultiLabelClassificationTask: (
        "multilabel",
        "task=multilabel needs label sets — use data=multilabel_classification",
    ),
    TokenClassificationTask: ("tags", "token classification needs " + TAGGING),
}


def logged_metrics(task) -> set[str]:
    """The names the task logs: its loss per stage and every metric of its metric collections."""
    names = {f"{stage}/loss" for stage in ("train", "val", "test")}
    for module in task.children():
        if isinstance(module, MetricCollection):
            names.update(module.keys(keep_base=False))
    return names


def check_task_fits(task_type: type, head, datamodule) -> None:
    """Raise a UserError when the task class, the head and the data do not go together (other tasks pass)."""
    if not isinstance(task_type, type):  # a factory function, not a task class: nothing to check
        return
    if isinstance(head, TokenClassifier) != issubclass(task_type, TokenClassificationTask):
        raise UserError(f"head=token_classifier and task=tag go together — use {TAGGING}")
    kind = _data_kind(datamodule)
    for listed, (needed, fix) in NEEDS.items():
        if task_type is listed and kind != needed:
            raise UserError(fix)
        if kind == needed and needed != "classes" and not issubclass(task_type, listed):
            raise UserError(f"this data set needs its own task: {fix}")


def check_optimized_metric(task, optimized_metric: str | None) -> None:
    """The metric the sweeper and the best checkpoint select by must be one this task logs."""
    if type(task) not in NEEDS or not optimized_metric:
        return
    logged = logged_metrics(task)
    if optimized_metric not in logged:
        shown = sorted(name for name in logged if name.startswith("val/"))
        raise UserError(
            f"optimized_metric={optimized_metric} is not logged by this task (it logs "
            f"{', '.join(shown)}, ...) — set optimized_metric (and optimized_mode), or use an experiment "
            "such as experiment=finetune_stsb / finetune_conll2003"
        )
