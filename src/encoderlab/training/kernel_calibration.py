"""Which CPU kernels are fastest for this encoder on this machine: a short measurement on the run's shapes.

One encoder layer (a copy: the run's weights and random state are untouched) runs forward and backward on
random hidden states of the run's sequence length, first on the plain PyTorch ops, then with one custom
kernel switched on at a time (oneDNN matmuls, ``torch.rand`` dropout masks, spelled-out attention with
dropout). A kernel is kept only when its median time beats the path so far by more than ``margin``, so the
choice is never slower than the plain path by more than the measurement's noise. Runs of a few passes each,
interleaved, so a change in the machine's load hits both sides alike.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

from encoderlab.files import read_json_object, write_json
from encoderlab.models.kernels import CPU_KERNELS, linear, set_cpu_kernels

PLAIN = {name: options[-1] for name, options in CPU_KERNELS.items()}  # "torch", "torch", "sdpa"
CUSTOM = {name: options[0] for name, options in CPU_KERNELS.items()}  # "onednn", "bits", "math"
# Environment variables that change which instructions the kernels use: part of the machine's identity.
ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def cpu_identity() -> dict:
    """The CPU model, the instruction sets that matter to the kernels, torch's version and thread count."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    identity = {
        "cpu": model,
        "isa": [f for f in ISA_FLAGS if f in flags],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    limits = {name: os.environ[name] for name in ISA_VARIABLES if os.environ.get(name)}
    if limits:
        identity["isa_limits"] = limits
    return identity


def layer_gflop(config, batch: int, seq: int) -> float:
    """Forward GFLOP of one encoder layer on ``batch`` sequences of ``seq`` tokens (matmuls only)."""
    h, i = config.hidden, config.intermediate
    width = 2 * i if config.ffn == "geglu" else i
    rows = batch * seq
    matmuls = 2 * rows * (4 * h * h + h * width + i * h)
    attention = 4 * batch * seq * seq * h
    return (matmuls + attention) / 1e9


def step_gflop(config, batch: int, seq: int, train: bool) -> float:
    """GFLOP of one layer's step: the forward, and in training the backward's two matmuls per matmul."""
    return layer_gflop(config, batch, seq) * (3 if train else 1)


def applicable(config, train: bool) -> list[str]:
    """The switches that change anything for this encoder: dropout ones only in training with dropout on."""
    names = ["linear"]
    if train and (config.dropout > 0 or config.attention_dropout > 0):
        names.append("dropout")
    if train and config.attention_dropout > 0:
        names.append("attention")
    return names


def _pass_ms(layer, x: torch.Tensor, settings: dict, train: bool) -> float:
    set_cpu_kernels(layer, **settings)
    started = time.perf_counter()
    if train:
        # A dense upstream gradient, as a real step's (sum()'s stride-0 one would add a copy to one side only).
        out = layer(x, None)
        out.backward(torch.ones_like(out))
        layer.zero_grad(set_to_none=True)
        x.grad = None
    else:
        with torch.no_grad():
            layer(x, None)
    return (time.perf_counter() - started) * 1000


def _decoder_pass_ms(x: torch.Tensor, weight: torch.Tensor, settings: dict, train: bool) -> float:
    started = time.perf_counter()
    y = linear(x, weight, None, settings["linear"] == "onednn")
    if train:
        y.backward(torch.ones_like(y))  # dense, as in _pass_ms
        x.grad = weight.grad = None
    return (time.perf_counter() - started) * 1000


def calibrate(
    encoder,
    batch: int,
    seq: int,
    train: bool,
    fixed: dict[str, str],
    max_gflop: float = 8.0,
    rounds: int = 5,
    margin: float = 0.03,
    timer: Callable[..., float] = _pass_ms,
    decoder: tuple[int, int, int] | None = None,
    decoder_timer: Callable[..., float] = _decoder_pass_ms,
) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
    """(choice, {switch: {option: median ms per pass}}) for ``encoder``'s layers on ``seq``-token inputs.

    ``fixed`` holds the switches the user forced; the others start plain and are tried one at a time. The
    batch is cut to fit ``max_gflop`` per pass (forward and backward), so a large model calibrates in seconds.
    ``decoder`` = (rows per batch, width, vocabulary) of a vocabulary projection the step also runs (an MLM
    head's): the linear switch is then decided on all the encoder's layers plus that projection (the same
    cut applied to its rows), as a step spends them, and its timings are those sums.
    """
    config = encoder.config
    per_sequence = step_gflop(config, 1, seq, train)
    rows = max(1, min(batch, int(max_gflop / per_sequence)))
    layer = copy.deepcopy(encoder.layers[len(encoder.layers) // 2]).train(train)
    for p in layer.parameters():
        p.requires_grad_(train)
    choice = {name: fixed.get(name, PLAIN[name]) for name in CPU_KERNELS}
    timings: dict[str, dict[str, float]] = {}
    with torch.random.fork_rng(devices=[]):
        x = torch.randn(rows, seq, config.hidden, requires_grad=train)
        projection = None
        if decoder is not None:
            decoder_rows, width, vocab = decoder
            cut_rows = max(1, decoder_rows * rows // batch)
            projection = (
                torch.randn(cut_rows, width, requires_grad=train),
                (torch.randn(vocab, width) * 0.02).requires_grad_(train),
            )
        for name in applicable(config, train):
            if name in fixed or choice[name] == CUSTOM[name]:
                continue
            sides = [dict(choice), {**choice, name: CUSTOM[name]}]
            times: list[list[float]] = [[], []]

            def step_ms(side: dict, name: str = name) -> float:
                ms = timer(layer, x, side, train)
                if name == "linear" and projection is not None:
                    ms = ms * len(encoder.layers) + decoder_timer(*projection, side, train)
                return ms

            for side in sides:  # a warm-up pass each: first-call allocations and kernel selection
                step_ms(side)
            for _ in range(rounds):
                for k, side in enumerate(sides):
                    times[k].append(step_ms(side))
            medians = [statistics.median(t) for t in times]
            timings[name] = {side[name]: round(ms, 3) for side, ms in zip(sides, medians, strict=True)}
            if medians[1] < medians[0] * (1 - margin):
                choice = sides[1]
    return choice, timings


def default_cache() -> Path:
    """The cache outside a training run (``encoderlab-embed``, the Python API): as ``paths.cache_dir``."""
    return Path(os.environ.get("ENCODERLAB_CACHE_DIR") or ".cache/encoderlab") / "kernels.json"


def measured_choice(
    encoder,
    batch: int,
    seq: int,
    train: bool,
    fixed: dict[str, str],
    cache: Path | None,
    min_gflop: float = 1.0,
    max_gflop: float = 8.0,
    decoder: tuple[int, int, int] | None = None,
) -> tuple[dict[str, str], dict]:
    """(kernels, how they were decided) for ``encoder`` on ``batch`` × ``seq`` inputs, training or not: the
    cached answer for this machine and shape, else a calibration (then cached); ``fixed`` switches stay."""
    defaults = {**CUSTOM, **fixed}
    gflop = step_gflop(encoder.config, batch, seq, train)
    if gflop < min_gflop:
        return defaults, {
            "how": f"not measured (a layer's step is {gflop:.2g} GFLOP, under kernels.min_gflop)"
        }
    machine = cpu_identity()
    key = _key(machine, encoder.config, batch, seq, train, fixed, decoder)
    cached = read_json_object(cache).get(key) if cache else None
    if cached and set(cached.get("choice", {})) == set(CPU_KERNELS):
        return cached["choice"], {"how": "cached", **_facts(cached)}
    choice, timings = calibrate(encoder, batch, seq, train, fixed, max_gflop=max_gflop, decoder=decoder)
    entry = {
        "choice": choice,
        "timings_ms": timings,
        "machine": machine,
        "shape": {"batch": batch, "seq": seq, "train": train, "decoder": decoder},
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if cache:
        # Read-modify-rename: two runs measuring at once lose at most one entry, never the file.
        write_json(cache, {**read_json_object(cache), key: entry})
    return choice, {"how": "measured", **_facts(entry)}


def _key(machine: dict, config, batch: int, seq: int, train: bool, fixed: dict, decoder=None) -> str:
    layer = {
        "hidden": config.hidden,
        "intermediate": config.intermediate,
        "heads": config.heads,
        "ffn": config.ffn,
        "bias": config.bias,
        "norm_first": config.norm_first,
        "dropout": config.dropout > 0,
        "attention_dropout": config.attention_dropout > 0,
    }
    what = {"machine": machine, "layer": layer, "batch": batch, "seq": seq, "train": train, "fixed": fixed}
    if decoder is not None:  # keys of runs without a vocabulary projection stay as they were
        what["decoder"] = list(decoder)
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def _facts(entry: dict) -> dict:
    return {k: entry[k] for k in ("timings_ms", "machine", "shape", "measured") if k in entry}
