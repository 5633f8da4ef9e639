"""What each pre-training objective costs per step on CPU, relative to BERT's MLM on the same encoder.

One timed call = one optimizer step (forward, backward, AdamW step, zero_grad) of the task's own loss on one
batch: ``mlm`` (15 % masked, the sparse MLM head), ``electra`` (the same masked batch through the generator at
1/4 width, its samples, then the discriminator over every token), ``clm`` (a causal encoder predicting every
next token). Whole-word and span masking train exactly like ``mlm`` (only the collator differs), so their
cost is the collator's, measured separately on a real tokenizer's word starts.

    python benchmarks/bench_objectives_cpu.py                   # BERT-mini shape, seq 128, batch 32
    python benchmarks/bench_objectives_cpu.py --preset tiny --seq-len 64 --batch-size 64 --vocab-size 4096
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import measure, print_table, write_json

from encoderlab.adapt.param_groups import param_groups
from encoderlab.data.collators import MLMCollator
from encoderlab.models.encoder import PRESETS, build
from encoderlab.models.heads import MaskedLMHead, ReplacedTokenHead
from encoderlab.models.kernels import vocab_cross_entropy
from encoderlab.tasks.causal_lm import next_token_logits
from encoderlab.tasks.electra import ElectraTask
from encoderlab.tasks.masked_lm import masked_lm_loss

SPECIALS = [0, 1, 2, 3, 4]  # pad, unk, cls, sep, mask
PAD, CLS, SEP, MASK = 0, 2, 3, 4


def token_blocks(batch_size: int, seq_len: int, vocab_size: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(len(SPECIALS), vocab_size, (batch_size, seq_len), generator=g)
    blocks[:, 0], blocks[:, -1] = CLS, SEP
    return list(blocks)


def collator(vocab_size: int, masking: str, word_starts: torch.Tensor | None, **kwargs) -> MLMCollator:
    return MLMCollator(
        PAD, MASK, vocab_size, SPECIALS, masking=masking, word_start_ids=word_starts, seed=0, **kwargs
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mini", choices=sorted(PRESETS))
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--vocab-size", type=int, default=30522)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = {**PRESETS[args.preset], "dropout": 0.1, "attention_dropout": 0.1}
    blocks = token_blocks(args.batch_size, args.seq_len, args.vocab_size, seed=0)
    keyed = list(enumerate(blocks))
    # One word in ~1.4 pieces, as WordPiece splits English text.
    word_starts = torch.rand(args.vocab_size, generator=torch.Generator().manual_seed(1)) < 0.7
    word_starts[SPECIALS] = True
    masked = collator(args.vocab_size, "token", None)(keyed)
    electra_batch = collator(args.vocab_size, "token", None, mask_replace_prob=1.0, random_replace_prob=0.0)(
        keyed
    )
    unmasked = collator(args.vocab_size, "none", None)(keyed)

    mlm_encoder = build(args.vocab_size, **shape)
    mlm_head = MaskedLMHead(mlm_encoder)
    electra_encoder = build(args.vocab_size, **shape)
    electra = ElectraTask(electra_encoder, ReplacedTokenHead(electra_encoder))
    clm_encoder = build(args.vocab_size, **shape, attention="causal")
    clm_head = MaskedLMHead(clm_encoder)

    def optimizer(*modules):
        model = torch.nn.ModuleList(modules)
        return torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4)

    mlm_opt = optimizer(mlm_encoder, mlm_head)
    electra_opt = optimizer(electra)
    clm_opt = optimizer(clm_encoder, clm_head)

    def mlm_step():
        masked_lm_loss(mlm_encoder, mlm_head, masked).backward()
        mlm_opt.step()
        mlm_opt.zero_grad(set_to_none=True)

    def electra_step():
        electra.losses(electra_batch)["loss"].backward()
        electra_opt.step()
        electra_opt.zero_grad(set_to_none=True)

    def clm_step():
        logits, targets = next_token_logits(clm_encoder, clm_head, unmasked)
        vocab_cross_entropy(logits, targets).backward()
        clm_opt.step()
        clm_opt.zero_grad(set_to_none=True)

    names = {
        "mlm": "mlm (BERT masking, sparse MLM head)",
        "electra": "electra (generator 1/4 width + discriminator, λ=50)",
        "clm": "clm (causal encoder, every next token)",
    }
    sides = {names["mlm"]: mlm_step, names["electra"]: electra_step, names["clm"]: clm_step}
    print(
        f"torch threads: {torch.get_num_threads()}; warm-up {args.warmup}, measured {args.repeats} per side"
    )
    times = measure(sides, args.warmup, args.repeats)
    tokens = args.batch_size * args.seq_len
    rows = []
    for name, measured in times.items():
        med = sorted(measured)[len(measured) // 2]
        rows.append(
            {
                "name": name,
                "median_s": med,
                "min_s": min(measured),
                "max_s": max(measured),
                "repeats": len(measured),
                "throughput": tokens / med,
            }
        )
    print_table(
        f"Pre-training step by objective, CPU fp32, preset {args.preset}, V={args.vocab_size}, "
        f"seq {args.seq_len}, batch {args.batch_size} (ratio = tokens/s relative to mlm)",
        rows,
        "tokens/s",
        names["mlm"],
    )
    electra_params = sum(p.numel() for p in electra.generator.parameters() if p.requires_grad)
    shared = sum(p.numel() for p in electra_encoder.embeddings.parameters())
    print(
        f"\nELECTRA's generator: {electra_params - shared:,} parameters of its own "
        f"(the discriminator: {electra_encoder.num_parameters():,}); the step costs "
        f"{1 / next(r['ratio'] for r in rows if r['name'] == names['electra']):.2f}x an MLM step."
    )

    # The masking strategies train identically; what differs is the collator's time per batch.
    collators = {
        "token": collator(args.vocab_size, "token", None),
        "whole_word": collator(args.vocab_size, "whole_word", word_starts),
        "span": collator(args.vocab_size, "span", word_starts),
        "none": collator(args.vocab_size, "none", None),
    }
    collate_ms = {}
    for name, collate in collators.items():
        collate(keyed)
        started = time.perf_counter()
        for _ in range(10):
            collate(keyed)
        collate_ms[name] = (time.perf_counter() - started) / 10 * 1e3
    step_ms = next(r["median_s"] for r in rows if r["name"] == names["mlm"]) * 1e3
    print("\ncollator time per batch (one process; the loader runs it while the model trains with workers):")
    for name, ms in collate_ms.items():
        print(f"  {name:<11} {ms:7.1f} ms  ({100 * ms / step_ms:4.1f} % of an MLM step)")
    write_json(
        "objectives_cpu",
        {"args": vars(args), "rows": rows, "collator_ms": collate_ms, "generator_parameters": electra_params},
    )


if __name__ == "__main__":
    main()
