"""``prepare``: a dataset of conversations to token ids, masks and labels, on all cores or on Ray.

The input is planned as chunks (:mod:`.records`); each chunk is read, validated, rendered and
tokenized in a worker, which sends back the chunk's columns and its rejected rows; the driver
writes chunks in row order, so output order is input order and memory holds only the chunks in
flight. A rejected row goes to the errors file with its row number and reason, and the summary
counts every row read as written or rejected.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ChatplateError, InputError, MaskError, MissingDependencyError, TemplateError, TruncationError
from ..errors import RecordError
from ..template import _render_kwargs
from .formats import to_example
from .masks import MaskOptions
from .outputs import COLUMNS, Columns, open_writer, output_kind, to_arrow
from .records import BadRow, Chunk, input_kind, plan_chunks, read_chunk

if TYPE_CHECKING:
    from ..template import ChatTemplate

__all__ = ["PrepareSummary", "RejectedRowsWarning", "prepare", "prepare_dataset", "REASONS"]

REASONS = ("bad_json", "unknown_format", "bad_record", "bad_role", "template_error", "mask_error", "too_long",
           "no_trained_tokens")
TRUNCATIONS = ("drop", "tokens", "turns")


@dataclass(frozen=True)
class _Settings:
    format: str | None
    max_length: int | None
    truncation: str
    masks: MaskOptions
    jsonl: bool
    sanitize_control_tokens: bool = True


@dataclass
class _ChunkResult:
    start_row: int
    rows: int
    batch: Any
    errors: list[dict[str, Any]]
    written: int
    tokens: int
    trained: int


@dataclass
class PrepareSummary:
    """What a run did: every row read was written or rejected (by reason)."""

    rows_read: int = 0
    rows_written: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    trained_tokens: int = 0
    seconds: float = 0.0
    output: str = ""
    errors_path: str | None = None

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())

    def __str__(self) -> str:
        rate = self.tokens / self.seconds if self.seconds else 0.0
        lines = [
            f"rows read {self.rows_read:,}, written {self.rows_written:,}, rejected {self.rows_rejected:,}",
            f"tokens {self.tokens:,}, trained {self.trained_tokens:,} "
            f"({self.trained_tokens / self.tokens:.1%} of tokens)" if self.tokens else "tokens 0",
            f"{self.seconds:.1f} s: {self.rows_read / self.seconds if self.seconds else 0:,.0f} rows/s, "
            f"{rate / 1e6:.2f} M tokens/s",
            f"output: {self.output}",
        ]
        if self.rejected:
            reasons = ", ".join(f"{reason} {count:,}" for reason, count in self.rejected.most_common())
            lines.insert(1, f"rejected by reason: {reasons}; see {self.errors_path}")
        return "\n".join(lines)


class RejectedRowsWarning(UserWarning):
    """:func:`prepare_dataset` left rows out (the message counts them by reason)."""


# -- one chunk, in a worker ------------------------------------------------------------------------

_worker_template: ChatTemplate | None = None


def _init_worker(template: ChatTemplate, single_threaded: bool) -> None:
    global _worker_template
    if single_threaded:
        # One tokenizer thread per worker process: the processes already fill the cores.
        os.environ["RAYON_NUM_THREADS"] = "1"
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_template = template
    template.tokenizer  # noqa: B018 - load it once, before the first chunk


def _run_chunk(chunk: Chunk, settings: _Settings) -> _ChunkResult:
    assert _worker_template is not None
    return encode_chunk(_worker_template, chunk, settings)


def _error(row: int, reason: str, message: str, record: Any) -> dict[str, Any]:
    return {"row": row, "reason": reason, "error": message, "record": record}


def _reason(exc: ChatplateError) -> str:
    if isinstance(exc, RecordError):
        return exc.reason or "bad_record"
    if isinstance(exc, TruncationError):
        return "too_long"
    if isinstance(exc, MaskError):
        return "mask_error"
    # A template that fails on a record, or a record the conversation checks reject.
    return "template_error" if isinstance(exc, TemplateError) else "bad_record"


def encode_chunk(template: ChatTemplate, chunk: Chunk, settings: _Settings) -> _ChunkResult:
    """Read, validate and encode one chunk; rejected rows are returned, never dropped."""
    records = read_chunk(chunk)
    columns, errors = encode_records(template, records, chunk.start_row, settings)
    if settings.jsonl:
        batch: Any = "".join(
            json.dumps(dict(zip(COLUMNS, values)), separators=(",", ":")) + "\n"
            for values in zip(*(columns[name] for name in COLUMNS))
        )
    else:
        batch = to_arrow(columns)
    return _ChunkResult(chunk.start_row, len(records), batch, errors, len(columns["n_tokens"]),
                        sum(columns["n_tokens"]), sum(columns["n_trained"]))


def encode_records(
    template: ChatTemplate, records: list[Any], start_row: int, settings: _Settings
) -> tuple[Columns, list[dict[str, Any]]]:
    """Validate and encode records (rows ``start_row``...): the output columns of the rows that
    pass, and an error entry (row, reason, message, record) for each row that does not."""
    from ..tokens.encoder import _cut, _label, encode_examples

    errors: list[dict[str, Any]] = []
    examples: list[tuple[int, Any, tuple[Any, dict[str, Any]]]] = []
    for offset, record in enumerate(records):
        row = start_row + offset
        if isinstance(record, BadRow):
            errors.append(_error(row, "bad_json", record.message, None))
            continue
        try:
            example = to_example(record, settings.format)
        except RecordError as exc:
            errors.append(_error(row, _reason(exc), str(exc), record))
            continue
        kwargs = _render_kwargs(example.tools, None, False, False, None, {})
        examples.append((row, record, (example.messages, kwargs)))
    tokenizer = template.tokenizer
    turns = settings.max_length if settings.truncation == "turns" else None
    encoded = encode_examples(template, tokenizer, [item for _, _, item in examples],
                              sanitize_control_tokens=settings.sanitize_control_tokens, masks=settings.masks,
                              turns_max_length=turns)
    columns: Columns = {name: [] for name in COLUMNS}
    for (row, record, _), enc in zip(examples, encoded):
        if isinstance(enc, ChatplateError):
            errors.append(_error(row, _reason(enc), str(enc), record))
            continue
        if settings.max_length is not None and len(enc.input_ids) > settings.max_length:
            if settings.truncation == "drop":
                errors.append(_error(row, "too_long", f"{len(enc.input_ids)} tokens > max_length={settings.max_length}", record))
                continue
            _cut(enc, settings.max_length, tokenizer.truncation_side)
            _label([enc])
        assert enc.assistant_mask is not None and enc.labels is not None
        n_trained = sum(enc.assistant_mask)
        if not n_trained:
            errors.append(_error(row, "no_trained_tokens", "no token of this conversation is trained (no assistant "
                                 "turn, or all of it truncated away)", record))
            continue
        columns["input_ids"].append(enc.input_ids)
        columns["attention_mask"].append(enc.attention_mask)
        columns["labels"].append(enc.labels)
        columns["n_tokens"].append(len(enc.input_ids))
        columns["n_trained"].append(n_trained)
    errors.sort(key=lambda e: e["row"])
    return columns, errors


# -- engines: an ordered map of encode_chunk over the plan -------------------------------------------


def _local(template: ChatTemplate, plan: Iterator[Chunk], settings: _Settings, workers: int) -> Iterator[_ChunkResult]:
    if workers <= 1:
        _init_worker(template, single_threaded=False)
        for chunk in plan:
            yield _run_chunk(chunk, settings)
        return
    import multiprocessing

    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    window = 2 * workers
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(template, True)) as pool:
            in_flight: list[Future[_ChunkResult]] = []
            for chunk in plan:
                in_flight.append(pool.submit(_run_chunk, chunk, settings))
                if len(in_flight) >= window:
                    yield in_flight.pop(0).result()
            for future in in_flight:
                yield future.result()
    except BrokenProcessPool as exc:
        raise ChatplateError(
            "a worker process died (out of memory, or killed); nothing after the rows already written was "
            "processed: run again with fewer --workers or a smaller chunk size"
        ) from exc


class _RayChunkEncoder:
    """A Ray Data actor: the template and tokenizer load once per actor."""

    def __init__(self, template: ChatTemplate, settings: _Settings) -> None:
        _init_worker(template, single_threaded=True)
        self.settings = settings

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import pickle

        results = [pickle.dumps(_run_chunk(pickle.loads(item), self.settings)) for item in batch["chunk"]]
        return {"result": results}


def _ray(template: ChatTemplate, plan: Iterator[Chunk], settings: _Settings, workers: int, address: str | None) -> Iterator[_ChunkResult]:
    import pickle

    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependencyError("--engine ray needs Ray: pip install 'chatplate[ray]'", extra="ray", package="ray") from exc
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": workers}
        ray.init(include_dashboard=False, ignore_reinit_error=True, log_to_driver=False, **kwargs)
        started = True
    try:
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        # Chunks are descriptions (paths and ranges), so the driver holds no rows; JSON arrays,
        # read whole by the planner, carry theirs.
        dataset = ray.data.from_items([{"chunk": pickle.dumps(chunk)} for chunk in plan])
        encoded = dataset.map_batches(
            _RayChunkEncoder,
            fn_constructor_args=(template, settings),
            batch_size=1,
            concurrency=workers,
            num_cpus=1,
        )
        for row in encoded.iter_rows():
            yield pickle.loads(row["result"])
    finally:
        if started:
            ray.shutdown()


# -- the run -------------------------------------------------------------------------------------------


def prepare(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    template: ChatTemplate,
    *,
    format: str | None = None,
    input_format: str | None = None,
    output_format: str | None = None,
    max_length: int | None = None,
    truncation: str = "drop",
    workers: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    errors: str | os.PathLike[str] | None = None,
    on_error: str = "skip",
    chunk_rows: int = 256,
    train_roles: Any = None,
    train_end_of_turn: bool = True,
    train_last_turn_only: bool = False,
    sanitize_control_tokens: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareSummary:
    """Turn a dataset of conversations into ``input_ids``, ``attention_mask``, ``labels``,
    ``n_tokens`` and ``n_trained`` columns.

    ``input``: JSONL, JSON, Parquet or a ``save_to_disk`` directory; records in any of the
    formats of :mod:`chatplate.training.formats` (detected per record unless ``format`` names
    one). ``output``: ``.parquet``, ``.jsonl`` or a directory (a Hugging Face dataset).
    ``max_length`` with ``truncation``: ``"drop"`` rejects longer rows, ``"tokens"`` cuts them,
    ``"turns"`` drops their oldest turns. Rejected rows go to ``errors`` (default
    ``OUTPUT.errors.jsonl``) with row number and reason; ``on_error="fail"`` stops at the first.
    ``workers`` processes (default: all cores) or ``engine="ray"`` (``ray_address`` for an
    existing cluster). ``progress(rows, tokens)`` is called after each chunk.

        summary = prepare("chats.jsonl", "train.parquet", chatplate.load("Qwen/Qwen2.5-0.5B-Instruct"))
        print(summary)
    """
    if truncation not in TRUNCATIONS:
        raise InputError(f"truncation: expected one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
    if truncation == "turns" and max_length is None:
        raise InputError("truncation='turns' needs max_length")
    if max_length is not None and (not isinstance(max_length, int) or max_length <= 0):
        raise InputError(f"max_length: expected a positive int, got {max_length!r}")
    if on_error not in ("skip", "fail"):
        raise InputError(f"on_error: expected 'skip' or 'fail', got {on_error!r}")
    if engine not in ("local", "ray"):
        raise InputError(f"engine: expected 'local' or 'ray', got {engine!r}")
    if chunk_rows <= 0:
        raise InputError(f"chunk_rows: expected a positive int, got {chunk_rows!r}")
    workers = workers or os.cpu_count() or 1
    out_kind = output_kind(output, output_format)
    settings = _Settings(
        format=format,
        max_length=max_length,
        truncation=truncation,
        masks=MaskOptions.from_arguments(train_roles, train_end_of_turn, train_last_turn_only, None),
        jsonl=out_kind == "jsonl",
        sanitize_control_tokens=sanitize_control_tokens,
    )
    template.tokenizer  # noqa: B018 - fail here, before any worker starts, if there is none
    plan = plan_chunks(input, input_kind(input, input_format), chunk_rows)
    errors_path = Path(errors) if errors is not None else Path(f"{output}.errors.jsonl")
    summary = PrepareSummary(output=str(output), errors_path=str(errors_path))
    started = time.perf_counter()
    results = _ray(template, plan, settings, workers, ray_address) if engine == "ray" else _local(template, plan, settings, workers)
    writer = open_writer(output, out_kind)
    errors_file = None
    try:
        for result in results:
            if result.errors and on_error == "fail":
                first = result.errors[0]
                raise RecordError(
                    f"row {first['row']}: {first['error']} (reason: {first['reason']}); stopped because "
                    "on_error='fail'", reason=first["reason"], row=first["row"],
                )
            writer.write(result.batch)
            if result.errors:
                if errors_file is None:
                    errors_file = errors_path.open("w", encoding="utf-8")
                for entry in result.errors:
                    errors_file.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
                summary.rejected.update(entry["reason"] for entry in result.errors)
            summary.rows_read += result.rows
            summary.rows_written += result.written
            summary.tokens += result.tokens
            summary.trained_tokens += result.trained
            if progress is not None:
                progress(summary.rows_read, summary.tokens)
    finally:
        writer.close()
        if errors_file is not None:
            errors_file.close()
    if errors_file is None:
        summary.errors_path = None
        if errors_path.exists() and errors is None:
            errors_path.unlink()  # a stale file from an earlier run would mislead
    summary.seconds = time.perf_counter() - started
    return summary


def prepare_dataset(
    dataset: Any,
    template: ChatTemplate,
    *,
    format: str | None = None,
    max_length: int | None = None,
    truncation: str = "drop",
    num_proc: int | None = None,
    batch_size: int = 256,
    errors: str | os.PathLike[str] | None = None,
    train_roles: Any = None,
    train_end_of_turn: bool = True,
    train_last_turn_only: bool = False,
) -> Any:
    """``datasets.Dataset`` of conversations -> dataset of ``input_ids``, ``attention_mask``,
    ``labels``, ``n_tokens`` and ``n_trained``, through ``Dataset.map`` (``num_proc`` workers):
    the replacement for a loop over ``apply_chat_template``.

    Rejected rows are left out, counted by reason in a :class:`RejectedRowsWarning`, and written
    to ``errors`` (JSONL with row number, reason and record) when given.

        train = prepare_dataset(load_dataset("json", data_files="chats.jsonl")["train"], template, num_proc=2)
    """
    if truncation not in TRUNCATIONS:
        raise InputError(f"truncation: expected one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
    settings = _Settings(
        format=format, max_length=max_length, truncation=truncation,
        masks=MaskOptions.from_arguments(train_roles, train_end_of_turn, train_last_turn_only, None), jsonl=False,
    )
    template.tokenizer  # noqa: B018 - fail before mapping if there is none
    names = list(dataset.column_names)

    def encode(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        count = len(indices)
        records = [{name: batch[name][i] for name in names} for i in range(count)]
        out: dict[str, list[Any]] = {name: [] for name in (*COLUMNS, "_error")}
        columns, rejected = encode_records(template, records, 0, settings)
        kept = iter(range(len(columns["n_tokens"])))
        failed = {entry["row"]: entry for entry in rejected}
        for offset in range(count):
            entry = failed.get(offset)
            if entry is None:
                position = next(kept)
                for name in COLUMNS:
                    out[name].append(columns[name][position])
                out["_error"].append(None)
            else:
                for name in COLUMNS:
                    out[name].append([] if name in ("input_ids", "attention_mask", "labels") else 0)
                entry = {**entry, "row": indices[offset]}
                out["_error"].append(json.dumps(entry, ensure_ascii=False, default=str))
        return out

    mapped = dataset.map(encode, batched=True, batch_size=batch_size, with_indices=True, num_proc=num_proc,
                         remove_columns=names, desc="chatplate")
    failures = [json.loads(entry) for entry in mapped["_error"] if entry is not None]
    if failures:
        if errors is not None:
            with Path(errors).open("w", encoding="utf-8") as handle:
                for entry in failures:
                    handle.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        reasons = Counter(entry["reason"] for entry in failures)
        import warnings

        warnings.warn(
            f"{len(failures)} of {len(mapped)} rows left out ("
            + ", ".join(f"{reason} {count}" for reason, count in reasons.most_common())
            + (f"); see {errors}" if errors is not None else "); pass errors='file.jsonl' to see them"),
            RejectedRowsWarning,
            stacklevel=2,
        )
        mapped = mapped.filter(lambda error: error is None, input_columns="_error", num_proc=num_proc)
    return mapped.remove_columns(["_error"])
