"""Prepared rows written out: Parquet, JSONL, or a Hugging Face dataset directory.

Columns: ``input_ids``, ``attention_mask``, ``labels`` (-100 where not trained), ``n_tokens``,
``n_trained``. Writers take one chunk's columns at a time, in row order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingDependencyError

__all__ = ["OUTPUT_KINDS", "COLUMNS", "Columns", "PackedRows", "output_kind", "open_writer"]

OUTPUT_KINDS = ("parquet", "jsonl", "hf")
COLUMNS = ("input_ids", "attention_mask", "labels", "n_tokens", "n_trained")
Columns = dict[str, list[Any]]


def output_kind(path: str | os.PathLike[str], kind: str | None = None) -> str:
    """``parquet`` or ``jsonl`` from the file name, ``hf`` for a path without a suffix."""
    if kind is not None:
        if kind not in OUTPUT_KINDS:
            raise InputError(f"output format: expected one of {', '.join(OUTPUT_KINDS)}, got {kind!r}")
        return kind
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == "":
        return "hf"
    raise InputError(f"{path}: cannot tell the output format from its name; use .parquet, .jsonl or a directory")


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(
            "Parquet and dataset output need pyarrow: pip install 'chatplate[data]'", extra="data", package="pyarrow"
        ) from exc
    return pa, pq


def arrow_schema() -> Any:
    pa, _ = _pyarrow()
    return pa.schema(
        [
            ("input_ids", pa.list_(pa.int32())),
            ("attention_mask", pa.list_(pa.int8())),
            ("labels", pa.list_(pa.int32())),
            ("n_tokens", pa.int32()),
            ("n_trained", pa.int32()),
        ]
    )


@dataclass(frozen=True)
class PackedRows:
    """One chunk's rows as a worker sends them to be written: the ids of all rows joined, each
    row's length and number of trained tokens, and which ids are trained, one bit each.

    Labels and attention masks are made from these where the rows are written (on the writer's
    thread): they repeat the ids and the mask, and shipped whole between processes they would
    almost double the bytes pickled, piped and unpickled per token.
    """

    lengths: Any  # int64, one per row
    ids: Any  # int32, all rows joined
    trained: Any  # np.packbits of the trained mask, all rows joined
    n_trained: list[int]

    @property
    def num_rows(self) -> int:
        return len(self.lengths)

    @classmethod
    def from_columns(cls, columns: Columns) -> PackedRows:
        """Rows as ``encode_records`` makes them (numpy arrays from the fast tokenizer, or
        lists): a label that is not ``-100`` is a trained token's id."""
        import numpy as np

        rows = columns["input_ids"]
        lengths = np.fromiter(map(len, rows), np.int64, len(rows))
        ids = np.concatenate(rows).astype(np.int32, copy=False) if rows else np.zeros(0, np.int32)
        labels = np.concatenate(columns["labels"]) if rows else np.zeros(0, np.int32)
        return cls(lengths, ids, np.packbits(np.not_equal(labels, -100)), list(columns["n_trained"]))

    def to_arrow(self) -> Any:
        """The rows as a ``pyarrow.RecordBatch`` of the output's schema."""
        pa, _ = _pyarrow()
        import numpy as np

        def arrow(values: Any, kind: Any) -> Any:
            # From the buffer: pa.array on numpy input imports pandas (a quarter second per worker).
            return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])

        offsets = arrow(np.concatenate(([0], np.cumsum(self.lengths))).astype(np.int32), pa.int32())
        trained = np.unpackbits(self.trained, count=len(self.ids)).view(bool)
        labels = np.where(trained, self.ids, np.int32(-100))
        # Every kept token is attended to: the mask is the ids' shape filled with ones.
        ones = arrow(np.ones(len(self.ids), np.int8), pa.int8())
        return pa.record_batch(
            [
                pa.ListArray.from_arrays(offsets, arrow(self.ids, pa.int32())),
                pa.ListArray.from_arrays(offsets, ones),
                pa.ListArray.from_arrays(offsets, arrow(labels, pa.int32())),
                arrow(self.lengths.astype(np.int32), pa.int32()),
                arrow(np.asarray(self.n_trained, np.int32), pa.int32()),
            ],
            schema=arrow_schema(),
        )


class _ParquetWriter:
    def __init__(self, path: Path) -> None:
        _, pq = _pyarrow()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Measured on prepared chats: dictionary-encoding token ids costs twice the write time of
        # zstd alone and gives a larger file; the all-ones attention mask is one run in a
        # dictionary; min/max statistics of token ids serve no reader and cost a tenth.
        self._writer = pq.ParquetWriter(
            str(path), arrow_schema(), compression="zstd", use_dictionary=["attention_mask"], write_statistics=False
        )

        # Arrow compresses and writes without holding the GIL: on a thread of its own, a batch is
        # written while the next chunk is encoded (a tenth of a one-process run, measured on
        # 3,000 chats). One batch at most is in flight.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="chatplate-parquet")
        self._pending: Future[None] | None = None

    def write(self, rows: PackedRows) -> None:
        self._wait()
        if rows.num_rows:
            self._pending = self._thread.submit(self._write, rows)

    def _write(self, rows: PackedRows) -> None:
        self._writer.write_batch(rows.to_arrow())

    def _wait(self) -> None:
        """Until the batch in flight is written (its error, if any, raised here)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._thread.shutdown()
            self._writer.close()


class _JsonlWriter:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("w", encoding="utf-8")

    def write(self, lines: str) -> None:
        # Workers send JSONL chunks as text, already serialised.
        self._handle.write(lines)

    def close(self) -> None:
        self._handle.close()


class _DatasetWriter:
    """Parquet into a scratch file, then ``datasets`` turns it into a ``save_to_disk`` directory."""

    def __init__(self, path: Path) -> None:
        try:
            import datasets  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError(
                "Hugging Face dataset output needs datasets: pip install 'chatplate[data]'", extra="data",
                package="datasets",
            ) from exc
        self.path = path
        self._scratch = Path(tempfile.mkdtemp(prefix="chatplate-prepare-"))
        self._parquet = _ParquetWriter(self._scratch / "rows.parquet")

    def write(self, rows: PackedRows) -> None:
        self._parquet.write(rows)

    def close(self) -> None:
        import datasets

        self._parquet.close()
        try:
            dataset = datasets.Dataset.from_parquet(str(self._parquet.path), cache_dir=str(self._scratch / "cache"))
            if self.path.exists():
                shutil.rmtree(self.path)
            dataset.save_to_disk(str(self.path))
        finally:
            shutil.rmtree(self._scratch, ignore_errors=True)


def open_writer(path: str | os.PathLike[str], kind: str) -> Any:
    """A writer with ``write(batch)`` and ``close()``; JSONL takes JSON text, the others :class:`PackedRows`."""
    target = Path(path)
    return {"parquet": _ParquetWriter, "jsonl": _JsonlWriter, "hf": _DatasetWriter}[kind](target)
