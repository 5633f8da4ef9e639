"""Where the time of a CPU pre-training step goes: GFLOP/s against the CPU's fp32 peak, per kernel path.

BERT-mini MLM step (as ``bench_pretrain_cpu.py``: seq 128, batch 32, vocab 30,522, fp32, dropout 0.1, AdamW).
Prints (1) the CPU's fp32 peak from its clock and vector width (FMA units × lanes × 2 × GHz × cores), (2) the
step's FLOPs (counted by ``torch.utils.flop_counter`` on the plain-op path, the same arithmetic as every path)
and each kernel setting's step time, GFLOP/s and share of peak, (3) the matmul shapes of the step on MKL
(``F.linear``) and oneDNN, forward and backward, in GFLOP/s, and (4) the top operators of one step by self
CPU time under ``torch.profiler`` for the plain and the chosen path.

    python benchmarks/profile_cpu_step.py
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/profile_cpu_step.py   # AVX2 kernels only
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import write_json
from bench_pretrain_cpu import calibrate_as_a_run, mlm_batch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from encoderlab.adapt.param_groups import param_groups
from encoderlab.models.encoder import build
from encoderlab.models.heads import MaskedLMHead
from encoderlab.models.kernels import linear, set_cpu_kernels
from encoderlab.tasks.masked_lm import masked_lm_loss
from encoderlab.training.allocator import apply_allocator
from encoderlab.training.kernel_calibration import CUSTOM, PLAIN, cpu_identity


def peak_gflops(threads: int) -> tuple[float, str]:
    """fp32 FMA peak: 2 FMA pipes × lanes (16 with AVX-512, 8 with AVX2) × 2 FLOP × clock × cores in use."""
    identity = cpu_identity()
    mhz = 0.0
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            mhz = float(line.split(":")[1])
            break
    limits = " ".join(identity.get("isa_limits", {}).values()).lower()
    lanes = 16 if "avx512f" in identity["isa"] and "avx2" not in limits else 8
    peak = 2 * lanes * 2 * mhz / 1000 * threads
    return peak, f"{threads} cores × 2 FMA × {lanes} lanes × 2 × {mhz / 1000:.2f} GHz"


def timed(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_rows(shapes, repeats: int) -> list[dict]:
    rows = []
    for m, k, n in shapes:
        x = torch.randn(m, k, requires_grad=True)
        w = torch.randn(n, k, requires_grad=True)
        g = torch.randn(m, n)  # a dense output gradient, as in training (not sum()'s stride-0 ones)
        flops = 2 * m * k * n
        row = {"shape": f"{m}x{k} @ {k}x{n}"}
        for name, onednn in (("mkl", False), ("onednn", True)):

            def forward(onednn=onednn, x=x, w=w):
                with torch.no_grad():
                    linear(x, w, None, onednn)

            def both(onednn=onednn, x=x, w=w, g=g):
                linear(x, w, None, onednn).backward(g)
                x.grad = w.grad = None

            row[f"{name}_fwd"] = flops / timed(forward, 2, repeats) / 1e9
            row[f"{name}_fwd_bwd"] = 3 * flops / timed(both, 2, repeats) / 1e9
        rows.append(row)
    return rows


def top_ops(step, count: int) -> list[tuple[str, float, float]]:
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:count]
    return [(e.key, e.self_cpu_time_total / 1000, 100 * e.self_cpu_time_total / total) for e in ranked]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab-size", type=int, default=30522)
    ap.add_argument("--allocator", choices=("retain", "system"), default="retain", help="kernels.allocator")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"allocator: {apply_allocator(args.allocator)}")
    threads = torch.get_num_threads()
    peak, how = peak_gflops(threads)
    identity = cpu_identity()
    print(f"CPU: {identity['cpu']}; ISA {' '.join(identity['isa'])}; limits {identity.get('isa_limits', {})}")
    print(f"fp32 peak ≈ {peak:.0f} GFLOP/s ({how})")

    encoder = build(args.vocab_size, layers=4, hidden=256, heads=4)
    head = MaskedLMHead(encoder)
    model = torch.nn.ModuleDict({"encoder": encoder, "head": head})
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4)
    batch = mlm_batch(args.batch_size, args.seq_len, args.vocab_size, 0.15, 0)

    def step():
        masked_lm_loss(encoder, head, batch).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    set_cpu_kernels(model, **PLAIN)
    with FlopCounterMode(display=False) as counter:
        masked_lm_loss(encoder, head, batch).backward()
    opt.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    choice, timings = calibrate_as_a_run(encoder, args.batch_size, args.seq_len)
    print(f"step: {flops / 1e9:.1f} GFLOP (forward + backward, matmuls and attention); calibrated: {choice}")

    settings = {"plain": PLAIN, "custom": CUSTOM, "chosen": choice}
    for name in CUSTOM:
        settings[f"plain + {name}={CUSTOM[name]}"] = {**PLAIN, name: CUSTOM[name]}
    steps = {}
    for name, kernels in settings.items():
        set_cpu_kernels(model, **kernels)
        seconds = timed(step, 2, args.repeats)
        steps[name] = {"ms": 1000 * seconds, "gflops": flops / seconds / 1e9, "kernels": kernels}
        print(
            f"  {name:<28} {1000 * seconds:8.0f} ms/step  {flops / seconds / 1e9:6.1f} GFLOP/s "
            f"({100 * flops / seconds / 1e9 / peak:4.1f} % of peak)",
            flush=True,
        )

    m, masked = args.batch_size * args.seq_len, int(0.15 * args.batch_size * args.seq_len)
    shapes = [(m, 256, 768), (m, 256, 256), (m, 256, 1024), (m, 1024, 256), (masked, 256, args.vocab_size)]
    print("\nmatmuls of the step, GFLOP/s (fwd | fwd+bwd):")
    matmuls = matmul_rows(shapes, args.repeats)
    for r in matmuls:
        print(
            f"  {r['shape']:<22} MKL {r['mkl_fwd']:6.1f} | {r['mkl_fwd_bwd']:6.1f}   "
            f"oneDNN {r['onednn_fwd']:6.1f} | {r['onednn_fwd_bwd']:6.1f}"
        )

    profiles = {}
    for name in ("plain", "chosen"):
        set_cpu_kernels(model, **settings[name])
        profiles[name] = top_ops(step, 12)
        print(f"\ntop operators by self CPU time, {name} ({settings[name]}):")
        for key, ms, share in profiles[name]:
            print(f"  {key:<44} {ms:8.1f} ms  {share:5.1f} %")
    write_json(
        "profile_cpu_step",
        {
            "peak_gflops": peak,
            "peak_how": how,
            "step_gflop": flops / 1e9,
            "allocator": args.allocator,
            "calibration": {"choice": choice, "timings_ms": timings},
            "steps": steps,
            "matmuls": matmuls,
            "profiles": profiles,
        },
    )


if __name__ == "__main__":
    main()
