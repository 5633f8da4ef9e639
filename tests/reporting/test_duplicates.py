"""The near-duplicate join finds exactly what comparing every pair finds."""

from __future__ import annotations

import random

from encoderlab.reporting.duplicates import jaccard, near_duplicates, normalise


def test_normalise_ignores_case_spacing_and_punctuation_but_keeps_other_scripts():
    assert normalise("  The FILM, is -- good!  ") == normalise("the film is good") == "the film is good"
    assert normalise("Это хороший фильм.") == "это хороший фильм"
    assert normalise("?!") == ""


def brute_force(queries, reference, threshold):
    found = {}
    for i, q in enumerate(queries):
        scores = [(jaccard(q, r), j) for j, r in enumerate(reference) if q]
        good = [s for s, _ in scores if s >= threshold]
        if good:
            found[i] = max(good)
    return found


def test_prefix_filtering_misses_no_pair_at_the_threshold():
    rng = random.Random(0)
    vocabulary = [f"w{i}" for i in range(60)]
    # Sizes 9-31 cover the bounds where 0.9 · size rounds badly (10, 20, 30); edits make near-copies.
    reference = [frozenset(rng.sample(vocabulary, rng.randint(9, 31))) for _ in range(200)]
    queries = []
    for _ in range(300):
        base = set(rng.choice(reference))
        for _ in range(rng.randint(0, 3)):
            if rng.random() < 0.5 and len(base) > 1:
                base.discard(rng.choice(sorted(base)))
            else:
                base.add(rng.choice(vocabulary))
        queries.append(frozenset(base))
    queries.append(frozenset())
    found = near_duplicates(queries, reference, 0.9)
    expected = brute_force(queries, reference, 0.9)
    assert set(found) == set(expected) and len(found) > 50
    assert all(jaccard(queries[i], reference[j]) == expected[i] for i, j in found.items())


def test_a_pair_exactly_at_the_threshold_is_found_despite_float_rounding():
    # 0.55 · 100 rounds up to 55.00000000000001: without a guard the query's prefix would be one token short
    # (only the 45 tokens the reference lacks, the rarest) and the reference's size out of range.
    query = frozenset(f"w{i}" for i in range(100))
    reference = frozenset(f"w{i}" for i in range(55))
    assert jaccard(query, reference) == 0.55
    assert near_duplicates([query], [reference], 0.55) == {0: 0}
    assert near_duplicates([query], [reference], 0.56) == {}
