"""Published reference scores, shown beside measured rows and always marked with their source and split.

Only numbers checked against their source are here. Scores are keyed by suite task name, then by the last part
of a metric's name (``val/f1`` → ``f1``), in percent as published. A published row fills a cell only when
it has every metric the cell shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from encoderlab.errors import UserError

TURC = (
    "Turc et al. 2019, 'Well-Read Students Learn Better' (google-research/bert README, smaller BERT models): "
    "GLUE test-server scores, best of lr {3e-4, 1e-4, 5e-5, 3e-5} × batch {8..128}, 4 epochs"
)
MINILM = (
    "Wang et al. 2020, MiniLM (microsoft/unilm minilm/README.md, MiniLMv1-L6-H384-uncased, the encoder "
    "all-MiniLM-L6-v2 was trained from): GLUE dev scores"
)


@dataclass(frozen=True)
class PublishedRow:
    key: str
    title: str
    split: str  # the split the scores were measured on, as the source says
    source: str
    scores: dict[str, dict[str, float]]  # task → metric (last part of its name) → value in percent

    @property
    def label(self) -> str:
        return f"{self.title} (published, {self.split})"

    def cell(self, task: str, metrics: tuple[str, ...]) -> tuple[float, ...] | None:
        """The published values of ``metrics`` for ``task`` (fractions, as measured ones), or None."""
        scores = self.scores.get(task, {})
        names = [m.split("/")[-1] for m in metrics]
        if not names or any(n not in scores for n in names):
            return None
        return tuple(scores[n] / 100 for n in names)


def _glue(sst2, mrpc_f1, mrpc_acc, stsb_pearson, stsb_spearman, rte) -> dict[str, dict[str, float]]:
    return {
        "sst2": {"acc": sst2},
        "mrpc": {"f1": mrpc_f1, "acc": mrpc_acc},
        "stsb": {"pearson": stsb_pearson, "spearman": stsb_spearman},
        "rte": {"acc": rte},
    }


ROWS = {
    row.key: row
    for row in (
        PublishedRow(
            "bert-tiny", "BERT-Tiny L2/H128", "GLUE test", TURC, _glue(83.2, 81.1, 71.1, 74.3, 73.6, 57.2)
        ),
        PublishedRow(
            "bert-mini", "BERT-Mini L4/H256", "GLUE test", TURC, _glue(85.9, 81.1, 71.8, 75.4, 73.3, 57.9)
        ),
        PublishedRow(
            "bert-small", "BERT-Small L4/H512", "GLUE test", TURC, _glue(89.7, 83.4, 76.2, 78.8, 77.0, 61.8)
        ),
        PublishedRow(
            "bert-medium", "BERT-Medium L8/H512", "GLUE test", TURC, _glue(89.6, 86.6, 81.6, 80.4, 78.4, 62.2)
        ),
        # The README's MRPC column does not say which metric it is, so it is left out.
        PublishedRow(
            "minilm-l6-h384",
            "MiniLM-L6-H384",
            "GLUE dev",
            MINILM,
            {"sst2": {"acc": 91.5}, "rte": {"acc": 68.8}},
        ),
    )
}


def parse_published(text: str | None) -> tuple[str, ...]:
    """``--published bert-tiny,bert-mini`` (``all``, ``none``) → the row keys; unknown keys are refused."""
    if text is None:
        return ()
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if keys in (["none"], []):
        return ()
    if keys == ["all"]:
        return tuple(ROWS)
    return check_published(keys, "--published")


def check_published(keys, where: str) -> tuple[str, ...]:
    unknown = [k for k in keys if k not in ROWS]
    if unknown:
        raise UserError(
            f"{where} {unknown[0]!r} is not a published row — choose from {', '.join(ROWS)} (or all)"
        )
    return tuple(dict.fromkeys(keys))
