"""Vectors on disk, by the output's extension, each with its record beside it (``<output>.json``):

- ``.npy``: the float32 [n, hidden] array (``numpy.load``); row ids, when there are any, one per line in
  ``<output stem>.ids.txt`` (row i of the array is line i);
- ``.jsonl``: one ``{"id": ..., "vector": [...]}`` per text, in input order (id: the row's id, else its
  position 0, 1, ...);
- ``.parquet``: columns ``id`` and ``vector`` (a fixed-size list of float32), the record also in the
  file's metadata (``pyarrow``, from the ``embed`` extra).

Every file is written to a temporary file beside it and renamed into place only when all are written: a
failure leaves no half-written file, and an existing output is replaced only with ``force``.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from encoderlab.embedding.record import EmbeddingRecord
from encoderlab.errors import UserError
from encoderlab.extras import require
from encoderlab.files import atomic_file

EXTENSIONS = (".npy", ".jsonl", ".parquet")
RECORD_SUFFIX = ".json"  # vectors.npy → vectors.npy.json
IDS_SUFFIX = ".ids.txt"  # vectors.npy → vectors.ids.txt
PARQUET_METADATA_KEY = b"encoderlab.embedding"


@dataclass(frozen=True)
class OutputFiles:
    """The files one output consists of."""

    vectors: Path
    record: Path
    ids: Path | None = None  # only a .npy output with row ids

    @classmethod
    def of(cls, path: str | Path, with_ids: bool) -> OutputFiles:
        path = Path(path)
        if path.suffix.lower() not in EXTENSIONS:
            raise UserError(
                f"--output {path}: cannot tell the format from '{path.suffix or 'no extension'}' — name it "
                f"{' or '.join(f'vectors{e}' for e in EXTENSIONS)}"
            )
        ids = path.with_suffix(IDS_SUFFIX) if with_ids and path.suffix.lower() == ".npy" else None
        return cls(path, path.with_name(path.name + RECORD_SUFFIX), ids)

    def all(self) -> list[Path]:
        return [p for p in (self.vectors, self.ids, self.record) if p is not None]


def check_output(
    path: str | Path, force: bool, with_ids: bool = False, input_path: str | None = None
) -> OutputFiles:
    """The output's files, or a UserError before any work: a bad extension, a missing directory, a file
    that exists (without ``force``) or that is the input."""
    files = OutputFiles.of(path, with_ids)
    out = files.vectors
    if out.is_dir():
        raise UserError(f"--output {out} is a directory — pass a file name such as vectors.npy")
    if not out.parent.is_dir():
        raise UserError(f"directory {out.parent} does not exist — create it or choose another --output")
    source = Path(input_path).resolve() if input_path not in (None, "-") else None
    for file in files.all():
        if source is not None and file.resolve() == source:
            raise UserError(f"{file} is the input file — write the vectors elsewhere (another --output)")
        if file.exists() and not force:
            raise UserError(f"{file} already exists — choose another --output or pass --force to replace it")
    if out.suffix.lower() == ".parquet":  # before any work, not after it
        _pyarrow()
    return files


def save_vectors(
    path: str | Path,
    vectors: np.ndarray,
    record: EmbeddingRecord,
    ids: list[str] | None = None,
    force: bool = False,
) -> OutputFiles:
    """Write ``vectors`` (float32 [n, hidden]) in the format of ``path``'s extension, with ``record``
    beside them; all files appear together or not at all."""
    files = check_output(path, force, with_ids=ids is not None)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if ids is not None and len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
    if files.ids is not None:
        check_ids(ids)
    record = replace(record, ids=files.ids.name if files.ids is not None else None)
    with ExitStack() as stack:
        # Entered record first: the renames run in reverse, so the record (the mark of a complete output)
        # lands last.
        record_tmp = stack.enter_context(atomic_file(files.record))
        ids_tmp = stack.enter_context(atomic_file(files.ids)) if files.ids is not None else None
        vectors_tmp = stack.enter_context(atomic_file(files.vectors))
        WRITERS[files.vectors.suffix.lower()](vectors_tmp, vectors, ids, record)
        if ids_tmp is not None:
            _write_ids(ids_tmp, ids)
        record_tmp.write_text(json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return files


def _write_npy(tmp: Path, vectors: np.ndarray, ids, record) -> None:
    with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a path
        np.save(f, vectors)


def _write_jsonl(tmp: Path, vectors: np.ndarray, ids, record) -> None:
    with open(tmp, "w", encoding="utf-8") as f:
        for i, vector in enumerate(vectors):
            # float32 → Python float is exact, and so is reading it back as float32.
            row = {"id": ids[i] if ids is not None else i, "vector": vector.tolist()}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_parquet(tmp: Path, vectors: np.ndarray, ids, record) -> None:
    pa, parquet = _pyarrow()
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    id_column = pa.array(ids, type=pa.string()) if ids is not None else pa.array(np.arange(len(vectors)))
    table = pa.table({"id": id_column, "vector": column})
    table = table.replace_schema_metadata({PARQUET_METADATA_KEY: json.dumps(record.to_dict())})
    parquet.write_table(table, str(tmp))


def _pyarrow():
    why = {"for_": "writing vectors to .parquet", "or_else": "write .npy or .jsonl"}
    return require("pyarrow", **why), require("pyarrow.parquet", **why)


def check_ids(ids: list[str]) -> None:
    """Ids a ``.npy`` output can keep (one per line in ``<stem>.ids.txt``): none with a line break."""
    for n, value in enumerate(ids):
        if "\n" in value or "\r" in value:
            raise UserError(
                f"id {value!r} (row {n}) holds a line break, which {IDS_SUFFIX} cannot store — write .jsonl or "
                ".parquet instead"
            )


def _write_ids(tmp: Path, ids: list[str]) -> None:
    tmp.write_text("".join(f"{value}\n" for value in ids), encoding="utf-8")


WRITERS = {".npy": _write_npy, ".jsonl": _write_jsonl, ".parquet": _write_parquet}
