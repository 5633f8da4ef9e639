"""Diagnosing a labelled data set before (or after) training on it: the data side of the doctor.

One small function per problem, each returning :class:`~encoderlab.reporting.diagnosis.Finding` lines with
the count, a few examples and the fix: evaluation rows that repeat training rows (leakage, exact and near),
training copies with conflicting labels, label imbalance and labels in one split only, texts cut by
``max_seq_len``, a high ``[UNK]`` rate, empty texts and labels. The files are read with the readers training
uses (CSV / TSV / JSONL by extension); the settings come from the command line or from a run's saved config.
Duplicate-type findings are warnings from 1 % of a split's rows on, information below that.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Encoding, Tokenizer

from encoderlab.data.base import COUNT_MINIMUMS, Targets
from encoderlab.data.readers import read_table
from encoderlab.data.tokenizer import load_tokenizer
from encoderlab.data.windows import DEFAULT_MAX_WINDOWS, Windows, windows_needed
from encoderlab.errors import UserError
from encoderlab.reporting.diagnosis import IMBALANCE_RATIO, SEVERITIES, UNK_RATE, Finding
from encoderlab.reporting.duplicates import near_duplicates, normalise
from encoderlab.run.read import Run

NEAR_DUPLICATE = 0.9  # token-set Jaccard similarity from which two texts count as near-copies
MIN_SHARED_TOKENS = 4  # shorter stock phrases ("bad .", "good movie .") recur by chance and leak nothing
NOTABLE_SHARE = 0.01  # a duplicate-type finding is a warning from this share of a split's rows on
MOSTLY_UNKNOWN = 0.5  # a text whose tokens are at least half [UNK] is not in the tokenizer's language
EXAMPLES = 3
DEFAULT_MAX_SEQ_LEN = 128  # the data modules' default
MIN_SEQ_LEN = COUNT_MINIMUMS["max_seq_len"]  # the smallest value training accepts
PAIR_MARK = "\x1f"  # keeps a pair's second text apart from its first in keys and token sets


@dataclass(frozen=True)
class DataSpec:
    """Which files to read and how: the data settings of a run, or of a command line."""

    train: Path
    val: Path | None = None
    test: Path | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    tokenizer: Path | None = None
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    lowercase: bool | None = None  # only for a bare vocab.txt, which does not record it
    train_limit: int | None = None  # a run trained on the first rows only
    long_documents: str = "truncate"  # or window: long rows are read whole, in windows (data/windows.py)
    window_stride: int | None = None
    max_windows: int | None = DEFAULT_MAX_WINDOWS

    def __post_init__(self) -> None:
        if self.max_seq_len < MIN_SEQ_LEN:
            raise UserError(
                f"max_seq_len={self.max_seq_len} leaves no room for text — use at least {MIN_SEQ_LEN} "
                "([CLS], one token, [SEP])"
            )


@dataclass(eq=False)
class Split:
    """One file's rows: texts (and second texts of pairs), labels as strings, and their normalised forms."""

    name: str  # train | val | test
    path: Path
    texts: list[str]
    pairs: list[str] | None
    labels: list[str]
    keys: list[str] = field(init=False)  # what two copies of a row share (case, spacing, punctuation aside)
    token_sets: list[frozenset[str]] = field(init=False)

    def __post_init__(self) -> None:
        firsts = [normalise(t) for t in self.texts]
        seconds = [normalise(t) for t in self.pairs] if self.pairs is not None else None
        self.keys = (
            firsts
            if seconds is None
            else [f"{a} {PAIR_MARK} {b}" for a, b in zip(firsts, seconds, strict=True)]
        )
        self.token_sets = [
            frozenset(a.split()) | frozenset(PAIR_MARK + t for t in (seconds[i].split() if seconds else ()))
            for i, a in enumerate(firsts)
        ]

    def __len__(self) -> int:
        return len(self.texts)

    def items(self) -> list:
        """What the tokenizer encodes: a text, or a (text, second text) pair."""
        return self.texts if self.pairs is None else list(zip(self.texts, self.pairs, strict=True))

    def shown(self, i: int) -> str:
        """Row ``i`` as an example in a finding: quoted, shortened, a pair as ``a / b``."""
        text = self.texts[i] if self.pairs is None else f"{self.texts[i]} / {self.pairs[i]}"
        return _quote(text)


@dataclass(eq=False)
class Data:
    spec: DataSpec
    splits: list[Split]  # train first
    tokenizer: Tokenizer | None
    _encodings: dict[str, list[Encoding]] = field(default_factory=dict)

    @property
    def train(self) -> Split:
        return self.splits[0]

    @property
    def evaluation(self) -> list[Split]:
        return self.splits[1:]

    def encodings(self, split: Split) -> list[Encoding]:
        """``split`` encoded as training encodes it (special tokens included), but never truncated."""
        if split.name not in self._encodings:
            self._encodings[split.name] = self.tokenizer.encode_batch(split.items(), add_special_tokens=True)
        return self._encodings[split.name]


# ------------------------------------------------------------------------------------------ reading


def _as_text(value) -> str:
    return "" if value is None else str(value)


def read_data(spec: DataSpec) -> Data:
    """The spec's files and tokenizer (a UserError for a missing file, column or tokenizer)."""
    columns = [spec.text_column, spec.label_column] + (
        [spec.text_pair_column] if spec.text_pair_column else []
    )
    splits = []
    for name, path in (("train", spec.train), ("val", spec.val), ("test", spec.test)):
        if path is None:
            continue
        table = read_table(path, columns)
        if name == "train" and spec.train_limit is not None:
            table = {c: v[: spec.train_limit] for c, v in table.items()}
        pairs = [_as_text(v) for v in table[spec.text_pair_column]] if spec.text_pair_column else None
        texts = [_as_text(v) for v in table[spec.text_column]]
        labels = [_as_text(v).strip() for v in table[spec.label_column]]
        splits.append(Split(name, Path(path), texts, pairs, labels))
    tokenizer = load_tokenizer(spec.tokenizer, lowercase=spec.lowercase) if spec.tokenizer else None
    return Data(spec, splits, tokenizer)


def data_spec(run: Run) -> DataSpec:
    """A run's own data settings: its files, columns, max_seq_len and the tokenizer it trained with."""
    if run.targets not in (None, Targets.CLASSES, Targets.PROMPTED_CLASSES, Targets.CLASS_PAIRS):
        raise UserError(
            f"the run in {run.path} trained on {run.targets.value}; the data checks read single-label "
            "classification tables — pass such files with encoderlab-doctor --data TRAIN [--val VAL]"
        )
    train = run.get("data.train_file")
    if not isinstance(train, str):
        raise UserError(
            f"the run in {run.path} names no local training file (data.train_file) — pass the files: "
            "encoderlab-doctor --data TRAIN [--val VAL] [--test TEST]"
        )

    def path(key: str) -> Path | None:
        value = run.get(key)
        return run.resolve_path(value) if isinstance(value, str) else None

    def text(key: str, default: str | None) -> str | None:
        value = run.get(key)
        return value if isinstance(value, str) else default

    max_seq_len, lowercase, limit = (
        run.get(f"data.{k}") for k in ("max_seq_len", "lowercase", "train_limit")
    )
    stride, max_windows = run.get("data.window_stride"), run.get("data.max_windows")  # None: half, no cap
    return DataSpec(
        train=run.resolve_path(train),
        val=path("data.val_file"),
        test=path("data.test_file"),
        text_column=text("data.text_column", "text"),
        text_pair_column=text("data.text_pair_column", None),
        label_column=text("data.label_column", "label"),
        tokenizer=run.tokenizer_location(),
        max_seq_len=max_seq_len if isinstance(max_seq_len, int) else DEFAULT_MAX_SEQ_LEN,
        lowercase=lowercase if isinstance(lowercase, bool) else None,
        train_limit=limit if isinstance(limit, int) else None,
        long_documents=text("data.long_documents", "truncate"),
        window_stride=stride if isinstance(stride, int) else None,
        max_windows=max_windows if isinstance(max_windows, int) else None,
    )


# ------------------------------------------------------------------------------------------ wording


def _quote(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def _share(count: int, total: int) -> str:
    return f"{count / total:.1%}" if total else "0%"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _severity(count: int, total: int) -> str:
    return "warning" if total and count / total >= NOTABLE_SHARE else "info"


def _rows(indices: list[int]) -> str:
    """Data-row numbers (1 = the first row after any header) of the first few examples."""
    shown = ", ".join(str(i + 1) for i in indices[:EXAMPLES])
    return f"row{'s' if len(indices) > 1 else ''} {shown}{', ...' if len(indices) > EXAMPLES else ''}"


# ------------------------------------------------------------------------------------------ checks


def check_empty(data: Data) -> list[Finding]:
    findings = []
    for split in data.splits:
        empty = [
            i
            for i, text in enumerate(split.texts)
            if not text.strip() or (split.pairs is not None and not split.pairs[i].strip())
        ]
        if empty:
            findings.append(
                Finding(
                    "empty",
                    "warning",
                    f"{len(empty)} of {len(split)} {split.name} rows ({_share(len(empty), len(split))}) have "
                    f"an empty or whitespace-only text ({split.path.name} {_rows(empty)})",
                    "fill in or drop those rows (the model sees only [CLS] [SEP] for them); check that the "
                    "text column names the text",
                )
            )
        unlabelled = [i for i, label in enumerate(split.labels) if not label]
        if unlabelled:
            findings.append(
                Finding(
                    "empty",
                    "warning",
                    f"{len(unlabelled)} of {len(split)} {split.name} rows have an empty label "
                    f"({split.path.name} {_rows(unlabelled)})",
                    "label or drop those rows (an empty label becomes a class of its own); check that the label "
                    "column names the labels",
                )
            )
    return findings


def _long_enough(split: Split, i: int) -> bool:
    return len(split.token_sets[i]) >= MIN_SHARED_TOKENS


def check_leakage(data: Data) -> list[Finding]:
    """Evaluation rows that repeat a training row: exactly (once normalised), or nearly (token sets)."""
    train = data.train
    first_row: dict[str, int] = {}
    for i, key in enumerate(train.keys):
        if _long_enough(train, i):
            first_row.setdefault(key, i)
    # Near-copies are compared against each distinct training token set once.
    reference: dict[frozenset[str], int] = {}
    for i, tokens in enumerate(train.token_sets):
        if _long_enough(train, i):
            reference.setdefault(tokens, i)
    reference_sets, reference_rows = list(reference), list(reference.values())
    findings = []
    for split in data.evaluation:
        exact = [i for i, key in enumerate(split.keys) if key in first_row and _long_enough(split, i)]
        if exact:
            examples = ", ".join(split.shown(i) for i in exact[:EXAMPLES])
            findings.append(
                Finding(
                    "leakage",
                    _severity(len(exact), len(split)),
                    f"{len(exact)} of {len(split)} {split.name} rows ({_share(len(exact), len(split))}) repeat a "
                    f"training text (ignoring case, spacing and punctuation), e.g. {examples}",
                    f"drop them from {split.path.name} (or from the training file): the model has seen them, so "
                    f"{split.name} scores overstate how it does on new text",
                )
            )
        exact_rows = set(exact)
        queries = [i for i in range(len(split)) if i not in exact_rows and _long_enough(split, i)]
        matches = near_duplicates([split.token_sets[i] for i in queries], reference_sets, NEAR_DUPLICATE)
        near = [(queries[q], reference_rows[r]) for q, r in sorted(matches.items())]
        if near:
            examples = "; ".join(f"{split.shown(i)} ~ {train.shown(j)}" for i, j in near[:EXAMPLES])
            findings.append(
                Finding(
                    "near_leakage",
                    _severity(len(near), len(split)),
                    f"{len(near)} of {len(split)} {split.name} rows ({_share(len(near), len(split))}) are "
                    f"near-copies of a training text (word-set Jaccard ≥ {NEAR_DUPLICATE}), e.g. {examples}",
                    f"drop or rewrite them in {split.path.name} (or drop their training copies): near-copies "
                    "leak the answer as exact ones do",
                )
            )
    return findings


def check_conflicting_labels(data: Data) -> list[Finding]:
    """Copies of one training text (once normalised) that carry different labels."""
    train = data.train
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(train.keys):
        if key and train.labels[i]:
            groups[key].append(i)
    conflicts = [rows for rows in groups.values() if len({train.labels[i] for i in rows}) > 1]
    if not conflicts:
        return []
    # Character-for-character copies first: the plainest examples to show.
    conflicts.sort(key=lambda g: len({train.texts[i].strip() for i in g}) > 1)
    rows = sum(len(g) for g in conflicts)
    examples = ", ".join(
        f"{train.shown(g[0])} as {' and '.join(sorted({repr(train.labels[i]) for i in g}))}"
        for g in conflicts[:EXAMPLES]
    )
    return [
        Finding(
            "conflicting_labels",
            _severity(rows, len(train)),
            f"training texts with conflicting labels: {len(conflicts)} ({rows} of {len(train)} rows, "
            f"{_share(rows, len(train))}; ignoring case, spacing and punctuation), e.g. {examples}",
            "decide each text's label and keep one copy, or drop them: the model cannot fit both labels",
        )
    ]


def check_label_balance(data: Data) -> list[Finding]:
    """Heavy imbalance in the training labels, and labels that only some splits have."""
    train_counts = Counter(label for label in data.train.labels if label)
    findings = []
    if len(train_counts) >= 2:
        (top, n_top), (low, n_low) = train_counts.most_common()[0], train_counts.most_common()[-1]
        if n_top / n_low >= IMBALANCE_RATIO:
            findings.append(
                Finding(
                    "label_imbalance",
                    "warning",
                    f"{len(train_counts)} training labels, most to least frequent {n_top / n_low:.1f}× (≥ "
                    f"{IMBALANCE_RATIO:g}×): '{top}' {n_top} rows ({_share(n_top, len(data.train))}), '{low}' "
                    f"{n_low}",
                    "judge and select by macro-F1, not accuracy (optimized_metric=val/f1_macro); rebalance the "
                    "training file (oversample the rare labels) or collect more rare-label examples",
                )
            )
    for split in data.evaluation:
        counts = Counter(label for label in split.labels if label)
        unseen = [label for label in counts if label not in train_counts]
        if unseen:
            rows = sum(counts[label] for label in unseen)
            named = ", ".join(f"'{label}' ({counts[label]} rows)" for label in unseen[:EXAMPLES])
            findings.append(
                Finding(
                    "split_labels",
                    "error",
                    f"{split.name} has {_count(len(unseen), 'label')} that training never has ({rows} rows): {named}"
                    f"{', ...' if len(unseen) > EXAMPLES else ''}",
                    "training stops on them: add training examples of these labels, or fix the label spelling "
                    f"in {split.path.name}",
                )
            )
        missing = sorted(label for label in train_counts if label not in counts)
        if missing:
            named = ", ".join(f"'{label}'" for label in missing[:EXAMPLES])
            findings.append(
                Finding(
                    "split_labels",
                    "warning",
                    f"training has {_count(len(missing), 'label')} that {split.name} never has: {named}"
                    f"{', ...' if len(missing) > EXAMPLES else ''}",
                    f"hold out some rows of every label in {split.path.name} (a stratified split): their "
                    f"{split.name} scores cannot be measured",
                )
            )
    return findings


def check_truncation(data: Data) -> list[Finding]:
    """Rows longer than max_seq_len tokens, which training cuts."""
    if data.tokenizer is None:
        return []
    if data.spec.long_documents == "window":
        return _windowed(data)
    limit = data.spec.max_seq_len
    findings = []
    for split in data.splits:
        lengths = [len(e.ids) for e in data.encodings(split)]
        cut = [i for i, n in enumerate(lengths) if n > limit]
        if cut:
            # The length that keeps 99 % of rows whole; every row, when fewer than 1 % are cut.
            p99 = sorted(lengths)[int(0.99 * (len(lengths) - 1))]
            keep = f"{p99} keeps 99 % of" if p99 > limit else f"{max(lengths)} keeps all"
            findings.append(
                Finding(
                    "truncation",
                    _severity(len(cut), len(split)),
                    f"{len(cut)} of {len(split)} {split.name} rows ({_share(len(cut), len(split))}) are longer "
                    f"than max_seq_len={limit} tokens and get cut (longest {max(lengths)}; {split.path.name} "
                    f"{_rows(cut)})",
                    f"raise max_seq_len (data.max_seq_len / --max-seq-len; {keep} rows whole, up to the "
                    "encoder's position limit) or split the long texts",
                )
            )
    return findings


def _windowed(data: Data) -> list[Finding]:
    """With data.long_documents=window: how many rows need more than one window, and which get cut by
    data.max_windows."""
    spec = data.spec
    windows = Windows(data.tokenizer, spec.max_seq_len, spec.window_stride, spec.max_windows)
    findings = []
    for split in data.splits:
        text_tokens = [len(e.ids) - len(windows.frame) for e in data.encodings(split)]
        needed = windows_needed(text_tokens, windows.width, windows.stride)
        used = windows.counts(text_tokens)
        long = [i for i, n in enumerate(needed) if n > 1]
        cut = [i for i, (n, u) in enumerate(zip(needed, used, strict=True)) if n > u]
        if long:
            findings.append(
                Finding(
                    "windows",
                    "info",
                    f"{len(long)} of {len(split)} {split.name} rows ({_share(len(long), len(split))}) are read in "
                    f"more than one window of max_seq_len={spec.max_seq_len} tokens ({used.mean():.2f} windows "
                    f"a row on average, at most {used.max()}; {split.path.name} {_rows(long)})",
                    "each window costs a sequence's compute: raise data.window_stride (less overlap) or lower "
                    "data.max_windows to spend less",
                )
            )
        if cut:
            findings.append(
                Finding(
                    "truncation",
                    _severity(len(cut), len(split)),
                    f"{len(cut)} of {len(split)} {split.name} rows ({_share(len(cut), len(split))}) need more "
                    f"than data.max_windows={spec.max_windows} windows and get cut (most {needed.max()}; "
                    f"{split.path.name} {_rows(cut)})",
                    f"raise data.max_windows (to {needed.max()} reads every row whole) or data.window_stride",
                )
            )
    return findings


def check_unknown_tokens(data: Data) -> list[Finding]:
    """A high [UNK] share: the tokenizer does not cover the data (another script, language or domain)."""
    unk = data.tokenizer.token_to_id("[UNK]") if data.tokenizer is not None else None
    if unk is None:
        return []
    findings = []
    for split in data.splits:
        rates = []
        unknown = total = 0
        for e in data.encodings(split):
            n = len(e.ids) - sum(e.special_tokens_mask)
            k = e.ids.count(unk)
            unknown, total = unknown + k, total + n
            rates.append(k / n if n else 0.0)
        if not total or unknown / total <= UNK_RATE:
            continue
        mostly = sorted((i for i, r in enumerate(rates) if r >= MOSTLY_UNKNOWN), key=lambda i: -rates[i])
        examples = f", e.g. {', '.join(split.shown(i) for i in mostly[:EXAMPLES])}" if mostly else ""
        findings.append(
            Finding(
                "unknown_tokens",
                "warning",
                f"{unknown} of {total} {split.name} tokens ({_share(unknown, total)}, above {UNK_RATE:.0%}) are "
                f"[UNK]; mostly [UNK]: {_count(len(mostly), 'row')}{examples}",
                f"use a tokenizer that covers this text (the one in {data.spec.tokenizer} does not: another "
                "script, language or domain, or cased text for an uncased vocabulary), or drop the foreign rows",
            )
        )
    return findings


def check_tokenizer_given(data: Data) -> list[Finding]:
    if data.tokenizer is not None:
        return []
    return [
        Finding(
            "tokenizer",
            "info",
            "truncation and [UNK] rate not checked: no tokenizer",
            "pass --tokenizer DIR (a directory with tokenizer.json or vocab.txt: a run's tokenizer/, an encoder "
            "export, a Hugging Face model folder)",
        )
    ]


DATA_CHECKS: tuple[Callable[[Data], list[Finding]], ...] = (
    check_empty,
    check_leakage,
    check_conflicting_labels,
    check_label_balance,
    check_truncation,
    check_unknown_tokens,
    check_tokenizer_given,
)


def diagnose_data(spec: DataSpec) -> list[Finding]:
    """Every data check's findings for the files of ``spec``, errors first."""
    data = read_data(spec)
    findings = [finding for check in DATA_CHECKS for finding in check(data)]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))
