"""``prepare``: a dataset of conversations to token ids, masks and labels, on all cores or on Ray.

The input is planned as chunks (:mod:`.records`); each chunk is read, validated, rendered and
tokenized in a worker, which sends back the chunk's columns and its rejected rows; the driver
writes chunks in row order, so output order is input order and memory holds only the chunks in
flight. A rejected row goes to the errors file with its row number and reason, and the summary
counts every row read as written or rejected.
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import json
import os
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ChatplateError, InputError, MaskError, MissingDependencyError, TemplateError, TruncationError
from ..errors import Fix, RecordError, RejectedRowsWarning, SingleProcessWarning
from ..rendering import render_kwargs
from ..tokens.encoder import RenderedExamples, _cut, encode_rendered_examples, render_examples
from .formats import to_example
from .masks import MaskOptions
from .outputs import COLUMNS, Columns, PackedRows, open_writer, output_kind
from .records import BadRow, Chunk, input_kind, plan_chunks, read_chunk

if TYPE_CHECKING:
    from ..template import ChatTemplate

__all__ = ["PrepareSummary", "prepare", "prepare_dataset", "REASONS"]

REASONS = ("bad_json", "unknown_format", "bad_record", "bad_role", "template_error", "mask_error", "too_long",
           "no_trained_tokens")
TRUNCATIONS = ("drop", "tokens", "turns")
# What starting a worker costs beyond loading the template and tokenizer, which this process
# times itself: a fresh interpreter importing chatplate, numpy and pyarrow (0.4 s measured).
WORKER_START_SECONDS = 0.4
# How much faster two worker processes are than one on two cores. On the 2-vCPU machine this
# was measured on it varies from day to day: 1.6 once; 1.11 and 1.13 another day (20,000 chats
# with derived masks, 6.85 -> 6.15 s and 6.07 -> 5.36 s), when two processes each ran about a
# third slower than one alone. Taken between the two.
WORKERS_SPEEDUP = 1.25
# Inputs other than JSONL, whose first chunk does not tell its share of the input: below this
# size, one process.
SMALL_INPUT_BYTES = 40 * 2**20
# Rendered text kept while the fast tokenizer loads (see _while_loading): ~3,000 chats.
READ_AHEAD_CHARS = 16_000_000


@dataclass(frozen=True)
class _Settings:
    format: str | None
    max_length: int | None
    truncation: str
    masks: MaskOptions
    jsonl: bool
    sanitize_control_tokens: bool = True
    # Rows as numpy arrays, for the Arrow writers (prepare_dataset hands lists to datasets, which
    # would otherwise type the columns by whichever tokenizer engine ran).
    arrays: bool = False


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
        lines = [
            f"rows read {self.rows_read:,}, written {self.rows_written:,}, rejected {self.rows_rejected:,}",
            f"tokens {self.tokens:,}, trained {self.trained_tokens:,} "
            f"({self.trained_tokens / self.tokens:.1%} of tokens)" if self.tokens else "tokens 0",
            f"{self.seconds:.1f} s: {rate(self.rows_read, self.seconds, 'rows')}, {rate(self.tokens, self.seconds, 'tokens')}",
            f"output: {self.output}",
        ]
        if self.rejected:
            reasons = ", ".join(f"{reason} {count:,}" for reason, count in self.rejected.most_common())
            lines.insert(1, f"rejected by reason: {reasons}; see {self.errors_path}")
        return "\n".join(lines)


def rate(count: int, seconds: float, unit: str) -> str:
    """``count`` per second with a prefix that keeps three significant digits in view:
    ``rate(5_340_000, 7.4, "tokens")`` is ``'722 k tokens/s'``."""
    per_second = count / seconds if seconds > 0 else 0.0
    for scale, prefix in ((1e9, "G "), (1e6, "M "), (1e3, "k ")):
        if per_second >= scale * 0.9995:  # 999,950 reads as 1 M, not 1e+03 k
            return f"{per_second / scale:.3g} {prefix}{unit}/s"
    return f"{per_second:.3g} {unit}/s"


# -- one chunk, in a worker ------------------------------------------------------------------------

_worker_template: ChatTemplate | None = None


def _init_worker(template: ChatTemplate, single_threaded: bool, expected_chars: int) -> None:
    global _worker_template
    if single_threaded:
        # One tokenizer thread per worker process: the processes already fill the cores.
        os.environ["RAYON_NUM_THREADS"] = "1"
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        os.environ["FASTOKENS_BPE_THREADS"] = "1"
    _worker_template = template
    # Load it once, with the fast path if there is text enough to pay for it. This process
    # loads it on a thread while tokenizers encodes the first chunks (a large vocabulary takes
    # seconds to load); a worker, whose siblings keep the other cores busy, loads it first.
    template.tokenizer.expect(expected_chars, background=not single_threaded)


def _run_chunk(chunk: Chunk, settings: _Settings) -> _ChunkResult:
    assert _worker_template is not None
    return encode_chunk(_worker_template, chunk, settings)


def _error(row: int, line: int | None, reason: str, message: str, record: Any) -> dict[str, Any]:
    """An errors-file entry: ``row`` counts records from 0; ``line`` (JSONL only) is 1-based."""
    entry: dict[str, Any] = {"row": row}
    if line is not None:
        entry["line"] = line
    entry.update(reason=reason, error=message, record=record)
    return entry


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
    return _finish_chunk(template, _render_chunk(template, chunk, settings), settings)


def _render_chunk(template: ChatTemplate, chunk: Chunk, settings: _Settings) -> _RenderedRecords:
    records, lines = read_chunk(chunk)
    return render_records(template, records, chunk.start_row, settings, lines)


def _finish_chunk(template: ChatTemplate, rendered: _RenderedRecords, settings: _Settings) -> _ChunkResult:
    columns, errors = encode_rendered_records(template, rendered, settings)
    if settings.jsonl:
        batch: Any = "".join(
            json.dumps(dict(zip(COLUMNS, values)), separators=(",", ":")) + "\n"
            for values in zip(*(columns[name] for name in COLUMNS))
        )
    else:
        batch = PackedRows.from_columns(columns)
    return _ChunkResult(rendered.start_row, rendered.rows, batch, errors, len(columns["n_tokens"]),
                        sum(columns["n_tokens"]), sum(columns["n_trained"]))


@dataclass
class _RenderedRecords:
    """Records (rows ``start_row``...) validated and rendered, not yet tokenized."""

    start_row: int
    rows: int
    examples: list[tuple[int, int | None, Any]]  # (row, line, record) of each example rendered
    rendered: RenderedExamples
    errors: list[dict[str, Any]]


def encode_records(
    template: ChatTemplate, records: list[Any], start_row: int, settings: _Settings, lines: list[int] | None = None
) -> tuple[Columns, list[dict[str, Any]]]:
    """Validate and encode records (rows ``start_row``..., at ``lines`` of a JSONL file): the
    output columns of the rows that pass, and an error entry (row, line, reason, message, record)
    for each row that does not."""
    return encode_rendered_records(template, render_records(template, records, start_row, settings, lines), settings)


def render_records(
    template: ChatTemplate, records: list[Any], start_row: int, settings: _Settings, lines: list[int] | None = None
) -> _RenderedRecords:
    """The first half of :func:`encode_records`: validate and render."""
    errors: list[dict[str, Any]] = []
    examples: list[tuple[int, int | None, Any]] = []
    conversations: list[tuple[Any, dict[str, Any]]] = []
    for offset, record in enumerate(records):
        row, line = start_row + offset, lines[offset] if lines is not None else None
        if isinstance(record, BadRow):
            errors.append(_error(row, line, "bad_json", record.message, record.text))
            continue
        try:
            example = to_example(record, settings.format)
        except RecordError as exc:
            errors.append(_error(row, line, _reason(exc), str(exc), record))
            continue
        examples.append((row, line, record))
        conversations.append((example.messages, render_kwargs(example.tools, None, False, False, None, {})))
    turns = settings.max_length if settings.truncation == "turns" else None
    rendered = render_examples(template.renderer, template.tokenizer, conversations,
                               sanitize_control_tokens=settings.sanitize_control_tokens, masks=settings.masks,
                               turns_max_length=turns)
    return _RenderedRecords(start_row, len(records), examples, rendered, errors)


def encode_rendered_records(
    template: ChatTemplate, rendered: _RenderedRecords, settings: _Settings
) -> tuple[Columns, list[dict[str, Any]]]:
    """The second half of :func:`encode_records`: tokenize, truncate, and keep or reject each row."""
    tokenizer = template.tokenizer
    encoded = encode_rendered_examples(rendered.rendered, tokenizer, sanitize_control_tokens=settings.sanitize_control_tokens,
                                       arrays=settings.arrays)
    errors = rendered.errors
    columns: Columns = {name: [] for name in COLUMNS}
    for (row, line, record), enc in zip(rendered.examples, encoded):
        if isinstance(enc, ChatplateError):
            errors.append(_error(row, line, _reason(enc), str(enc), record))
            continue
        if settings.max_length is not None and len(enc.input_ids) > settings.max_length:
            if settings.truncation == "drop":
                errors.append(_error(row, line, "too_long", f"{len(enc.input_ids)} tokens > max_length={settings.max_length}", record))
                continue
            _cut(enc, settings.max_length, tokenizer.truncation_side)
        assert enc.assistant_mask is not None and enc.labels is not None
        mask = enc.assistant_mask
        n_trained = int(mask.sum()) if hasattr(mask, "dtype") else sum(mask)
        if not n_trained:
            errors.append(_error(row, line, "no_trained_tokens", "no token of this conversation is trained (no assistant "
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


def _unguarded_main_call(start_method: str) -> str | None:
    """The script whose top-level code makes this call outside ``if __name__ == "__main__":``,
    when worker processes started with ``start_method`` would run that code again; else ``None``.

    ``spawn`` and ``forkserver`` children import the main module to find their functions. A call
    at its top level would then start workers from workers, which multiprocessing refuses while
    the child is still starting: the pool breaks (or, seen on some systems, hangs).
    """
    if start_method == "fork":
        return None
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or not path.endswith(".py"):
        return None  # interactive, python -c, notebooks: nothing is re-run
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name.endswith(".__main__"):
        return None  # python -m package: multiprocessing does not re-run a package's __main__
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return None
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    line = frame.f_lineno
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_guard(node.test):
            if node.body[0].lineno <= line <= (node.body[-1].end_lineno or line):
                return None
    return path


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides
    )


def _single_process_warning(script: str, stacklevel: int) -> None:
    warnings.warn(
        f"running in one process: {script} calls chatplate at its top level, and worker processes would run "
        'that code again. To use all cores, put the call under if __name__ == "__main__": (see the README)',
        SingleProcessWarning,
        stacklevel=stacklevel + 1,
    )


def _local(
    template: ChatTemplate, plan: Iterator[Chunk], settings: _Settings, workers: int | None, size: int
) -> Iterator[_ChunkResult]:
    """``workers`` processes, or by default all cores when the input (``size`` bytes) is large
    enough to pay for starting them: this process then encodes the first chunk, and the time it
    took tells how long the rest would take here (see ``_pays_to_start_workers``)."""
    chunks = iter(plan)
    if workers is None:
        workers = os.cpu_count() or 1
        if workers > 1:
            # Chunks rendered while the fast path still loads tell nothing of the speed of the
            # rest: the first chunk begun once it is settled does.
            yield from _while_loading(template, chunks, settings)
            first = next(chunks, None)
            if first is None:
                return
            started = time.perf_counter()
            yield _run_chunk(first, settings)
            seconds = time.perf_counter() - started
            loaded = template.tokenizer.fast_seconds  # what each worker would pay too
            following = next(chunks, None)
            if following is None:
                return
            chunks = itertools.chain([following], chunks)
            if not _pays_to_start_workers(first, seconds, size, loaded):
                workers = 1
    if workers > 1:
        script = _unguarded_main_call("spawn")
        if script is not None:
            _single_process_warning(script, stacklevel=3)  # _local runs inside prepare's loop
            workers = 1
    if workers <= 1:
        _init_worker(template, False, size)  # a second time costs nothing: all is loaded
        yield from _while_loading(template, chunks, settings)
        for chunk in chunks:
            yield _run_chunk(chunk, settings)
        return
    import multiprocessing

    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    window = 2 * workers
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(template, True, size // workers)) as pool:
            in_flight: list[Future[_ChunkResult]] = []
            for chunk in chunks:
                in_flight.append(pool.submit(_run_chunk, chunk, settings))
                if len(in_flight) >= window:
                    yield in_flight.pop(0).result()
            for future in in_flight:
                yield future.result()
    except BrokenProcessPool as exc:
        raise ChatplateError(
            "a worker process died (out of memory, killed, or it failed to start: a script that calls prepare "
            'must do so under if __name__ == "__main__":); nothing after the rows already written was processed: '
            "run again with fewer {fix}",
            fix=Fix("workers", "--workers"),
        ) from exc


def _while_loading(template: ChatTemplate, chunks: Iterator[Chunk], settings: _Settings) -> Iterator[_ChunkResult]:
    """The chunks this process takes while its fast tokenizer loads on a thread: read and
    rendered meanwhile (up to ``READ_AHEAD_CHARS`` of text), then tokenized once it is ready.

    Rendering is Python, on this process's core; the load has the other one. Tokenizing those
    chunks meanwhile with tokenizers, as this did before, put its threads on both cores and
    slowed the load, for ids the fast path gives several times sooner: the command line on 3,000
    chats with derived masks took 2.00 s instead of 1.61 s over Mistral's vocabulary (best of
    five).
    """
    tokenizer = template.tokenizer
    ahead: list[_RenderedRecords] = []
    chars = 0
    while tokenizer.fast_loading and chars < READ_AHEAD_CHARS:
        chunk = next(chunks, None)
        if chunk is None:
            break
        ahead.append(_render_chunk(template, chunk, settings))
        chars += ahead[-1].rendered.chars
    if ahead:
        tokenizer.fast  # noqa: B018 - until it is loaded
    for rendered in ahead:
        yield _finish_chunk(template, rendered, settings)


def _pays_to_start_workers(first: Chunk, seconds: float, size: int, loaded: float) -> bool:
    """Whether workers finish the rest sooner than this process would, after it encoded ``first``
    in ``seconds`` (and loaded the template and tokenizer in ``loaded``).

    Two workers get through the rest ``WORKERS_SPEEDUP`` times faster than this process (which
    also writes the output), after each has started (``WORKER_START_SECONDS`` plus the same
    loading): they pay when the rest takes longer than ``speedup / (speedup - 1)`` starts here.
    """
    if first.kind != "jsonl" or first.byte_end <= first.byte_start:
        return size >= SMALL_INPUT_BYTES
    rest = seconds * (size - first.byte_end) / (first.byte_end - first.byte_start)
    return rest > WORKERS_SPEEDUP / (WORKERS_SPEEDUP - 1) * (WORKER_START_SECONDS + loaded)


def _input_bytes(path: Path) -> int:
    """The input's size on disk (a dataset directory's files together): what decides whether
    workers and the fast tokenizer pay for their start."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.is_file() else 0  # the planner says what is missing


class _RayChunkEncoder:
    """A Ray Data actor: the template and tokenizer load once per actor."""

    def __init__(self, template: ChatTemplate, settings: _Settings, expected_chars: int) -> None:
        _init_worker(template, True, expected_chars)
        self.settings = settings

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import pickle

        results = [pickle.dumps(_run_chunk(pickle.loads(item), self.settings)) for item in batch["chunk"]]
        return {"result": results}


def _ray(
    template: ChatTemplate, plan: Iterator[Chunk], settings: _Settings, workers: int, address: str | None, quiet: bool,
    size: int,
) -> Iterator[_ChunkResult]:
    import logging
    import pickle

    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependencyError("--engine ray needs Ray: pip install 'chatplate[ray]'", extra="ray", package="ray") from exc
    started = False
    # Ray Data logs its progress to the console through its own handlers (and a file, kept).
    consoles = [
        handler for name in ("ray", "ray.data") for handler in logging.getLogger(name).handlers
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    ]
    levels = [handler.level for handler in consoles]
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": workers}
        if quiet:
            kwargs["logging_level"] = logging.ERROR
        ray.init(include_dashboard=False, ignore_reinit_error=True, log_to_driver=False, **kwargs)
        started = True
    context = ray.data.DataContext.get_current()
    progress_bars = context.enable_progress_bars
    if quiet:
        for handler in consoles:
            handler.setLevel(logging.ERROR)
        context.enable_progress_bars = False
    try:
        context.execution_options.preserve_order = True
        # Chunks are descriptions (paths and ranges), so the driver holds no rows; JSON arrays,
        # read whole by the planner, carry theirs.
        dataset = ray.data.from_items([{"chunk": pickle.dumps(chunk)} for chunk in plan])
        encoded = dataset.map_batches(
            _RayChunkEncoder,
            fn_constructor_args=(template, settings, size // workers),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
        for row in encoded.iter_rows():
            yield pickle.loads(row["result"])
    finally:
        for handler, handler_level in zip(consoles, levels):
            handler.setLevel(handler_level)
        context.enable_progress_bars = progress_bars
        if started:
            ray.shutdown()


@contextlib.contextmanager
def _datasets_quiet() -> Iterator[None]:
    """No ``datasets`` progress bars (reading and saving dataset directories) while it runs."""
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


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
    quiet: bool = False,
) -> PrepareSummary:
    """Turn a dataset of conversations into ``input_ids``, ``attention_mask``, ``labels``,
    ``n_tokens`` and ``n_trained`` columns.

    ``input``: JSONL, JSON, Parquet or a ``save_to_disk`` directory; records in any of the
    formats of :mod:`chatplate.training.formats` (detected per record unless ``format`` names
    one). ``output``: ``.parquet``, ``.jsonl`` or a directory (a Hugging Face dataset).
    ``max_length`` with ``truncation``: ``"drop"`` rejects longer rows, ``"tokens"`` cuts them,
    ``"turns"`` drops their oldest turns. Rejected rows go to ``errors`` (default
    ``OUTPUT.errors.jsonl``) with row number and reason; ``on_error="fail"`` stops at the first.
    ``workers`` processes (default: all cores once the first chunk, encoded here, shows that the
    rest would take longer than starting them; else this process alone) or ``engine="ray"`` (``ray_address`` for an
    existing cluster). ``progress(rows, tokens)`` is called after each chunk; ``quiet`` silences
    the progress bars and logs of Ray and ``datasets``.

    Worker processes are started with ``spawn``: in a script, call ``prepare`` under
    ``if __name__ == "__main__":`` (otherwise it runs in one process, with a
    :class:`~chatplate.SingleProcessWarning`).

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
    if workers is not None and (not isinstance(workers, int) or workers <= 0):
        raise InputError(f"workers: expected a positive int (or None for all cores), got {workers!r}")
    out_kind = output_kind(output, output_format)
    settings = _Settings(
        format=format,
        max_length=max_length,
        truncation=truncation,
        masks=MaskOptions.from_arguments(train_roles, train_end_of_turn, train_last_turn_only, None),
        jsonl=out_kind == "jsonl",
        arrays=out_kind != "jsonl",
        sanitize_control_tokens=sanitize_control_tokens,
    )
    template.tokenizer  # noqa: B018 - fail here, before any worker starts, if there is none
    in_kind = input_kind(input, input_format)
    plan = plan_chunks(input, in_kind, chunk_rows)
    size = _input_bytes(Path(input))
    if engine == "local" and (workers or 1) == 1:
        # This process encodes (all, or at least the first chunk): the tokenizer loads its fast
        # path while the output is opened and the first chunks are encoded.
        _init_worker(template, False, size)
    errors_path = Path(errors) if errors is not None else Path(f"{output}.errors.jsonl")
    summary = PrepareSummary(output=str(output), errors_path=str(errors_path))
    started = time.perf_counter()
    silenced = _datasets_quiet() if quiet and "hf" in (in_kind, out_kind) else contextlib.nullcontext()
    with silenced:
        results = (
            _ray(template, plan, settings, workers or os.cpu_count() or 1, ray_address, quiet, size) if engine == "ray"
            else _local(template, plan, settings, workers, size)
        )
        writer = open_writer(output, out_kind)
        errors_file = None
        try:
            for result in results:
                if result.errors and on_error == "fail":
                    first = result.errors[0]
                    where = f"line {first['line']} (row {first['row']})" if "line" in first else f"row {first['row']}"
                    raise RecordError(
                        f"{input}: {where}: {first['error']} (reason: {first['reason']}); stopped there "
                        "({fix})", reason=first["reason"], row=first["row"], line=first.get("line"),
                        fix=Fix("on_error='fail'", "--on-error fail"),
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
    if num_proc is not None and num_proc > 1:
        import multiprocess  # datasets' own pool, with its default start method

        script = _unguarded_main_call(multiprocess.get_start_method())
        if script is not None:
            _single_process_warning(script, stacklevel=2)
            num_proc = None
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
        warnings.warn(
            f"{len(failures)} of {len(mapped)} rows left out ("
            + ", ".join(f"{reason} {count}" for reason, count in reasons.most_common())
            + (f"); see {errors}" if errors is not None else "); pass errors='file.jsonl' to see them"),
            RejectedRowsWarning,
            stacklevel=2,
        )
        mapped = mapped.filter(lambda error: error is None, input_columns="_error", num_proc=num_proc)
    return mapped.remove_columns(["_error"])
