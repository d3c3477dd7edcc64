"""Dataset inputs read in chunks: JSONL, JSON, Parquet and Hugging Face dataset directories.

A run is planned as :class:`Chunk` s, small descriptions of where a run of rows lives (a byte
range of a JSONL file, a Parquet row group, a row range of a dataset directory). Planning reads
only what it must (newlines, Parquet metadata); each worker reads its own chunk, so memory stays
flat however large the input, and the same plan runs on local processes or on Ray.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CorruptSourceError, InputError, MissingDependencyError, SourceError

__all__ = ["INPUT_KINDS", "Chunk", "input_kind", "plan_chunks", "read_chunk"]

INPUT_KINDS = ("jsonl", "json", "parquet", "hf")


@dataclass(frozen=True)
class Chunk:
    """Rows ``start_row`` .. ``start_row + rows`` of the input."""

    kind: str
    path: str
    start_row: int
    rows: int
    byte_start: int = 0
    byte_end: int = 0
    row_group: int = -1
    records: tuple[Any, ...] | None = field(default=None, compare=False)
    # JSONL: the 1-based line number at byte_start, so errors can point at lines.
    first_line: int = 1


class BadRow:
    """A row that could not even be read (invalid JSON): kept in order with its raw text,
    reported, never dropped."""

    __slots__ = ("message", "text")

    def __init__(self, message: str, text: str) -> None:
        self.message = message
        self.text = text


def input_kind(path: str | os.PathLike[str], kind: str | None = None) -> str:
    """``jsonl``, ``json``, ``parquet`` or ``hf`` (a ``save_to_disk`` directory), from the name."""
    if kind is not None:
        if kind not in INPUT_KINDS:
            raise InputError(f"input format: expected one of {', '.join(INPUT_KINDS)}, got {kind!r}")
        return kind
    p = Path(path)
    if p.is_dir():
        if (p / "dataset_info.json").is_file() or (p / "state.json").is_file() or (p / "dataset_dict.json").is_file():
            return "hf"
        raise SourceError(f"{p} is a directory but not a Hugging Face dataset saved with save_to_disk", source=str(p))
    suffixes = "".join(p.suffixes[-2:]).lower()
    for ending, found in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".parquet", "parquet")):
        if suffixes.endswith(ending) or p.suffix.lower() == ending:
            return found
    raise InputError(f"{p}: cannot tell the input format from its name; pass --input-format jsonl|json|parquet|hf")


def plan_chunks(path: str | os.PathLike[str], kind: str, chunk_rows: int) -> Iterator[Chunk]:
    """The chunks of ``path``, in row order."""
    p = Path(path)
    if kind != "hf" and not p.is_file():
        raise SourceError(f"input not found: {p}", source=str(p))
    if kind == "jsonl":
        yield from _plan_jsonl(p, chunk_rows)
    elif kind == "json":
        yield from _plan_json(p, chunk_rows)
    elif kind == "parquet":
        yield from _plan_parquet(p)
    else:
        yield from _plan_hf(p, chunk_rows)


# bytes.strip()'s whitespace, as byte values.
_BLANK = frozenset(b" \t\n\r\x0b\x0c")


def _plan_jsonl(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    row = start_row = 0
    start = position = 0
    first_line = 1
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            position += len(line)
            # (A record's line starts with its "{": no copy of the line is stripped to see that.)
            if line[0] not in _BLANK or line.strip():
                row += 1
                if row - start_row == chunk_rows:
                    yield Chunk("jsonl", str(path), start_row, row - start_row, start, position, first_line=first_line)
                    start_row, start, first_line = row, position, number + 1
            elif row == start_row:
                start, first_line = position, number + 1
    if row > start_row:
        yield Chunk("jsonl", str(path), start_row, row - start_row, start, position, first_line=first_line)


def _plan_json(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CorruptSourceError(f"{path}: not valid JSON ({exc}); for one record per line use a .jsonl file",
                                 path=str(path)) from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise CorruptSourceError(f"{path}: expected a JSON array of records, got {type(data).__name__}", path=str(path))
    for start in range(0, len(data), chunk_rows):
        part = tuple(data[start : start + chunk_rows])
        yield Chunk("json", str(path), start, len(part), records=part)


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(
            "Parquet needs pyarrow: pip install 'chatplate[data]'", extra="data", package="pyarrow"
        ) from exc
    return pq


def _plan_parquet(path: Path) -> Iterator[Chunk]:
    pq = _pyarrow_parquet()
    try:
        metadata = pq.ParquetFile(str(path)).metadata
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid and OSError subclasses
        raise CorruptSourceError(f"{path}: not a readable Parquet file ({exc})", path=str(path)) from exc
    row = 0
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        if rows:
            yield Chunk("parquet", str(path), row, rows, row_group=group)
        row += rows


def _load_hf(path: Path) -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise MissingDependencyError(
            "Hugging Face dataset directories need datasets: pip install 'chatplate[data]'", extra="data",
            package="datasets",
        ) from exc
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if len(loaded) != 1:
            raise InputError(f"{path} holds several splits ({', '.join(loaded)}); pass the directory of one split")
        loaded = next(iter(loaded.values()))
    return loaded


def _plan_hf(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    total = len(_load_hf(path))
    for start in range(0, total, chunk_rows):
        yield Chunk("hf", str(path), start, min(chunk_rows, total - start))


def read_chunk(chunk: Chunk) -> tuple[list[Any], list[int] | None]:
    """The chunk's records, in order (a :class:`BadRow` where a row cannot be read), and for
    JSONL the 1-based line number of each."""
    if chunk.records is not None:
        return list(chunk.records), None
    if chunk.kind == "jsonl":
        with open(chunk.path, "rb") as handle:
            handle.seek(chunk.byte_start)
            raw = handle.read(chunk.byte_end - chunk.byte_start)
        records: list[Any] = []
        lines: list[int] = []
        # Split on b"\n" only, as the planner counts lines (splitlines would also split on \r, \x1c...).
        for number, line in enumerate(raw.split(b"\n"), chunk.first_line):
            if not line.strip():
                continue
            lines.append(number)
            try:
                records.append(json.loads(line))
            except (ValueError, RecursionError) as exc:
                text = line.decode("utf-8", errors="replace").rstrip("\r")
                records.append(BadRow(f"not valid JSON: {_json_problem(exc)}", text))
        return records, lines
    if chunk.kind == "parquet":
        table = _pyarrow_parquet().ParquetFile(chunk.path).read_row_group(chunk.row_group)
        return table.to_pylist(), None
    if chunk.kind == "hf":
        part = _load_hf(Path(chunk.path)).select(range(chunk.start_row, chunk.start_row + chunk.rows))
        return part.to_list(), None
    raise InputError(f"unknown chunk kind {chunk.kind!r}")


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"  # json's own "line 1" is the line within the line
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)
