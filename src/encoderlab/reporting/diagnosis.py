"""Diagnosing common training failures from what a run directory says about itself.

One small function per failure mode, each returning findings (severity, what is wrong, what to change):
the run failed or never finished; learning rate too high (loss NaN or rising); loss stuck at chance level;
encoder frozen and the head not learning; heavy label imbalance; tokenizer / encoder mismatch; a large
train/val gap (overfitting). The run is read through :class:`encoderlab.run.read.Run` (``run.json``,
``metrics.json``, ``task.json``, ``csv/metrics.csv``, the saved config's plain values); the training
file's labels are read when it is small and still where the config says.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from encoderlab.data.base import Targets
from encoderlab.data.readers import read_table
from encoderlab.data.tokenizer import load_tokenizer
from encoderlab.errors import UserError
from encoderlab.run.read import Run, load_run

EMBEDDING_KEY = "embeddings.word_embeddings.weight"  # the encoder's token embeddings (rows = vocabulary)

SEVERITIES = ("error", "warning", "info")
MAX_DATA_BYTES = 50_000_000  # read the training file for label counts / [UNK] rates only below this
UNK_SAMPLE = 500

# Thresholds, named so the findings can quote them.
CHANCE_TOLERANCE = 0.05  # final loss within 5 % of ln(num_labels)
NOT_LEARNING_DROP = 0.05  # training loss fell by less than 5 %
RISE_FACTOR = 1.1  # the last quarter's training loss 10 % above the first quarter's
IMBALANCE_RATIO = 5.0  # most / least frequent label
ACC_F1_GAP = 0.2  # accuracy this far above macro-F1: the model leans on the majority class
TRAIN_VAL_GAP = 0.15  # train accuracy above val accuracy
VAL_LOSS_RISE = 1.2  # val loss this far above its minimum while training loss falls
UNK_RATE = 0.05
FROZEN_FRACTION = 0.05  # fewer trainable parameters than this fraction: a probe


@dataclass(frozen=True)
class Finding:
    check: str
    severity: str  # error | warning | info
    what: str
    fix: str


# ---------------------------------------------------------------------------------------- the run


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def is_classification(run: Run) -> bool:
    """A single-label classifier with known labels (what the chance-level and imbalance checks need)."""
    single_label = (Targets.CLASSES, Targets.PROMPTED_CLASSES, Targets.CLASS_PAIRS)
    return run.targets in single_label and bool(run.labels)


def learning_rate(run: Run) -> float | None:
    return _float(run.get("optimizer.lr"))


def init_source(run: Run) -> str | None:
    """Where the run's encoder weights came from (``scratch``, ``export``, ``huggingface``), as it recorded."""
    return (run.record.get("init") or {}).get("source")


def freeze_policy(run: Run) -> str | None:
    return (run.record.get("freeze") or {}).get("policy")


@cache
def _train_table(run: Run) -> dict[str, list] | None:
    """The training file's text and label columns, when it is local and small; else None."""
    train_file = run.get("data.train_file")
    if not isinstance(train_file, str):
        return None
    path = run.resolve_path(train_file)
    try:
        if not path.is_file() or path.stat().st_size > MAX_DATA_BYTES:
            return None
        columns = [str(run.get("data.text_column", "text")), str(run.get("data.label_column", "label"))]
        table = read_table(path, columns)
    except (UserError, OSError):
        return None
    limit = run.get("data.train_limit")
    if isinstance(limit, int):
        table = {k: v[:limit] for k, v in table.items()}
    return {"text": table[columns[0]], "label": table[columns[1]]}


def train_table(run: Run) -> dict[str, list] | None:
    return _train_table(run)


def label_counts(run: Run) -> Counter | None:
    table = train_table(run)
    return Counter(str(v) for v in table["label"]) if table else None


# ------------------------------------------------------------------------------------- helpers


def _quarters(values: list[float]) -> tuple[float, float]:
    """Mean of the first and of the last quarter (at least one point each)."""
    n = max(1, len(values) // 4)
    return sum(values[:n]) / n, sum(values[-n:]) / n


def _train_losses(run: Run) -> list[float]:
    return [v for _, v in run.series("train/loss", "train/loss_step", "train/loss_epoch")]


def _lr_text(run: Run) -> str:
    return f"optimizer.lr={learning_rate(run):g}" if learning_rate(run) is not None else "optimizer.lr"


def _is_frozen_probe(run: Run) -> bool:
    if freeze_policy(run) == "encoder":
        return True
    trainable, total = _float(run.metrics.get("params/trainable")), _float(run.metrics.get("params/total"))
    return bool(trainable is not None and total and trainable / total < FROZEN_FRACTION)


# --------------------------------------------------------------------------------------- checks


def check_status(run: Run) -> list[Finding]:
    status = run.record.get("status")
    if status == "failed":
        error = run.record.get("error") or "unknown error"
        return [
            Finding(
                "status",
                "error",
                f"training failed: {error}",
                f"fix what the error names ({run.dir.log.name} in the run directory has the traceback) and re-run",
            )
        ]
    if status == "running":
        return [
            Finding(
                "status",
                "warning",
                f"the run never finished (started {run.record.get('started')}): still running, or killed "
                "(out of memory, Ctrl-C, a preempted job)",
                f"if it was killed, resume it from {run.dir.last_checkpoint.relative_to(run.path)} (resume=RUN_DIR) or re-run; the "
                "metrics below are partial",
            )
        ]
    return []


def check_divergence(run: Run) -> list[Finding]:
    """Learning rate too high: a non-finite loss, or a training loss that rises."""
    fix = (
        f"lower the learning rate 10× ({_lr_text(run)} now), keep warmup (scheduler=linear_warmup "
        "scheduler.warmup_ratio=0.1) and gradient clipping (trainer.gradient_clip_val=1.0)"
    )
    error = str(run.record.get("error") or "")
    if "loss became" in error:
        # Training stopped itself on a NaN/Inf loss (StopOnNonFiniteLoss) before the value was logged.
        what = error.split(": ", 1)[-1].split(" — ")[0]
        return [Finding("divergence", "error", what, fix)]
    for name in ("train/loss", "train/loss_step", "train/loss_epoch", "val/loss"):
        for step, value in run.series(name):
            if not math.isfinite(value):
                return [Finding("divergence", "error", f"{name} became {value} at step {step}", fix)]
    for name in ("train/loss", "val/loss"):
        value = _float(run.metrics.get(name))
        if value is not None and not math.isfinite(value):
            return [Finding("divergence", "error", f"final {name} is {value}", fix)]
    losses = _train_losses(run)
    if len(losses) >= 4:
        first, last = _quarters(losses)
        if last > first * RISE_FACTOR:
            return [
                Finding(
                    "divergence",
                    "error",
                    f"training loss rose from {first:.3g} (first quarter) to {last:.3g} (last quarter): "
                    "training is diverging",
                    fix,
                )
            ]
    if is_classification(run):
        chance = math.log(len(run.labels))
        last = losses[-1] if losses else run.final("train/loss")
        if last is not None and chance > 0 and last > 2 * chance:
            return [
                Finding(
                    "divergence",
                    "warning",
                    f"final training loss {last:.3g} is over twice chance level (ln {len(run.labels)} = "
                    f"{chance:.3g}): confidently wrong predictions, typical of a too-high learning rate",
                    fix,
                )
            ]
    return []


def check_chance_level(run: Run) -> list[Finding]:
    """Loss stuck at ln(K): the model predicts the class prior and learned nothing from the text."""
    if not is_classification(run) or len(run.labels) < 2:
        return []
    chance = math.log(len(run.labels))
    losses = _train_losses(run)
    loss = losses[-1] if losses else run.final("train/loss")
    val_loss = run.final("val/loss")
    near = [x for x in (loss, val_loss) if x is not None and abs(x - chance) <= CHANCE_TOLERANCE * chance]
    if not near or (loss is not None and loss not in near):
        return []
    counts = label_counts(run)
    baseline = max(counts.values()) / sum(counts.values()) if counts else 1 / len(run.labels)
    acc = run.final("val/acc")
    if acc is not None and acc > baseline + 0.05:
        return []
    hints = ["check data.text_column / data.label_column point at the text and its labels"]
    if learning_rate(run) is not None and learning_rate(run) < 1e-5:
        hints.append(f"raise {_lr_text(run)} (2e-5–1e-4 to fine-tune, 1e-3 for a frozen encoder)")
    steps = run.get("trainer.max_steps")
    if isinstance(steps, int) and 0 < steps < 500:
        hints.append(f"train longer (trainer.max_steps={steps} now)")
    else:
        hints.append("train longer (trainer.max_epochs / trainer.max_steps)")
    if init_source(run) == "scratch":
        hints.append("start from a pre-trained encoder (init=pretrained init.path=... or init=minilm)")
    acc_text = (
        f", val/acc {acc:.3f} vs {baseline:.3f} by always predicting the majority class"
        if acc is not None
        else ""
    )
    return [
        Finding(
            "chance_level",
            "warning",
            f"loss is stuck at chance level: {loss if loss is not None else val_loss:.4g} ≈ ln "
            f"{len(run.labels)} = {chance:.4g}{acc_text}",
            "; ".join(hints),
        )
    ]


def check_frozen_head(run: Run) -> list[Finding]:
    """Encoder frozen (linear probe) and the head not learning."""
    if not _is_frozen_probe(run):
        return []
    trainable = _float(run.metrics.get("params/trainable"))
    if trainable == 0 and run.get("trainer.max_steps") == 0:
        return []  # nothing to train by design: a zero-shot prompt, nearest neighbours (method=knn)
    if trainable == 0:
        return [
            Finding(
                "frozen_head",
                "error",
                "no parameter trains (params/trainable = 0)",
                "the freeze policy froze the head too — use freeze=encoder (head trains) or freeze=bottom_k",
            )
        ]
    findings = []
    if init_source(run) == "scratch":
        findings.append(
            Finding(
                "frozen_head",
                "error",
                "the encoder is frozen but was never trained (init=scratch): the head sees random features",
                "freeze a pre-trained encoder (init=pretrained init.path=... or init=minilm), or train it "
                "(freeze=none)",
            )
        )
    losses = _train_losses(run)
    stalled = None
    if len(losses) >= 2:
        first, last = _quarters(losses)
        if first > 0 and (first - last) / first < NOT_LEARNING_DROP:
            stalled = f"training loss went from {first:.3g} to {last:.3g}"
    elif is_classification(run):
        loss = run.final("train/loss")
        chance = math.log(len(run.labels))
        if loss is not None and chance > 0 and abs(loss - chance) <= CHANCE_TOLERANCE * chance:
            stalled = f"training loss {loss:.3g} is at chance level (ln {len(run.labels)})"
    if stalled:
        lr = learning_rate(run)
        hints = []
        if lr is None or lr < 5e-4:
            hints.append(
                f"a head on a frozen encoder needs a larger learning rate: optimizer.lr=1e-3 ({_lr_text(run)} now)"
            )
        hints.append("train longer")
        hints.append("or unfreeze the top layers (freeze=bottom_k freeze.k=...) / everything (freeze=none)")
        findings.append(
            Finding(
                "frozen_head",
                "warning",
                f"encoder frozen and the head is not learning: {stalled}",
                "; ".join(hints),
            )
        )
    return findings


def check_label_imbalance(run: Run) -> list[Finding]:
    if not is_classification(run):
        return []
    fix = (
        "judge and select by macro-F1, not accuracy (optimized_metric=val/f1_macro); rebalance the training "
        "file (oversample the rare labels or downsample the common ones) or collect more rare-label examples"
    )
    findings = []
    counts = label_counts(run)
    if counts:
        every = {name: counts.get(name, 0) for name in run.labels} | dict(counts)
        ranked = sorted(every.items(), key=lambda kv: -kv[1])
        (top, n_top), (low, n_low) = ranked[0], ranked[-1]
        if n_low == 0 or n_top / n_low >= IMBALANCE_RATIO:
            share = n_top / sum(every.values())
            rarer = f"{n_top / n_low:.0f}× fewer" if n_low else "never in the training data"
            what = (
                f"heavy label imbalance in the training data: '{top}' has {n_top} examples ({share:.0%}), "
                f"'{low}' {n_low} ({rarer})"
            )
            findings.append(Finding("label_imbalance", "warning", what, fix))
    acc, f1 = run.final("val/acc"), run.final("val/f1_macro")
    if acc is not None and f1 is not None and acc - f1 >= ACC_F1_GAP:
        findings.append(
            Finding(
                "label_imbalance",
                "warning",
                f"val/acc {acc:.3f} but val/f1_macro {f1:.3f}: the model mostly predicts the common labels",
                fix,
            )
        )
    return findings


def check_tokenizer(run: Run) -> list[Finding]:
    """Tokenizer / encoder mismatch: vocabulary size against the embedding matrix, and [UNK] rate."""
    fix = (
        "use the tokenizer saved with the encoder: with init=pretrained / init=hf leave data.tokenizer "
        "unset (the init's tokenizer is used), or re-train the tokenizer and the encoder together"
    )
    error = str(run.record.get("error") or "")
    if "tokenizer vocabulary has" in error or "does not match the encoder config" in error:
        return [Finding("tokenizer", "error", f"tokenizer and encoder do not fit: {error}", fix)]
    try:
        location = run.tokenizer_location()
        if location is None:
            return []
        lowercase = run.get("data.lowercase")
        tokenizer = load_tokenizer(location, lowercase=lowercase if isinstance(lowercase, bool) else None)
    except (UserError, OSError):
        return []
    findings = []
    rows = _embedding_rows(run)
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    if rows is not None and rows != vocab:
        findings.append(
            Finding(
                "tokenizer",
                "error",
                f"the tokenizer ({location}) has {vocab} tokens but the checkpoint's embedding matrix has "
                f"{rows} rows: ids do not mean what the encoder learned",
                fix,
            )
        )
    table = train_table(run)
    unk = tokenizer.token_to_id("[UNK]")
    if table and unk is not None:
        encodings = tokenizer.encode_batch(
            [str(t) for t in table["text"][:UNK_SAMPLE]], add_special_tokens=False
        )
        total = sum(len(e.ids) for e in encodings)
        unks = sum(e.ids.count(unk) for e in encodings)
        if total and unks / total > UNK_RATE:
            findings.append(
                Finding(
                    "tokenizer",
                    "warning",
                    f"{unks / total:.0%} of the training text's tokens are [UNK] with the tokenizer in {location}: "
                    "it does not cover this data (another language or domain, or cased text and an uncased "
                    "vocabulary)",
                    "use an encoder whose tokenizer covers the data, check data.lowercase, or pre-train on this "
                    "kind of text (init=scratch trains a tokenizer on the training file)",
                )
            )
    return findings


def _embedding_rows(run: Run) -> int | None:
    path = run.dir.last_checkpoint
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        tensor = ckpt["state_dict"].get(f"encoder.{EMBEDDING_KEY}")
    except Exception:  # not a zip checkpoint, damaged, no state_dict: other tools report it
        return None
    return int(tensor.shape[0]) if tensor is not None else None


def check_train_val_gap(run: Run) -> list[Finding]:
    fix = (
        "stop earlier (checkpoints/best.ckpt keeps the best epoch by optimized_metric; lower "
        "trainer.max_epochs), regularise more (head.dropout, encoder.dropout, optimizer.weight_decay), "
        "freeze the lower layers (freeze=bottom_k freeze.k=2), or add training data"
    )
    findings = []
    train_acc, val_acc = run.final("train/acc"), run.final("val/acc")
    # Only a model that fits its training data can overfit it: train accuracy clearly above chance.
    chance_acc = 1 / len(run.labels) if run.labels else 0.0
    if (
        train_acc is not None
        and val_acc is not None
        and train_acc - val_acc >= TRAIN_VAL_GAP
        and train_acc >= chance_acc + TRAIN_VAL_GAP
    ):
        findings.append(
            Finding(
                "train_val_gap",
                "warning",
                f"large train/val gap: train/acc {train_acc:.3f} vs val/acc {val_acc:.3f} (overfitting)",
                fix,
            )
        )
    val = [v for _, v in run.series("val/loss") if math.isfinite(v)]
    losses = _train_losses(run)
    if len(val) >= 3:
        best = min(val)
        falling = len(losses) >= 2 and _quarters(losses)[1] < _quarters(losses)[0]
        if val[-1] >= best * VAL_LOSS_RISE and val.index(best) < len(val) - 1 and falling:
            findings.append(
                Finding(
                    "train_val_gap",
                    "warning",
                    f"val/loss rose from its minimum {best:.3g} (evaluation {val.index(best) + 1} of "
                    f"{len(val)}) to {val[-1]:.3g} while the training loss kept falling (overfitting)",
                    fix,
                )
            )
    return findings


CHECKS: tuple[Callable[[Run], list[Finding]], ...] = (
    check_status,
    check_divergence,
    check_chance_level,
    check_frozen_head,
    check_label_imbalance,
    check_tokenizer,
    check_train_val_gap,
)


def diagnose(run_dir: str | Path) -> list[Finding]:
    """Every check's findings for ``run_dir``, errors first."""
    run = load_run(run_dir)
    findings = [finding for check in CHECKS for finding in check(run)]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))
