"""Guarded operations: what compiled templates call instead of the raw Python operators.

The code generator (``codegen.py``) emits calls to these for every operator that can build
something large (``+``, ``*``, ``**``, ``%``, ``~``), for every ``for`` loop's iterable and for
every value converted to text for output. Each computes exactly what the operator computes; it
only checks the size first (or right after, where the result cannot be more than twice what
already exists) against the render's budget.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import chain
from typing import Any

from markupsafe import Markup, soft_str
from jinja2.runtime import markup_join
from jinja2.utils import Namespace

from ..messages import FLAT
from .budget import LimitExceeded, current, folding, state
from .recording import RecordedMessages

__all__ = [
    "add", "mul", "power", "mod", "concat", "container", "buffer", "iterate", "flag", "text", "checked", "sized", "measure",
    "check_printf", "CONTAINERS", "SMALL", "FLAT",
]

# Loops over at most this many items are charged up front; longer ones a chunk at a time, so
# the clock is read while they run.
_SMALL_LOOP = 1024
# Strings up to this size are not worth a look at the budget.
SMALL = 4096
# Python refuses to print integers over 4,300 digits (sys.int_info.default_max_str_digits);
# building ones larger than that is only a way to burn time.
MAX_INT_DIGITS = 4300
_MAX_INT_BITS = int(MAX_INT_DIGITS / 0.30103)

_SEQUENCES = (str, list, tuple, bytes, Markup)
_LISTS = frozenset((list, tuple))
CONTAINERS = (list, tuple, dict, set, frozenset, Namespace)


def _int_result(bits: int) -> None:
    if bits > _MAX_INT_BITS:
        digits = int(bits * 0.30103)
        raise LimitExceeded(
            "int_digits", digits, MAX_INT_DIGITS,
            "an integer result; Python cannot print integers this long either, and this bound is fixed",
        )


def add(result: Any) -> Any:
    """What ``+`` built (the code generator adds, then calls this unless the result is a number or
    a short string): a string is at most twice what existed, so it is checked afterwards; a list
    is measured (``a + a`` prints every shared item twice)."""
    if type(result) in _LISTS:
        current().sized(measure(result), "a list the template builds")
    elif type(result) in _SEQUENCES and len(result) > SMALL:
        current().sized(len(result))
    return result


def mul(left: Any, right: Any) -> Any:
    """``left * right``, refusing a repetition or an integer product larger than the limits."""
    sequence, times = (left, right) if isinstance(right, int) else (right, left)
    if isinstance(sequence, _SEQUENCES) and isinstance(times, int):
        budget = state.budget or folding()
        budget.sized(len(sequence) * max(times, 0))
        if type(sequence) in _LISTS:
            budget.sized(measure(sequence) * max(times, 0), "a list the template builds")
    elif isinstance(left, int) and isinstance(right, int):
        _int_result(left.bit_length() + right.bit_length())
    return left * right


def container(value: Any) -> Any:
    """A list, tuple or dict literal just built from other values, once it prints at a bounded
    size: built containers never change in the sandbox, so JSON of them needs no measuring."""
    measure(value)
    return value


def power(left: Any, right: Any) -> Any:
    """``left ** right``, refusing integer results too long to print."""
    if isinstance(left, int) and isinstance(right, int) and right > 1 and abs(left) > 1:
        _int_result((left.bit_length() - 1) * right)
    return left**right


def mod(left: Any, right: Any) -> Any:
    """``left % right``: for strings, printf-style formatting with bounded widths."""
    if isinstance(left, str):
        values = right if type(right) is tuple else (right,)
        check_printf(left, values)
        return sized(left % right)
    return left % right


def concat(parts: tuple[Any, ...], markup: bool) -> str:
    """The ``~`` operator: every part as text, joined (escaped when ``markup``, as jinja2 does)."""
    if markup:
        for part in parts:
            if isinstance(part, CONTAINERS):
                measure(part)
        return sized(markup_join(parts))
    strings = [part if type(part) is str else text(part) for part in parts]
    size = sum(map(len, strings))
    if size > SMALL:
        current().sized(size)
    return "".join(strings)


def buffer() -> list[str]:
    """A recursive loop's output buffer, watched by the budget while it fills."""
    pieces: list[str] = []
    if state.budget is not None:
        state.budget.watch(pieces)
    return pieces


def iterate(iterable: Any, buffer: list[str] | None = None, looks_ahead: bool = False, loop: int = -1) -> Any:
    """What a ``for`` loop iterates: the same items, each charged as one unit of work.

    ``buffer`` is where the loop's body writes, when that is not the top-level output: a loop
    that reaches a checkpoint has the budget watch it from then on. For a recorded render's
    messages: ``looks_ahead``, the body reads ``loop.last`` or the like; ``loop``, the loop's
    place in the template.
    """
    budget = state.budget
    if budget is None:
        return iterable
    if type(iterable) is RecordedMessages:
        # The budget's look at the length is not the template's: not noted.
        budget.charge(list.__len__(iterable))
        return iterable.loop(buffer is None and not looks_ahead, loop)
    try:
        size = len(iterable)
    except TypeError:
        size = -1
    if buffer is not None and (size < 0 or budget.work + size >= budget.checkpoint):
        budget.watch(buffer)
    if size < 0:
        # Lazy (a filter's generator): charged item by item, as the loop takes them.
        return budget.counted_items(iterable)
    if size <= _SMALL_LOOP:
        budget.charge(size)
        return iterable
    return chain.from_iterable(budget.counted_chunks(iterable))


def flag(value: Any) -> Any:
    """``add_generation_prompt`` where a template reads it, noted by a recorded render."""
    log = state.log
    if log is not None:
        log.flag_read()
    return value


def text(value: Any) -> str:
    """``str(value)`` for output and ``~``; containers are measured first, since a list that
    holds the same list twice, nested 40 times, prints as a trillion characters."""
    if isinstance(value, CONTAINERS):
        measure(value)
        return sized(str(value))
    return str(value)


def checked(value: Any) -> Any:
    """``value`` itself, once any container in it is known to print at a bounded size."""
    if isinstance(value, CONTAINERS):
        measure(value)
    return value


def sized(result: Any) -> Any:
    """``result`` (a string or list just built), once its size is known to be within bounds."""
    if len(result) > SMALL:
        current().sized(len(result))
    return result


def measure(value: Any) -> int:
    """An upper bound of the length of ``repr(value)`` (or its JSON), shared parts counted each
    time they print; raises as soon as it passes the output limit or the nesting limit.

    Walks each distinct container once, so a structure that repeats itself costs its size in
    memory to measure, not its printed size.
    """
    budget = current()
    limit = budget.max_chars
    if type(value) in _LISTS and set(map(type, value)) <= _STR_ONLY:
        # A flat list of strings (what templates accumulate): counted in C.
        total = 2 + 4 * len(value) + sum(map(len, value))
        if total > limit:
            raise LimitExceeded("max_output_chars", total, limit, "a value printed as text")
        budget.charge(len(value) >> 4)
        return total
    max_depth = budget.max_depth
    sizes: dict[int, int] = {}

    def size_of(item: Any, depth: int) -> int:
        key = id(item)
        known = sizes.get(key)
        if known is not None:
            return known
        if depth >= max_depth:
            raise LimitExceeded("max_depth", depth + 1, max_depth, "data nested this deep cannot be printed")
        sizes[key] = 0  # a cycle prints as [...] in Python (and fails in JSON)
        if isinstance(item, Namespace):
            item = item._Namespace__attrs  # type: ignore[attr-defined]
        if isinstance(item, dict):
            total = 2 + 4 * len(item) + sum(len(k) if type(k) is str else 24 for k in item)
            entries = item.values()
        else:
            total = 2 + 2 * len(item)
            entries = item
        for entry in entries:
            kind = type(entry)
            if kind is str:
                total += len(entry)
            elif kind is int:
                total += entry.bit_length() // 3 + 1
            elif kind in FLAT:
                total += 24
            elif isinstance(entry, CONTAINERS):
                total += size_of(entry, depth + 1)
            else:
                total += len(soft_str(entry))
            if total > limit:
                raise LimitExceeded("max_output_chars", total, limit, "a value printed as text")
        if len(item) > 3:
            # A walk is Python code per item: charge it as the work it is.
            budget.charge(len(item) >> 2)
        sizes[key] = total
        return total

    if not isinstance(value, CONTAINERS):
        return len(soft_str(value))
    return size_of(value, 0)


_STR_ONLY = frozenset((str,))


# printf-style conversion specifiers: %[(key)][flags][width][.precision][length]type
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[diouxXeEfFgGcrsa%]")


def check_printf(template: str, values: Iterable[Any]) -> None:
    """Refuse ``%`` formatting whose widths or precisions would build more than the limit, and
    containers among the values that would print too large."""
    budget = current()
    fields = [n for spec in _PRINTF.findall(template) for n in spec if n]
    numbers = [int(n) for n in fields if n != "*"]
    if "*" in fields:  # widths taken from the values
        numbers += [v for v in values if isinstance(v, int)]
    if numbers:
        budget.sized(len(template) + sum(numbers), "a % format's widths")
    if isinstance(values, dict):
        values = values.values()
    for value in values:
        if isinstance(value, CONTAINERS):
            measure(value)
