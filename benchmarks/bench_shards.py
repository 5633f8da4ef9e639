"""Token shards (data=sharded_corpus): sharded tokenization on 1 and 2 workers, and the streaming loader,
against what the model consumes.

1. Tokenize into shards: ``--mb`` MB of wiki_en train → ``encoderlab.data.shards.build_shards`` with 1 worker
   and with 2 (a fresh cache directory each time; the tokenizer is given, so only tokenizing is timed; the
   time includes litdata starting its workers and writing the chunks). In MB of raw text/s and tokens/s.
   The validation split is a 50 kB file; the MB/s counts all text read.
2. Loader: ``ShardedCorpusDataModule.train_dataloader()`` (litdata StreamingDataset → ``[CLS] block [SEP]`` →
   ``MLMCollator``, shuffled) with ``num_workers`` 0 (in the training process) and 2, in tokens/s.
3. Model: encoderlab's CPU MLM step (BERT-mini, batch 32 × 128) in tokens/s, from
   ``results/pretrain_cpu.json`` when present, else measured here (3 steps) — as bench_data.py does.

Goal: each stage ≥ 10x the model (the data pipeline is never the bottleneck). The full measurement (an idle
machine, 2 cores):

    ENCODERLAB_DATA_DIR=../shared/data python benchmarks/bench_shards.py --mb 40 --repeats 3

A smoke run (seconds): ``python benchmarks/bench_shards.py --quick``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from _common import write_json
from bench_data import minilm_tokenizer_dir, model_tokens_per_s

from encoderlab.data.shards import CorpusSource, ShardSpec, build_shards
from encoderlab.data.streaming_corpus import ShardedCorpusDataModule


def sample_corpus(wiki: Path, mb: float, out: Path) -> Path:
    """The first ``mb`` MB of ``wiki``, cut at a line end."""
    with open(wiki, "rb") as src:
        raw = src.read(int(mb * 1e6))
    out.write_bytes(raw[: raw.rfind(b"\n") + 1])
    return out


def tokenize(spec: ShardSpec, workers: int, cache: str, piece_bytes: int) -> dict:
    t0 = time.perf_counter()
    shards = build_shards(spec, cache, workers=workers, piece_bytes=piece_bytes)
    seconds = time.perf_counter() - t0
    assert not shards.reused
    splits = shards.manifest["splits"].values()
    return {
        "workers": shards.manifest["build"]["workers"],
        "seconds": seconds,
        "bytes": sum(s["bytes"] for s in splits),
        "tokens": sum(s["tokens"] for s in splits),
        "location": shards.location,
    }


def loader_tokens_per_s(location: str, args, num_workers: int) -> float:
    trainer = SimpleNamespace(
        current_epoch=0,
        fit_loop=SimpleNamespace(
            epoch_loop=SimpleNamespace(batch_progress=SimpleNamespace(current=SimpleNamespace(processed=0)))
        ),
    )
    dm = ShardedCorpusDataModule(
        shards=location,
        max_seq_len=args.seq_len,
        batch_size=args.batch_size,
        num_workers=num_workers,
        seed=0,
    )
    dm.trainer = trainer
    dm.prepare()
    it = iter(dm.train_dataloader())
    next(it)  # workers started and the first chunk opened outside the timing
    t0, tokens = time.perf_counter(), 0
    for n, batch in enumerate(it, start=1):
        tokens += batch["input_ids"].numel()
        if n == args.loader_batches:
            break
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("ENCODERLAB_DATA_DIR", "../shared/data"))
    ap.add_argument("--mb", type=float, default=20.0, help="MB of wiki_en/train.txt to tokenize")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loader-batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--piece-mb", type=float, default=2.0, help="text per unit of work (balances workers)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 0.5 MB, 1 repeat, 20 batches")
    args = ap.parse_args()
    if args.quick:
        args.mb, args.repeats, args.loader_batches, args.piece_mb = 0.5, 1, 20, 0.1
    wiki = Path(args.data_dir) / "wiki_en" / "train.txt"
    val = Path(args.data_dir) / "wiki_en" / "valid.txt"
    piece_bytes = int(args.piece_mb * 1e6)

    with tempfile.TemporaryDirectory() as tmp:
        sample = sample_corpus(wiki, args.mb, Path(tmp) / "sample.txt")
        # A small validation file: the timing is the training text's (a val split is one piece of work).
        val = sample_corpus(val, 0.05, Path(tmp) / "val.txt")
        spec = ShardSpec(
            CorpusSource((str(sample),)), CorpusSource((str(val),)), tokenizer=minilm_tokenizer_dir()
        )
        runs: dict[int, list[dict]] = {1: [], 2: []}
        for r in range(args.repeats):  # interleaved: drift of the machine hits both alike
            for workers in (1, 2):
                run = tokenize(spec, workers, f"{tmp}/cache-{workers}-{r}", piece_bytes)
                runs[workers].append(run)
                print(
                    f"  shard {run['bytes'] / 1e6:.1f} MB on {run['workers']} worker(s): {run['seconds']:.2f} s, "
                    f"{run['tokens']:,} tokens",
                    flush=True,
                )
        location = runs[2][0]["location"]
        loader = {w: [loader_tokens_per_s(location, args, w) for _ in range(args.repeats)] for w in (0, 2)}

    model_tps, model_src = model_tokens_per_s()
    rows = [
        {"stage": "model: encoderlab MLM step (CPU, BERT-mini)", "tokens_per_s": model_tps, "mb_per_s": None}
    ]
    for workers, measured in runs.items():
        seconds = statistics.median(r["seconds"] for r in measured)
        rows.append(
            {
                "stage": f"tokenize into shards, {workers} worker(s) (read + WordPiece + write chunks)",
                "tokens_per_s": measured[0]["tokens"] / seconds,
                "mb_per_s": measured[0]["bytes"] / 1e6 / seconds,
            }
        )
    for workers, measured in loader.items():
        rows.append(
            {
                "stage": f"loader: shards → blocks → MLM collator, num_workers={workers}",
                "tokens_per_s": statistics.median(measured),
                "mb_per_s": None,
            }
        )
    print(f"\nShards vs model, {runs[1][0]['bytes'] / 1e6:.1f} MB of wiki_en text, median of {args.repeats}")
    print(f"| {'stage':<72} | {'MB text/s':>9} | {'tokens/s':>12} | {'x model':>7} |")
    print(f"|{'-' * 74}|{'-' * 11}|{'-' * 14}|{'-' * 9}|")
    for r in rows:
        r["x_model"] = r["tokens_per_s"] / model_tps
        mb = f"{r['mb_per_s']:.2f}" if r["mb_per_s"] else "–"
        print(f"| {r['stage']:<72} | {mb:>9} | {r['tokens_per_s']:>12,.0f} | {r['x_model']:>6.1f}x |")
    print(f"  (model throughput from {model_src})")
    speedup = rows[1]["tokens_per_s"] and rows[2]["tokens_per_s"] / rows[1]["tokens_per_s"]
    print(f"  2 workers tokenize {speedup:.2f}x as fast as 1")
    met = all(r["x_model"] >= 10 for r in rows[1:])
    print(f"\ngoal: each stage ≥ 10x the model: {'MET' if met else 'NOT MET'}")
    if not args.quick:
        write_json(
            "shards",
            {
                "args": vars(args),
                "model_source": model_src,
                "tokenize_runs": {str(k): [{**r, "location": None} for r in v] for k, v in runs.items()},
                "loader_runs_tokens_per_s": {str(k): v for k, v in loader.items()},
                "rows": rows,
                "tokenize_speedup_2_vs_1": speedup,
                "met": met,
            },
        )


if __name__ == "__main__":
    main()
