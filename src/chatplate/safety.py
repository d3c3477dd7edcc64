"""Control-token safety: a control token in the ids exists only because the template wrote it.

Data strings are marked before rendering, so that after rendering what data carried can be told
apart from what the template wrote, even when the template assembles a token from pieces:

- a control token found inside a data string is wrapped in two private-use characters
  (``START``/``END``) and encoded as text;
- where a data string begins or ends with part of a control token (``"hi <|im_"``), a third
  character (``JOINT``) marks the edge: a control token that the rendered text holds across such
  an edge was made of data next to other data or template text, and is encoded as text too.

The markers are removed from the text, and the marked tokens are encoded with a tokenizer that
has no added tokens. Edges that form no token change nothing: the text around them is encoded
whole, so innocent data gets exactly the reference's ids.

Which tokens count depends on where the data sits (:class:`Marking`): in the assistant's own
messages only special tokens are refused (the non-special added tokens a model emits, such as
``<tool_call>`` or ``<think>``, stay the tokens it was trained to emit); everywhere else (other
roles, tools, documents, variables) every added token the tokenizer cannot produce from plain
text is refused too.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["Marker", "Marking", "mark", "mark_messages", "split_marked", "has_markers", "strip_markers", "unescape_markers",
           "MARKS"]

START = "\U000f0000"
END = "\U000f0001"
JOINT = "\U000f0002"
MARKS = START + END + JOINT


@dataclass(frozen=True, eq=False)
class Marker:
    """Regexes and tables for one set of control tokens: one object per set (see
    :func:`marker_for`), compared and hashed by identity, which hashing all its tables is not
    (30 us with Llama 3's 256 special tokens, where encoding groups records by marker)."""

    tokens: re.Pattern[str]
    marked: re.Pattern[str]
    # First characters of the control tokens: a string holding none of them needs no regex.
    initials: tuple[str, ...] = ()
    control: tuple[str, ...] = ()
    # Proper prefixes and suffixes of the tokens (what a data edge can hold of one), the last
    # characters of the tokens (a string starting with none of them holds no suffix), and the
    # longest token.
    prefixes: frozenset[str] = frozenset()
    suffixes: frozenset[str] = frozenset()
    finals: str = ""
    longest: int = 0


@dataclass(frozen=True)
class Marking:
    """The control tokens data must not produce, by where the data sits: ``assistant`` for the
    assistant's own messages, ``data`` (a superset) for everything else."""

    data: Marker
    assistant: Marker

    def for_role(self, role: Any) -> Marker:
        return self.assistant if role == "assistant" else self.data


@lru_cache(maxsize=64)
def marker_for(control_tokens: tuple[str, ...]) -> Marker:
    # Longest first, so a token wins over the shorter tokens inside it.
    longest_first = sorted(control_tokens, key=len, reverse=True)
    tokens = re.compile("|".join(map(re.escape, longest_first)) or "(?!)")
    marked = re.compile(f"{START}({tokens.pattern}){END}|[{MARKS}]")
    present = [t for t in control_tokens if t]
    return Marker(
        tokens,
        marked,
        tuple(sorted({t[0] for t in present})),
        tuple(control_tokens),
        frozenset(t[:k] for t in present for k in range(1, len(t))),
        frozenset(t[k:] for t in present for k in range(1, len(t))),
        "".join(sorted({t[-1] for t in present})),
        max(map(len, present), default=0),
    )


def mark(value: Any, marker: Marker) -> Any:
    """Mark control tokens (and token-shaped edges) in every string of ``value`` (dict values,
    not keys).

    Dicts and lists are changed in place: they are the fresh plain copies made for rendering, so
    nothing of the caller's is touched, and nothing is copied again. Markers already present are
    removed first, so data cannot forge a marked token.
    """
    if isinstance(value, str):
        return _mark_text(value, marker)
    if isinstance(value, dict):
        for key, item in value.items():
            if type(item) is str:  # the common case, without the call through mark()
                marked = _mark_text(item, marker)
                if marked is not item:
                    value[key] = marked
            elif isinstance(item, (str, dict, list, tuple)):
                marked = mark(item, marker)
                if marked is not item:
                    value[key] = marked
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, (str, dict, list, tuple)):
                marked = mark(item, marker)
                if marked is not item:
                    value[index] = marked
    elif isinstance(value, tuple):
        # Tuples reach templates as tuples (as in the reference): a marked copy keeps the type.
        marked_items = tuple(mark(item, marker) for item in value)
        if any(new is not old for new, old in zip(marked_items, value)):
            return marked_items
    return value


def mark_messages(messages: list[Any], marking: Marking) -> list[Any]:
    """Mark each message with the tokens its role must not produce (in place)."""
    for message in messages:
        mark(message, marking.for_role(message.get("role")))
    return messages


def _mark_text(value: str, marker: Marker) -> str:
    if not value.isascii() and (START in value or END in value or JOINT in value):
        value = strip_markers(value)
    initials = marker.initials
    if not any(initial in value for initial in initials):
        return value
    value = marker.tokens.sub(f"{START}\\g<0>{END}", value)
    longest = marker.longest
    # The end: a proper prefix of a token, before any trailing whitespace (a template may strip it).
    core = value.rstrip()
    tail = core[-longest:]
    if any(initial in tail for initial in initials):
        for size in range(min(len(tail), longest - 1), 0, -1):
            if core[-size:] in marker.prefixes:
                value = core + JOINT + value[len(core) :]
                break
    # The start: a proper suffix of a token, after any leading whitespace.
    lead = len(value) - len(value.lstrip())
    head = value[lead : lead + longest]
    if any(final in head for final in marker.finals):
        for size in range(min(len(head), longest - 1), 0, -1):
            if head[:size] in marker.suffixes:
                value = value[:lead] + JOINT + value[lead:]
                break
    return value


# How the markers read once a template prints a container (``str`` of a list of parts uses
# repr) or calls ``tojson(ensure_ascii=True)``: escapes, which must count as the markers.
_ESCAPES = {
    **{f"\\U{ord(mark):08x}": mark for mark in MARKS},
    **{json.dumps(mark)[1:-1]: mark for mark in MARKS},
}
_ESCAPED = re.compile("|".join(map(re.escape, _ESCAPES)))


def unescape_markers(text: str, spans: list[tuple[int, int]]) -> tuple[str, list[tuple[int, int]]]:
    """``text`` with escaped markers turned back into markers, and ``spans`` moved to match."""
    if "\\U000f000" not in text and "\\udb80\\udc0" not in text:
        return text, spans
    pieces: list[str] = []
    ends: list[int] = []  # where each escape ends in ``text``
    removed: list[int] = []  # characters removed up to and including that escape
    last = 0
    for match in _ESCAPED.finditer(text):
        pieces.append(text[last : match.start()])
        pieces.append(_ESCAPES[match.group()])
        ends.append(match.end())
        removed.append((removed[-1] if removed else 0) + len(match.group()) - 1)
        last = match.end()
    if not ends:
        return text, spans
    pieces.append(text[last:])

    def moved(position: int) -> int:
        done = bisect.bisect_right(ends, position)
        return position - (removed[done - 1] if done else 0)

    return "".join(pieces), [(moved(start), moved(end)) for start, end in spans]


def has_markers(text: str) -> bool:
    return START in text or END in text or JOINT in text


def strip_markers(text: str) -> str:
    return text.replace(START, "").replace(END, "").replace(JOINT, "")


def split_marked(text: str, marker: Marker) -> tuple[str, list[tuple[str, bool]]]:
    """The text without markers, and its pieces in order as ``(piece, encode_as_text)``.

    A marked token is a piece encoded as text, and so is a control token the clean text holds
    across a ``JOINT`` (data meeting other data or the template). A lone ``START`` or ``END`` (a
    template split a marked token, e.g. with ``.split()``) is dropped but still ends a piece, so
    the text on either side cannot join into a control token. Other joints are just dropped.
    """
    clean: list[str] = []
    forced: list[tuple[int, int]] = []
    cuts: list[int] = []
    joints: list[int] = []
    size = last = 0
    for match in marker.marked.finditer(text):
        before = text[last : match.start()]
        clean.append(before)
        size += len(before)
        token = match.group(1)
        if token is not None:
            clean.append(token)
            forced.append((size, size + len(token)))
            size += len(token)
        elif match.group() == JOINT:
            joints.append(size)
        else:
            cuts.append(size)
        last = match.end()
    clean.append(text[last:])
    plain = "".join(clean)
    reach = marker.longest
    for joint in joints:
        for found in marker.tokens.finditer(plain, max(joint - reach, 0), joint + reach):
            if found.start() < joint < found.end():
                forced.append(found.span())
    return plain, _pieces(plain, sorted(set(forced)), cuts)


def _pieces(plain: str, forced: list[tuple[int, int]], cuts: list[int]) -> list[tuple[str, bool]]:
    pieces: list[tuple[str, bool]] = []
    position = 0
    boundaries = sorted(set(cuts))
    for start, end in forced:
        if start < position:  # overlaps the previous forced span (already taken)
            continue
        pieces.extend(_cut(plain, position, start, boundaries))
        pieces.append((plain[start:end], True))
        position = end
    pieces.extend(_cut(plain, position, len(plain), boundaries))
    if not pieces or pieces[0][1]:
        pieces.insert(0, ("", False))  # the encoder takes the first piece as the start of the prompt
    return pieces


def _cut(plain: str, start: int, end: int, boundaries: list[int]) -> list[tuple[str, bool]]:
    pieces = []
    for boundary in boundaries:
        if start < boundary < end:
            pieces.append((plain[start:boundary], False))
            start = boundary
    if end > start:
        pieces.append((plain[start:end], False))
    return pieces
