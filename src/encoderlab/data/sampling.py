"""Which training examples a few-shot run draws: a pure function of the labels, the size and the seed.

- :func:`random_draw` (``data.train_sample=N``): N examples at random, every label at least once when N
  allows. It is the draw of every earlier few-shot run and stays bit for bit the same, so those runs draw
  the same examples again.
- :func:`balanced_draw` with :func:`balanced_counts` (``data.train_sample=N`` with
  ``data.balanced_sample=true``): N // C examples of each of the C classes, and the N % C left over one more
  each for classes chosen at random; with ``data.train_sample_per_class=K``: K of every class.

Indices come back sorted, so a sample keeps the file's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def random_draw(num_examples: int, size: int, seed: int, labels: Sequence[str] | None = None) -> list[int]:
    """``size`` of ``num_examples`` indices drawn with ``seed``; with ``labels`` (one per example) the first
    of each label in the shuffled order is kept first, when ``size`` leaves room for every label (a
    32-example draw from a skewed set could otherwise miss a class)."""
    order = np.random.default_rng(seed).permutation(num_examples)
    first_of_label: dict[str, int] = {}
    for i in order if labels is not None else ():
        first_of_label.setdefault(labels[i], int(i))
    picked = list(first_of_label.values()) if len(first_of_label) <= size else []
    taken = set(picked)
    picked += [int(i) for i in order if int(i) not in taken][: size - len(picked)]
    return sorted(picked)


def class_sizes(class_ids: Sequence[int] | np.ndarray) -> dict[int, int]:
    """Examples per class id, for the classes that occur, in id order."""
    ids, counts = np.unique(np.asarray(class_ids, dtype=np.int64), return_counts=True)
    return {int(c): int(n) for c, n in zip(ids, counts, strict=True)}


def balanced_counts(classes: Sequence[int], size: int, rng: np.random.Generator) -> dict[int, int]:
    """How many of each class a balanced draw of ``size`` takes: ``size // len(classes)`` each, plus one for
    ``size % len(classes)`` classes chosen with ``rng`` (without replacement)."""
    classes = sorted(classes)
    each, left_over = divmod(size, len(classes))
    lucky = set(rng.choice(classes, size=left_over, replace=False).tolist()) if left_over else set()
    return {c: each + (c in lucky) for c in classes}


def short_classes(wanted: Mapping[int, int], available: Mapping[int, int]) -> list[int]:
    """The classes that have fewer examples than ``wanted`` asks of them, fewest examples first."""
    short = [c for c, n in wanted.items() if n > available.get(c, 0)]
    return sorted(short, key=lambda c: (available.get(c, 0), c))


def balanced_draw(
    class_ids: Sequence[int] | np.ndarray, wanted: Mapping[int, int], rng: np.random.Generator
) -> list[int]:
    """``wanted[c]`` indices of each class ``c`` drawn with ``rng``, class by class in id order; every
    class must have that many (see :func:`short_classes`)."""
    class_ids = np.asarray(class_ids, dtype=np.int64)
    picked: list[int] = []
    for c in sorted(wanted):
        members = np.flatnonzero(class_ids == c)
        if wanted[c] > len(members):
            raise ValueError(f"class {c} has {len(members)} examples, {wanted[c]} wanted")
        picked += rng.permutation(members)[: wanted[c]].tolist()
    return sorted(picked)
