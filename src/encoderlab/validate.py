"""The one set of rules every configurable value is checked against where it enters.

A component checks each setting in its constructor with the key a user types:

    check("encoder.heads", heads, at_least(1), divides(hidden, "encoder.hidden"))

The first rule a value breaks becomes a ``UserError`` naming the key, the value, what it must be and how to
fix it: ``encoder.heads=3 must divide encoder.hidden=128 — choose encoder.heads from 1, 2, 4, 8, ...``.
A new option is validated by one ``check`` line built from these rules (or a table for ``check_all``);
a new kind of rule is one more function here. Type rules are built in: ``at_least(1)`` also refuses
``'abc'`` and ``2.5``, ``positive`` refuses ``'abc'`` and ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from encoderlab.errors import UserError


class SettingError(UserError):
    """A setting that breaks a rule; ``key`` names it as the user would type it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Rule:
    """``holds(value)``; otherwise the value ``must`` (a phrase: "be an integer >= 1") and ``fix(key)`` says
    what to do."""

    must: str
    holds: Callable[[Any], bool]
    fix: Callable[[str], str]


def show(value: Any) -> str:
    """A value as the user would type it back: strings quoted, sequences as lists."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Sequence):
        return "[" + ",".join(show(v) for v in value) + "]"
    return str(value)


def check(key: str, value: Any, *rules: Rule, optional: bool = False) -> Any:
    """``value`` if it satisfies every rule (None too when ``optional``), else a ``SettingError``."""
    if value is None and optional:
        return value
    for rule in rules:
        if not rule.holds(value):
            raise SettingError(key, f"{key}={show(value)} must {rule.must} — {rule.fix(key)}")
    return value


def check_all(
    prefix: str, values: Mapping[str, Any], table: Mapping[str, Sequence[Rule]], optional: Iterable[str] = ()
) -> None:
    """Each ``name`` of ``table`` that ``values`` holds, as ``<prefix>.<name>``; the names in ``optional``
    may also be None (null: not set)."""
    nullable = set(optional)
    for name, rules in table.items():
        if name in values:
            check(f"{prefix}.{name}", values[name], *rules, optional=name in nullable)


# ---------------------------------------------------------------------------------------- types


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


integer = Rule("be an integer", is_integer, lambda key: f"set {key} to a whole number")
number = Rule("be a number", is_number, lambda key: f"set {key} to a finite number")
boolean = Rule(
    "be true or false", lambda v: isinstance(v, bool), lambda key: f"set {key}=true or {key}=false"
)
text = Rule(
    "be a non-empty string",
    lambda v: isinstance(v, str) and bool(v),
    lambda key: f"set {key} to a non-empty string",
)


# ---------------------------------------------------------------------------------------- ranges


def at_least(minimum: int) -> Rule:
    """An integer >= ``minimum`` (counts, sizes, intervals)."""
    return Rule(
        f"be an integer >= {minimum}",
        lambda v: is_integer(v) and v >= minimum,
        lambda key: f"set {key} to {minimum} or more",
    )


def between(low: int, high: int, what: str = "") -> Rule:
    """An integer from ``low`` to ``high``, both included; ``what`` says where the bound comes from."""
    reason = f" ({what})" if what else ""
    return Rule(
        f"be an integer from {low} to {high}{reason}",
        lambda v: is_integer(v) and low <= v <= high,
        lambda key: f"choose {key} from {low} to {high}",
    )


def in_range(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Rule:
    """A number in an interval: ``[low, high]`` unless an end is open."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def holds(v: Any) -> bool:
        if not is_number(v):
            return False
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return above and below

    return Rule(f"be a number in {interval}", holds, lambda key: f"set {key} to a number in {interval}")


positive = Rule("be a number > 0", lambda v: is_number(v) and v > 0, lambda key: f"set {key} to a number > 0")
non_negative = Rule(
    "be a number >= 0", lambda v: is_number(v) and v >= 0, lambda key: f"set {key} to a number >= 0"
)
fraction = in_range(0, 1)  # warm-up ratios, minimum ratios
probability = in_range(0, 1, high_open=True)  # dropout, Adam's betas: 1 would drop or keep everything
open_fraction = in_range(0, 1, low_open=True, high_open=True)  # a share that must leave something either side


def one_of(*choices: Any) -> Rule:
    listed = ", ".join(str(c) for c in choices)
    return Rule(f"be one of {listed}", lambda v: v in choices, lambda key: f"choose {key} from {listed}")


def pair_of(rule: Rule, example: str) -> Rule:
    """Two values, each satisfying ``rule`` (Adam's betas)."""

    def holds(v: Any) -> bool:
        return isinstance(v, Sequence) and not isinstance(v, str) and len(v) == 2 and all(map(rule.holds, v))

    return Rule(
        f"be two values, each {rule.must.removeprefix('be ')}",
        holds,
        lambda key: f"set {key} to two such values, e.g. {key}={example}",
    )


def non_empty(example: str) -> Rule:
    """A list with at least one entry."""
    return Rule(
        "list at least one entry",
        lambda v: isinstance(v, Iterable) and not isinstance(v, str) and len(list(v)) > 0,
        lambda key: f"set {key}={example}",
    )


# ------------------------------------------------------------------------------------ relations


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def divides(total: int, total_key: str) -> Rule:
    """An integer that divides ``total`` (heads into the hidden size)."""

    def fix(key: str) -> str:
        found = divisors(total) if is_integer(total) and total > 0 else []
        listed = ", ".join(map(str, found[:8])) + (", ..." if len(found) > 8 else "")
        return f"choose {key} from {listed}" if found else f"fix {total_key} first"

    return Rule(
        f"divide {total_key}={total}",
        lambda v: is_integer(v) and v > 0 and is_integer(total) and total % v == 0,
        fix,
    )


def at_most(limit: int, what: str) -> Rule:
    """An integer no larger than ``limit``; ``what`` names the limit ("the encoder's 512 positions")."""
    return Rule(
        f"be at most {what}",
        lambda v: is_integer(v) and v <= limit,
        lambda key: f"lower {key} to {limit} or less",
    )


def below(limit: int, what: str) -> Rule:
    """An integer smaller than ``limit``; ``what`` names the limit ("encoder.max_positions=512")."""
    return Rule(
        f"be smaller than {what}",
        lambda v: is_integer(v) and v < limit,
        lambda key: f"lower {key} to {limit - 1} or less" if is_integer(limit) else f"fix {what}",
    )


def only_with(holds: bool, requirement: str) -> Rule:
    """A value that is allowed only when another setting says so (``requirement``, as the user types it)."""
    return Rule(f"go with {requirement}", lambda v: holds, lambda key: f"set {requirement} or change {key}")


def differs_from(other: Any, other_key: str, why: str) -> Rule:
    """Not the value of another setting (a text column that is also the label column)."""
    return Rule(
        f"differ from {other_key}={show(other)} ({why})", lambda v: v != other, lambda key: f"fix {key}"
    )
