"""Where the commands find their configs: the Hydra tree of the training config (``conf/``) and the
evaluation suite's presets (``suites/``), both beside ``src/`` (an editable install, as in development and
the Docker images). A module of its own so that light commands need not import ``encoderlab.cli.train``."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONF_DIR = PROJECT_ROOT / "conf"
SUITE_PRESETS_DIR = PROJECT_ROOT / "suites"
