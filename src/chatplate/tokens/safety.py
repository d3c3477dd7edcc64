"""Control-token safety: control tokens inside message data are encoded as text.

Data strings are marked before rendering (each control token wrapped in two private-use
characters), so after rendering the marked tokens can be told apart from the ones the template
wrote, even when the template assembles a token from pieces. The markers are removed from the
text, and the marked tokens are encoded with a tokenizer that has no added tokens. The same
scheme as transformers' ``sanitize_control_tokens``, so its ids can be compared, with offsets
kept in the marker-free text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["Marker", "mark", "split_marked"]

START = "\U000f0000"
END = "\U000f0001"


@dataclass(frozen=True)
class Marker:
    """Regexes for one set of control tokens."""

    tokens: re.Pattern[str]
    marked: re.Pattern[str]
    # First characters of the control tokens: a string holding none of them needs no regex.
    initials: tuple[str, ...] = ()


@lru_cache(maxsize=64)
def marker_for(control_tokens: tuple[str, ...]) -> Marker:
    # Longest first, so a token wins over the shorter tokens inside it.
    longest_first = sorted(control_tokens, key=len, reverse=True)
    tokens = re.compile("|".join(map(re.escape, longest_first)) or "(?!)")
    marked = re.compile(f"{START}({tokens.pattern}){END}|[{START}{END}]")
    return Marker(tokens, marked, tuple(sorted({t[0] for t in control_tokens if t})))


def mark(value: Any, marker: Marker) -> Any:
    """Wrap control tokens in every string of ``value`` (dict values, not keys) with markers.

    Dicts and lists are changed in place: they are the fresh plain copies made for rendering, so
    nothing of the caller's is touched, and nothing is copied again. Markers already present are
    removed first, so data cannot forge a marked token.
    """
    if isinstance(value, str):
        return _mark_text(value, marker)
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (str, dict, list, tuple)):
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


def _mark_text(value: str, marker: Marker) -> str:
    if START in value or END in value:
        value = value.replace(START, "").replace(END, "")
    if not any(initial in value for initial in marker.initials):
        return value
    return marker.tokens.sub(f"{START}\\g<0>{END}", value)


def has_markers(text: str) -> bool:
    return START in text or END in text


def split_marked(text: str, marker: Marker) -> tuple[str, list[tuple[str, bool]]]:
    """The text without markers, and its pieces in order as ``(piece, encode_as_text)``.

    A lone marker (a template split a marked token, e.g. with ``.split()``) is dropped but still
    ends a piece, so the text on either side cannot join into a control token.
    """
    parts = marker.marked.split(text)
    pieces: list[tuple[str, bool]] = [(parts[0], False)]
    for index, part in enumerate(parts[1:], start=1):
        if part:
            pieces.append((part, index % 2 == 1))
    return "".join(piece for piece, _ in pieces), pieces
