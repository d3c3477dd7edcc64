"""From conversations to token ids: render (with control-token marking), encode, fix BOS,
truncate, pad. ``ChatTemplate.encode``/``encode_batch`` are thin wrappers over this.

This layer sits on :mod:`chatplate.rendering`; training masks come from above, as a
:class:`SpanFinder` the caller passes in."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .. import engine
from ..errors import ChatplateError, InputError, MissingBosWarning, TruncationError
from ..messages import validate_conversation
from ..rendering import Renderer
from ..safety import Marker, Marking, marker_for, split_marked
from . import collector
from .encoding import (
    BatchEncoding,
    Encoding,
    Padding,
    encode_texts,
    pad_batch,
    to_tensors,
)
from .spans import Spans, labels_from
from .tokenizer import ChatTokenizer

__all__ = [
    "SpanFinder", "RenderedExamples", "encode_conversations", "render_examples", "encode_rendered_examples", "batch_from",
    "template_control_spans", "template_markers",
]


class SpanFinder(Protocol):
    """What is trained in a conversation (:class:`chatplate.training.MaskOptions` is one)."""

    def spans(
        self, renderer: Renderer, conversation: Any, render_kwargs: dict[str, Any], marker: Marking | None, control: Marker
    ) -> tuple[str, Spans]:
        """The conversation rendered (with ``marker`` s, if any) and its trained character spans;
        ``control`` holds the template's control tokens."""
        ...


def encode_conversations(
    renderer: Renderer,
    tokenizer: ChatTokenizer,
    conversations: Sequence[Any],
    *,
    render_kwargs: dict[str, Any],
    sanitize_control_tokens: bool,
    truncation: bool | str,
    max_length: int | None,
    return_offsets: bool,
    masks: SpanFinder | None = None,
) -> list[Encoding]:
    """Encode each conversation; one batched tokenizer call for all of them.

    With ``masks``, each encoding also gets ``assistant_mask`` and ``labels``.
    """
    render = _Prompts.for_call(renderer, tokenizer, render_kwargs, sanitize_control_tokens, masks)
    if truncation == "turns":
        encodings = [
            _encode_by_turns(render, tokenizer, c, max_length, return_offsets, sanitize_control_tokens)
            for c in conversations
        ]
    elif truncation not in (False, True):
        raise InputError(f"truncation: expected False, True or 'turns', got {truncation!r}")
    else:
        encodings = _encode_rendered(render, tokenizer, [render(c) for c in conversations], return_offsets, sanitize_control_tokens)
        if truncation:
            limit = _limit(tokenizer, max_length)
            if limit is not None:
                for enc in encodings:
                    _cut(enc, limit, tokenizer.truncation_side)
    _label(encodings)
    _warn_missing_bos(renderer, encodings)
    return encodings


@dataclass
class RenderedExamples:
    """Examples rendered (with their masks' spans) and not yet tokenized, in their order: what
    :func:`render_examples` leaves for :func:`encode_rendered_examples`."""

    results: list[Encoding | ChatplateError | None]  # an error, or the encoding truncation by turns made
    pending: dict[Marker, list[Any]]  # by control-token marker: (index, prompts, (text, spans))

    @property
    def chars(self) -> int:
        """How much rendered text waits to be tokenized."""
        return sum(len(text) for group in self.pending.values() for _, _, (text, _) in group)


def render_examples(
    renderer: Renderer,
    tokenizer: ChatTokenizer,
    examples: Sequence[tuple[Any, dict[str, Any]]],
    *,
    sanitize_control_tokens: bool,
    masks: SpanFinder | None,
    turns_max_length: int | None = None,
) -> RenderedExamples:
    """Render independent ``(conversation, render_kwargs)`` examples (each with its own tools)
    for :func:`encode_rendered_examples`: a failing example keeps its error in its place.
    ``turns_max_length`` drops oldest turns to fit, as ``truncation="turns"`` does (those
    examples are tokenized here: what fits depends on the ids)."""
    results: list[Encoding | ChatplateError | None] = [None] * len(examples)
    pending: dict[Marker, list[tuple[int, _Prompts, tuple[str, list[tuple[int, int]] | None]]]] = {}
    for index, (conversation, render_kwargs) in enumerate(examples):
        render = _Prompts.for_call(renderer, tokenizer, render_kwargs, sanitize_control_tokens, masks)
        try:
            if turns_max_length is not None:
                results[index] = _encode_by_turns(render, tokenizer, conversation, turns_max_length, False, sanitize_control_tokens)
            else:
                pending.setdefault(render.control, []).append((index, render, render(conversation)))
        except ChatplateError as exc:
            results[index] = exc
    return RenderedExamples(results, pending)


def encode_rendered_examples(
    rendered: RenderedExamples, tokenizer: ChatTokenizer, *, sanitize_control_tokens: bool, arrays: bool = False
) -> list[Encoding | ChatplateError]:
    """Tokenize what :func:`render_examples` rendered, in one batched call per marker. With
    ``arrays``, encodings may hold numpy arrays instead of lists (see ``encode_texts``)."""
    results = list(rendered.results)
    for group in rendered.pending.values():
        encodings = _encode_rendered(group[0][1], tokenizer, [item for _, _, item in group], False, sanitize_control_tokens,
                                     arrays)
        for (index, _, _), enc in zip(group, encodings):
            results[index] = enc
    _label([r for r in results if isinstance(r, Encoding)])
    return results  # type: ignore[return-value]


@collector.paused()
def _label(encodings: list[Encoding]) -> None:
    for enc in encodings:
        if enc.assistant_mask is not None and enc.labels is None:
            enc.labels = labels_from(enc.input_ids, enc.assistant_mask)


class _Prompts:
    """Renders one conversation for encoding: the marked text and, with masks, its trained spans."""

    def __init__(
        self, renderer: Renderer, render_kwargs: dict[str, Any], marker: Marking | None, control: Marker,
        masks: SpanFinder | None,
    ) -> None:
        self.renderer, self.render_kwargs, self.marker, self.control, self.masks = renderer, render_kwargs, marker, control, masks

    @classmethod
    def for_call(
        cls, renderer: Renderer, tokenizer: ChatTokenizer, render_kwargs: dict[str, Any], sanitize: bool,
        masks: SpanFinder | None,
    ) -> _Prompts:
        # The control tokens are needed for masks (end-of-turn markers) even when data is not
        # sanitized; data is marked only when it is.
        control, marking = template_markers(renderer, tokenizer, render_kwargs.get("tools"))
        return cls(renderer, render_kwargs, marking if sanitize else None, control, masks)

    def __call__(self, conversation: Any) -> tuple[str, list[tuple[int, int]] | None]:
        if self.masks is None:
            return self.renderer.render_text(conversation, self.render_kwargs, self.marker), None
        return self.masks.spans(self.renderer, conversation, self.render_kwargs, self.marker, self.control)


# Paused here, where the ids, offsets and masks are built, and not while rendering: a render
# leaves cycles (a recorded render's log and its takers), which a pause would let pile up.
@collector.paused()
def _encode_rendered(
    render: _Prompts,
    tokenizer: ChatTokenizer,
    rendered: list[tuple[str, list[tuple[int, int]] | None]],
    return_offsets: bool,
    safe: bool,
    arrays: bool = False,
) -> list[Encoding]:
    spans = [spans for _, spans in rendered] if render.masks is not None else None
    marker = render.marker.data if render.marker is not None else None
    encoded = encode_texts(tokenizer, [text for text, _ in rendered], marker, return_offsets, spans, arrays)
    return [_finish(tokenizer, text, ids, offsets, safe, mask, labels) for text, ids, offsets, mask, labels in encoded]


def batch_from(
    encodings: list[Encoding],
    tokenizer: ChatTokenizer,
    *,
    padding: Padding,
    max_length: int | None,
    padding_side: str | None,
    return_tensors: str | None,
) -> BatchEncoding:
    columns = pad_batch(encodings, tokenizer, padding, max_length, padding_side or tokenizer.padding_side)
    return BatchEncoding({name: to_tensors(rows, return_tensors) for name, rows in columns.items()}, encodings)


def template_control_spans(
    renderer: Renderer, conversation: Any, render_kwargs: dict[str, Any], candidates: tuple[str, ...]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered prompt and where in it the template itself wrote one of ``candidates``: the
    same marking that keeps data from forging control tokens tells data's copies apart."""
    marker = marker_for(candidates)
    marked = renderer.render_text(conversation, render_kwargs, Marking(data=marker, assistant=marker))
    text, pieces = split_marked(marked, marker)
    spans: list[tuple[int, int]] = []
    position = 0
    for piece, from_data in pieces:
        if not from_data:
            spans.extend((position + m.start(), position + m.end()) for m in marker.tokens.finditer(piece))
        position += len(piece)
    return text, spans


def template_markers(renderer: Renderer, tokenizer: ChatTokenizer, tools: Any) -> tuple[Marker, Marking]:
    """The template's control tokens (its end-of-turn markers among them) and what data must
    not produce, by role: worked out once per tokenizer and template text (``prepare`` asks for
    every record, and a vocabulary with hundreds of special tokens took 30 us to sort and hash
    them each time)."""
    source = renderer.source(tools)
    known = _markings.setdefault(tokenizer, {})
    found = known.get(source)
    if found is None:
        literals = engine.literal_text(source)
        marking = Marking(
            data=marker_for(tokenizer.data_control_tokens(literals)),
            assistant=marker_for(tuple(sorted(tokenizer.special_tokens))),
        )
        found = known[source] = (marker_for(tokenizer.control_tokens(literals)), marking)
    return found


_markings: weakref.WeakKeyDictionary[ChatTokenizer, dict[str, tuple[Marker, Marking]]] = weakref.WeakKeyDictionary()


def _finish(
    tokenizer: ChatTokenizer,
    text: str,
    ids: Any,
    offsets: list[tuple[int, int]] | None,
    safe: bool,
    mask: Any = None,
    labels: list[int] | None = None,
) -> Encoding:
    # `ids` and `offsets` are fresh from the tokenizer: no copy needed. Ids held as an array
    # (prepare's fast path) get an array of ones, which Arrow takes as it is.
    enc = Encoding(text, ids, _ones(ids), offsets=offsets, assistant_mask=mask, labels=labels)
    bos = tokenizer.bos_id
    if bos is not None and safe and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
        # Never a double BOS (a template writing {{ bos_token }} twice, or data starting with
        # one): the reference keeps both, so only sanitize_control_tokens=False does too.
        enc.input_ids, enc.attention_mask = enc.input_ids[1:], enc.attention_mask[1:]
        if enc.offsets is not None:
            enc.offsets = enc.offsets[1:]
        if enc.assistant_mask is not None:
            enc.assistant_mask = enc.assistant_mask[1:]
        if enc.labels is not None:
            enc.labels = enc.labels[1:]
        enc.removed_duplicate_bos = True
    enc.missing_bos = bool(tokenizer.adds_bos and (not len(enc.input_ids) or enc.input_ids[0] != bos))
    return enc


def _ones(ids: Any) -> Any:
    if hasattr(ids, "dtype"):
        import numpy as np

        return np.ones(len(ids), np.int8)
    return [1] * len(ids)


def _limit(tokenizer: ChatTokenizer, max_length: int | None) -> int | None:
    if max_length is not None:
        if not isinstance(max_length, int) or max_length <= 0:
            raise InputError(f"max_length: expected a positive int, got {max_length!r}")
        return max_length
    return tokenizer.model_max_length


def _cut(enc: Encoding, limit: int, side: str) -> None:
    if len(enc.input_ids) <= limit:
        return
    keep = slice(None, limit) if side != "left" else slice(len(enc.input_ids) - limit, None)
    enc.input_ids = enc.input_ids[keep]
    enc.attention_mask = enc.attention_mask[keep]
    if enc.offsets is not None:
        enc.offsets = enc.offsets[keep]
    if enc.assistant_mask is not None:
        enc.assistant_mask = enc.assistant_mask[keep]
    if enc.labels is not None:
        enc.labels = enc.labels[keep]
    enc.truncated = True


def _encode_by_turns(
    render: _Prompts,
    tokenizer: ChatTokenizer,
    conversation: Any,
    max_length: int | None,
    return_offsets: bool,
    safe: bool,
) -> Encoding:
    """Drop the oldest whole turns (after leading system messages) until the prompt fits."""
    limit = _limit(tokenizer, max_length)
    if limit is None:
        raise InputError("truncation='turns' needs max_length (the tokenizer sets no model_max_length)")
    messages = validate_conversation(conversation)
    head = 0
    while head < len(messages) and messages[head].get("role") == "system":
        head += 1
    # Each candidate start of what is kept: every user turn, oldest first; the last user turn
    # (and everything after it, the generation prompt included) is never dropped.
    starts = [i for i in range(head, len(messages)) if messages[i].get("role") == "user"] or [head]
    candidates = [head] + [s for s in starts if s > head]
    enc = None
    for dropped_to in candidates:
        kept = messages[:head] + messages[dropped_to:]
        [enc] = _encode_rendered(render, tokenizer, [render(kept)], return_offsets, safe)
        enc.dropped_turns = sum(1 for s in starts if s < dropped_to)
        if len(enc.input_ids) <= limit:
            return enc
    assert enc is not None
    raise TruncationError(
        f"max_length={limit} is smaller than the shortest possible prompt ({len(enc.input_ids)} tokens: the "
        "system messages and the last user turn); raise max_length or shorten those messages",
        max_length=limit,
        shortest=len(enc.input_ids),
    )


def _warn_missing_bos(renderer: Renderer, encodings: list[Encoding]) -> None:
    missing = sum(enc.missing_bos for enc in encodings)
    # Once per template: a dataset loop would otherwise repeat it for every call.
    if missing and renderer not in _warned_missing_bos:
        _warned_missing_bos.add(renderer)
        warnings.warn(
            f"{missing} of {len(encodings)} prompt(s) do not start with the BOS token the tokenizer adds to "
            "other input: the template probably lacks {{ bos_token }} (Encoding.missing_bos tells per prompt; "
            "this warning is given once per template)",
            MissingBosWarning,
            stacklevel=4,  # through encode_conversations, to the caller of encode
        )


_warned_missing_bos: weakref.WeakSet[Renderer] = weakref.WeakSet()
