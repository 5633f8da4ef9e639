"""The modern block (RoPE, GeGLU, no biases, pre-LN, alternating local/global attention) on CPU: encoderlab's
``modern_*`` encoder vs transformers' ``ModernBertForMaskedLM`` of the same shape and the same weights.

One timed call = one MLM optimizer step (forward, backward, AdamW step, zero_grad) on a packed batch, fp32,
dropout 0.1. transformers runs with ``attn_implementation="sdpa"`` (flash attention does not run on CPU), in
two settings: its default (logits at every position) and ``sparse_prediction=True`` (logits at the masked
positions only, ModernBERT's own option). The script first checks that both compute the same loss.

    python benchmarks/bench_modern_cpu.py                           # modern_mini shape, seq 128, batch 32
    python benchmarks/bench_modern_cpu.py --preset modern_tiny --repeats 9
"""

from __future__ import annotations

import argparse

import torch
from _common import measure, print_table, summarize, write_json
from bench_pretrain_cpu import mlm_batch

from encoderlab.adapt.param_groups import param_groups
from encoderlab.extras import require
from encoderlab.formats import hf, hf_modernbert
from encoderlab.models.encoder import PRESETS, build
from encoderlab.models.heads import MaskedLMHead
from encoderlab.tasks.masked_lm import masked_lm_loss


def hf_twin(encoder, head, sparse: bool):
    """``ModernBertForMaskedLM`` holding exactly our encoder's and head's weights (through the export tables)."""
    transformers = require("transformers", for_="this benchmark")
    config = encoder.config
    fields = hf_modernbert.config_to_hf(config, ["ModernBertForMaskedLM"])
    fields.update(
        pad_token_id=0,
        bos_token_id=2,
        cls_token_id=2,
        eos_token_id=3,
        sep_token_id=3,
        sparse_prediction=sparse,
        embedding_dropout=config.dropout,
        mlp_dropout=config.dropout,
        attention_dropout=config.attention_dropout,
    )
    hf_config = transformers.ModernBertConfig(**fields, attn_implementation="sdpa")
    model = transformers.ModernBertForMaskedLM(hf_config)
    family = hf_modernbert.FAMILY
    own = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    tensors = hf.encoder_to_family(own, family.name_map(config), prefix=family.prefix)
    head_state = {k: v for k, v in head.state_dict().items() if k != "decoder.weight"}
    names = family.mlm_head_names(fields, config)
    tensors.update({names[k]: v.detach().clone() for k, v in head_state.items()})
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = {"decoder.weight"}  # tied to the token embeddings
    assert set(missing) <= tied and not unexpected, (missing, unexpected)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="modern_mini", choices=[p for p in PRESETS if p.startswith("modern")])
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
    shape = {**PRESETS[args.preset], "max_positions": max(args.seq_len, 512)}
    encoder = build(args.vocab_size, **shape)
    head = MaskedLMHead(encoder)
    batch = mlm_batch(args.batch_size, args.seq_len, args.vocab_size, 0.15, seed=0)
    twins = {sparse: hf_twin(encoder, head, sparse) for sparse in (False, True)}

    with torch.no_grad():
        for m in (encoder, head, *twins.values()):
            m.eval()
        ours_loss = masked_lm_loss(encoder, head, batch).item()
        hf_losses = {sparse: twin(**batch).loss.item() for sparse, twin in twins.items()}
        for m in (encoder, head, *twins.values()):
            m.train()
    print(f"same weights, eval mode: encoderlab loss {ours_loss:.6f}, transformers loss {hf_losses}")
    for loss in hf_losses.values():
        assert abs(ours_loss - loss) < 1e-4 * max(1.0, abs(loss)), (
            "the two sides do not compute the same loss"
        )

    ours_model = torch.nn.ModuleDict({"encoder": encoder, "head": head})
    optimizers = {
        "ours": torch.optim.AdamW(param_groups(ours_model, 0.01), lr=1e-4),
        **{s: torch.optim.AdamW(param_groups(t, 0.01), lr=1e-4) for s, t in twins.items()},
    }

    def ours_step():
        masked_lm_loss(encoder, head, batch).backward()
        optimizers["ours"].step()
        optimizers["ours"].zero_grad(set_to_none=True)

    def hf_step(sparse: bool):
        def step():
            twins[sparse](**batch).loss.backward()
            optimizers[sparse].step()
            optimizers[sparse].zero_grad(set_to_none=True)

        return step

    names = {
        False: "transformers ModernBertForMaskedLM (sdpa), every position",
        True: "transformers ModernBertForMaskedLM (sdpa), sparse_prediction",
        "ours": f"encoderlab {args.preset} (sparse MLM + sparse last layer)",
    }
    sides = {names[False]: hf_step(False), names[True]: hf_step(True), names["ours"]: ours_step}
    print(
        f"torch threads: {torch.get_num_threads()}; warm-up {args.warmup}, measured {args.repeats} per side"
    )
    times = measure(sides, args.warmup, args.repeats)
    tokens = args.batch_size * args.seq_len
    rows = [{"name": n, **summarize(t, tokens)} for n, t in times.items()]
    print_table(
        f"MLM step, modern block, CPU fp32, {args.preset} (L{shape['layers']}/H{shape['hidden']}), "
        f"V={args.vocab_size}, seq {args.seq_len}, batch {args.batch_size}",
        rows,
        "tokens/s",
        names[False],
    )
    ratio = next(r["ratio"] for r in rows if r["name"] == names["ours"])
    sparse_row = next(r for r in rows if r["name"] == names[True])
    print(
        f"\ngoal ≥ 2.00x transformers (its default): {'MET' if ratio >= 2 else 'NOT MET'} ({ratio:.2f}x); "
        f"against its sparse_prediction: {ratio / sparse_row['ratio']:.2f}x"
    )
    write_json(
        "modern_cpu",
        {
            "args": vars(args),
            "loss_check": {"encoderlab": ours_loss, "transformers": hf_losses},
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
