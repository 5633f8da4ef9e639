"""Every command's failures as one line on stderr: ``error: <problem> — <fix>``.

A mistake the user can fix (``UserError``) exits 2, anything else exits 1 as "an unexpected failure",
Ctrl-C exits 130; ``HYDRA_FULL_ERROR=1`` shows the traceback instead. ``run_command`` wraps the argparse
commands, ``run_reporting_errors`` wraps ``encoderlab-train``. For train, Hydra is told to re-raise
(``HYDRA_FULL_ERROR=1`` inside the process) so that this module, not Hydra, reports, and more counts as the
user's mistake: a malformed override, an unknown option or key, a rejected setting, an unwritable path.
An edge module: it knows Hydra's exception types.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf.errors import OmegaConfBaseException

from encoderlab.errors import UserError
from encoderlab.extras import missing_error, optional_package, require

FULL_ERROR = "HYDRA_FULL_ERROR"
# What the user asked for; inherited by the processes that Lightning's DDP launches from this one.
REQUESTED = "ENCODERLAB_FULL_ERROR"
UNEXPECTED = 1
USER = 2
INTERRUPTED = 130
# Config groups a Hydra plugin registers when Hydra finds it installed (an optional extra): a config of
# these that cannot be found means the plugin is missing, not that the name is wrong.
PLUGIN_CONFIGS = {
    "hydra/sweeper/optuna": "hydra_plugins.hydra_optuna_sweeper",
    "hydra/launcher/joblib": "hydra_plugins.hydra_joblib_launcher",
    "hydra/launcher/submitit_": "hydra_plugins.hydra_submitit_launcher",
}


def find_user_error(err: BaseException | None) -> UserError | None:
    """The UserError behind ``err``, if any (Hydra's instantiate wraps what a constructor raises)."""
    while err is not None:
        if isinstance(err, UserError):
            return err
        err = err.__cause__ or err.__context__
    return None


def find_missing_extra(err: BaseException | None) -> UserError | None:
    """Advice to install an extra when an optional package is missing behind ``err`` (a ``_target_`` that
    lives in one, an import inside one)."""
    target = re.search(r"target '([^']+)'", str(err))  # Hydra names the _target_ it could not build
    while err is not None:
        package = (
            optional_package(getattr(err, "name", None)) if isinstance(err, ModuleNotFoundError) else None
        )
        if package is not None:
            return missing_error(package, for_=target.group(1) if target else "this command")
        err = err.__cause__ or err.__context__
    return None


def missing_plugin(err: MissingConfigException) -> UserError | None:
    """Advice to install an extra when the config Hydra could not find is one a missing plugin brings."""
    for config in re.findall(r"'(hydra/[^']+)'", str(err)):
        plugin = next((p for prefix, p in PLUGIN_CONFIGS.items() if config.startswith(prefix)), None)
        if plugin is None:
            continue
        try:
            require(plugin, for_=f"{config} (a Hydra plugin's config)")
        except UserError as missing:
            return missing
    return None


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _root(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def describe_command(err: BaseException) -> tuple[str, int]:
    """(one line, exit status): a UserError is the user's to fix, anything else an unexpected failure."""
    user_error = find_user_error(err) or find_missing_extra(err)
    if user_error is not None:
        return str(user_error), USER
    if isinstance(err, OSError) and err.filename:  # a path the user gave: missing, unwritable, full disk
        return (
            f"{err.strerror or type(err).__name__}: {err.filename} — use a path that exists and that you can write to",
            USER,
        )
    return (
        f"{type(err).__name__}: {_one_line(err)[:500]} — an unexpected failure; run again with "
        f"{FULL_ERROR}=1 for the traceback",
        UNEXPECTED,
    )


def describe(err: BaseException) -> tuple[str, int]:
    """(one line naming the problem and the fix, exit status) for ``encoderlab-train``: also Hydra's errors."""
    if find_user_error(err) is not None or find_missing_extra(err) is not None:
        return describe_command(err)
    if isinstance(err, OverrideParseException):
        problem = _one_line(err).split("; See https")[0]
        return (
            f"malformed override: {problem} — write overrides as key=value, quoting values with spaces or "
            "brackets (https://hydra.cc/docs/advanced/override_grammar/basic)",
            USER,
        )
    if isinstance(err, MissingConfigException):
        plugin = missing_plugin(err)
        if plugin is not None:
            return str(plugin), USER
        first = str(err).splitlines()[0]
        options = f"choose one of: {', '.join(err.options)}" if err.options else "check the name"
        return f"{first} — {options}", USER
    if isinstance(err, ConfigCompositionException):
        cause = f" ({_one_line(err.__cause__).split('; full_key')[0]})" if err.__cause__ else ""
        return (
            f"{_one_line(err)}{cause} — check the key's spelling (encoderlab-train --cfg job shows the config)",
            USER,
        )
    if isinstance(err, InstantiationException | OmegaConfBaseException):
        root = _root(err)
        target = re.search(r"target '([^']+)'", str(err))
        key = re.search(r"full_key: (\S+)", str(err))
        what = f"{target.group(1)} rejected its settings" if target else "a setting was rejected"
        fix = f"fix the {key.group(1)}.* values" if key else "fix the value named above"
        return f"{what}: {type(root).__name__}: {_one_line(root)[:400]} — {fix}", USER
    if isinstance(err, OSError) and err.filename:
        return (
            f"{err.strerror or type(err).__name__}: {err.filename} — use a path that exists and that you can "
            "write to (outputs: hydra.run.dir or ENCODERLAB_OUTPUT_DIR)",
            USER,
        )
    return describe_command(err)


def full_error_requested() -> bool:
    """Whether the user set ``HYDRA_FULL_ERROR=1`` (kept in ``REQUESTED`` once train has taken that over)."""
    return os.environ.get(REQUESTED, os.environ.get(FULL_ERROR, "0")) == "1"


def report(err: BaseException, explain: Callable[[BaseException], tuple[str, int]]) -> int:
    """Print ``error: <what explain says>`` on stderr; the exit status."""
    message, status = explain(err)
    print(f"error: {message}", file=sys.stderr)
    return status


def run_command(body: Callable[[], int | None]) -> int:
    """Run a command's ``body``; its exit status (None: 0), or what it raised reported in one line."""
    try:
        return body() or 0
    except KeyboardInterrupt:
        if full_error_requested():
            raise
        print("error: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as err:
        if full_error_requested():
            raise
        return report(err, describe_command)


def run_reporting_errors(app: Callable[[], object]) -> None:
    """Run the Hydra ``app``; report what it raises in one line and exit non-zero."""
    os.environ.setdefault(REQUESTED, os.environ.get(FULL_ERROR, "0"))
    os.environ[FULL_ERROR] = "1"  # Hydra re-raises instead of printing its own report
    try:
        app()
    except Exception as err:
        if full_error_requested():
            raise
        sys.exit(report(err, describe))
