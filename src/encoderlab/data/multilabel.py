"""Multi-label text classification: any number of labels per text, as a multi-hot target vector.

Labels come from one column, either as a string joined by ``label_delimiter`` (``billing|refund``; an
empty cell means no label) or, in JSONL, as a JSON list (``["billing", "refund"]``). The label set is
the sorted union over the training data; the label map is saved with the run like single-label runs.
"""

from __future__ import annotations

import numpy as np

from encoderlab.data.base import LabelMap, Targets
from encoderlab.data.classification import TextClassificationDataModule
from encoderlab.errors import UserError
from encoderlab.validate import check, text


class MultiLabelClassificationDataModule(TextClassificationDataModule):
    """TextClassificationDataModule whose labels are sets; items carry a float multi-hot ``labels`` vector."""

    targets = Targets.LABEL_SETS

    def __init__(self, *args, label_delimiter: str = "|", **kwargs):
        super().__init__(*args, **kwargs)
        check("data.label_delimiter", label_delimiter, text)
        self.label_delimiter = label_delimiter

    @property
    def regression(self) -> bool:
        return False

    def label_sets(self, raw: list) -> list[list[str]]:
        """Each row's labels: a JSON list as is, a string split on the delimiter; blanks dropped."""
        out = []
        for value in raw:
            if value is None:
                names = []
            elif isinstance(value, list):
                names = [str(v).strip() for v in value]
            else:
                names = [v.strip() for v in str(value).split(self.label_delimiter)]
            out.append([n for n in names if n])
        return out

    def _build_label_map(self, raw: list, source: str) -> None:
        self._int_labels = False
        self._labels = LabelMap(sorted({name for names in self.label_sets(raw) for name in names}))
        found = len(self._labels)
        if found < 2:
            only = f"one label only ('{self._labels.names[0]}')" if found else "no labels"
            raise UserError(
                f"{source} has {only} in column '{self.label_column}' — multi-label classification needs at "
                f"least 2: set data.label_column (labels joined by data.label_delimiter='{self.label_delimiter}', "
                "or a JSON list)"
            )
        self._check_expected_count(self._labels.names, source)

    def _encode_labels(self, raw: list, source: str) -> np.ndarray:
        mapping = self._labels.to_id
        out = np.zeros((len(raw), len(self._labels)), dtype=np.float32)
        for row, names in enumerate(self.label_sets(raw)):
            for name in names:
                if name not in mapping:
                    raise UserError(
                        f"label '{name}' in row {row + 1} of {source} does not occur in the training data "
                        f"(labels: {', '.join(self._labels.names[:10])}) — fix the file or data.label_delimiter"
                    )
                out[row, mapping[name]] = 1.0
        return out
