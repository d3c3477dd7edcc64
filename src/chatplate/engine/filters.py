"""Bounded versions of the filters, globals and ``str`` methods that can build large values.

Each wraps jinja2's own function (or the method itself) and computes exactly what it computes;
before the call it checks what the arguments ask for (a width, a repeat count, a replacement
that grows every match) against the render's budget, and measures containers the function
would print as text. The filters that cannot grow anything are left as they are.
"""

from __future__ import annotations

import functools
import json
import string
from collections.abc import Callable, Mapping
from typing import Any

import jinja2.filters as jf
from jinja2.utils import generate_lorem_ipsum

from .budget import current, state
from .guards import CONTAINERS, SMALL, check_printf, measure, sized

__all__ = ["bounded_filters", "bounded_lipsum", "STR_METHOD_GUARDS", "check_str_format", "bounded_join", "tojson"]


def _text_size(value: Any) -> int:
    if isinstance(value, CONTAINERS):
        return measure(value)
    return len(value) if isinstance(value, str) else len(str(value))


def _replace_growth(text: str, old: Any, new: Any, count: Any) -> int:
    old, new = str(old), str(new)
    if len(new) <= len(old):
        return len(text)
    matches = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        matches = min(matches, count)
    return len(text) + matches * (len(new) - len(old))


def _width(value: Any) -> int:
    return value if isinstance(value, int) else 0


# -- filters -----------------------------------------------------------------------------------
# Each check receives the filter's arguments without the context argument jinja2 passes first.


def _center(value: Any, width: Any = 80, **_: Any) -> None:
    current().sized(_text_size(value) + _width(width))


def _indent(value: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    text = str(value) if not isinstance(value, CONTAINERS) else ""
    size = _text_size(value)
    step = len(width) if isinstance(width, str) else _width(width)
    current().sized(size + (text.count("\n") + 2) * step)


def _wordwrap(value: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None, *_: Any, **__: Any) -> None:
    size = _text_size(value)
    lines = size // max(_width(width), 1) + str(value).count("\n") + 1 if size else 1
    budget = current()
    budget.sized(size + lines * len(str(wrapstring) if wrapstring is not None else "\n"))
    # textwrap is pure Python: charge it as the work it is.
    budget.charge(size >> 4)


def _replace(value: Any, old: Any = "", new: Any = "", count: Any = None, **_: Any) -> None:
    if type(value) is str and type(new) is str and (len(value) + 1) * len(new) + len(value) <= SMALL:
        return  # even a replacement at every position stays small
    current().sized(_replace_growth(str(value) if not isinstance(value, CONTAINERS) else "", old, new, count) + _text_size(value))


def _format(value: Any, *args: Any, **kwargs: Any) -> None:
    check_printf(str(value), kwargs or args)


def _fill(value: Any, count: Any, fill_with: Any) -> None:
    if fill_with is not None:
        current().sized(_width(count) * (measure(fill_with) if isinstance(fill_with, CONTAINERS) else 1), "the filler")


def _batch(value: Any, linecount: Any = 0, fill_with: Any = None, **_: Any) -> None:
    _fill(value, linecount, fill_with)


def _slice(value: Any, slices: Any = 0, fill_with: Any = None, **_: Any) -> None:
    # Each slice is a list of its own: count what one costs in memory.
    current().sized(_width(slices) * 64, "the lists `slice` builds")
    _fill(value, slices, fill_with)


_CHECKS: dict[str, Callable[..., None]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "replace": _replace,
    "format": _format,
    "batch": _batch,
    "slice": _slice,
}
# Filters that print their value as text (so a container in it is measured first).
_STRINGIFY = (
    "capitalize", "e", "escape", "forceescape", "lower", "pprint", "safe", "string", "striptags", "title",
    "truncate", "upper", "urlencode", "urlize", "wordcount", "xmlattr",
)


def _measured(func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that prints its value as text: a container is measured first. What these return
    is at most a few times what they are given, so nothing is checked after."""
    takes_context = getattr(func, "jinja_pass_arg", None) is not None

    if takes_context:

        @functools.wraps(func)
        def filter_(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
            if type(value) is not str and isinstance(value, CONTAINERS):
                measure(value)
            return func(context, value, *args, **kwargs)

    else:

        @functools.wraps(func)
        def filter_(value: Any, *args: Any, **kwargs: Any) -> Any:
            if type(value) is not str and isinstance(value, CONTAINERS):
                measure(value)
            return func(value, *args, **kwargs)

    return filter_


def _collected(func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that collects its items into a list: from a lazy source (``map``...) the items
    are new values, so the list is measured; from a list it holds what the source holds."""

    at = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        value = args[at]
        if hasattr(value, "__len__"):
            current().sized(len(value), "a list the template builds")
            return func(*args, **kwargs)
        result = func(*args, **kwargs)
        if isinstance(result, list):
            measure(result)
        return result

    return filter_


# Filters that collect what they are given into a list.
_COLLECT = ("list", "sort", "dictsort", "groupby", "reverse")


def _bounded(func: Callable[..., Any], check: Callable[..., None]) -> Callable[..., Any]:
    takes_context = getattr(func, "jinja_pass_arg", None) is not None

    @functools.wraps(func)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        check(*(args[1:] if takes_context else args), **kwargs)
        result = func(*args, **kwargs)
        if isinstance(result, (str, list)):
            sized(result)
        return result

    return filter_


def _bounded_join(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> Any:
    items = list(value) if attribute is None else list(map(jf.make_attrgetter(eval_ctx.environment, attribute), value))
    budget = current()
    budget.sized(sum(_text_size(item) for item in items) + len(str(d)) * len(items))
    return sized(jf.sync_do_join(eval_ctx, items, d))


_bounded_join.jinja_pass_arg = jf.sync_do_join.jinja_pass_arg  # type: ignore[attr-defined]


def _bounded_sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    items = list(iterable)
    if hasattr(start, "__len__"):
        values = items if attribute is None else list(map(jf.make_attrgetter(environment, attribute), items))
        total = len(start) + sum(len(v) for v in values if hasattr(v, "__len__"))
        budget = current()
        budget.sized(total, "the sum of sequences")
        # Summing sequences copies the running total at every step.
        budget.charge((total * len(values)) >> 10)
    return jf.sync_do_sum(environment, items, attribute, start)


_bounded_sum.jinja_pass_arg = jf.sync_do_sum.jinja_pass_arg  # type: ignore[attr-defined]


def _trim(value: Any, chars: Any = None) -> Any:
    # The commonest string filter in chat templates, so its common case takes no wrapper.
    if type(value) is str:
        return value.strip(chars)
    if isinstance(value, CONTAINERS):
        measure(value)
    return jf.do_trim(value, chars)


def bounded_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """``filters`` with the ones that can build large values replaced by bounded versions."""
    bounded = dict(filters)
    for name, check in _CHECKS.items():
        bounded[name] = _bounded(filters[name], check)
    for name in _STRINGIFY:
        bounded[name] = _measured(filters[name])
    for name in _COLLECT:
        bounded[name] = _collected(filters[name])
    bounded["trim"] = _trim
    bounded["join"] = _bounded_join
    bounded["sum"] = _bounded_sum
    return bounded


def bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 - jinja2's names
    """``lipsum()``: refuses more paragraphs and words than the limits allow."""
    words = _width(n) * max_words if (max_words := _width(max)) > 0 else 0
    budget = current()
    budget.sized(words * 12, "lorem ipsum")
    budget.charge(words)
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


# -- str methods ---------------------------------------------------------------------------------


def _pad(text: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    width = args[0] if args else kwargs.get("width", 0)
    current().sized(max(len(text), _width(width)))
    return method(*args, **kwargs)


def _expandtabs(text: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    tabsize = args[0] if args else kwargs.get("tabsize", 8)
    current().sized(len(text) + text.count("\t") * max(_width(tabsize), 0))
    return method(*args, **kwargs)


def _str_replace(text: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        current().sized(_replace_growth(text, args[0], args[1], count))
    return method(*args, **kwargs)


def _str_join(text: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if len(args) != 1 or kwargs:
        return method(*args, **kwargs)
    items = list(args[0])
    current().sized(sum(len(item) for item in items if isinstance(item, str)) + len(text) * len(items))
    return method(items)


def _translate(text: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    table = args[0] if args else None
    if isinstance(table, Mapping):
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        current().sized(len(text) * max(longest, 1))
    return method(*args, **kwargs)


# Methods of str that can build more than they are given, by name.
STR_METHOD_GUARDS: dict[str, Callable[..., Any]] = {
    "ljust": _pad,
    "rjust": _pad,
    "center": _pad,
    "zfill": _pad,
    "expandtabs": _expandtabs,
    "replace": _str_replace,
    "join": _str_join,
    "translate": _translate,
}


def check_str_format(template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse ``str.format`` calls whose field widths would build more than the limits allow."""
    numbers: list[int] = []
    nested = False
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # str.format raises the same error itself
    for _, _, spec, _ in fields:
        if spec:
            nested = nested or "{" in spec
            digits = "".join(c if c.isdigit() else " " for c in spec).split()
            numbers.extend(int(d) for d in digits)
    values = [*args, *kwargs.values()]
    if nested:
        numbers.extend(v for v in values if isinstance(v, int))
    budget = current()
    if numbers:
        budget.sized(len(template) + sum(numbers), "a format string's widths")
    for value in values:
        if isinstance(value, CONTAINERS):
            measure(value)


def tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """The ``tojson`` filter as transformers defines it (no HTML escaping, which real templates
    rely on), bounded: plain JSON of the input (a tree within ``max_input_chars``) or of a
    container the template built (measured when built) is bounded already and is checked after;
    indentation and ASCII escaping multiply the size, so that JSON is built a piece at a time
    and refused once it passes the output limit."""
    if indent is None and not ensure_ascii:
        return sized(json.dumps(value, ensure_ascii=False, separators=separators, sort_keys=sort_keys))
    budget = current()
    if indent is not None:
        # The encoder builds the indent string first, and each line holds it once per level.
        width = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
        budget.sized(width * min(budget.max_depth, 1000), "JSON indentation")
    encoder = json.JSONEncoder(ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    limit = budget.max_chars
    pieces, size = [], 0
    for piece in encoder.iterencode(value):
        size += len(piece)
        if size > limit:
            budget.sized(size, "JSON with this indent or escaping")
        pieces.append(piece)
    return sized("".join(pieces))


def bounded_join(pieces: Any) -> str:
    """``environment.concat``: joins a macro's or a block's output, refusing a result over the
    output limit before it is built (and, for a watched buffer, unwatching it)."""
    if type(pieces) is list:
        budget = state.budget
        if budget is not None and budget.buffers:
            budget.joined(pieces)
        size = sum(map(len, pieces))
        if size > SMALL:
            current().sized(size, "the output of a macro or block")
    return "".join(pieces)
