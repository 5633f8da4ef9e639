"""Does distilling an existing sentence encoder buy what eight minutes of MLM do not? A study, not a feature.

The demo's encoder (its block and tokenizer, read from a pre-training export) is trained from random weights
to reproduce MiniLM's sentence vectors (all-MiniLM-L6-v2, the ``interop`` extra) on SST-2's *unlabelled*
training sentences: cosine loss between a linear projection of its mean-pooled states and the teacher's
vector. The teacher's forward passes count in the wall-clock budget. Each distilled encoder, the export
itself (MLM) and the scratch control are then fine-tuned exactly as ``encoderlab-demo`` fine-tunes (1,000
sentences, 10 epochs, mean pooling, dropout 0.1, lr 1e-3), in one run:

    python benchmarks/study_distillation.py --export outputs/demo/RUN/pretrain/encoder            # 3 seeds x 6 min
    python benchmarks/study_distillation.py --export DIR --budget-minutes 2 --seeds 1 --finetune-seeds 42

The labels of SST-2's training split are never read by the distillation; its dev split is what the fine-tunes
report, as in the demo. The table goes to stdout and ``<out>/distillation.json``.

``--mlm-minutes M`` splits one budget between the two signals instead: for each seed the demo's own
pre-training runs for M minutes (MLM on wiki_en, that seed), then the distillation continues from those
weights rather than from random ones, so each seed's encoder has had M + ``--budget-minutes`` of pre-training
(each seed's MLM export is fine-tuned too, before distillation, as its own row):

    python benchmarks/study_distillation.py --mlm-minutes 6 --budget-minutes 2 --sentences 30000 --warmup 0.05
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import cpu_name
from study_objectives import train, without
from tokenizers import Tokenizer

from encoderlab.cli.demo import parse_args as demo_args
from encoderlab.cli.demo import stages
from encoderlab.data.readers import read_table
from encoderlab.embedding.embedder import Embedder
from encoderlab.formats.export import export_encoder, load_encoder, read_export_config
from encoderlab.models.encoder import Encoder
from encoderlab.models.heads import pool
from encoderlab.run.layout import RunDir


def unlabelled_sentences(data_dir: Path) -> list[str]:
    """SST-2's training sentences, the text column only: the labels are never read."""
    return read_table(data_dir / "sst2" / "train.tsv", ["text"])["text"]


def distil(
    export: Path,
    texts: list[str],
    teacher: Embedder,
    seed: int,
    budget_s: float,
    out: Path,
    *,
    from_weights: bool = False,
    peak_lr: float = 1e-3,
    warmup: float = 0.1,
) -> dict:
    """A student with the export's block (from random weights, or from the export's own with
    ``from_weights``), trained until the budget (teacher time included) is spent."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    order_rng = random.Random(seed)
    targets = torch.from_numpy(teacher.encode(texts, batch_size=64))  # unit-length vectors
    teacher_s = time.perf_counter() - started
    student = load_encoder(export) if from_weights else Encoder(read_export_config(export))
    tokenizer = Tokenizer.from_file(str(export / "tokenizer.json"))
    tokenizer.enable_truncation(64)
    ids = [torch.tensor(e.ids) for e in tokenizer.encode_batch(texts)]
    projection = torch.nn.Linear(student.config.hidden, targets.shape[1])
    params = [*student.parameters(), *projection.parameters()]
    optimizer = torch.optim.AdamW(params, lr=peak_lr, weight_decay=0.01)
    train_s = budget_s - teacher_s
    student.train()
    steps, loss = 0, torch.tensor(float("nan"))
    order = list(range(len(texts)))
    while time.perf_counter() - started - teacher_s < train_s:
        order_rng.shuffle(order)
        for start in range(0, len(order) - 63, 64):
            elapsed = time.perf_counter() - started - teacher_s
            if elapsed >= train_s:
                break
            fraction = elapsed / train_s  # warm-up over a share of the time left, then linear decay
            for group in optimizer.param_groups:
                group["lr"] = peak_lr * min(1.0, fraction / warmup) * (1.0 - fraction)
            rows = order[start : start + 64]
            batch = torch.nn.utils.rnn.pad_sequence([ids[i] for i in rows], batch_first=True)
            mask = (
                torch.arange(batch.shape[1])[None] < torch.tensor([len(ids[i]) for i in rows])[:, None]
            ).long()
            vectors = projection(pool(student(batch, mask), mask, "mean"))
            loss = (1 - F.cosine_similarity(vectors, targets[rows])).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
    export_encoder(student, export, out)
    return {
        "steps": steps,
        "teacher_seconds": teacher_s,
        "final_cosine_loss": float(loss),
        "encoder": str(out),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", type=Path, default=None, help="a pre-training export (block and tokenizer)")
    ap.add_argument(
        "--budget-minutes", type=float, default=6.0, help="distillation per encoder, teacher included"
    )
    ap.add_argument(
        "--mlm-minutes",
        type=float,
        default=0.0,
        help="the demo's MLM pre-training per seed first, the distillation continuing from its weights",
    )
    ap.add_argument("--seeds", default="1,2,3", help="distillation (and MLM) seeds")
    ap.add_argument("--finetune-seeds", default="42,1,2")
    ap.add_argument("--sentences", type=int, default=60000, help="unlabelled SST-2 training sentences used")
    ap.add_argument("--lr", type=float, default=1e-3, help="the distillation's peak learning rate")
    ap.add_argument("--warmup", type=float, default=0.1, help="its warm-up share of the training time")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.export is None and not args.mlm_minutes:
        ap.error("pass --export DIR (a pre-training export) or --mlm-minutes M (pre-train one per seed)")
    root = args.out or Path("outputs/distillation") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    root.mkdir(parents=True, exist_ok=True)
    data_dir = Path(os.environ.get("ENCODERLAB_DATA_DIR", "../shared/data"))
    plan = {name: overrides for name, _, overrides in stages(demo_args([]), root)}
    quiet = "trainer.enable_progress_bar=false"
    finetune_seeds = [int(s) for s in args.finetune_seeds.split(",")]

    def fine_tunes(label: str, overrides: list[str], seeds: list[int]) -> list[float]:
        return [
            train([*without(overrides, "seed"), f"seed={s}", quiet], root / f"{label}-finetune-{s}")[
                "val/acc"
            ]
            for s in seeds
        ]

    def from_export(path: Path | str) -> list[str]:
        """The demo's fine-tune, started from the encoder export at ``path``."""
        return [*without(plan["finetune"], "init.path"), f"init.path={path}"]

    def mlm_export(seed: int) -> Path:
        """The demo's pre-training stage for ``--mlm-minutes``, with this seed."""
        flags = ["--seed", str(seed), "--budget-minutes", str(args.mlm_minutes)]
        pretrain = {name: o for name, _, o in stages(demo_args(flags), root / f"mlm-{seed}")}["pretrain"]
        facts = train(pretrain, root / f"mlm-{seed}" / "pretrain")
        print(f"MLM, seed {seed}: {int(facts['budget/steps']):,} steps, val loss {facts['val/loss']:.2f}")
        return RunDir(root / f"mlm-{seed}" / "pretrain").encoder

    sentences = unlabelled_sentences(data_dir)
    random.Random(0).shuffle(sentences)
    sentences = sentences[: args.sentences]
    teacher = Embedder("minilm")
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        start = mlm_export(seed) if args.mlm_minutes else args.export
        facts = distil(
            start,
            sentences,
            teacher,
            seed,
            args.budget_minutes * 60,
            root / f"distil-{seed}",
            from_weights=bool(args.mlm_minutes),
            peak_lr=args.lr,
            warmup=args.warmup,
        )
        arm = f"MLM {args.mlm_minutes:g} min, then distilled" if args.mlm_minutes else "distilled"
        rows.append(
            {
                "arm": f"{arm}, seed {seed}",
                **facts,
                "val_acc": fine_tunes(f"distil{seed}", from_export(facts["encoder"]), finetune_seeds),
            }
        )
        print(rows[-1], flush=True)
        if args.mlm_minutes:  # the same weights before distillation: what the distillation adds to them
            alone = fine_tunes(f"mlm{seed}", from_export(start), finetune_seeds)
            rows.append({"arm": f"MLM {args.mlm_minutes:g} min alone, seed {seed}", "val_acc": alone})
    if args.export is not None:
        rows.append(
            {
                "arm": "MLM (the export given)",
                "val_acc": fine_tunes("mlm", from_export(args.export), finetune_seeds),
            }
        )
    # The control shares the tokenizer: the export's, or (the same corpus and vocabulary) the first seed's.
    tokenizer = args.export or Path(rows[0]["encoder"])
    scratch = [*without(plan["scratch"], "data.tokenizer"), f"data.tokenizer={tokenizer}"]
    rows.append({"arm": "scratch", "val_acc": fine_tunes("scratch", scratch, finetune_seeds)})

    floor = statistics.mean(rows[-1]["val_acc"])
    print(f"\nSST-2 dev accuracy ({cpu_name()}, {os.cpu_count()} CPUs), fine-tune seeds {finetune_seeds}:")
    print("| arm | steps | val acc mean | vs scratch | per fine-tune seed |\n|---|---|---|---|---|")
    for row in rows:
        accs = row["val_acc"]
        steps = f"{row['steps']:,}" if "steps" in row else "—"
        per_seed = " ".join(f"{a:.3f}" for a in accs)
        mean = statistics.mean(accs)
        print(f"| {row['arm']} | {steps} | {mean:.3f} | {100 * (mean - floor):+.1f} | {per_seed} |")
    summary = {
        "budget_minutes": args.budget_minutes,
        "mlm_minutes": args.mlm_minutes,
        "cpu": cpu_name(),
        "rows": rows,
    }
    (root / "distillation.json").write_text(json.dumps(summary, indent=2))
    print(f"\nruns and distillation.json in {root}")


if __name__ == "__main__":
    main()
