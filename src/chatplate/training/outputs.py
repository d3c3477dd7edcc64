"""Prepared rows written out: Parquet, JSONL, or a Hugging Face dataset directory.

Columns: ``input_ids``, ``attention_mask``, ``labels`` (-100 where not trained), ``n_tokens``,
``n_trained``. Writers take one chunk's columns at a time, in row order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingDependencyError

__all__ = ["OUTPUT_KINDS", "COLUMNS", "Columns", "output_kind", "open_writer"]

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


def to_arrow(columns: Columns) -> Any:
    """One chunk's columns as a ``pyarrow.RecordBatch`` (built where the chunk was encoded)."""
    pa, _ = _pyarrow()
    ids = pa.array(columns["input_ids"], type=pa.list_(pa.int32()))
    # Every kept token is attended to: the mask is the ids' shape filled with ones.
    ones = pa.Array.from_buffers(pa.int8(), len(ids.values), [None, pa.py_buffer(b"\x01" * len(ids.values))])
    return pa.record_batch(
        [
            ids,
            pa.ListArray.from_arrays(ids.offsets, ones),
            pa.array(columns["labels"], type=pa.list_(pa.int32())),
            pa.array(columns["n_tokens"], type=pa.int32()),
            pa.array(columns["n_trained"], type=pa.int32()),
        ],
        schema=arrow_schema(),
    )


class _ParquetWriter:
    def __init__(self, path: Path) -> None:
        _, pq = _pyarrow()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._writer = pq.ParquetWriter(str(path), arrow_schema())

    def write(self, batch: Any) -> None:
        if batch.num_rows:
            self._writer.write_batch(batch)

    def close(self) -> None:
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

    def write(self, batch: Any) -> None:
        self._parquet.write(batch)

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
    """A writer with ``write(batch)`` and ``close()``; JSONL takes JSON text, the others Arrow."""
    target = Path(path)
    return {"parquet": _ParquetWriter, "jsonl": _JsonlWriter, "hf": _DatasetWriter}[kind](target)
