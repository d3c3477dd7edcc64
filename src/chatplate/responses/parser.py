"""The response parser: generated text in, events and an assistant message out.

One state machine serves whole responses and streams (a whole response is one ``feed``), so
the message cannot depend on how the text was cut. In each state a fixed set of literal markers
moves it on (reasoning opener and closer, tool-call openers and closers, stops). Text that
could still be the start of a marker is held back, never more than the longest marker, and each
character is looked at a bounded number of times: parsing is linear in the response.

Rules for the ambiguous cases, whatever the format:

- **Reasoning opened by the prompt**: the prefix (the prompt the response continues, or the
  template's generation prompt) is run through the same machine first, so a response that
  continues an open ``<think>`` starts in reasoning.
- **A closer with no opener** (``reasoning</think>answer`` after a prompt that did not open
  reasoning): the text before it was reasoning. While streaming it was already sent as content,
  so a :class:`ContentRetracted` event takes it back.
- **A tool call opener inside reasoning** ends the reasoning, as if it had been closed: models
  call tools from unclosed thoughts. The reasoning is reported as not closed
  (``message.reasoning_closed``).
- **A stop marker** (end of turn, end of text) ends the message; what follows is kept in
  ``message.trailing`` and is not content.
- **Bare calls** (formats whose calls have no marker): a response whose first character opens a
  JSON object or a Python list is held until it ends; it is a call if it reads as one, content
  otherwise.
- Reasoning and content are stripped of surrounding whitespace, as the templates lay them out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from ..errors import InputError
from ..messages import REASONING_FIELDS
from .calls import ToolCall, read_calls, tool_schemas
from .events import (
    ContentDelta,
    ContentRetracted,
    ReasoningDelta,
    ResponseEvent,
    ToolCallArgumentsDelta,
    ToolCallDone,
    ToolCallStarted,
)
from .formats import CallSyntax, ResponseFormat

__all__ = ["AssistantMessage", "ResponseParser"]


# States.
_TEXT, _REASONING, _SECTION, _CALL, _HEADER, _BODY = range(6)
# What a marker does.
_OPEN_REASONING, _CLOSE_REASONING, _OPEN_SECTION, _CLOSE_SECTION, _OPEN_CALL, _CLOSE_CALL = range(6)
_WRAPPER, _STOP, _START_MESSAGE, _END_HEADER, _END_MESSAGE = range(6, 11)
# Body kinds in a channel message.
_BODY_CONTENT, _BODY_REASONING, _BODY_CALL = range(3)
# How far into a call region its name is looked for while streaming (bounded work per chunk).
_NAME_WINDOW = 512
_EARLY_NAME = {
    "json": re.compile(r'\s*(?:\[\s*)?\{\s*"(?:name|tool_name)"\s*:\s*"((?:[^"\\]|\\.)+)"'),
    "pythonic": re.compile(r"\s*\[?\s*([\w.]+)\s*\("),
}


class AssistantMessage(dict):  # type: ignore[type-arg]
    """The parsed assistant message: a plain ``dict`` a template can render, plus what the
    parse found on the way.

    - ``calls``: every tool call as a :class:`~chatplate.responses.calls.ToolCall` (status, raw
      text, error), in the order of ``message["tool_calls"]``.
    - ``stop``: the stop marker that ended the turn, or ``None`` (the text simply ended).
    - ``trailing``: text after the stop marker (not part of the message).
    - ``reasoning_closed``: ``False`` when reasoning was still open when the turn ended.
    - ``format``: the :class:`ResponseFormat` that parsed it (``.name``, ``.reason``).
    """

    calls: list[ToolCall]
    format: ResponseFormat
    stop: str | None
    trailing: str
    reasoning_closed: bool

    @property
    def ok(self) -> bool:
        """Whether every tool call read cleanly."""
        return all(call.ok for call in self.calls)


class _Table:
    """The markers one state reacts to, compiled for search."""

    def __init__(self, markers: Mapping[str, int]) -> None:
        self.actions = dict(markers)
        ordered = sorted(self.actions, key=len, reverse=True)
        self.regex = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self.longest = max(map(len, ordered), default=0)
        self.firsts = frozenset(m[0] for m in ordered)
        # Markers a longer marker starts with: a match at the buffer's end may still grow.
        self.extendable = frozenset(a for a in ordered for b in ordered if a != b and b.startswith(a))

    def partial(self, text: str) -> int:
        """Length of the longest tail of ``text`` that is a proper prefix of a marker."""
        end = len(text)
        for start in range(max(0, end - self.longest + 1), end):
            if text[start] in self.firsts:
                tail = text[start:]
                if any(m.startswith(tail) for m in self.actions):
                    return end - start
        return 0


class ResponseParser:
    """Parse one response, whole or in chunks.

    >>> from chatplate.responses.formats import REASONING_SYNTAXES, ResponseFormat
    >>> parser = ResponseParser(ResponseFormat("think", reasoning=REASONING_SYNTAXES[0]))
    >>> events = parser.feed("<think>Hm.</th") + parser.feed("ink>Yes.")
    >>> parser.finish()
    {'role': 'assistant', 'content': 'Yes.', 'reasoning_content': 'Hm.'}
    """

    def __init__(
        self,
        response_format: ResponseFormat,
        *,
        prefix: str | None = None,
        tools: Sequence[Any] | None = None,
        reasoning_field: str = "reasoning_content",
    ) -> None:
        if reasoning_field not in REASONING_FIELDS:
            raise InputError(f"reasoning_field must be one of {', '.join(REASONING_FIELDS)}; got {reasoning_field!r}")
        self.format = fmt = response_format
        self._tools = tool_schemas(tools)
        self._field = reasoning_field
        self._tables = _tables(fmt)
        calls = fmt.tool_calls
        self._bare = calls is not None and not calls.open
        self._bare_starts = "".join("{" if s.kind == "json" else "[" for s in calls.syntaxes) if self._bare and calls else ""
        self._syntaxes: Sequence[CallSyntax] = (
            fmt.channels.body,) if fmt.channels else (calls.syntaxes if calls else ())
        self._state = _HEADER if fmt.channels else _TEXT
        self._in_section = False
        self._buf = ""
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: list[ToolCall] = []
        self._events: list[ResponseEvent] = []
        self._region: list[str] = []
        self._region_size = 0
        self._region_bare = False
        self._region_started: str | None = None  # the name announced by ToolCallStarted
        self._region_args_sent = 0  # region characters already sent as argument deltas
        self._header: list[str] = []
        self._body = _BODY_CONTENT
        self._call_name: str | None = None
        self._reasoning_seen = False
        self._reasoning_closed = True
        self._has_content = False
        self._stop: str | None = None
        self._trailing: list[str] = []
        self._finished: AssistantMessage | None = None
        self._header_primed = 0  # header text that came from the prefix, not the response
        if prefix:
            self._prime(prefix)

    # ------------------------------------------------------------------------------ public

    def feed(self, text: str) -> list[ResponseEvent]:
        """Take the next piece of the response; return the events it completes."""
        if self._finished is not None:
            raise InputError("feed() after finish(): start a new parser for a new response")
        if self._stop is not None:
            self._trailing.append(text)
            return []
        self._buf += text
        self._run(final=False)
        events, self._events = self._events, []
        return events

    def parse(self, text: str) -> AssistantMessage:
        """Parse a whole response: ``feed(text)`` then ``finish()``."""
        self.feed(text)
        return self.finish()

    def finish(self) -> AssistantMessage:
        """End the response and return the message (the same object on every call)."""
        if self._finished is None:
            self._close()
            self._finished = self._message()
        return self._finished

    def close(self) -> list[ResponseEvent]:
        """End the response and return the events its end completes (then use ``finish()``)."""
        self.finish()
        events, self._events = self._events, []
        return events

    # --------------------------------------------------------------------------- machine

    def _prime(self, prefix: str) -> None:
        """Run the prompt's current turn through the machine, keeping only the state it leaves."""
        self._buf = _current_turn(prefix, self.format)
        self._run(final=False)
        self._content.clear()
        self._reasoning.clear()
        self._calls.clear()
        self._events.clear()
        self._has_content = False
        self._reasoning_seen = self._state == _REASONING or (self._state == _BODY and self._body == _BODY_REASONING)
        self._header_primed = len(self._header)
        self._stop, self._trailing = None, []

    def _run(self, *, final: bool) -> None:
        while True:
            table = self._tables[self._state]
            buf = self._buf
            found = table.regex.search(buf) if table.regex is not None else None
            if found is not None and not final and found.end() == len(buf) and found.group() in table.extendable:
                self._text(buf[:found.start()])
                self._buf = buf[found.start():]
                return
            if found is None:
                keep = 0 if final else table.partial(buf)
                self._text(buf[:len(buf) - keep])
                self._buf = buf[len(buf) - keep:]
                return
            self._text(buf[:found.start()])
            self._buf = buf[found.end():]
            self._marker(found.group(), table.actions[found.group()])
            if self._stop is not None:
                if self._buf:
                    self._trailing.append(self._buf)
                self._buf = ""
                return

    def _text(self, text: str) -> None:
        if not text:
            return
        state = self._state
        if state == _TEXT:
            if self._bare and not self._has_content and not self._calls:
                stripped = text.lstrip()
                if stripped and stripped[0] in self._bare_starts:
                    self._content.append(text[:len(text) - len(stripped)])
                    self._open_region(bare=True)
                    self._region_text(stripped)
                    return
            self._add_content(text)
        elif state == _REASONING:
            self._add_reasoning(text)
        elif state == _CALL:
            self._region_text(text)
        elif state == _SECTION:
            if text.strip():  # only layout belongs between a section's calls
                self._add_content(text)
        elif state == _HEADER:
            self._header.append(text)
        elif self._body == _BODY_REASONING:
            self._add_reasoning(text)
        elif self._body == _BODY_CALL:
            self._region_text(text)
        else:
            self._add_content(text)

    def _add_content(self, text: str) -> None:
        self._content.append(text)
        self._has_content = self._has_content or not text.isspace()
        self._events.append(ContentDelta(text))

    def _add_reasoning(self, text: str) -> None:
        self._reasoning.append(text)
        self._events.append(ReasoningDelta(text))

    def _marker(self, marker: str, action: int) -> None:
        if action == _STOP:
            self._end_open_parts(turn_ended=True)
            self._stop = marker
        elif action == _OPEN_REASONING:
            self._state, self._reasoning_seen, self._reasoning_closed = _REASONING, True, False
        elif action == _CLOSE_REASONING:
            if self._state == _REASONING:
                self._state, self._reasoning_closed = _TEXT, True
            elif not self._reasoning_seen and not self._calls:
                self._retract()
            else:
                self._add_content(marker)  # a stray closer after reasoning ended is text
        elif action == _OPEN_SECTION:
            self._leave_reasoning()
            self._state, self._in_section = _SECTION, True
        elif action == _CLOSE_SECTION:
            if self._state == _CALL:
                self._end_region(closed=not self.format.tool_calls.close)  # type: ignore[union-attr]
            self._state, self._in_section = _TEXT, False
        elif action == _OPEN_CALL:
            if self._state == _CALL:  # formats without closers: the next opener ends the call
                self._end_region(closed=True)
            self._leave_reasoning()
            self._open_region(bare=False)
        elif action == _CLOSE_CALL:
            self._end_region(closed=True)
            self._state = _SECTION if self._in_section else _TEXT
        elif action == _WRAPPER:
            pass
        elif action == _START_MESSAGE:
            self._end_open_parts(turn_ended=False)
            self._state, self._header = _HEADER, []
        elif action == _END_HEADER:
            self._begin_body("".join(self._header))
            self._header = []
        elif action == _END_MESSAGE:
            self._end_open_parts(turn_ended=False)
            self._state = _HEADER

    def _leave_reasoning(self) -> None:
        if self._state == _REASONING:
            self._reasoning_closed = False  # ended by a call, not by its closer
            self._state = _TEXT

    def _retract(self) -> None:
        text = "".join(self._content)
        self._content.clear()
        self._has_content = False
        if text:
            self._events.append(ContentRetracted(text))
            self._add_reasoning(text)
        self._reasoning_seen, self._reasoning_closed = True, True

    def _begin_body(self, header: str) -> None:
        channels = self.format.channels
        assert channels is not None
        if re.search(channels.reasoning, header, re.DOTALL):
            self._state, self._body = _BODY, _BODY_REASONING
            self._reasoning_seen, self._reasoning_closed = True, False
            return
        found = re.search(channels.call, header, re.DOTALL)
        if found is not None:
            self._state, self._body, self._call_name = _BODY, _BODY_CALL, found.group("name")
            self._open_region(bare=False)
            return
        self._state, self._body = _BODY, _BODY_CONTENT

    def _end_open_parts(self, *, turn_ended: bool) -> None:
        """The turn's end (a stop, or the end of the text) or a new message ends what is open.

        A call whose format has a closer and did not get it is ``unclosed``; reasoning that the
        turn's end cut off is not closed.
        """
        if self._state == _CALL or (self._state == _BODY and self._body == _BODY_CALL):
            needs_closer = bool(self.format.tool_calls and self.format.tool_calls.close) and self._state == _CALL
            self._end_region(closed=not (turn_ended and needs_closer))
        if self._state == _BODY and self._body == _BODY_REASONING:
            self._reasoning_closed = not turn_ended
        self._state = _HEADER if self.format.channels else _TEXT
        self._body = _BODY_CONTENT

    # ------------------------------------------------------------------------ call regions

    def _open_region(self, *, bare: bool) -> None:
        if not self.format.channels:
            self._state = _CALL
        self._region, self._region_size, self._region_bare = [], 0, bare
        self._region_started, self._region_args_sent = None, 0
        if self._call_name is not None and self.format.channels:
            self._announce(self._call_name, 0)

    def _region_text(self, text: str) -> None:
        self._region.append(text)
        self._region_size += len(text)
        if self._region_bare:
            return  # a bare call is only known to be one at its end
        if self._region_started is None and self._region_size <= _NAME_WINDOW:
            joined = "".join(self._region)
            self._region = [joined]
            found = self._early_name(joined)
            if found is not None:
                self._announce(found[0], found[1])
        unsent = self._region_size - self._region_args_sent
        if self._region_started is not None and unsent > 0:
            # Usually the newest piece; right after the name, the region's text past the name
            # (the region is still one joined string then).
            new = text[-unsent:] if unsent <= len(text) else "".join(self._region)[self._region_args_sent:]
            self._region_args_sent = self._region_size
            self._events.append(ToolCallArgumentsDelta(len(self._calls), new))

    def _early_name(self, text: str) -> tuple[str, int] | None:
        for syntax in self._syntaxes[:1]:
            if syntax.kind in _EARLY_NAME:
                found = _EARLY_NAME[syntax.kind].match(text)
            elif syntax.name_at_start:
                found = re.match(syntax.name_at_start, text, re.DOTALL)
            else:
                return None
            if found is not None:
                return found.group(1 if syntax.kind in _EARLY_NAME else "name").strip(), found.end()
        return None

    def _announce(self, name: str, args_from: int) -> None:
        self._region_started = name
        self._region_args_sent = args_from
        self._events.append(ToolCallStarted(len(self._calls), name))

    def _end_region(self, *, closed: bool) -> None:
        text = "".join(self._region)
        self._region, self._region_size = [], 0
        calls = read_calls(text, self._syntaxes, closed=closed, tools=self._tools, name=self._call_name)
        self._call_name = None
        if self._region_bare and (not calls or not all(call.ok for call in calls)):
            self._region_bare = False
            self._state = _TEXT
            self._add_content(text)
            return
        for number, call in enumerate(calls):
            index = len(self._calls)
            if number > 0 or self._region_started is None:
                self._events.append(ToolCallStarted(index, call.name))
            self._calls.append(call)
            self._events.append(ToolCallDone(index, call))
        self._region_started, self._region_bare = None, False
        if self._state == _CALL:
            self._state = _SECTION if self._in_section else _TEXT

    # ------------------------------------------------------------------------------ result

    def _close(self) -> None:
        if self._stop is None:
            self._run(final=True)
            if self._state == _HEADER:
                leftover = "".join(self._header)[self._header_primed:]
                if leftover.strip():
                    self._add_content(leftover)
            self._end_open_parts(turn_ended=True)

    def _message(self) -> AssistantMessage:
        message = AssistantMessage(role="assistant", content="".join(self._content).strip())
        reasoning = "".join(self._reasoning).strip()
        if reasoning:
            message[self._field] = reasoning
        if self._calls:
            message["tool_calls"] = [call.to_message() for call in self._calls]
        message.calls = list(self._calls)
        message.stop = self._stop
        message.trailing = "".join(self._trailing)
        message.reasoning_closed = self._reasoning_closed
        message.format = self.format
        return message


@lru_cache(maxsize=128)
def _tables(fmt: ResponseFormat) -> dict[int, _Table]:
    """The markers of each state, from the format (built once per format: parsers are made per
    response, and this is most of making one)."""
    stops = {marker: _STOP for marker in fmt.stops}
    if fmt.channels is not None:
        ch = fmt.channels
        ends = {end: _END_MESSAGE for end in ch.ends}
        stops = {m: a for m, a in stops.items() if m not in ends and m != ch.start}
        return {
            _HEADER: _Table({**stops, ch.start: _START_MESSAGE, ch.message: _END_HEADER}),
            _BODY: _Table({**stops, **ends, ch.start: _START_MESSAGE}),
        }
    wrappers = fmt.wrappers + (fmt.tool_calls.wrappers if fmt.tool_calls else ())
    text: dict[str, int] = {marker: _WRAPPER for marker in wrappers}
    reasoning: dict[str, int] = {}
    section: dict[str, int] = {}
    call: dict[str, int] = {}
    if fmt.reasoning is not None:
        text[fmt.reasoning.open] = _OPEN_REASONING
        text[fmt.reasoning.close] = _CLOSE_REASONING
        reasoning[fmt.reasoning.close] = _CLOSE_REASONING
    calls = fmt.tool_calls
    if calls is not None and calls.open:
        opens = {marker: _OPEN_CALL for marker in calls.open}
        if calls.section is not None:
            text[calls.section[0]] = reasoning[calls.section[0]] = _OPEN_SECTION
            section.update(opens)
            section[calls.section[1]] = call[calls.section[1]] = _CLOSE_SECTION
        text.update(opens)
        reasoning.update(opens)
        call.update({marker: _CLOSE_CALL for marker in calls.close})
        if not calls.close:
            call.update(opens)
    return {
        _TEXT: _Table({**text, **stops}),
        _REASONING: _Table({**reasoning, **stops}),
        _SECTION: _Table({**section, **stops}),
        _CALL: _Table({**call, **stops}),
    }


def _current_turn(prefix: str, fmt: ResponseFormat) -> str:
    """The part of a prompt that belongs to the turn being generated.

    Earlier turns end at a stop marker; a prompt rendered with the template's generation prompt
    ends with it. Only that tail decides the state the response starts in.
    """
    prompt = fmt.generation_prompt
    if prompt and prefix.endswith(prompt):
        return prompt
    ends = tuple(fmt.stops) + (fmt.channels.ends if fmt.channels else ())
    cut = max((prefix.rfind(end) + len(end) for end in ends if end and end in prefix), default=0)
    head = _first_marker(prompt)
    if head:
        cut = max(cut, prefix.rfind(head) if head in prefix[cut:] else cut)
    return prefix[cut:]


# A control marker: <|im_end|>, </s>, <｜end▁of▁sentence｜>, [/INST], [|endofturn|]; no spaces,
# quotes or brackets inside (so `[f(city="x")]` is no marker).
_MARKER = re.compile(r"\s*(<[^<>\s\"'()\[\]{}]{1,40}>|\[[^\[\]\s\"'()<>{}]{1,40}\])")


def _first_marker(text: str) -> str:
    """The control marker a piece of template text starts with, or ``""``."""
    found = _MARKER.match(text)
    return found.group(1) if found else ""
