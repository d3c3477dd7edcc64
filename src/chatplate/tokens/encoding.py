"""Token ids for rendered prompts: encodings, batches, padding and tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import Fix, InputError, MissingDependencyError, TemplateRuntimeError
from ..messages import lone_surrogate
from ..safety import Marker, has_markers, split_marked
from .spans import Spans, clean_positions, labels_from, mask_from_encoding, token_mask
from .tokenizer import ChatTokenizer

__all__ = ["Encoding", "BatchEncoding"]

Padding = Literal[False, True, "longest", "max_length", "do_not_pad"]


@dataclass
class Encoding:
    """One encoded prompt.

    ``offsets`` (when asked for) are ``(start, end)`` character offsets into ``text`` per token.
    ``assistant_mask`` and ``labels`` (with ``return_assistant_mask``): 1 for each token the
    model is trained to produce, and the ids there with ``-100`` elsewhere.
    ``missing_bos`` reports a prompt without the BOS the tokenizer would normally add;
    ``truncated`` and ``dropped_turns`` say what truncation removed.
    """

    text: str
    input_ids: list[int]
    attention_mask: list[int]
    offsets: list[tuple[int, int]] | None = None
    assistant_mask: list[int] | None = None
    labels: list[int] | None = None
    missing_bos: bool = False
    removed_duplicate_bos: bool = False
    truncated: bool = False
    dropped_turns: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


class BatchEncoding(dict):  # type: ignore[type-arg]
    """``input_ids`` and ``attention_mask`` for a batch (lists, or arrays/tensors when asked for),
    readable as a dict (like transformers' ``BatchEncoding``) or as attributes; ``encodings``
    keeps each conversation's :class:`Encoding`."""

    def __init__(self, data: dict[str, Any], encodings: list[Encoding]) -> None:
        super().__init__(data)
        self.encodings = encodings

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def encode_texts(
    tokenizer: ChatTokenizer,
    rendered: Sequence[str],
    marker: Marker | None,
    with_offsets: bool,
    spans: Sequence[Spans | None] | None = None,
    arrays: bool = False,
) -> list[tuple[str, Any, list[tuple[int, int]] | None, Any, list[int] | None]]:
    """Encode rendered prompts (markers included, if any) as ``(text, ids, offsets, mask, labels)``
    (``labels`` where they came cheaper here than from the mask later, else ``None``).

    Prompts without marked tokens are encoded whole, in one batched call into the tokenizer's
    Rust threads; only prompts carrying marked control tokens are encoded piece by piece.
    ``spans`` (character spans per prompt, in the marked text) give each prompt its token mask.
    With ``arrays``, ids and masks from the fast path stay numpy arrays (``prepare`` writes them
    to Arrow as they are: building Python ints costs more than the encoding); others are lists.
    """
    try:
        return _encode_texts(tokenizer, rendered, marker, with_offsets, spans, arrays)
    except Exception:
        # Both engines refuse a lone surrogate (with a TypeError or a UnicodeEncodeError): say
        # what it is. Looked for only then: messages are checked already, only a template
        # writes one, and a search of every prompt costs a tenth of its encoding.
        _reject_surrogates(rendered)
        raise


def _reject_surrogates(rendered: Sequence[str]) -> None:
    for text in rendered:
        at = lone_surrogate(text)
        if at is not None:
            raise TemplateRuntimeError(
                f"the rendered prompt holds a lone surrogate (U+{ord(text[at]):04X} at character {at}), which no "
                "tokenizer can encode; the template wrote it (an escape such as '\\ud800', or '%c' of a surrogate)"
            )


def _encode_texts(
    tokenizer: ChatTokenizer,
    rendered: Sequence[str],
    marker: Marker | None,
    with_offsets: bool,
    spans: Sequence[Spans | None] | None,
    arrays: bool,
) -> list[tuple[str, Any, list[tuple[int, int]] | None, Any, list[int] | None]]:
    results: list[Any] = [None] * len(rendered)
    whole: list[int] = []
    for index, text in enumerate(rendered):
        if marker is None or not has_markers(text):
            whole.append(index)
        else:
            clean, pieces = split_marked(text, marker)
            ids, offsets = _encode_pieces(tokenizer, pieces)
            wanted = spans[index] if spans is not None else None
            mask = token_mask(offsets, clean_positions(text, wanted)) if wanted is not None else None
            results[index] = (clean, ids, offsets if with_offsets else None, mask, None)
    fast = tokenizer.fast_for(sum(len(rendered[index]) for index in whole)) if whole else None
    if fast is not None:
        quick = [index for index in whole if fast.accepts(rendered[index])]
        wanted_spans = [spans[index] for index in quick] if spans is not None else None
        try:
            encoded = fast.encode([rendered[index] for index in quick], with_offsets, wanted_spans)
        except Exception as exc:  # noqa: BLE001 - fastokens raises plain exceptions on what it refuses
            _reject_surrogates([rendered[index] for index in quick])  # the prompt's fault, not the engine's
            # A text the load-time check could not foresee: tokenizers takes over, for good.
            tokenizer.drop_fast(exc)
            encoded = []
        for index, (ids, starts, ends, mask) in zip(quick, encoded):
            offsets = list(zip(starts.tolist(), ends.tolist())) if with_offsets else None
            labels = None
            if not arrays:
                ids = fast.to_list(ids)
                if mask is not None:
                    # From the mask while it is an array: its bytes come without a pass in Python.
                    labels, mask = labels_from(ids, mask), mask.tolist()
            results[index] = (rendered[index], ids, offsets, mask, labels)
        whole = [index for index in whole if results[index] is None]
    if whole:
        texts = [rendered[i] for i in whole]
        backend = tokenizer.backend
        if with_offsets or spans is not None:
            for index, enc in zip(whole, backend.encode_batch(texts, add_special_tokens=False)):
                wanted = spans[index] if spans is not None else None
                ids = enc.ids
                # Masks from the encoding itself: reading every offset into Python costs more
                # than the tokenizer call.
                mask = mask_from_encoding(enc, len(ids), wanted) if wanted is not None else None
                results[index] = (rendered[index], ids, list(enc.offsets) if with_offsets else None, mask, None)
        else:
            for index, enc in zip(whole, backend.encode_batch_fast(texts, add_special_tokens=False)):
                results[index] = (rendered[index], enc.ids, None, None, None)
    return results


def _encode_pieces(tokenizer: ChatTokenizer, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[tuple[int, int]]]:
    backend = tokenizer.backend
    first, _ = pieces[0]
    enc = backend.encode(first, add_special_tokens=False)
    ids = enc.ids
    offsets = list(enc.offsets)
    newline = backend.encode("\n", add_special_tokens=False).ids
    position = len(first)
    for piece, as_text in pieces[1:]:
        encoder = tokenizer.plain if as_text else backend
        # Encoded after a newline, as the reference does, so SentencePiece adds no prefix space
        # in the middle of a prompt; the newline's tokens are dropped again.
        enc = encoder.encode("\n" + piece, add_special_tokens=False)
        if enc.ids[: len(newline)] == newline:
            piece_ids = enc.ids[len(newline) :]
            piece_offsets = [(max(s - 1, 0), max(e - 1, 0)) for s, e in enc.offsets[len(newline) :]]
        else:
            enc = encoder.encode(piece, add_special_tokens=False)
            piece_ids, piece_offsets = enc.ids, enc.offsets
        if as_text:
            token_id = backend.token_to_id(piece)
            if token_id is not None and token_id in piece_ids:
                raise InputError(
                    f"cannot encode {piece!r} as text: this tokenizer produces that control token from plain "
                    "text too; {fix} or remove it from the data",
                    fix=Fix("pass sanitize_control_tokens=False", "add --no-sanitize"),
                )
        ids.extend(piece_ids)
        offsets.extend((s + position, e + position) for s, e in piece_offsets)
        position += len(piece)
    return ids, offsets


def pad_batch(
    encodings: list[Encoding],
    tokenizer: ChatTokenizer,
    padding: Padding,
    max_length: int | None,
    padding_side: str,
) -> dict[str, list[list[int]]]:
    """The batch's columns, padded as transformers pads (``True``/``"longest"`` or
    ``"max_length"``): ``input_ids`` with the pad id, ``attention_mask`` with 0, and, when the
    encodings carry masks, ``assistant_masks`` with 0 and ``labels`` with -100."""
    columns: dict[str, list[list[int]]] = {
        "input_ids": [e.input_ids for e in encodings],
        "attention_mask": [e.attention_mask for e in encodings],
    }
    if encodings and all(e.assistant_mask is not None for e in encodings):
        columns["assistant_masks"] = [e.assistant_mask for e in encodings]  # type: ignore[misc]
        columns["labels"] = [e.labels if e.labels is not None else [] for e in encodings]
    if padding in (False, "do_not_pad"):
        return columns
    ids = columns["input_ids"]
    if padding in (True, "longest"):
        target = max((len(x) for x in ids), default=0)
    elif padding == "max_length":
        if max_length is None:
            raise InputError("padding='max_length' needs max_length")
        target = max_length
    else:
        raise InputError(f"padding: expected False, True, 'longest' or 'max_length', got {padding!r}")
    if padding_side not in ("right", "left"):
        raise InputError(f"padding_side: expected 'right' or 'left', got {padding_side!r}")
    pad_id = tokenizer.pad_id
    if pad_id is None and any(len(x) < target for x in ids):
        raise InputError(
            "cannot pad: the tokenizer has no pad token; set pad_token in tokenizer_config.json "
            "(often the EOS token) or encode without padding"
        )
    fill = {"input_ids": pad_id if pad_id is not None else 0, "attention_mask": 0, "assistant_masks": 0, "labels": -100}
    padded: dict[str, list[list[int]]] = {}
    for name, rows in columns.items():
        value = fill[name]
        out = []
        for row in rows:
            gap = target - len(row)
            if gap <= 0:
                out.append(row)
            elif padding_side == "right":
                out.append(row + [value] * gap)
            else:
                out.append([value] * gap + row)
        padded[name] = out
    return padded


def to_tensors(rows: list[list[int]], kind: str | None) -> Any:
    """Lists as they are, or one ``np``/``pt`` tensor (rows must then have one length)."""
    if kind is None:
        return rows
    if kind not in ("np", "pt"):
        raise InputError(f"return_tensors: expected None, 'np' or 'pt', got {kind!r}")
    if len({len(r) for r in rows}) > 1:
        raise InputError(
            f"return_tensors={kind!r} needs sequences of one length: pass padding=True (or 'max_length')"
        )
    if kind == "np":
        try:
            import numpy as np
        except ImportError as exc:
            raise MissingDependencyError(
                "return_tensors='np' needs numpy: pip install 'chatplate[numpy]'", extra="numpy", package="numpy"
            ) from exc
        return np.asarray(rows, dtype=np.int64).reshape(len(rows), -1)
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            "return_tensors='pt' needs torch: pip install 'chatplate[torch]' (CPU: pip install torch)",
            extra="torch",
            package="torch",
        ) from exc
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), -1)
