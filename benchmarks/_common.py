"""Shared helpers for the side-by-side benchmarks (timing, tables, JSON, the transformers twins).

Benchmarks are scripts, not tests: run them as ``python benchmarks/<name>.py``. Each one runs both sides in
one process, warms each side up, then interleaves measured repetitions (A, B, A, B, ...) so that drift of the
machine hits both sides alike, and reports medians.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from encoderlab.training.kernel_calibration import cpu_identity

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_name() -> str:
    return cpu_identity()["cpu"]


def environment() -> dict:
    import numpy

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        **{f"cpu_{k}": v for k, v in cpu_identity().items() if k in ("isa", "isa_limits")},
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "loadavg_1_5_15": os.getloadavg(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        info["git_commit"] = ""
    return info


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(
    sides: dict[str, Callable[[], object]], warmup: int, repeats: int, device: str = "cpu"
) -> dict[str, list[float]]:
    """Seconds per call of each side: ``warmup`` untimed calls each, then ``repeats`` interleaved rounds."""
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(
            f"  warning: load average {load:.1f} > {os.cpu_count()} CPUs: other work competes; medians of "
            "interleaved rounds keep the ratio fair, absolute numbers will be low",
            flush=True,
        )
    for name, fn in sides.items():
        for _ in range(warmup):
            fn()
        sync(device)
        print(f"  warmed up: {name}", flush=True)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(repeats):
        # Alternate the order each round so no side always runs right after the other.
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            sync(device)
            t0 = time.perf_counter()
            sides[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def summarize(times: list[float], units_per_call: float) -> dict:
    med = statistics.median(times)
    return {
        "median_s": med,
        "min_s": min(times),
        "max_s": max(times),
        "repeats": len(times),
        "throughput": units_per_call / med,
    }


def print_table(title: str, rows: list[dict], unit: str, baseline: str) -> None:
    """rows: dicts with name, median_s, min_s, max_s, throughput; ratio is throughput / baseline's."""
    base = next(r for r in rows if r["name"] == baseline)["throughput"]
    machine = cpu_identity()
    limits = " ".join(f"{k}={v}" for k, v in machine.get("isa_limits", {}).items())
    print(
        f"\nCPU: {machine['cpu']}; ISA: {' '.join(machine['isa'])}{'; limited by ' + limits if limits else ''}"
    )
    print(title)
    header = (
        f"| {'variant':<58} | {unit:>14} | {'ms/step (median)':>16} | {'min–max ms':>15} | {'ratio':>6} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        r["ratio"] = r["throughput"] / base
        span = f"{r['min_s'] * 1e3:,.0f}–{r['max_s'] * 1e3:,.0f}"
        print(
            f"| {r['name']:<58} | {r['throughput']:>14,.1f} | {r['median_s'] * 1e3:>16,.1f} | {span:>15} "
            f"| {r['ratio']:>5.2f}x |"
        )


def write_json(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "env": environment(), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {path}")
    return path


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM) in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unique_parameters(*modules: nn.Module) -> list[nn.Parameter]:
    seen: dict[int, nn.Parameter] = {}
    for m in modules:
        for p in m.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


# --- the transformers twins ------------------------------------------------------------------------------


def hf_bert_config(
    vocab_size: int, layers: int, hidden: int, heads: int, dropout: float = 0.1, num_labels: int = 2
):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
        type_vocab_size=2,
        hidden_act="gelu",
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        layer_norm_eps=1e-12,
        num_labels=num_labels,
    )


def hf_model(cls_name: str, config) -> nn.Module:
    import transformers

    cls = getattr(transformers, cls_name)
    model = cls._from_config(config, attn_implementation="sdpa")
    assert model.config._attn_implementation == "sdpa", model.config._attn_implementation
    return model


def hf_key(ours: str) -> str:
    """encoderlab encoder parameter name → Hugging Face ``bert.*`` name (the explicit mapping table)."""
    table = {
        "attention.query": "attention.self.query",
        "attention.key": "attention.self.key",
        "attention.value": "attention.self.value",
        "attention.output": "attention.output.dense",
        "attention_norm": "attention.output.LayerNorm",
        "intermediate": "intermediate.dense",
        "output_norm": "output.LayerNorm",
        "output": "output.dense",
    }
    if ours.startswith("embeddings."):
        return "bert." + ours
    _, i, rest = ours.split(".", 2)  # layers.<i>.<rest>
    for k, v in table.items():
        if rest.startswith(k + "."):
            return f"bert.encoder.layer.{i}.{v}.{rest[len(k) + 1 :]}"
    raise KeyError(ours)


@torch.no_grad()
def copy_encoder_to_hf(encoder: nn.Module, hf: nn.Module) -> None:
    hf_params = dict(hf.named_parameters())
    for name, p in encoder.named_parameters():
        hf_params[hf_key(name)].copy_(p)


@torch.no_grad()
def copy_mlm_head_to_hf(head: nn.Module, hf: nn.Module) -> None:
    pred = hf.cls.predictions
    pred.transform.dense.weight.copy_(head.dense.weight)
    pred.transform.dense.bias.copy_(head.dense.bias)
    pred.transform.LayerNorm.weight.copy_(head.layer_norm.weight)
    pred.transform.LayerNorm.bias.copy_(head.layer_norm.bias)
    pred.bias.copy_(head.decoder.bias)
