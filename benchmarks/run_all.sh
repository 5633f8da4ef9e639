#!/usr/bin/env bash
# Run every benchmark with its default (short, 2-core friendly) settings; JSON lands in benchmarks/results/.
# Usage: benchmarks/run_all.sh [--gpu]     (the Makefile's `make bench` calls this)
# Extra repetitions: run the scripts directly, e.g. python benchmarks/bench_pretrain_cpu.py --repeats 15.
set -euo pipefail
cd "$(dirname "$0")/.."
export ENCODERLAB_DATA_DIR="${ENCODERLAB_DATA_DIR:-../shared/data}"
PY="${PYTHON:-python}"
"$PY" benchmarks/bench_pretrain_cpu.py        # goal 1: MLM step, CPU, vs BertForMaskedLM
"$PY" benchmarks/bench_finetune_cpu.py        # goal 2: SST-2 fine-tuning, CPU, vs pad-to-128 loop
"$PY" benchmarks/bench_memory.py              # goal 4: peak RSS, corpus 1x vs 10x
"$PY" benchmarks/bench_data.py                # goal 5: tokenize-and-cache + loader vs model
"$PY" benchmarks/bench_shards.py              # token shards: tokenizing on 1 and 2 workers + streaming loader vs model
"$PY" benchmarks/bench_objectives_cpu.py      # objectives' step time relative to MLM
"$PY" benchmarks/bench_modern_cpu.py          # goal 6: modern block vs ModernBertForMaskedLM
if [[ "${1:-}" == "--gpu" ]]; then
  "$PY" benchmarks/bench_pretrain_gpu.py      # goal 3: BERT-base, bf16, compile, CUDA
else
  "$PY" benchmarks/bench_pretrain_gpu.py --device cpu --tiny   # goal 3 script smoke test (no GPU)
fi
