"""kernels.allocator=retain: freed tensor memory stays in the process, so a step stops page-faulting it in."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A training step in miniature: 16 tensors of 4 MiB written, then all freed, again and again.
CHURN = """
import resource, sys, torch
from encoderlab.training.allocator import apply_allocator
print(apply_allocator(sys.argv[1]))
def steps():
    for _ in range(10):
        live = [torch.ones(1 << 20) for _ in range(16)]
        del live
steps()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
steps()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(option: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHURN, option], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[-1])


def test_retain_removes_the_page_faults_of_freed_and_reallocated_tensors():
    policy, retained = faults("retain")
    if policy != "retain":
        pytest.skip(f"no glibc malloc to tune here: {policy}")
    _, system = faults("system")
    # glibc's defaults hand the 64 MiB back after every "step": ~16,000 faults each; retained: a few hundred.
    assert system > 10 * 16 * 256, system
    assert retained < system / 20, (retained, system)
