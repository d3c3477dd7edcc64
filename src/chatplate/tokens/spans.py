"""Character spans to token masks and labels, one rule for every tokenizer path: a token is
trained when its characters overlap a span (so a token straddling a span edge is trained;
zero-width tokens never are).

The spans come from above (:mod:`chatplate.training.masks` finds them in the rendered text);
this module only reads them against a tokenization: offsets as pairs, as numpy arrays, or a
``tokenizers.Encoding``.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from ..safety import MARKS, has_markers

__all__ = ["IGNORE_INDEX", "Spans", "clean_positions", "token_mask", "mask_from_offsets", "mask_from_encoding", "labels_from"]

IGNORE_INDEX = -100

Spans = list[tuple[int, int]]


def clean_positions(text: str, positions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans in marked text mapped into the text without markers (markers are removed there)."""
    if not has_markers(text):
        return positions
    marks = [i for i, char in enumerate(text) if char in MARKS]

    def clean(position: int) -> int:
        return position - bisect.bisect_left(marks, position)

    return [(clean(s), clean(e)) for s, e in positions]


def token_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """1 for every token whose characters overlap a span, 0 elsewhere (zero-width tokens: 0).

    >>> token_mask([(0, 3), (3, 5), (5, 9), (9, 10)], [(4, 9)])
    [0, 1, 1, 0]
    """
    mask = [0] * len(offsets)
    if not spans:
        return mask
    ends = [e for _, e in spans]
    for index, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        # The first span ending after this token's start; trained if it starts before its end.
        at = bisect.bisect_right(ends, start)
        if at < len(spans) and spans[at][0] < end:
            mask[index] = 1
    return mask


def mask_from_offsets(
    starts: Any, ends: Any, lows: Sequence[int], highs: Sequence[int], empty_tokens: bool = True
) -> Any:
    """:func:`token_mask` for offsets held as two numpy arrays (non-decreasing, as a
    tokenizer's are, and they may run on over several texts) and spans given as their starts
    (``lows``) and ends (``highs``), as an ``int8`` array: each span's tokens found by binary
    search, all spans at once. ``empty_tokens=False`` promises no token is empty (skips a pass).

    >>> import numpy as np
    >>> mask_from_offsets(np.array([0, 3, 5, 9]), np.array([3, 5, 9, 10]), [4], [9]).tolist()
    [0, 1, 1, 0]
    """
    import numpy as np

    mask = np.zeros(len(starts), np.int8)
    for first, after in zip(np.searchsorted(ends, lows, "right").tolist(), np.searchsorted(starts, highs, "left").tolist()):
        mask[first:after] = 1
    if empty_tokens:
        mask[ends <= starts] = 0
    return mask


def mask_from_encoding(encoding: Any, length: int, spans: Sequence[tuple[int, int]]) -> list[int]:
    """:func:`token_mask` for a ``tokenizers.Encoding`` of the unmarked text, read through its
    ``char_to_token`` at the span edges instead of every token's offsets."""
    mask = [0] * length
    for start, end in spans:
        first = next((t for t in map(encoding.char_to_token, range(start, end)) if t is not None), None)
        if first is None:
            continue
        last = next(t for t in map(encoding.char_to_token, range(end - 1, start - 1, -1)) if t is not None)
        # Several tokens can share the last character (byte fallback): all of them overlap.
        while last + 1 < length and (chars := encoding.token_to_chars(last + 1)) is not None and chars[0] < end:
            last += 1
        mask[first : last + 1] = [1] * (last + 1 - first)
    return mask


def labels_from(input_ids: Any, mask: Any) -> Any:
    """The ids where trained, ``-100`` (ignored by the loss) elsewhere (an ``int32`` array for
    ids in a numpy array, else a list; the mask may be a list or an ``int8`` array).

    >>> labels_from([5, 6, 7], [0, 1, 1])
    [-100, 6, 7]
    """
    if hasattr(input_ids, "dtype"):  # numpy arrays (prepare's fast path)
        import numpy as np

        return np.where(np.asarray(mask).astype(bool), input_ids, IGNORE_INDEX).astype(np.int32)
    labels = [IGNORE_INDEX] * len(input_ids)
    # Copy each trained run as a slice: runs are few, tokens many. The runs are found in the
    # mask as bytes (memchr), not by comparing list items one by one.
    flags = mask.tobytes() if hasattr(mask, "tobytes") else bytes(mask)
    start, length = 0, len(flags)
    while (start := flags.find(1, start)) >= 0:
        end = flags.find(0, start)
        if end < 0:
            end = length
        labels[start:end] = input_ids[start:end]
        start = end
    return labels
