"""Goal 3 — MLM pre-training throughput on a GPU: encoderlab vs transformers BertForMaskedLM (SDPA + compile).

BERT-base shape (12 layers, hidden 768, 12 heads, vocab 30,522), seq 128, batch 256, bf16 autocast, fused AdamW,
``torch.compile`` on both sides (``nn.Module.compile()``: in place, state_dict keys unchanged). MFU counts the
full-vocabulary MLM FLOPs for every variant, 6·(12·L·H² + H² + H·V) + 12·L·S·H per token, over the peak
(989 TFLOP/s dense bf16, H100 SXM; ``--peak-tflops`` for other cards), so MFU compares like with like.

Variants: transformers (logits at every position); encoderlab with a boolean select of the masked positions
(``labels != -100``, the default data path); encoderlab with a fixed count of masked positions per sequence
(``batch["masked_positions"]``, a gather: static shapes, no host sync).

    python benchmarks/bench_pretrain_gpu.py                        # on CUDA
    python benchmarks/bench_pretrain_gpu.py --device cpu --tiny    # smoke test of the script itself
"""

from __future__ import annotations

import argparse
import contextlib

import torch
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
from encoderlab.tasks.masked_lm import masked_lm_loss

BASE = dict(layers=12, hidden=768, heads=12, vocab_size=30522, seq_len=128, batch_size=256)
TINY = dict(layers=2, hidden=128, heads=2, vocab_size=1000, seq_len=32, batch_size=8)


def flops_per_token(layers: int, hidden: int, vocab_size: int, seq_len: int) -> int:
    params_flops = 6 * (12 * layers * hidden**2 + hidden**2 + hidden * vocab_size)
    return params_flops + 12 * layers * seq_len * hidden


def batches(batch_size, seq_len, vocab_size, device, seed=0):
    """(boolean-select batch, fixed-count batch): K = 15 % of S masked positions in every sequence."""
    g = torch.Generator().manual_seed(seed)
    k = max(1, round(0.15 * seq_len))
    ids = torch.randint(5, vocab_size, (batch_size, seq_len), generator=g)
    positions = torch.rand(batch_size, seq_len, generator=g).argsort(1)[:, :k].sort(1).values  # B,K
    labels = torch.full_like(ids, -100).scatter(1, positions, ids.gather(1, positions))
    inputs = ids.scatter(1, positions, 4)  # [MASK]
    select = {"input_ids": inputs, "labels": labels}
    fixed = {**select, "masked_positions": positions}
    move = lambda b: {n: t.to(device) for n, t in b.items()}  # noqa: E731
    return move(select), move(fixed)


def adamw(model, fused: bool):
    try:
        return torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4, fused=fused or None)
    except RuntimeError:  # fused not supported on this device/dtype
        return torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (smoke test on any device)")
    ap.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile both sides (default: on for CUDA, off otherwise)",
    )
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16", help="autocast dtype")
    ap.add_argument("--no-fused-adamw", action="store_true")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=None, help="default 5 with compile, 2 without")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--variants", default="hf,select,fixed", help="comma list of hf, select, fixed")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "error: no CUDA device; run on a GPU machine, or smoke-test with --device cpu --tiny"
        )
    compile_ = device.type == "cuda" if args.compile is None else args.compile
    warmup = args.warmup if args.warmup is not None else (5 if compile_ else 2)
    shape = dict(TINY if args.tiny else BASE)
    if args.batch_size:
        shape["batch_size"] = args.batch_size
    L, H, A, V, S, B = (
        shape[k] for k in ("layers", "hidden", "heads", "vocab_size", "seq_len", "batch_size")
    )
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    encoder = build(V, layers=L, hidden=H, heads=A, dropout=args.dropout, attention_dropout=args.dropout)
    head = MaskedLMHead(encoder)
    hf = hf_model("BertForMaskedLM", hf_bert_config(V, L, H, A, dropout=args.dropout))
    copy_encoder_to_hf(encoder, hf)
    copy_mlm_head_to_hf(head, hf)
    encoder.to(device), head.to(device), hf.to(device)
    select_batch, fixed_batch = batches(B, S, V, device)

    dtype = torch.bfloat16 if args.dtype == "bf16" else None

    def autocast():
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    with torch.no_grad(), autocast():
        for m in (encoder, head, hf):
            m.eval()
        ours_loss = masked_lm_loss(encoder, head, select_batch).item()
        hf_loss = hf(**select_batch).loss.item()
        for m in (encoder, head, hf):
            m.train()
    print(f"same weights, eval mode: encoderlab loss {ours_loss:.4f}, transformers loss {hf_loss:.4f}")

    if compile_:
        encoder.compile()
        head.compile()
        hf.compile()

    ours_model = torch.nn.ModuleDict({"encoder": encoder, "head": head})
    ours_opt, hf_opt = adamw(ours_model, not args.no_fused_adamw), adamw(hf, not args.no_fused_adamw)

    def ours_step(batch):
        def step():
            with autocast():
                loss = masked_lm_loss(encoder, head, batch)
            loss.backward()
            ours_opt.step()
            ours_opt.zero_grad(set_to_none=True)

        return step

    def hf_step():
        with autocast():
            loss = hf(**select_batch).loss
        loss.backward()
        hf_opt.step()
        hf_opt.zero_grad(set_to_none=True)

    tag = f"{'compile' if compile_ else 'eager'}, {args.dtype}"
    names = {
        "hf": f"transformers BertForMaskedLM, SDPA ({tag})",
        "select": f"encoderlab, masked positions by boolean select ({tag})",
        "fixed": f"encoderlab, fixed count per sequence, gather ({tag})",
    }
    fns = {"hf": hf_step, "select": ours_step(select_batch), "fixed": ours_step(fixed_batch)}
    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    if "hf" not in wanted:
        wanted.insert(0, "hf")
    sides = {names[v]: fns[v] for v in wanted}
    print(
        f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), "
        f"warm-up {warmup}, measured {args.repeats} per side"
    )
    times = measure(sides, warmup, args.repeats, device=str(device))
    tokens = B * S
    fpt = flops_per_token(L, H, V, S)
    rows = []
    for name, t in times.items():
        row = {"name": name, **summarize(t, tokens)}
        row["mfu"] = row["throughput"] * fpt / (args.peak_tflops * 1e12)
        rows.append(row)
    print_table(
        f"MLM pre-training step, L{L}/H{H}/A{A}, V={V}, seq {S}, batch {B}", rows, "tokens/s", names["hf"]
    )
    for r in rows:
        print(f"  MFU {r['mfu'] * 100:6.2f} %  {r['name']}")
    best = max(r["ratio"] for r in rows if r["name"] != names["hf"])
    print(
        f"\ngoal ≥ 1.50x transformers (BERT-base, CUDA): best variant {best:.2f}x"
        + ("" if device.type == "cuda" and not args.tiny else "  [smoke run: not a goal measurement]")
    )
    peak_mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    write_json(
        "pretrain_gpu" + ("_smoke" if args.tiny or device.type != "cuda" else ""),
        {
            "args": vars(args),
            "shape": shape,
            "compile": compile_,
            "flops_per_token": fpt,
            "loss_check": {"encoderlab": ours_loss, "transformers": hf_loss},
            "rows": rows,
            "best_ratio": best,
            "goal": 1.5,
            "peak_cuda_memory_gib": peak_mem,
        },
    )


if __name__ == "__main__":
    main()
