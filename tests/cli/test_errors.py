"""Every command's failures: ``error: <one line>`` on stderr; exit 2 for the user's mistake, 1 for a bug."""

from __future__ import annotations

import pytest

from encoderlab.cli import compare, doctor, export, predict, reproduce
from encoderlab.cli.errors import FULL_ERROR, REQUESTED, describe, describe_command, run_command
from encoderlab.errors import UserError

# module, its argv with {missing} for a directory that does not exist, the function main() runs
COMMANDS = {
    "predict": (predict, ["{missing}", "--input", "{missing}/texts.txt"], "predict"),
    "export": (export, ["{missing}", "{missing}-out"], "export_run"),
    "reproduce": (reproduce, ["{missing}"], "reproduce"),
    "compare": (compare, ["{missing}"], "compare"),
    "doctor": (doctor, ["{missing}"], "diagnose"),
}


@pytest.fixture(autouse=True)
def no_full_error(monkeypatch):
    monkeypatch.delenv(FULL_ERROR, raising=False)
    monkeypatch.delenv(REQUESTED, raising=False)


def run(name, tmp_path):
    module, argv, _ = COMMANDS[name]
    return module.main([a.format(missing=tmp_path / "missing") for a in argv])


def boom(*args, **kwargs):
    raise RuntimeError("boom\nsecond line")


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_user_mistake_exits_2_with_one_line(name, tmp_path, capsys):
    assert run(name, tmp_path) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing" in lines[0], lines


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unexpected_failure_exits_1_with_one_line(name, tmp_path, capsys, monkeypatch):
    module, _, body = COMMANDS[name]
    monkeypatch.setattr(module, body, boom)
    assert run(name, tmp_path) == 1
    assert error_lines(capsys) == [
        "error: RuntimeError: boom; second line — an unexpected failure; run again with HYDRA_FULL_ERROR=1 "
        "for the traceback"
    ]


@pytest.mark.parametrize("name", COMMANDS)
def test_hydra_full_error_lets_the_exception_through(name, tmp_path, monkeypatch):
    module, _, body = COMMANDS[name]
    monkeypatch.setattr(module, body, boom)
    monkeypatch.setenv(FULL_ERROR, "1")
    with pytest.raises(RuntimeError, match="boom"):
        run(name, tmp_path)


@pytest.mark.parametrize("name", COMMANDS)
def test_a_usage_error_is_argparses(name):
    with pytest.raises(SystemExit) as stop:
        COMMANDS[name][0].main(["--no-such-option"])
    assert stop.value.code == 2


def test_ctrl_c_exits_130_with_one_line(capsys):
    def interrupted() -> None:
        raise KeyboardInterrupt

    assert run_command(interrupted) == 130
    assert error_lines(capsys) == ["error: interrupted"]


def test_the_body_sets_the_status_and_a_user_error_is_found_behind_another():
    assert run_command(lambda: None) == 0 and run_command(lambda: 3) == 3

    def wrapped() -> None:
        try:
            raise UserError("bad value — fix it")
        except UserError as err:
            raise RuntimeError("wrapper") from err

    assert run_command(wrapped) == 2


def test_train_and_the_other_commands_report_a_bug_alike():
    err = RuntimeError("boom")
    assert describe(err) == describe_command(err) and describe(err)[1] == 1
    assert describe(UserError("x")) == describe_command(UserError("x")) == ("x", 2)
