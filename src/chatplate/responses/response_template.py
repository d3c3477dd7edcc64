"""Model output parsed with a transformers ``response_template`` (the declarative v1 spec).

``ResponseTemplate.from_dict(spec).parse(text, prefix=..., tools=...)`` returns what transformers
5.23's ``tokenizer.parse_response`` returns for a tokenizer with that ``response_template``;
``stream()`` reads the same text as it arrives and reports chatplate events.

transformers matches anchors with the third-party ``regex`` module, whose partial matching tells
which text may still become an anchor and must be held back. Here the standard ``re`` matches:
each anchor also gets a pattern for every prefix of what it matches, which finds a match cut off
by the end of the text. ``\\s``, ``\\w`` and ``\\b`` are rewritten to ``regex``'s definitions (``re``'s
``\\s`` also takes ``\\x1c``-``\\x1f``; its ``\\w`` takes ``²`` but not combining marks). A pattern
``re`` cannot compile is left to ``regex`` when that is installed.

>>> qwen = ResponseTemplate.from_dict({
...     "start_anchor": "<|im_start|>assistant\\n",
...     "fields": {
...         "reasoning_content": {"open": "<think>", "close": "</think>"},
...         "content": {"close": "<|im_end|>"},
...     },
... })
>>> qwen.parse("Hmm.</think>Hello!<|im_end|>", prefix="<|im_start|>assistant\\n<think>")
{'reasoning_content': 'Hmm.', 'content': 'Hello!'}
>>> stream = qwen.stream()
>>> stream.feed("Hi <|im"), stream.feed("_end|>")
([ContentDelta(text='Hi ')], [])
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ..errors import ResponseFormatError
from ..messages import REASONING_FIELDS
from .calls import coerce_value, schema_types, tool_schemas
from .events import ContentDelta, ReasoningDelta, ToolCallDone, ToolCallStarted

try:  # the parser behind re; private, but the only way to read a pattern's structure
    from re import _constants as _C
    from re import _parser as _P
except ImportError:  # Python 3.10
    import sre_constants as _C  # type: ignore[no-redef]
    import sre_parse as _P  # type: ignore[no-redef]

__all__ = ["ResponseTemplate", "ResponseTemplateStream"]

_STREAMABLE = ("text", "int", "float", "bool")  # parsers whose value is the region's own text

# -- patterns ------------------------------------------------------------------------------------


class _Unsupported(Exception):
    """A pattern construct the rewriting for ``re`` cannot express."""


def _regex_module() -> Any:
    try:
        import regex
    except ImportError:
        return None
    return regex


def _esc(code: int) -> str:
    char = chr(code)
    if char.isascii() and char.isalnum():
        return char
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _class_body(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(_esc(lo) if lo == hi else f"{_esc(lo)}-{_esc(hi)}" for lo, hi in ranges)


def _complement(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    out, start = [], 0
    for lo, hi in ranges:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    return (*out, (start, 0x10FFFF)) if start <= 0x10FFFF else tuple(out)


# regex's \s is Unicode White_Space.
_SPACE = ((0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
          (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000))


@functools.cache
def _word() -> tuple[tuple[int, int], ...]:
    """regex's \\w: Alphabetic, marks, decimal digits, connector punctuation and the joiners."""
    categories = {"Lu", "Ll", "Lt", "Lm", "Lo", "Nl", "Mn", "Mc", "Me", "Nd", "Pc"}
    # Alphabetic symbols (circled and squared letters) and ZWNJ/ZWJ, outside those categories.
    extra = {0x200C, 0x200D, *range(0x24B6, 0x24EA), *range(0x1F130, 0x1F14A), *range(0x1F150, 0x1F16A),
             *range(0x1F170, 0x1F18A)}
    category = unicodedata.category
    ranges: list[list[int]] = []
    for code in itertools.chain(range(0x40000), range(0xE0000, 0xE1000)):  # nothing else is assigned
        if code in extra or category(chr(code)) in categories:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return tuple((lo, hi) for lo, hi in ranges)


@functools.cache
def _category(category: Any, ascii_only: bool) -> str:
    plain = {_C.CATEGORY_DIGIT: r"\d", _C.CATEGORY_NOT_DIGIT: r"\D", _C.CATEGORY_SPACE: r"\s",
             _C.CATEGORY_NOT_SPACE: r"\S", _C.CATEGORY_WORD: r"\w", _C.CATEGORY_NOT_WORD: r"\W"}
    if ascii_only or category in (_C.CATEGORY_DIGIT, _C.CATEGORY_NOT_DIGIT):
        return plain[category]
    if category in (_C.CATEGORY_SPACE, _C.CATEGORY_NOT_SPACE):
        ranges = _SPACE
    elif category in (_C.CATEGORY_WORD, _C.CATEGORY_NOT_WORD):
        ranges = _word()
    else:
        raise _Unsupported(category)
    positive = category in (_C.CATEGORY_SPACE, _C.CATEGORY_WORD)
    return _class_body(ranges if positive else _complement(ranges))


_FLAG_LETTERS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"), (re.ASCII, "a"), (re.UNICODE, "u"))
_REPEATS = tuple(getattr(_C, n) for n in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") if hasattr(_C, n))
_ATOMIC = getattr(_C, "ATOMIC_GROUP", None)
_CHARS = (_C.LITERAL, _C.NOT_LITERAL, _C.ANY, _C.IN)


def _group_open(add: int, drop: int) -> str:
    on = "".join(letter for flag, letter in _FLAG_LETTERS if add & flag)
    off = "".join(letter for flag, letter in _FLAG_LETTERS[:3] if drop & flag)
    return f"(?{on}-{off}:" if off else f"(?{on}:"


def _ascii_in(ascii_only: bool, add: int) -> bool:
    return bool(add & re.ASCII) or (ascii_only and not add & re.UNICODE)


def _seq(items: Any, names: dict[int, str] | None, ascii_only: bool) -> str:
    return "".join(_node(op, av, names, ascii_only) for op, av in items)


def _node(op: Any, av: Any, names: dict[int, str] | None, ascii_only: bool) -> str:
    """One parsed node written back as pattern text; ``names is None`` drops captures."""
    if op is _C.LITERAL:
        return _esc(av)
    if op is _C.NOT_LITERAL:
        return f"[^{_esc(av)}]"
    if op is _C.ANY:
        return "."
    if op is _C.IN:
        negate = bool(av) and av[0][0] is _C.NEGATE
        parts = []
        for item_op, item in av[negate:]:
            if item_op is _C.LITERAL:
                parts.append(_esc(item))
            elif item_op is _C.RANGE:
                parts.append(f"{_esc(item[0])}-{_esc(item[1])}")
            elif item_op is _C.CATEGORY:
                parts.append(_category(item, ascii_only))
            else:
                raise _Unsupported(item_op)
        return "[" + "^" * negate + "".join(parts) + "]"
    if op is _C.BRANCH:
        return "(?:" + "|".join(_seq(branch, names, ascii_only) for branch in av[1]) + ")"
    if op is _C.SUBPATTERN:
        group, add, drop, sub = av
        inner = _group_open(add, drop) + _seq(sub, names, _ascii_in(ascii_only, add)) + ")"
        if names is None or group is None:
            return inner
        return (f"(?P<{names[group]}>" if group in names else "(") + inner + ")"
    if op in _REPEATS:
        low, high, sub = av
        mode = "?" if op is _C.MIN_REPEAT else "" if op is _C.MAX_REPEAT else "+"
        return f"(?:{_seq(sub, names, ascii_only)}){{{low},{'' if high == _C.MAXREPEAT else high}}}{mode}"
    if op is _C.AT:
        simple = {_C.AT_BEGINNING: "^", _C.AT_BEGINNING_STRING: r"\A", _C.AT_END: "$", _C.AT_END_STRING: r"\Z"}
        if av in simple:
            return simple[av]
        if av not in (_C.AT_BOUNDARY, _C.AT_NON_BOUNDARY):
            raise _Unsupported(av)
        if ascii_only:
            return r"\b" if av is _C.AT_BOUNDARY else r"\B"
        w = "[" + _category(_C.CATEGORY_WORD, False) + "]"
        if av is _C.AT_BOUNDARY:
            return f"(?:(?<={w})(?!{w})|(?<!{w})(?={w}))"
        return f"(?:(?<={w})(?={w})|(?<!{w})(?!{w}))"
    if op in (_C.ASSERT, _C.ASSERT_NOT):
        direction, sub = av
        kind = ("<" if direction < 0 else "") + ("=" if op is _C.ASSERT else "!")
        return f"(?{kind}{_seq(sub, names, ascii_only)})"
    if op is _ATOMIC:
        return f"(?>{_seq(av, names, ascii_only)})"
    if names is not None and op is _C.GROUPREF:
        return f"(?:\\{av})"
    if names is not None and op is _C.GROUPREF_EXISTS:
        group, yes, no = av
        return f"(?({group}){_seq(yes, names, ascii_only)}" + (f"|{_seq(no, names, ascii_only)})" if no else ")")
    raise _Unsupported(op)


def _prefixes(items: Any, ascii_only: bool) -> str:
    """A pattern matching every prefix of every text ``items`` matches: with ``\\Z`` after it,
    it finds where a match may have been cut off by the end of the text so far."""
    out: str | None = None
    for op, av in reversed(list(items)):
        whole = _node(op, av, None, ascii_only)
        if op is _C.ASSERT and av[0] > 0:
            # The text may end inside the look-ahead; what follows it is then left unchecked.
            inside = f"(?=(?:{_prefixes(av[1], ascii_only)})\\Z)(?s:.*)"
            out = f"(?:{inside}|{whole}{out or ''})"
            continue
        part = _node_prefixes(op, av, ascii_only)
        out = part if out is None else f"(?:{part}|{whole}{out})"
    return out or ""


def _node_prefixes(op: Any, av: Any, ascii_only: bool) -> str:
    if op in _CHARS:
        return _node(op, av, None, ascii_only) + "?"
    if op is _C.BRANCH:
        return "(?:" + "|".join(_prefixes(branch, ascii_only) for branch in av[1]) + ")"
    if op is _C.SUBPATTERN:
        _, add, drop, sub = av
        return _group_open(add, drop) + _prefixes(sub, _ascii_in(ascii_only, add)) + ")"
    if op in _REPEATS:  # some whole repetitions, then a prefix of one more (laziness does not matter)
        _, high, sub = av
        if high == 0:
            return ""
        body = _seq(sub, None, ascii_only)
        if len(sub) == 1 and sub[0][0] in _CHARS:
            return f"(?:{body}){{0,{'' if high == _C.MAXREPEAT else high}}}"
        more = "*" if high == _C.MAXREPEAT else f"{{0,{high - 1}}}"
        return f"(?:{body}){more}(?:{_prefixes(sub, ascii_only)})"
    if op is _ATOMIC:
        return f"(?:{_prefixes(av, ascii_only)})"
    return _node(op, av, None, ascii_only)  # zero-width: anchors, look-behinds, negative look-aheads


def _behind(items: Any) -> int:
    """How far before a match's start the pattern may look (1 for ``\\b`` and the like)."""
    most = 0
    for op, av in items:
        if op in (_C.ASSERT, _C.ASSERT_NOT):
            most = max(most, (av[1].getwidth()[1] if av[0] < 0 else 0) + _behind(av[1]))
        elif op is _C.AT:
            most = max(most, 1)
        elif op is _C.BRANCH:
            most = max([most, *(_behind(branch) for branch in av[1])])
        elif op is _C.SUBPATTERN or op in _REPEATS:
            most = max(most, _behind(av[-1]))
        elif op is _ATOMIC:
            most = max(most, _behind(av))
    return most


@functools.lru_cache(maxsize=256)
def _compile(pattern: str, partial: bool = False) -> tuple[Any, Any, int | None]:
    """``(matcher, prefixes, behind)`` for a DOTALL pattern with regex's ``\\s``, ``\\w`` and ``\\b``.

    ``prefixes`` (only with ``partial``) is the ``re`` pattern for cut-off matches; it is ``None``
    when ``matcher`` is a ``regex`` pattern, which finds them itself. ``behind`` bounds how much
    text before the search position matters (``None``: unknown). Raises ``ValueError``.
    """
    try:
        parsed = _P.parse(pattern, re.DOTALL)
        flags = parsed.state.flags & ~(re.VERBOSE | re.DEBUG)
        ascii_only = bool(flags & re.ASCII)
        names = {number: name for name, number in parsed.state.groupdict.items()}
        matcher = re.compile(_seq(parsed, names, ascii_only), flags)
        prefixes = re.compile(f"(?:{_prefixes(parsed, ascii_only)})\\Z", flags) if partial else None
        return matcher, prefixes, _behind(parsed)
    except (re.error, _Unsupported, RecursionError) as error:
        problem = error
    regex = _regex_module()
    if regex is None:
        raise ValueError(f"{pattern!r} is not a pattern Python's re module can use ({problem}); if it is "
                         "written for the `regex` module (as transformers reads it), install `regex`")
    try:
        return regex.compile(pattern, regex.DOTALL), None, None
    except regex.error as error:
        raise ValueError(f"{pattern!r} is not a valid regular expression: {error}") from None


@dataclass(frozen=True)
class _Anchor:
    """An open/close/start anchor: a compiled pattern and how to find a match cut off by the end."""

    matcher: Any
    prefixes: Any  # re pattern (with \\Z) for the text left from where a cut-off match starts
    literals: tuple[str, ...] | None  # longest first
    can_extend: bool  # a literal is a strict prefix of another, so a match at the end may grow
    behind: int | None  # text before the search position that can matter (None: any)

    def match(self, text: str, pos: int) -> Any:
        """The first complete match from ``pos``, or None."""
        return self.matcher.search(text, pos)

    def cut(self, text: str, pos: int) -> int | None:
        """Where the first match from ``pos`` that the end of ``text`` may have cut short starts.

        regex reports a cut-off match only when there is no complete one, so transformers may
        settle text that more input turns into an anchor (``<end>|\\Z`` never holds ``<en``), and
        a stream reads differently from the whole text. Here both are looked for, except with a
        pattern only ``regex`` can read."""
        if not isinstance(self.matcher, re.Pattern):
            m = self.matcher.search(text, pos, partial=True)
            return m.start() if m is not None and m.partial else None
        if self.prefixes is None:
            return None
        if self.literals is not None:  # a cut-off literal starts within its length of the end
            pos = max(pos, len(text) - len(self.literals[0]) + 1)
        m = self.prefixes.search(text, pos)
        return None if m is None else m.start()

    def can_grow(self, m: Any, end: int) -> bool:
        """Whether more text could still change a complete match ending at ``end``."""
        return m.end() == end and (m.start() == m.end() or self.literals is None or self.can_extend)


def _anchor(spec: dict, literal_key: str, pattern_key: str, where: str, key: str, partial: bool) -> _Anchor | None:
    if literal_key in spec and pattern_key in spec:
        raise ResponseFormatError(f"{where}: give either {literal_key!r} or {pattern_key!r}, not both", key=key)
    if literal_key in spec:
        raw = spec[literal_key]
        if isinstance(raw, str):
            literals = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(s, str) for s in raw):
            literals = list(dict.fromkeys(raw))
        else:
            raise ResponseFormatError(f"{where}: {literal_key!r} must be a string or a non-empty list of strings, "
                                      f"got {raw!r}", key=key)
        if "" in literals:
            raise ResponseFormatError(f"{where}: {literal_key!r} cannot be an empty string", key=key)
        longest_first = sorted(literals, key=len, reverse=True)  # the alternation prefers the longest
        matcher = re.compile("|".join(map(re.escape, longest_first)))
        # Cut short: a proper prefix (a whole literal is a complete match, final unless can_extend).
        cut = sorted({s[:n] for s in literals for n in range(1, len(s))}, key=len, reverse=True)
        prefixes = re.compile("(?:" + "|".join(map(re.escape, cut)) + ")\\Z") if cut and partial else None
        return _Anchor(matcher, prefixes, tuple(longest_first),
                       any(a != b and a.startswith(b) for a in literals for b in literals), 0)
    if pattern_key in spec:
        pattern = spec[pattern_key]
        if not isinstance(pattern, str):
            raise ResponseFormatError(f"{where}: {pattern_key!r} must be a string, got {pattern!r}", key=key)
        try:
            matcher, prefixes, behind = _compile(pattern, partial)
        except ValueError as error:
            raise ResponseFormatError(f"{where}: {pattern_key} {error}", key=key) from None
        return _Anchor(matcher, prefixes, None, False, behind)
    return None


# -- content parsers and transforms --------------------------------------------------------------


def _text(text: str, args: dict) -> str:
    return text.strip() if args.get("strip", True) else text


def _json(text: str, args: dict) -> Any:
    """JSON, after the dialect fixes: ``string_delims`` pairs around raw strings, bare keys."""
    delims = args.get("string_delims", [])
    if delims and ("\x01" in text or "\x02" in text):
        raise ValueError("json: the region holds \\x01 or \\x02, which string_delims parsing reserves")
    strings: list[str] = []

    def stash(m: re.Match) -> str:
        strings.append(m.group(1))
        return f"\x01{len(strings) - 1}\x02"

    work = text
    for opener, closer in delims:
        work = re.sub(re.escape(opener) + "(.*?)" + re.escape(closer), stash, work, flags=re.DOTALL)
    if args.get("unquoted_keys", False):
        work = _compile(r"(?<=[{,])(\w+):")[0].sub(r'"\1":', work)
    for index, string in enumerate(strings):
        work = work.replace(f"\x01{index}\x02", json.dumps(string))
    try:
        return json.loads(work)
    except json.JSONDecodeError as error:
        if args.get("allow_non_json"):
            return _text(text, args)
        rewritten = "" if work == text else f" (rewritten as {_short(work)})"
        raise ValueError(f"json: {error} in {_short(text)}{rewritten}") from None


def _xml_inline(text: str, args: dict) -> dict:
    tag_pattern = args.get("tag_pattern")
    if tag_pattern is None:
        raise ValueError("xml-inline needs a 'tag_pattern' in content_args")
    value_parser, merge = args.get("value_parser"), args.get("merge_duplicates", False)
    out: dict[str, Any] = {}
    for m in _compile(tag_pattern)[0].finditer(text):
        groups = m.groupdict()
        key = groups.get("key")
        if key is None:
            raise ValueError(f"xml-inline: tag_pattern {tag_pattern!r} matched without a named group 'key'")
        value = _value_of(groups.get("value", ""), value_parser)
        if merge and key in out:
            out[key] = (out[key] if isinstance(out[key], list) else [out[key]]) + [value]
        else:
            out[key] = value
    return out


def _kv_lines(text: str, args: dict) -> dict:
    kv_sep = args.get("kv_sep", ":")
    out: dict[str, Any] = {}
    for line in text.split(args.get("line_sep", "\n")):
        line = _text(line, args)
        if line and kv_sep in line:
            key, value = line.split(kv_sep, 1)
            out[_text(key, args)] = _value_of(_text(value, args), args.get("value_parser"))
    return out


_PARSERS = {
    "text": _text,
    "int": lambda text, args: int(_text(text, args)),
    "float": lambda text, args: float(_text(text, args)),
    "bool": lambda text, args: _text(text, args).lower() in ("true", "1"),
    "json": _json,
    "xml-inline": _xml_inline,
    "kv-lines": _kv_lines,
}


def _value_of(raw: Any, parser: Any) -> Any:
    return raw if parser is None else _PARSERS[parser.get("name", "text")](raw, parser.get("args", {}))


def _short(text: str, limit: int = 200) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def _placeholder(value: str) -> Any:
    return _compile(r"\{(\w+(?:\.\w+)*)\}")[0].fullmatch(value)


def _check_transform(where: str, name: str, transform: Any) -> None:
    """Only whole-string placeholders (``"{content}"``) and plain literals are allowed."""
    if isinstance(transform, dict):
        transform = list(transform.values())
    if isinstance(transform, list):
        for item in transform:
            _check_transform(where, name, item)
    elif isinstance(transform, str) and _compile(r"\{(\w+(?:\.\w+)*)\}")[0].search(transform) \
            and not _placeholder(transform):
        raise ResponseFormatError(f"{where}: transform string {transform!r} mixes a {{placeholder}} with other "
                                  'text; write a whole-string placeholder such as "{content}", or a literal',
                                  key=name)


def _apply(transform: Any, scope: dict) -> Any:
    if isinstance(transform, dict):
        return {key: _apply(value, scope) for key, value in transform.items()}
    if isinstance(transform, list):
        return [_apply(value, scope) for value in transform]
    m = _placeholder(transform) if isinstance(transform, str) else None
    if m is None:
        return transform
    root, *path = m.group(1).split(".")
    if root not in scope:
        raise ValueError(f"transform placeholder {transform!r}: no {root!r}; there are {sorted(scope)}")
    value = scope[root]
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise ValueError(f"transform placeholder {transform!r}: no key {key!r} in {_short(repr(value))}")
        value = value[key]
    return value


# -- the template ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str
    open: _Anchor | None
    close: _Anchor | None
    content: str
    args: Any
    repeats: Any
    join: str | None
    optional: Any
    transform: Any
    each: bool
    delta: type | None  # the event its streamed text becomes

    def value(self, body: str, captures: dict) -> Any:
        value = _PARSERS[self.content](body, self.args)
        if self.transform is None:
            return value
        if not self.each:
            return _apply(self.transform, {**captures, "content": value})
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ValueError(f"transform_each needs a list of objects, got {_short(repr(value))}")
        return [_apply(self.transform, {**captures, **item}) for item in value]


_FIELD_KEYS = {"open", "open_pattern", "close", "close_pattern", "content", "content_args", "repeats", "join",
               "optional", "transform", "transform_each"}
_TEMPLATE_KEYS = {"version", "defaults", "fields", "start_anchor", "start_anchor_pattern"}


def _field(name: str, spec: Any) -> _Field:
    where = f"response_template field {name!r}"
    if not isinstance(spec, dict):
        raise ResponseFormatError(f"{where} must be a dict, got {type(spec).__name__}", key=name)
    if unknown := sorted(set(spec) - _FIELD_KEYS, key=str):
        raise ResponseFormatError(f"{where}: unknown keys {unknown}; known: {sorted(_FIELD_KEYS)}", key=name)
    content = spec.get("content", "text")
    if not isinstance(content, str) or content not in _PARSERS:
        raise ResponseFormatError(f"{where}: unknown content parser {content!r}; known: {sorted(_PARSERS)}",
                                  key=name)
    opener = _anchor(spec, "open", "open_pattern", where, name, partial=True)
    closer = _anchor(spec, "close", "close_pattern", where, name, partial=True)
    join, transform, each = spec.get("join"), spec.get("transform"), spec.get("transform_each", False)
    if join is not None and not isinstance(join, str):
        raise ResponseFormatError(f"{where}: 'join' must be a string, got {join!r}", key=name)
    if join is not None and not spec.get("repeats", False):
        raise ResponseFormatError(f"{where}: 'join' needs 'repeats': true", key=name)
    if not isinstance(each, bool):
        raise ResponseFormatError(f"{where}: 'transform_each' must be true or false, got {each!r}", key=name)
    if each and transform is None:
        raise ResponseFormatError(f"{where}: 'transform_each' is set but there is no 'transform'", key=name)
    if transform is not None:
        _check_transform(where, name, transform)
    elif captured := sorted({g for a in (opener, closer) if a is not None for g in a.matcher.groupindex}):
        raise ResponseFormatError(f"{where}: the anchor patterns capture {captured}, but captures only reach the "
                                  "message through a 'transform'; add one that uses them, or drop the names",
                                  key=name)
    streamable = content in _STREAMABLE
    delta = (ContentDelta if name == "content" else ReasoningDelta if name in REASONING_FIELDS else None)
    return _Field(name, opener, closer, content, spec.get("content_args", {}), spec.get("repeats", False), join,
                  spec.get("optional", True), transform, each, delta if streamable else None)


class ResponseTemplate:
    """A compiled transformers response_template."""

    def __init__(self, defaults: dict, fields: dict[str, _Field], implicit: str | None, start: _Anchor) -> None:
        self._defaults = defaults
        self._fields = fields
        self._implicit = implicit
        self._start = start
        # What the parser looks for outside explicit regions: every open, and the implicit close.
        self._idle_watch = [("open", f, f.open) for f in fields.values() if f.open is not None]
        if implicit is not None and fields[implicit].close is not None:
            self._idle_watch.append(("close", fields[implicit], fields[implicit].close))
        # Settled text the anchors may still look back at (with a character to spare, so that a
        # position after a cut is never mistaken for the start); None: keep it all.
        behind = [a.behind for f in fields.values() for a in (f.open, f.close) if a is not None]
        self._keep = None if None in behind else 1 + max(behind, default=0)

    @classmethod
    def from_dict(cls, spec: dict) -> ResponseTemplate:
        """Validate and compile a ``response_template`` as transformers does; a spec transformers
        rejects raises :class:`ResponseFormatError` (``key``: the offending key or field name)."""
        if not isinstance(spec, dict):
            raise ResponseFormatError(f"response_template must be a dict, got {type(spec).__name__}",
                                      key="response_template")
        if spec.get("version", 1) != 1:
            raise ResponseFormatError(f"response_template version {spec['version']!r} is not supported (only 1)",
                                      key="version")
        if unknown := sorted(set(spec) - _TEMPLATE_KEYS, key=str):
            raise ResponseFormatError(f"response_template has unknown keys {unknown}; known: "
                                      f"{sorted(_TEMPLATE_KEYS)}", key=unknown[0])
        if not isinstance(spec.get("defaults", {}), dict):
            raise ResponseFormatError("response_template 'defaults' must be a dict", key="defaults")
        raw_fields = spec.get("fields", {})
        if not isinstance(raw_fields, dict) or not raw_fields:
            raise ResponseFormatError("response_template 'fields' must be a non-empty dict", key="fields")
        fields = {name: _field(name, raw) for name, raw in raw_fields.items()}
        implicit = [name for name, f in fields.items() if f.open is None]
        if len(implicit) > 1:
            raise ResponseFormatError(f"response_template: fields {implicit} have no 'open'/'open_pattern'; at most "
                                      "one field may (it takes the text outside the others)", key=implicit[1])
        key = "start_anchor_pattern" if "start_anchor_pattern" in spec and "start_anchor" not in spec \
            else "start_anchor"
        start = _anchor(spec, "start_anchor", "start_anchor_pattern", "response_template", key, partial=False)
        if start is None:
            raise ResponseFormatError("response_template needs 'start_anchor' or 'start_anchor_pattern' (where the "
                                      "assistant message starts in the prompt)", key="start_anchor")
        return cls(copy.deepcopy(spec.get("defaults", {})), fields, implicit[0] if implicit else None, start)

    def parse(self, text: str, *, prefix: str = "", tools: list | None = None) -> dict:
        """The message in ``text``, generated after ``prefix`` (the prompt), as transformers'
        ``parse_response`` returns it; with ``tools``, tool-call arguments are typed by their schemas.
        Raises :class:`ResponseFormatError` where transformers raises (a region that does not parse,
        a required field missing)."""
        stream = ResponseTemplateStream(self, prefix, tools, _events=False)
        # transformers feeds the text, then ends it; ending it at once reads the same, as the
        # end only lets more matches settle, and skips looking for cut-off ones.
        stream._text += text
        return stream.finish()

    def stream(self, *, prefix: str = "", tools: list | None = None) -> ResponseTemplateStream:
        """A parser to feed the response as it is generated."""
        return ResponseTemplateStream(self, prefix, tools)

    def _after_start(self, prefix: str) -> str:
        """The prompt after the last start anchor: the part of the assistant message it prefills.
        Without an anchor the whole prompt is read, as transformers does."""
        end = None
        for m in self._start.matcher.finditer(prefix):
            end = m.end()
        return prefix if end is None else prefix[end:]


# -- parsing -------------------------------------------------------------------------------------------


class ResponseTemplateStream:
    """Parses a response as it is generated: ``feed`` each piece of text, then ``finish()``.

    ``feed`` returns events: ``ContentDelta``/``ReasoningDelta`` for text of a ``content`` or
    reasoning field (the first call also reports what the prompt prefilled), and
    ``ToolCallStarted`` then ``ToolCallDone`` as each call in ``tool_calls`` completes. Text that
    may still turn into an anchor is held back until it is known. ``close()`` ends the response
    and returns the events the end completes; ``finish()`` (after it or instead of it) returns
    the message :meth:`ResponseTemplate.parse` gives for the whole text.
    """

    def __init__(self, template: ResponseTemplate, prefix: str = "", tools: list | None = None, *,
                 _events: bool = True) -> None:
        self._t = template
        self._properties = {name: (parameters.get("properties") if isinstance(parameters.get("properties"), dict)
                                   else {}) for name, parameters in (tool_schemas(tools) or {}).items()}
        self._text = ""  # the text from self._cut on
        self._cut = 0  # settled text dropped from the front (see ResponseTemplate._keep)
        self._pos = 0  # text before this is settled
        self._out: dict[str, Any] = copy.deepcopy(template._defaults)
        self._current = template._implicit  # the field being read; None: outside every field
        self._captures: dict[str, str] = {}
        self._body: list[str] = []
        self._opened = False  # the implicit field opens with its first character
        self._empty_open_at = -1
        self._found: dict[tuple[int, bool], tuple[int, Any]] = {}  # see _search
        self._events: list | None = [] if _events else None
        self._message: dict | None = None
        self._failure: Exception | None = None
        if prefix:
            text = template._after_start(prefix)
            if text:
                self._text = text
                self._advance(eos=False)

    def feed(self, text: str) -> list:
        """Take the next piece of the response; return the events it completes."""
        if self._message is not None or self._failure is not None:
            raise RuntimeError("feed() after the response was finished")
        self._text += text
        self._found.clear()
        self._advance(eos=False)
        keep = self._t._keep
        if keep is not None and self._pos - keep > max(4096, len(self._text) // 2):  # amortised: linear overall
            drop = self._pos - keep
            self._text, self._pos, self._cut = self._text[drop:], keep, self._cut + drop
        return self._take_events()

    def close(self) -> list:
        """End the response; return the events its end completes."""
        if self._message is None and self._failure is None:
            try:
                self._found.clear()
                self._advance(eos=True)
                if missing := [n for n, f in self._t._fields.items() if not f.optional and n not in self._out]:
                    raise ResponseFormatError(f"the response has no {missing} (required by the response_template)",
                                              key=missing[0])
            except Exception as error:
                self._failure = error
                raise
            empty = (lambda v: v is None or (isinstance(v, (list, dict, str)) and not v))
            self._message = {k: v for k, v in self._out.items() if k in self._t._defaults or not empty(v)}
        elif self._failure is not None:
            raise self._failure
        return self._take_events()

    def finish(self) -> dict:
        """End the response if ``close()`` has not; return the parsed message."""
        self.close()
        assert self._message is not None
        return self._message

    def _take_events(self) -> list:
        events = self._events or []
        if self._events is not None:
            self._events = []
        return events

    def _advance(self, eos: bool) -> None:
        """Route the unsettled text into fields, stopping before anything that may yet become an
        anchor (unless the response has ended)."""
        while True:
            hit, hold = self._scan(eos)
            if hit is None:
                self._route(len(self._text) if eos else hold)
                if eos:
                    self._close()
                return
            kind, field, m = hit
            self._route(m.start())
            self._pos = m.end()
            if kind == "open":
                if m.start() == m.end():
                    if self._empty_open_at == self._cut + m.start():  # transformers loops forever here
                        raise ResponseFormatError(f"the open anchor of field {field.name!r} and its close both "
                                                  "match empty text at the same place, endlessly", key=field.name)
                    self._empty_open_at = self._cut + m.start()
                self._close()
                self._current, self._opened, self._body = field.name, True, []
                self._captures = {k: v for k, v in m.groupdict().items() if v is not None}
            else:
                had_text = self._opened
                self._close()
                if not had_text and m.start() == m.end():  # an empty close would fire again and again
                    return

    def _scan(self, eos: bool) -> tuple[Any, int]:
        """The anchor to act on now, if any, and where held-back text starts.

        The earliest complete match wins (the longest on a tie, opens before closes). Before the
        end, a match the end of the text may have cut short, or one ending there that more text
        could extend, holds back everything from its start, and nothing from there on is acted on."""
        text, pos = self._text, self._pos
        if self._current is not None and self._current != self._t._implicit:
            field = self._t._fields[self._current]
            watch = [("close", field, field.close)] if field.close is not None else []
        else:
            watch = self._t._idle_watch
        hold, best, best_key = len(text), None, None
        for kind, field, anchor in watch:
            m = self._search(anchor, True, pos)
            cut = None if eos else self._search(anchor, False, pos)
            if cut is not None:
                hold = min(hold, cut)
            if m is None:
                continue
            if not eos and anchor.can_grow(m, len(text)):
                hold = min(hold, m.start())
            else:
                key = (m.start(), m.start() - m.end(), kind != "open", field.name)
                if best_key is None or key < best_key:
                    best_key, best = key, (kind, field, m)
        if best is not None and best[2].start() >= hold:
            best = None
        return best, hold

    def _search(self, anchor: _Anchor, complete: bool, pos: int) -> Any:
        """``anchor.match`` or ``anchor.cut`` from ``pos``. Until the text grows, a search from an
        earlier position still holds if what it found is not behind ``pos``: a whole response fed
        at once is then searched about once per anchor, not once per anchor per match."""
        key = (id(anchor), complete)
        at, found = self._found.get(key, (pos + 1, None))
        start = found if found is None or isinstance(found, int) else found.start()
        if at > pos or (start is not None and start < pos):
            found = anchor.match(self._text, pos) if complete else anchor.cut(self._text, pos)
            self._found[key] = (pos, found)
        return found

    def _route(self, end: int) -> None:
        """Settle the text up to ``end`` into the current field (dropped outside every field)."""
        if end <= self._pos:
            return
        piece, self._pos = self._text[self._pos:end], end
        if self._current is None:
            return
        self._opened = True
        self._body.append(piece)
        delta = self._t._fields[self._current].delta
        if delta is not None and self._events is not None:
            self._events.append(delta(piece))

    def _close(self) -> None:
        """Store the current field's value; go back to the implicit field."""
        name, opened = self._current, self._opened
        self._current, self._opened, self._body, body = self._t._implicit, False, [], "".join(self._body)
        captures, self._captures = self._captures, {}
        if name is None or not opened:
            return
        field = self._t._fields[name]
        try:
            value = field.value(body, captures)
            if self._properties:
                value = self._type_arguments(value)
            if field.join is not None and not isinstance(value, str):
                raise ValueError(f"'join' needs each region to parse to a string, got {type(value).__name__}")
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as error:
            raise ResponseFormatError(f"response_template field {name!r}: cannot read {_short(body)}: {error}",
                                      key=name) from error
        if field.join is not None:
            previous = self._out.get(name)
            self._out[name] = value if previous is None else previous + field.join + value
        elif field.repeats:
            self._out.setdefault(name, []).append(value)
        else:
            self._out[name] = value
        if name == "tool_calls" and self._events is not None:
            if field.repeats:
                stored = self._out[name]
                calls = [(len(stored) - 1 if isinstance(stored, list) else 0, value)]
            else:
                calls = list(enumerate(value)) if isinstance(value, list) else [(0, value)]
            for index, call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                called = function.get("name") if isinstance(function, dict) else None
                self._events.append(ToolCallStarted(index, called if isinstance(called, str) else None))
                self._events.append(ToolCallDone(index, copy.deepcopy(call)))

    def _type_arguments(self, value: Any) -> Any:
        """Type the string arguments of ``{"function": {"name", "arguments"}}`` calls by schema."""
        if isinstance(value, list):
            return [self._type_arguments(item) for item in value]
        function = value.get("function") if isinstance(value, dict) else None
        if not isinstance(function, dict):
            return value
        name, arguments = function.get("name"), function.get("arguments")
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return value
        properties = self._properties.get(name)
        for key, argument in arguments.items() if properties else ():
            types = schema_types(properties[key]) if key in properties else []
            if not types:
                continue
            if isinstance(argument, str):
                arguments[key] = coerce_value(argument, types)
            elif isinstance(argument, list) and "array" not in types:  # repeated keys merged into a list
                arguments[key] = [coerce_value(item, types) if isinstance(item, str) else item for item in argument]
        return value
