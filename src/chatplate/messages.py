"""Conversations: validating what callers pass, and normalising it the way transformers does.

Validation names the message at fault; normalisation reproduces what the reference does before
rendering (null keys dropped, data reduced to plain JSON-like values, reasoning fields aliased).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import ConversationError, DocumentsError, Fix, InputError, TemplateResourceError
from .limits import DEFAULT_LIMITS, Limits, raise_limit

__all__ = [
    "Message", "messages_from_pairs", "validate_conversation", "to_plain", "plain_input", "alias_reasoning", "InputSize",
    "STANDARD_ROLES", "check_roles", "lone_surrogate",
]

Message = dict[str, Any]

# Names a message's reasoning arrives under; the reference copies the first one found to both
# `thinking` and `reasoning_content`, the names templates read.
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")

_REASONING_KEYS = frozenset(REASONING_FIELDS)

_SCALARS = frozenset((str, int, float, bool, type(None)))
# Scalars that are not text: a copy keeps them as they are, and they print as themselves.
FLAT = frozenset((int, float, bool, type(None)))
# The roles of OpenAI-style chats, which templates compare against and never need to guard.
STANDARD_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function", "ipython"})
_PLAIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
# Fields that carry a message's text.
_TEXT_FIELDS = ("content", *REASONING_FIELDS)
# A code point of a UTF-16 surrogate: no encoder (UTF-8, a tokenizer) accepts one alone.
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNCHECKED = Limits.unbounded()


def messages_from_pairs(pairs: Iterable[Sequence[str | None]]) -> list[Message]:
    """Turn a pair history ``[[user, assistant], ..., [user, None]]`` into messages.

    A ``None`` (or empty) side is left out, so the usual "last assistant reply still pending"
    history becomes a conversation ending on the user turn.

    >>> messages_from_pairs([["Hi", "Hello!"], ["How are you?", None]])
    [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello!'}, {'role': 'user', 'content': 'How are you?'}]
    """
    messages: list[Message] = []
    for index, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ConversationError(
                f"pairs[{index}]: expected a [user, assistant] pair, got {_describe(pair)}; "
                "use None for an assistant reply that is still to come",
                index=index,
            )
        for role, text in zip(("user", "assistant"), pair):
            if text is None or text == "":
                continue
            if not isinstance(text, str):
                raise ConversationError(
                    f"pairs[{index}]: the {role} side must be a string or None, got {_describe(text)}",
                    index=index,
                    field=role,
                )
            messages.append({"role": role, "content": text})
    return messages


def is_pair_history(data: Any) -> bool:
    """True for ``[[str, str|None], ...]`` shaped data (as opposed to a list of message dicts)."""
    return (
        isinstance(data, list)
        and bool(data)
        and all(
            isinstance(pair, (list, tuple))
            and len(pair) == 2
            and all(side is None or isinstance(side, str) for side in pair)
            for pair in data
        )
    )


class InputSize:
    """What one call's input uses of its limits: characters of its strings plus one per item or
    entry (``max_input_chars``), and nesting (``max_depth``). Shared by the messages, tools,
    documents and variables of one render."""

    __slots__ = ("size", "max_size", "max_depth")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.size = 0
        _, _, self.max_depth, self.max_size = limits.bounds

    def check_input(self) -> None:
        if self.size > self.max_size:
            raise TemplateResourceError(
                f"the input is larger than max_input_chars={self.max_size:,} (characters of the messages, tools, "
                f"documents and variables, plus one per item): reached {self.size:,}; if it is trusted, raise it: "
                "{fix}",
                limit="max_input_chars", value=self.size, maximum=self.max_size, fix=raise_limit("max_input_chars"),
            )


class _Rejected(Exception):  # noqa: N818 - internal signal, turned into a typed error with its path
    def __init__(self, problem: str, *where: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = list(where)  # innermost first; each level adds its own on the way out


def validate_conversation(conversation: Any, limits: Limits = DEFAULT_LIMITS, size: InputSize | None = None) -> list[Message]:
    """Check the conversation's shape; return a plain copy with null top-level keys dropped.

    The copy is made of plain values (see :func:`to_plain`), so the caller's messages are never
    touched by what happens later; dropping and copying share one pass because this runs on
    every render. Each message needs a string ``role``; ``content`` (and reasoning) must be
    something a template can print; strings must be valid Unicode (no lone surrogates); data may
    not nest deeper than ``limits.max_depth`` (nor contain itself).

    >>> validate_conversation([{"role": "user", "content": "hi", "name": None}])
    [{'role': 'user', 'content': 'hi'}]
    """
    if type(conversation) is not list and (
        isinstance(conversation, (str, bytes, Mapping)) or not isinstance(conversation, Iterable)
    ):
        hint = " (a single message? wrap it in a list)" if isinstance(conversation, Mapping) else ""
        raise ConversationError(
            f"conversation: expected a list of messages, got {_describe(conversation)}{hint}"
        )
    messages = conversation if isinstance(conversation, (list, tuple)) else list(conversation)
    if not messages:
        raise ConversationError(
            "conversation: cannot apply a chat template to an empty conversation; provide at least one message"
        )
    if limits.max_messages is not None and len(messages) > limits.max_messages:
        raise TemplateResourceError(
            f"the conversation has {len(messages):,} messages, more than max_messages={limits.max_messages:,}; if it "
            "is trusted, raise it: {fix}",
            limit="max_messages", value=len(messages), maximum=limits.max_messages, fix=raise_limit("max_messages"),
        )
    size = size if size is not None else InputSize(limits)
    cleaned = []
    for index, message in enumerate(messages):
        items = message.items if type(message) is dict else getattr(message, "items", None)
        if not callable(items) or isinstance(message, (str, bytes)):
            hint = ""
            if index == 0 and isinstance(message, (list, tuple)):
                hint = " (a batch of conversations? render each one separately)"
            raise ConversationError(
                f"messages[{index}]: expected a mapping with 'role' and 'content', got {_describe(message)}{hint}",
                index=index,
            )
        if type(message) is dict and len(message) == 2:
            # The commonest message, {"role": str, "content": str}, checked without the walk.
            role, content = message.get("role"), message.get("content")
            if (
                type(role) is str and type(content) is str and role.isascii() and lone_surrogate(content) is None
            ):
                size.size += len(role) + len(content) + 2
                cleaned.append({"role": role, "content": content} if next(iter(message)) == "role" else dict(message))
                continue
        try:
            # The reference drops null keys: OpenAI-style `content=None` must not render as "None".
            copy = _plain_mapping(message, size, 1, drop_none=True)
        except _Rejected as exc:
            raise _conversation_error(index, exc) from None
        except RecursionError:
            raise _conversation_error(index, _Rejected(_too_deep(size.max_depth))) from None
        # A text field copied as the very same object was a str or a number; anything else is
        # looked at closely (a placeholder like "<bytes>" must not pass for text).
        original = message if type(message) is dict else dict(items())
        if (
            type(copy.get("role")) is not str
            or copy.get("content") is not original.get("content")
            or not _REASONING_KEYS.isdisjoint(copy)
        ):
            _check_message(index, original, copy)
        cleaned.append(copy)
    size.check_input()
    return cleaned


def _check_message(index: int, original: Any, copy: dict[Any, Any]) -> None:
    role = copy.get("role")
    if not isinstance(role, str):
        got = "no 'role'" if role is None else f"a role of {_describe(original.get('role'))}"
        raise ConversationError(
            f"messages[{index}].role: every message needs a string role ('user', 'assistant', ...), got {got}",
            index=index, field="role",
        )
    for field in _TEXT_FIELDS:
        if field in copy and copy[field] is not original.get(field) and not _printable(original.get(field)):
            value = original.get(field)
            hint = "decode it to str first" if isinstance(value, (bytes, bytearray, memoryview)) else "convert it to text"
            raise ConversationError(
                f"messages[{index}].{field}: expected a string or a list of content parts, got {_describe(value)}; "
                f"no template can print that: {hint}",
                index=index, field=field,
            )


def check_roles(messages: list[Message], control_tokens: Sequence[str], declared: frozenset[str]) -> None:
    """Refuse roles that could make a control token when the template builds a header from
    them (``'<|' + role + '|>'``): a role outside :data:`STANDARD_ROLES` and ``declared`` must be
    a plain name that no control token contains. Used when encoding with control-token safety.

    >>> check_roles([{"role": "critic"}], ["<|im_end|>"], frozenset())
    >>> check_roles([{"role": "im_end"}], ["<|im_end|>"], frozenset())
    Traceback (most recent call last):
    ...
    chatplate.errors.ConversationError: messages[0].role: 'im_end' is part of the control token '<|im_end|>': ...
    """
    for index, message in enumerate(messages):
        role = message.get("role")
        if role in STANDARD_ROLES or role in declared:
            continue
        if not isinstance(role, str) or not _PLAIN_NAME.fullmatch(role):
            raise ConversationError(
                f"messages[{index}].role: {role!r} is not a role name (letters, digits, '_', '-', '.'); a template "
                "writing it into a header could forge control tokens",
                index=index, field="role",
            )
        holder = next((token for token in control_tokens if role in token), None)
        if holder is not None:
            raise ConversationError(
                f"messages[{index}].role: {role!r} is part of the control token {holder!r}: a template that builds "
                "headers from roles would write that token from data. If this model really has that role, declare "
                "it: {fix}",
                index=index, field="role",
                fix=Fix(f"ChatTemplate(..., roles=[{role!r}]) (or template.roles = {{{role!r}}})", f"--role {role}"),
            )


def _conversation_error(index: int, exc: _Rejected) -> ConversationError:
    field = exc.path[-1].lstrip(".").strip("[]'\"") if exc.path else None
    return ConversationError(f"messages[{index}]{_path(exc.path)}: {exc.problem}", index=index, field=field)


def plain_input(value: Any, name: str, size: InputSize, error: type[InputError] = InputError) -> Any:
    """:func:`to_plain` for tools, documents and variables, with the input's limits and checks:
    a bad value raises ``error`` naming ``name`` and the path inside it."""
    if value is None:
        return None
    if type(value) is dict and not value:  # no variables: the commonest call
        return {}
    try:
        copy = _plain(value, size, 0)
    except _Rejected as exc:
        raise error(f"{name}{_path(exc.path)}: {exc.problem}") from None
    except RecursionError:
        raise error(f"{name}: {_too_deep(size.max_depth)}") from None
    size.check_input()
    return copy


def to_plain(value: Any) -> Any:
    """A deep copy of ``value`` made of plain JSON-like types, as the reference shows templates.

    Subclasses of str/int/float lose their extra methods, mappings become dicts, dataclasses and
    pydantic models become dicts, numpy scalars become Python scalars, and any other object
    becomes an inert placeholder ``"<TypeName>"``: templates must never reach live objects.

    >>> to_plain({"n": 1, "tags": ("a", "b")})
    {'n': 1, 'tags': ('a', 'b')}
    """
    return _plain(value, InputSize(_UNCHECKED), 0)


def _plain(value: Any, size: InputSize, depth: int) -> Any:
    kind = type(value)
    if kind is str:
        size.size += len(value)
        if not value.isascii() and _SURROGATE.search(value):
            raise _Rejected(_surrogate(value))
        return value
    if kind in _SCALARS:
        size.size += 1
        return value
    if depth >= size.max_depth:
        raise _Rejected(_too_deep(size.max_depth, value))
    if kind is dict:
        return _plain_mapping(value, size, depth + 1, drop_none=False)
    if kind is list:
        return _plain_items(value, size, depth + 1)
    if isinstance(value, str):
        return _plain(str.__str__(value), size, depth)
    if isinstance(value, int):
        return _plain(int.__int__(value), size, depth)
    if isinstance(value, float):
        return _plain(float.__float__(value), size, depth)
    if isinstance(value, Mapping):
        return _plain_mapping(value, size, depth + 1, drop_none=False)
    if isinstance(value, list):
        return _plain_items(value, size, depth + 1)
    if isinstance(value, tuple):
        return tuple(_plain_items(value, size, depth + 1))
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        return _plain(value.item(), size, depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain_mapping({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, size, depth + 1, drop_none=False)
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return _plain(model_dump(), size, depth)
    # Decoded images, arrays and tensors in media parts: templates only test that the key is
    # there, and live objects must never reach them.
    return f"<{kind.__name__}>"


def _plain_mapping(value: Any, size: InputSize, depth: int, drop_none: bool) -> dict[Any, Any]:
    copy = {}
    chars = 0
    for key, item in value.items():
        kind = type(item)
        if kind is str:
            chars += len(item)
            if not item.isascii() and _SURROGATE.search(item):
                raise _Rejected(_surrogate(item), _key(key))
        elif kind in FLAT:
            if item is None and drop_none:
                continue
        else:
            try:
                item = _plain(item, size, depth)
            except _Rejected as exc:
                exc.path.append(_key(key))
                raise
        if type(key) is not str and type(key) not in _SCALARS:
            key = _plain(key, size, depth)
        copy[key] = item
    size.size += chars + len(copy)
    if size.size > size.max_size:
        size.check_input()
    return copy


def _key(key: Any) -> str:
    if isinstance(key, int) and not isinstance(key, bool):
        return f"[{key}]"
    return f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"


def _plain_items(value: Any, size: InputSize, depth: int) -> list[Any]:
    copy = []
    chars = 0
    for index, item in enumerate(value):
        kind = type(item)
        if kind is str:
            chars += len(item)
            if not item.isascii() and _SURROGATE.search(item):
                raise _Rejected(_surrogate(item), f"[{index}]")
        elif kind not in FLAT:
            try:
                item = _plain(item, size, depth)
            except _Rejected as exc:
                exc.path.append(f"[{index}]")
                raise
        copy.append(item)
    size.size += chars + len(copy)
    if size.size > size.max_size:
        size.check_input()
    return copy


def lone_surrogate(text: str) -> int | None:
    """Where ``text`` holds a lone UTF-16 surrogate (which no encoder accepts), if it does.

    >>> lone_surrogate("ok"), lone_surrogate("bad \\udcff")
    (None, 4)
    """
    if text.isascii():
        return None
    try:
        text.encode("utf-8")  # twice as fast as the search, which only a failure needs
        return None
    except UnicodeEncodeError:
        pass
    found = _SURROGATE.search(text)
    return found.start() if found else None


def _surrogate(text: str) -> str:
    at = _SURROGATE.search(text).start()  # type: ignore[union-attr]
    return f"{_describe(text)} holds a lone surrogate (U+{ord(text[at]):04X} at {at}), which is not valid Unicode; fix how it was decoded"


def _too_deep(max_depth: int, value: Any = None) -> str:
    if value is not None and _contains(value, id(value), max_depth):
        return "this value contains itself (a cycle), so it has no end to print; pass a copy without the cycle"
    return f"data nested deeper than max_depth={max_depth} levels; flatten it, or raise limits.max_depth if it is genuine"


def _contains(value: Any, target: int, depth: int) -> bool:
    """Whether ``target`` (an id) is reachable from ``value`` within ``depth`` levels."""
    if depth <= 0:
        return False
    children = value.values() if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else ()
    return any(id(child) == target or _contains(child, target, depth - 1) for child in children)


def _path(parts: list[str]) -> str:
    """The path to a value inside a message, innermost part last (long ones shortened)."""
    parts = list(reversed(parts))
    if len(parts) > 8:
        parts = [*parts[:4], f"...({len(parts) - 6} more)...", *parts[-2:]]
    return "".join(parts)


def _printable(value: Any) -> bool:
    """Whether a message's text field holds something a template can mean: text, a number, parts."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return False
    if isinstance(value, (str, int, float, list, tuple, Mapping)):
        return True
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        return True
    return (dataclasses.is_dataclass(value) and not isinstance(value, type)) or callable(getattr(value, "model_dump", None))


def alias_reasoning(messages: list[Any]) -> list[Any]:
    """Copy a message's reasoning to both ``thinking`` and ``reasoning_content``.

    Key order matters (templates ``tojson`` whole messages): ``thinking`` first, then the
    message's own keys, then ``reasoning_content``, as the reference builds it.
    """
    aliased = []
    for message in messages:
        if isinstance(message, dict) and not _REASONING_KEYS.isdisjoint(message):
            reasoning = next((message[key] for key in REASONING_FIELDS if message.get(key) is not None), None)
            if reasoning is not None:
                message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        aliased.append(message)
    return aliased


def validate_documents(documents: Any) -> None:
    """Every document must be a dict; the reference checks the items it iterates and nothing
    else, so an empty mapping or string passes (and reaches the template as it is)."""
    if documents is None:
        return
    try:
        items = iter(documents)
    except TypeError:
        raise DocumentsError(
            f"documents: expected a list of dicts with 'title' and 'text', got {_describe(documents)}"
        ) from None
    for index, document in enumerate(items):
        if not isinstance(document, dict):
            raise DocumentsError(
                f"documents[{index}]: expected a dict with 'title' and 'text' keys, got {_describe(document)}",
                index=index,
            )


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
