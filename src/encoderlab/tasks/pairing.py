"""Does the chosen task fit the data, the head and the metric to optimise? Checked before any training.

Nothing here knows a task, head or data set by name: each task declares the head class it sits on, the
targets its data must carry and a usage line (:class:`encoderlab.tasks.base.EncoderTask`); each data
module declares the targets its examples carry (:class:`encoderlab.data.base.Targets`). A mismatch is a
``UserError`` that names what goes together, so ``task=regress data=sst2`` or ``task=tag head=classifier``
fails in a line instead of deep inside a loss function.
"""

from __future__ import annotations

from torch import nn

# The built-in tasks, so that "which task reads this data?" can be answered for every data kind.
import encoderlab.tasks.causal_lm
import encoderlab.tasks.classification
import encoderlab.tasks.cloze
import encoderlab.tasks.contrastive
import encoderlab.tasks.distillation
import encoderlab.tasks.electra
import encoderlab.tasks.fitted_head
import encoderlab.tasks.masked_lm
import encoderlab.tasks.multilabel
import encoderlab.tasks.regression
import encoderlab.tasks.setfit
import encoderlab.tasks.setfit_library
import encoderlab.tasks.token_classification  # noqa: F401
from encoderlab.errors import UserError
from encoderlab.tasks.base import EncoderTask


def _declared_tasks(cls: type = EncoderTask) -> list[type[EncoderTask]]:
    found = []
    for sub in cls.__subclasses__():
        if "targets" in vars(sub):
            found.append(sub)
        found += _declared_tasks(sub)
    return found


def tasks_reading(targets) -> list[str]:
    """The ``task=`` options of the known tasks whose data carries ``targets``."""
    return sorted({f"task={t.kind}" for t in _declared_tasks() if t.targets is targets})


def task_class(task_factory) -> type[EncoderTask] | None:
    """The task class a ``task/`` partial builds; None for a factory function (nothing declared)."""
    func = getattr(task_factory, "func", task_factory)
    return func if isinstance(func, type) and issubclass(func, EncoderTask) else None


def check_data_fits(task: type[EncoderTask], datamodule) -> None:
    """The data's examples carry what the task learns from, in the form it learns from (``check_data``)."""
    if datamodule.targets is not task.targets:
        others = tasks_reading(datamodule.targets)
        hint = f"; for this data use {' or '.join(others)}" if others else ""
        raise UserError(
            f"task={task.kind} needs {task.targets.value}, but this data gives {datamodule.targets.value} — "
            f"{task.usage}{hint}"
        )
    # Windows of long documents reach only a head that pools them back into one vector per document.
    if getattr(datamodule, "long_documents", "truncate") == "window" and not getattr(
        task.head_kind, "pools_windows", False
    ):
        raise UserError(
            f"data.long_documents=window batches the windows of each document, which task={task.kind} does "
            f"not pool back per document — set data.long_documents=truncate ({task.usage})"
        )
    task.check_data(datamodule)


def build_head(
    head_factory, encoder: nn.Module, task: type[EncoderTask] | None, head_kwargs: dict
) -> nn.Module:
    """The configured head on ``encoder``, refused unless it is the kind of head ``task`` declares."""
    if task is None:  # a task built by a factory function declares nothing to check against
        return head_factory(encoder, **head_kwargs)
    try:
        head = head_factory(encoder, **head_kwargs)
    except TypeError as err:  # a head of another kind does not take this data's arguments
        raise UserError(
            f"the head does not fit task={task.kind} ({err}) — fix the task/head pair: {task.usage}"
        ) from None
    if not isinstance(head, task.head_kind):
        raise UserError(
            f"task={task.kind} needs a {task.head_kind.__name__} head, not a {type(head).__name__} — fix the "
            f"task/head pair: {task.usage}"
        )
    return head


def check_optimized_metric(task: EncoderTask, optimized_metric: str | None) -> None:
    """The metric the sweeper and the best checkpoint select by must be one this task logs."""
    if not optimized_metric:
        return
    logged = task.logged_metrics()
    if optimized_metric not in logged:
        shown = sorted(name for name in logged if name.startswith("val/"))
        raise UserError(
            f"optimized_metric={optimized_metric} is not logged by this task (it logs "
            f"{', '.join(shown)}, ...) — set optimized_metric (and optimized_mode), or use an experiment "
            "such as experiment=finetune_stsb / finetune_conll2003"
        )
