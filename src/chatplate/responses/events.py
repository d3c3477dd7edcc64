"""What a streaming response parser reports while text arrives.

Every event names the part of the assistant message it belongs to. Deltas concatenate to the
field's final text before the parser strips surrounding whitespace at ``finish()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

__all__ = [
    "ReasoningDelta",
    "ContentDelta",
    "ContentRetracted",
    "ToolCallStarted",
    "ToolCallArgumentsDelta",
    "ToolCallDone",
    "ResponseEvent",
]


@dataclass(frozen=True)
class ReasoningDelta:
    """More reasoning text."""

    text: str


@dataclass(frozen=True)
class ContentDelta:
    """More content text (the answer the user sees)."""

    text: str


@dataclass(frozen=True)
class ContentRetracted:
    """Text sent as content turned out to be reasoning: a reasoning closer arrived with no opener.

    A ``ReasoningDelta`` with the same text follows. Displays should move ``text`` from the answer
    to the reasoning; the final message already has it there.
    """

    text: str


@dataclass(frozen=True)
class ToolCallStarted:
    """A tool call began; ``name`` is ``None`` until the format has shown it."""

    index: int
    name: str | None


@dataclass(frozen=True)
class ToolCallArgumentsDelta:
    """Raw generated text of tool call ``index`` after its name, as it arrives."""

    index: int
    text: str


@dataclass(frozen=True)
class ToolCallDone:
    """Tool call ``index`` is complete; ``call`` is the parsed call with its status."""

    index: int
    call: Any  # a calls.ToolCall; for a transformers response_template, the call dict it gives


ResponseEvent = Union[
    ReasoningDelta, ContentDelta, ContentRetracted, ToolCallStarted, ToolCallArgumentsDelta, ToolCallDone
]
