"""DDP with a bounded wait: when one process of a distributed run dies or hangs, the others end within
``timeout_s`` with one line saying so, and ``resume=RUN_DIR`` continues from the last checkpoint.

Two things stand in the way with Lightning's plain ``ddp``:

- the process group's timeout is 30 minutes: a process whose peer hangs (stopped, swapping, a lost node)
  waits that long in its next collective. ``DDP(timeout_s=...)`` sets it (``trainer.strategy.timeout_s``);
- Lightning's launcher watches the processes it started and SIGKILLs the first process within 5 s of one
  of them dying: usually before that process has said why and recorded the failure in ``run.json``. The
  launcher here waits ``timeout_s`` plus a margin before that last resort; a dead peer breaks the next
  collective within milliseconds (gloo: "Connection reset by peer"), a hung one at the timeout.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytorch_lightning as pl
from lightning_fabric.utilities.distributed import _set_num_threads_if_needed
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from torch.distributed import DistNetworkError, DistStoreError

from encoderlab.errors import UserError

log = logging.getLogger("encoderlab")

# What a collective raises when a peer is gone: gloo's TCP transport reads a closed socket, or waits in vain.
LOST_PEER = re.compile(
    r"Connection (?:reset|closed) by peer|Broken pipe|Timed out waiting \d+ ?ms|Socket Timeout"
)
# Beyond the collectives' timeout: time for the surviving process to report and exit on its own.
GRACE_S = 30.0


class DDP(DDPStrategy):
    """Lightning's DDP strategy with the process-group timeout in seconds (60 s by default, not 30 min)."""

    def __init__(self, timeout_s: float = 60.0, **kwargs) -> None:
        if not timeout_s > 0:
            raise UserError(
                f"timeout_s={timeout_s} must be positive — set trainer.strategy.timeout_s (seconds)"
            )
        super().__init__(timeout=timedelta(seconds=timeout_s), **kwargs)
        self.timeout_s = float(timeout_s)

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if type(self._launcher) is _SubprocessScriptLauncher:
            self._launcher = PatientLauncher(
                self.cluster_environment, self.num_processes, self.num_nodes, self.timeout_s + GRACE_S
            )


class PatientLauncher(_SubprocessScriptLauncher):
    """Lightning's launcher (the command re-run once per extra local process) with a patient observer."""

    def __init__(self, cluster_environment, num_processes: int, num_nodes: int, grace_s: float) -> None:
        super().__init__(cluster_environment, num_processes, num_nodes)
        self.grace_s = grace_s

    def launch(self, function, *args, trainer: pl.Trainer | None = None, **kwargs):
        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            ProcessObserver(self.procs, self.grace_s).start()
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)


class ProcessObserver(threading.Thread):
    """Ends this process and its children ``grace_s`` after a child failed, if this one is still running
    then (stuck outside a collective): no orphaned processes, but time to report first."""

    def __init__(self, children: list[subprocess.Popen], grace_s: float, poll_s: float = 1.0) -> None:
        super().__init__(daemon=True, name="encoderlab-process-observer")  # ends with this process
        self.children = children
        self.grace_s = grace_s
        self.poll_s = poll_s

    def run(self) -> None:
        failed_at = None
        while True:
            time.sleep(self.poll_s)
            codes = [child.poll() for child in self.children]
            if all(code == 0 for code in codes):
                return
            if failed_at is None and any(code not in (None, 0) for code in codes):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at >= self.grace_s:
                log.error("a process of this distributed run failed and this one did not stop: ending it")
                for child in self.children:
                    if child.poll() is None:
                        child.kill()
                os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def reporting_lost_peers(trainer: pl.Trainer, run_dir) -> Iterator[None]:
    """Turn a collective that lost another process of the run into one line (see :func:`lost_peer`)."""
    try:
        yield
    except RuntimeError as err:
        error = lost_peer(trainer, err, run_dir)
        if error is None:
            raise
        raise error from err


def lost_peer(trainer: pl.Trainer, err: BaseException, run_dir) -> UserError | None:
    """The one-line error for ``err`` when it is a collective that lost another process of this run, else
    None. Ends this process's own children that are still running (a hung peer would outlive it)."""
    if trainer.world_size < 2 or not isinstance(err, RuntimeError):
        return None
    found = LOST_PEER.search(str(err))
    if found is None and not isinstance(err, DistNetworkError | DistStoreError):  # the rendezvous store
        return None
    launcher = trainer.strategy.launcher
    if isinstance(launcher, _SubprocessScriptLauncher):
        launcher.kill(signal.SIGKILL)  # the processes it started that still run; the dead ones are skipped
    timeout = getattr(trainer.strategy, "timeout_s", None)
    waited = f"trainer.strategy.timeout_s={timeout:g} s" if timeout else "the process group's timeout"
    return UserError(
        f"process {trainer.global_rank} of {trainer.world_size} lost contact with the others of this distributed "
        f"run ({_reason(str(err), found)}) — another process died or hung (killed, out of memory, a lost node; "
        f"each waits at most {waited}); fix that and continue from the last checkpoint with resume={run_dir}"
    )


def _reason(message: str, found: re.Match | None) -> str:
    waited = re.search(r"Timed out waiting (\d+) ?ms", message)
    if waited:
        return f"no answer within {int(waited.group(1)) / 1000:g} s"
    return found.group(0) if found else message.splitlines()[0][:120]
