"""Which pre-training objective buys most in the same CPU budget? Each objective pre-trains the demo's encoder
for the same wall-clock minutes (``budget.minutes``: the schedule decays within it), then its export is
fine-tuned on SST-2 with several seeds, exactly as the demo fine-tunes (``encoderlab-demo``'s recipe).

    python benchmarks/study_objectives.py                                   # 5 objectives x 10 min, 3 seeds
    python benchmarks/study_objectives.py --minutes 3 --objectives mlm,electra --seeds 1

Every stage is one ``encoderlab-train`` command (printed); the table goes to stdout and to
``<out>/objectives.json``. A scratch row (same network and tokenizer, random weights) is the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from _common import cpu_name

from encoderlab.cli.demo import parse_args as demo_args
from encoderlab.cli.demo import stages
from encoderlab.run.layout import RunDir

OBJECTIVES = ("mlm", "wwm", "span", "electra", "clm")


def train(overrides: list[str], run_dir: Path) -> dict:
    command = [sys.executable, "-m", "encoderlab.train", *overrides, f"hydra.run.dir={run_dir}"]
    print("$ encoderlab-train " + " ".join(shlex.quote(o) for o in command[3:]), flush=True)
    started = time.perf_counter()
    if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
        raise SystemExit(f"stage failed: see {RunDir(run_dir).log}")
    metrics = json.loads(RunDir(run_dir).metrics.read_text())
    return {**metrics, "wall_seconds": time.perf_counter() - started}


def without(overrides: list[str], *keys: str) -> list[str]:
    return [o for o in overrides if o.split("=", 1)[0] not in keys]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--minutes", type=float, default=10.0, help="pre-training budget per objective")
    ap.add_argument("--seeds", default="1,2,3", help="fine-tuning seeds")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("demo_flags", nargs="*", help="encoderlab-demo flags for the recipe, after --")
    args = ap.parse_args()
    root = args.out or Path("outputs/objectives") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    recipe = demo_args(args.demo_flags)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []

    def fine_tunes(label: str, overrides: list[str], extra: dict) -> None:
        accuracies = []
        for seed in seeds:
            metrics = train([*without(overrides, "seed"), f"seed={seed}"], root / f"{label}-finetune-{seed}")
            accuracies.append(metrics["val/acc"])
        rows.append({"objective": label, **extra, "val_acc": accuracies})
        mean = statistics.mean(accuracies)
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        print(f"{label}: SST-2 dev accuracy {mean:.3f} ± {spread:.3f} over seeds {seeds}", flush=True)

    for objective in args.objectives.split(","):
        pretrain_dir = root / f"{objective}-pretrain"
        plan = {name: overrides for name, _, overrides in stages(recipe, pretrain_dir.parent)}
        pretrain = [
            *without(plan["pretrain"], "trainer.max_steps"),
            f"objective={objective}",
            f"budget.minutes={args.minutes}",
            "trainer.max_steps=-1",
            "trainer.val_check_interval=2000",
            "trainer.enable_progress_bar=false",
        ]
        metrics = train(pretrain, pretrain_dir)
        export = RunDir(pretrain_dir).encoder
        finetune = [
            *without(plan["finetune"], "init.path"),
            f"init.path={export}",
            "trainer.enable_progress_bar=false",
        ]
        fine_tunes(
            objective,
            finetune,
            {"steps": metrics.get("budget/steps"), "pretrain_minutes": metrics.get("budget/minutes")},
        )
    scratch = [*without(plan["scratch"], "data.tokenizer"), f"data.tokenizer={export}"]
    fine_tunes("scratch", [*scratch, "trainer.enable_progress_bar=false"], {"steps": 0})

    print(
        f"\nSST-2 dev accuracy after {args.minutes:g} min of pre-training each ({cpu_name()}, "
        f"{os.cpu_count()} CPUs), fine-tuned as encoderlab-demo does, seeds {seeds}:"
    )
    print(f"| {'objective':<9} | {'pre-training steps':>18} | {'val acc mean':>12} | {'std':>6} | per seed |")
    print("|" + "-" * 11 + "|" + "-" * 20 + "|" + "-" * 14 + "|" + "-" * 8 + "|" + "-" * 10 + "|")
    for row in rows:
        accs = row["val_acc"]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        steps = f"{int(row['steps']):,}" if row.get("steps") else "—"
        per_seed = " ".join(f"{a:.3f}" for a in accs)
        print(
            f"| {row['objective']:<9} | {steps:>18} | {statistics.mean(accs):>12.3f} | {spread:>6.3f} | {per_seed} |"
        )
    (root / "objectives.json").write_text(
        json.dumps({"minutes": args.minutes, "cpu": cpu_name(), "rows": rows}, indent=2)
    )
    print(f"\nruns and objectives.json in {root}")


if __name__ == "__main__":
    main()
