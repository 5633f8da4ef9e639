"""The rules every setting is checked against: what each accepts, what each refuses, and the one line."""

from __future__ import annotations

import pytest

from encoderlab.errors import UserError
from encoderlab.validate import (
    SettingError,
    at_least,
    at_most,
    between,
    boolean,
    check,
    check_all,
    differs_from,
    divides,
    fraction,
    in_range,
    non_empty,
    non_negative,
    one_of,
    open_fraction,
    pair_of,
    positive,
    probability,
    text,
)

NOT_NUMBERS = ["abc", None, True, float("nan"), float("inf"), [1]]


@pytest.mark.parametrize(
    "rule, good, bad",
    [
        (at_least(1), [1, 7], [0, -1, 2.5, *NOT_NUMBERS]),
        (at_least(0), [0, 3], [-1, 0.5, *NOT_NUMBERS]),
        (between(0, 2), [0, 1, 2], [-1, 3, 1.5, *NOT_NUMBERS]),
        (positive, [1e-9, 3, 2.5], [0, -1e-9, *NOT_NUMBERS]),
        (non_negative, [0, 0.1], [-0.1, *NOT_NUMBERS]),
        (fraction, [0, 0.5, 1], [-0.01, 1.01, *NOT_NUMBERS]),
        (probability, [0, 0.99], [1, 1.5, -0.1, *NOT_NUMBERS]),
        (open_fraction, [0.01, 0.99], [0, 1, *NOT_NUMBERS]),
        (in_range(0, 1, low_open=True), [1, 0.5], [0, 1.5, *NOT_NUMBERS]),
        (one_of("cls", "mean"), ["cls", "mean"], ["max", None, 1]),
        (pair_of(probability, "[0.9,0.999]"), [[0.9, 0.999], (0, 0.5)], [[0.9], [0.9, 1.0], "ab", 0.9, None]),
        (divides(128, "encoder.hidden"), [1, 2, 64, 128], [3, 0, -2, 256, 2.0, "2"]),
        (at_most(512, "the encoder's 512 positions"), [1, 512], [513, "abc", 1.5]),
        (differs_from("label", "data.label_column", "why"), ["text"], ["label"]),
        (boolean, [True, False], [0, 1, "true", None]),
        (text, ["|", "text"], ["", None, 3]),
        (non_empty("[query]"), [["query"], ("a", "b")], [[], (), "query", None]),
    ],
)
def test_each_rule_accepts_and_refuses(rule, good, bad):
    for value in good:
        assert check("some.key", value, rule) == value
    for value in bad:
        with pytest.raises(SettingError):
            check("some.key", value, rule)


def test_the_message_names_the_key_the_value_the_requirement_and_the_fix():
    with pytest.raises(UserError) as refused:
        check("encoder.heads", 3, at_least(1), divides(128, "encoder.hidden"))
    assert str(refused.value) == (
        "encoder.heads=3 must divide encoder.hidden=128 — choose encoder.heads from 1, 2, 4, 8, 16, 32, 64, 128"
    )
    assert refused.value.key == "encoder.heads"
    with pytest.raises(
        UserError, match=r"^optimizer.betas=\[0.9\] must be two values, each a number in \[0, 1\) "
    ):
        check("optimizer.betas", [0.9], pair_of(probability, "[0.9,0.999]"))
    with pytest.raises(
        UserError, match=r"^data.batch_size='abc' must be an integer >= 1 — set data.batch_size to 1"
    ):
        check("data.batch_size", "abc", at_least(1))


def test_the_first_broken_rule_is_reported():
    with pytest.raises(UserError, match="must be an integer >= 1"):
        check("encoder.heads", 0, at_least(1), divides(128, "encoder.hidden"))


def test_a_long_divisor_list_is_cut():
    with pytest.raises(UserError, match=r"from 1, 2, 3, 4, 6, 8, 12, 16, \.\.\.$"):
        check("encoder.heads", 5, divides(768, "encoder.hidden"))


def test_none_passes_only_when_optional():
    assert check("data.train_limit", None, at_least(1), optional=True) is None
    with pytest.raises(UserError, match="data.train_limit=None"):
        check("data.train_limit", None, at_least(1))


def test_check_all_names_each_setting_under_its_prefix():
    table = {"lr": (positive,), "warmup_steps": (at_least(0),)}
    check_all(
        "optimizer", {"lr": 1e-3, "warmup_steps": None, "unrelated": "x"}, table, optional=("warmup_steps",)
    )
    check_all("optimizer", {}, table)  # absent settings are the component's defaults
    with pytest.raises(UserError, match=r"^optimizer.lr=0 must be a number > 0"):
        check_all("optimizer", {"lr": 0}, table)
    with pytest.raises(UserError, match="optimizer.warmup_steps=None"):
        check_all("optimizer", {"warmup_steps": None}, table)
