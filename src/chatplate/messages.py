"""Conversations: validating what callers pass, and normalising it the way transformers does.

Validation names the message at fault; normalisation reproduces what the reference does before
rendering (null keys dropped, data reduced to plain JSON-like values, reasoning fields aliased).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import ConversationError, DocumentsError

__all__ = ["Message", "messages_from_pairs", "validate_conversation", "to_plain", "alias_reasoning"]

Message = dict[str, Any]

# Names a message's reasoning arrives under; the reference copies the first one found to both
# `thinking` and `reasoning_content`, the names templates read.
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")

_REASONING_KEYS = frozenset(REASONING_FIELDS)

_SCALARS = frozenset((str, int, float, bool, type(None)))


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


def validate_conversation(conversation: Any) -> list[Message]:
    """Check the conversation's shape; return a plain copy with null top-level keys dropped.

    The copy is made of plain values (see :func:`to_plain`), so the caller's messages are never
    touched by what happens later; dropping and copying share one pass because this runs on
    every render.

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
        # The reference drops null keys: OpenAI-style `content=None` must not render as "None".
        cleaned.append(
            {
                (k if type(k) in _SCALARS else to_plain(k)): (v if type(v) in _SCALARS else to_plain(v))
                for k, v in items()
                if v is not None
            }
        )
    return cleaned


def to_plain(value: Any) -> Any:
    """A deep copy of ``value`` made of plain JSON-like types, as the reference shows templates.

    Subclasses of str/int/float lose their extra methods, mappings become dicts, dataclasses and
    pydantic models become dicts, numpy scalars become Python scalars, and any other object
    becomes an inert placeholder ``"<TypeName>"``: templates must never reach live objects.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {
            (k if type(k) in _SCALARS else to_plain(k)): (v if type(v) in _SCALARS else to_plain(v))
            for k, v in value.items()
        }
    if kind is list:
        return [v if type(v) in _SCALARS else to_plain(v) for v in value]
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {to_plain(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_plain(v) for v in value)
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        return to_plain(value.item())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return to_plain(model_dump())
    return f"<{kind.__name__}>"


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
