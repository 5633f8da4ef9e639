"""Goal 1 — MLM pre-training throughput on CPU: encoderlab vs transformers BertForMaskedLM (sdpa).

BERT-mini shape (4 layers, hidden 256, 4 heads, vocab 30,522), seq 128, batch 32, fp32, dropout 0.1, fused AdamW
(the default of encoderlab's optimizer config and of transformers' Trainer; same parameter groups on both
sides: no weight decay on biases, norms, embeddings). One timed call = one
optimizer step: forward, backward, ``optimizer.step()``, ``zero_grad``. Tokens/s counts every input token
(B·S). Both sides start from the same weights; the script first checks that they compute the same loss.

    python benchmarks/bench_pretrain_cpu.py                 # 2 warm-up + 5 measured steps per side
    python benchmarks/bench_pretrain_cpu.py --repeats 15    # tighter medians
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _common import (
    copy_encoder_to_hf,
    copy_mlm_head_to_hf,
    hf_bert_config,
    hf_model,
    measure,
    print_table,
    summarize,
    write_json,
)

from encoderlab.adapt.param_groups import param_groups
from encoderlab.models.encoder import build
from encoderlab.models.heads import MaskedLMHead
from encoderlab.models.kernels import set_cpu_kernels
from encoderlab.tasks.masked_lm import masked_lm_loss
from encoderlab.training.allocator import apply_allocator
from encoderlab.training.kernel_calibration import CUSTOM, PLAIN, calibrate


def mlm_batch(batch_size: int, seq_len: int, vocab_size: int, mlm_probability: float, seed: int) -> dict:
    """Packed (no padding) MLM batch: ~15 % of positions carry a label, 80/10/10 mask/random/keep."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab_size, (batch_size, seq_len), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    selected = torch.rand(batch_size, seq_len, generator=g) < mlm_probability
    selected[:, 0] = selected[:, -1] = False
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    u = torch.rand(batch_size, seq_len, generator=g)
    inputs = ids.masked_fill(selected & (u < 0.8), 103)
    inputs = torch.where(
        selected & (u >= 0.9), torch.randint_like(ids, 1000, vocab_size, generator=g), inputs
    )
    return {"input_ids": inputs, "attention_mask": torch.ones_like(ids), "labels": labels}


def calibrate_as_a_run(encoder, batch_size: int, seq_len: int):
    """The kernel calibration a pre-training run makes: the layers plus the MLM head's vocabulary projection
    at the 15 % of positions it predicts."""
    width = encoder.embeddings.word_embeddings.embedding_dim
    projection = (int(0.15 * batch_size * seq_len), width, encoder.config.vocab_size)
    return calibrate(encoder, batch_size, seq_len, True, {}, decoder=projection)


def plain_mlm_loss(encoder, head, batch) -> torch.Tensor:
    """The unoptimised path: every position through every layer, then select (the equivalence reference)."""
    hidden = encoder(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))
    selected = batch["labels"] != -100
    return F.cross_entropy(head(hidden[selected]), batch["labels"][selected])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab-size", type=int, default=30522)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument(
        "--no-fused-adamw",
        action="store_true",
        help="the per-tensor AdamW on both sides (default: fused on both, as encoderlab and the Trainer use)",
    )
    ap.add_argument("--no-ablation", action="store_true", help="skip the encoderlab plain-path row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--allocator",
        choices=("retain", "system"),
        default="retain",
        help="kernels.allocator for the whole process, so both sides (default: retain, what a run does)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    shape = dict(layers=args.layers, hidden=args.hidden, heads=args.heads)

    encoder = build(args.vocab_size, **shape)
    head = MaskedLMHead(encoder)
    hf = hf_model("BertForMaskedLM", hf_bert_config(args.vocab_size, **shape))
    copy_encoder_to_hf(encoder, hf)
    copy_mlm_head_to_hf(head, hf)
    batch = mlm_batch(args.batch_size, args.seq_len, args.vocab_size, 0.15, args.seed)

    # Same model, same loss: eval mode (no dropout), same weights, same batch.
    with torch.no_grad():
        for m in (encoder, head, hf):
            m.eval()
        ours_loss = masked_lm_loss(encoder, head, batch).item()
        hf_loss = hf(**batch).loss.item()
        for m in (encoder, head, hf):
            m.train()
    print(f"same weights, eval mode: encoderlab loss {ours_loss:.6f}, transformers loss {hf_loss:.6f}")
    assert abs(ours_loss - hf_loss) < 1e-4 * max(1.0, abs(hf_loss)), (
        "the two sides do not compute the same loss"
    )

    def optimizer(model):
        return torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4, fused=not args.no_fused_adamw)

    ours_model = torch.nn.ModuleDict({"encoder": encoder, "head": head})
    ours_opt = optimizer(ours_model)
    hf_opt = optimizer(hf)

    # What a run does at its start (kernels=auto): keep freed memory (process-wide, so transformers gets it
    # too), then measure the kernels on this machine, at these shapes.
    print(f"allocator: {apply_allocator(args.allocator)} (both sides)")
    choice, timings = calibrate_as_a_run(encoder, args.batch_size, args.seq_len)
    print(f"kernels chosen by calibration: {choice}; ms per layer pass: {timings}")

    def mlm_step(kernels, loss):
        def step():
            set_cpu_kernels(ours_model, **kernels)
            loss(encoder, head, batch).backward()
            ours_opt.step()
            ours_opt.zero_grad(set_to_none=True)

        return step

    def hf_step():
        hf(**batch).loss.backward()
        hf_opt.step()
        hf_opt.zero_grad(set_to_none=True)

    names = {
        "hf": "transformers BertForMaskedLM (sdpa), logits at every position",
        "ours": "encoderlab default (kernels=auto: calibrated; sparse MLM + sparse last layer)",
        "custom": "encoderlab kernels=custom (oneDNN, bits masks, math attention; sparse)",
        "plain": "encoderlab plain path (F.linear, F.dropout, SDPA, full last layer, MLM select)",
    }
    ours_step = mlm_step(choice, masked_lm_loss)
    sides = {names["hf"]: hf_step, names["ours"]: ours_step}
    if not args.no_ablation:
        if choice != CUSTOM:
            sides[names["custom"]] = mlm_step(CUSTOM, masked_lm_loss)
        sides[names["plain"]] = mlm_step(PLAIN, plain_mlm_loss)
    print(
        f"torch threads: {torch.get_num_threads()}; warm-up {args.warmup}, measured {args.repeats} per side"
    )
    times = measure(sides, args.warmup, args.repeats)
    tokens = args.batch_size * args.seq_len
    rows = [{"name": n, **summarize(t, tokens)} for n, t in times.items()]
    print_table(
        f"MLM pre-training step, CPU fp32, L{args.layers}/H{args.hidden}/A{args.heads}, V={args.vocab_size}, "
        f"seq {args.seq_len}, batch {args.batch_size}",
        rows,
        "tokens/s",
        names["hf"],
    )
    ratio = next(r["ratio"] for r in rows if r["name"] == names["ours"])
    print(f"\ngoal ≥ 4.00x transformers: {'MET' if ratio >= 4 else 'NOT MET'} ({ratio:.2f}x)")
    write_json(
        "pretrain_cpu",
        {
            "args": vars(args),
            "loss_check": {"encoderlab": ours_loss, "transformers": hf_loss},
            "kernels": {"choice": choice, "timings_ms": timings, "allocator": args.allocator},
            "rows": rows,
            "ratio": ratio,
            "goal": 4.0,
            "met": ratio >= 4,
        },
    )


if __name__ == "__main__":
    main()
