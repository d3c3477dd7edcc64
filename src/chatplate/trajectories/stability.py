"""Whether a template keeps what the model saw as a prefix when turns are appended.

A trajectory is exact only if the prompt a turn was sampled after, and the turn itself, stay the
beginning of every later prompt. :func:`prefix_stability` probes a template with small rollouts
(an assistant turn, then a tool result or a user turn), smallest first, and reports for each way
the property breaks a witness: the conversation, the field that is rewritten and the texts
before and after, with the template variable that fixes it where one does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import engine
from ..errors import ChatplateError
from ..rendering import common_prefix
from .trajectory import token_start

if TYPE_CHECKING:
    from ..template import ChatTemplate

__all__ = ["PrefixStability", "Witness", "prefix_stability"]

_REASONING = "First I check the weather, then I answer."
_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
_CALL = {"id": "call00001", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
_USER = {"role": "user", "content": "What is the weather in Paris?"}
_ASSISTANTS = {
    "content": {"role": "assistant", "content": "It is sunny in Paris."},
    "reasoning": {"role": "assistant", "reasoning_content": _REASONING, "content": "It is sunny in Paris."},
    "tool call": {"role": "assistant", "reasoning_content": _REASONING, "content": "", "tool_calls": [_CALL]},
}
_APPENDED = {
    "tool result": {"role": "tool", "tool_call_id": "call00001", "content": "sunny, 24 C"},
    "user turn": {"role": "user", "content": "And tomorrow?"},
}
# Variables every render has, never a fix to suggest.
_GIVEN = frozenset({"messages", "tools", "documents", "add_generation_prompt", "bos_token", "eos_token",
                    "raise_exception", "strftime_now", "namespace", "range", "dict", "len", "tojson"})
_EXCERPT = 40


@dataclass(frozen=True)
class Witness:
    """One way a template breaks the prefix property, on the smallest conversation showing it.

    ``appended``: what was appended (``"tool result"``, ``"user turn"``, ``"time"`` for a
    render that changes with the clock, or ``"nothing"``: the closed turn itself drops what the
    model sampled); ``conversation``: the messages up to and including the assistant turn;
    ``field``: what is rewritten (``"generation prompt"``, ``"past reasoning"``, ``"empty think
    block"``, ``"tool calls"``, ``"earlier message"``, ``"turn end"``, ``"assistant turn"``,
    ``"own reasoning"``, ``"date"``); ``before``/``after``: the text from where the renders
    part, before and after appending; ``fix``: template variables (or ``now``) under which the
    property holds, if any; ``tools`` and ``appended_messages``: what the conversation was
    rendered with, and what was appended to it (none for ``"time"`` and ``"nothing"``).
    """

    appended: str
    conversation: list[dict[str, Any]]
    field: str
    position: int
    before: str
    after: str
    fix: dict[str, Any] | None = None
    tools: list[Any] | None = None
    appended_messages: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        fix = f"; fixed by {', '.join(f'{k}={v!r}' for k, v in self.fix.items())}" if self.fix else ""
        when = {"nothing": "once the turn is closed", "time": "on another day"}.get(
            self.appended, f"appending a {self.appended}")
        return f"{when}: {self.field} rewritten at character {self.position}: {self.before!r} becomes {self.after!r}{fix}"


@dataclass(frozen=True)
class PrefixStability:
    """The report of :func:`prefix_stability`: ``stable`` when the probes ran and none broke the
    property; ``witnesses`` otherwise (one per kind of append and field); ``probed``: the probes
    the template rendered (none: it refuses them all, and ``stable`` is False)."""

    stable: bool
    witnesses: list[Witness] = field(default_factory=list)
    probed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.stable:
            return f"prefix-stable ({', '.join(self.probed)})"
        if not self.witnesses:
            return "unknown: the template renders none of the probe conversations"
        return "not prefix-stable:\n" + "\n".join(f"  {witness}" for witness in self.witnesses)


def prefix_stability(
    template: ChatTemplate, *, tools: Sequence[Any] | None = None, now: datetime | None = None, **variables: Any
) -> PrefixStability:
    """Probe ``template`` (with these template variables) for the prefix property (see the
    module). ``tools`` default to a small weather tool for the tool-call probes.

    >>> import chatplate
    >>> print(chatplate.load("chatml").prefix_stability())
    prefix-stable (content + user turn, reasoning + user turn, tool call + tool result, tool call + user turn)
    """
    tools = list(tools) if tools is not None else _TOOLS
    probe = _Probe(template, tools, now, variables)
    witnesses: list[Witness] = []
    probed: list[str] = []
    seen: set[tuple[str, str]] = set()
    reasoning: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for assistant, appended, conversation in _probes():
        found, shown = probe.check(conversation, appended)
        if found is None and conversation[-1].get("tool_calls"):
            conversation = _string_arguments(conversation)  # templates that take arguments as JSON text
            found, shown = probe.check(conversation, appended)
        if found is None:
            continue
        if f"{assistant} + {appended}" not in probed:
            probed.append(f"{assistant} + {appended}")
        if shown is not None:
            reasoning[shown].append(conversation)
        if found is not True and (found.appended, found.field) not in seen:
            seen.add((found.appended, found.field))
            witnesses.append(_with_fix(probe, found))
    if reasoning[True] and reasoning[False]:
        # The template renders reasoning, but not this turn's once it is closed (Kimi K2 Thinking
        # keeps it only after the last answer without tool calls): what the model sampled in
        # the turn is gone from the next prompt.
        witnesses.append(probe.hidden_reasoning(reasoning[False][0]))
    date = probe.clock()
    if date is not None:
        witnesses.append(date)
    return PrefixStability(bool(probed) and not witnesses, witnesses, probed)


def _probes() -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Smallest first: the assistant turn after one user message, then after a system message."""
    out = []
    for system in (False, True):
        head = [{"role": "system", "content": "You are a weather bot."}] if system else []
        for assistant, message in _ASSISTANTS.items():
            for appended in ("tool result", "user turn") if assistant == "tool call" else ("user turn",):
                out.append((assistant, appended, head + [_USER, message]))
    return out


class _Probe:
    def __init__(self, template: ChatTemplate, tools: list[Any], now: datetime | None, variables: dict[str, Any]) -> None:
        self.template, self.tools, self.now, self.variables = template, tools, now, variables
        # Where two renders part inside one of these, a witness is shown from its start.
        stops = template.detect_response_format(**variables).stops
        named = (template.bos_token, template.eos_token, *template.special_tokens.values(), *stops)
        self.markers = [token for token in named if token]
        if template.has_tokenizer:
            self.markers += list(template.tokenizer.added_tokens)

    def render(self, messages: list[dict[str, Any]], prompt: bool, **extra: Any) -> str:
        options = {"now": self.now, **self.variables, **extra}
        return self.template.render(messages, tools=self.tools, add_generation_prompt=prompt, **options)

    def check(self, conversation: list[dict[str, Any]], kind: str, **extra: Any) -> tuple[Witness | bool | None, bool | None]:
        """A witness, ``True`` when the property holds, ``None`` when the template refuses the
        probe; and whether the closed turn shows the reasoning it was given (``None``: it has none)."""
        appended = _APPENDED[kind]
        try:
            history = self.render(conversation[:-1], False, **extra)
            prompt = self.render(conversation[:-1], True, **extra)
            closed = self.render(conversation, False, **extra)
            later = self.render(conversation + [appended], True, **extra)
        except ChatplateError:
            return None, None
        message = conversation[-1]
        turn_start = common_prefix(history, closed)
        reasoning = message.get("reasoning_content")
        shown = reasoning in closed[turn_start:] if reasoning else None
        opened = common_prefix(prompt, closed)
        if opened < len(prompt):
            # The model samples after the prompt; history shows the turn without what the prompt
            # opened, or the messages before it otherwise.
            field = "generation prompt" if opened >= common_prefix(history, prompt) else "earlier message"
            return self._witness(kind, conversation, field, prompt, closed, opened, [appended]), shown
        # What the model samples ends at the template's end-of-turn marker: text the template
        # writes after the last turn only (an EOS to train on) is never in a later prompt.
        stops = self.template.detect_response_format(**{**self.variables, **extra}).stops
        ends = [found + len(stop) for stop in stops if (found := closed.find(stop, len(prompt))) >= 0]
        if later.startswith(closed[: min(ends, default=len(closed))]):
            return True, shown
        part = common_prefix(closed, later)
        field = _rewritten(message, closed, later, part, turn_start)
        return self._witness(kind, conversation, field, closed, later, part, [appended]), shown

    def hidden_reasoning(self, conversation: list[dict[str, Any]]) -> Witness:
        closed = self.render(conversation, False)
        start = common_prefix(self.render(conversation[:-1], False), closed)
        witness = self._witness("nothing", conversation, "own reasoning", closed, closed, start, [])
        return Witness(**{**witness.__dict__, "before": conversation[-1]["reasoning_content"][:_EXCERPT]})

    def clock(self) -> Witness | None:
        """A render that depends on the date (a rollout crossing midnight changes its prompt)."""
        if self.now is not None:
            return None
        conversation = [_USER]
        try:
            one = self.render(conversation, True, now=datetime(2024, 7, 26, 12))
            two = self.render(conversation, True, now=datetime(2024, 7, 27, 12))
        except ChatplateError:
            return None
        if one == two:
            return None
        part = common_prefix(one, two)
        witness = self._witness("time", conversation, "date", one, two, part, [])
        return Witness(**{**witness.__dict__, "fix": {"now": "a fixed datetime for the whole rollout"}})

    def _witness(self, kind: str, conversation: list[dict[str, Any]], field: str, before: str, after: str,
                 part: int, appended: list[dict[str, Any]]) -> Witness:
        part = token_start(before, part, self.markers)
        while part > 0 and before[part - 1] in "<[|":  # markers unknown to the template: ``<`` of ``<think>``
            part -= 1
        return Witness(kind, [dict(m) for m in conversation], field, part, before[part:part + _EXCERPT],
                       after[part:part + _EXCERPT], tools=self.tools, appended_messages=appended)


def _string_arguments(conversation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    message = conversation[-1]
    calls = [{**call, "function": {**call["function"], "arguments": json.dumps(call["function"]["arguments"])}}
             for call in message["tool_calls"]]
    return [*conversation[:-1], {**message, "tool_calls": calls}]


def _rewritten(message: dict[str, Any], closed: str, later: str, part: int, turn_start: int) -> str:
    """Which field the later render rewrites, where it parts from the closed one at ``part``."""
    if part < turn_start:
        return "earlier message"
    reasoning = message.get("reasoning_content")
    if reasoning and reasoning in closed[turn_start:] and reasoning not in later[turn_start:]:
        return "past reasoning"
    if not reasoning and "think" in closed[part:part + _EXCERPT] + later[part:part + _EXCERPT]:
        return "empty think block"
    if message.get("tool_calls") and "get_weather" in closed[part:]:
        return "tool calls"
    shown = closed[turn_start:]
    said = [text for text in (message.get("content"), reasoning, *_call_names(message)) if text and text in shown]
    if all(text in closed[turn_start:part] for text in said):
        return "turn end"  # all the turn says comes first: it closes differently once messages follow
    return "assistant turn"


def _call_names(message: dict[str, Any]) -> list[str]:
    return [call["function"]["name"] for call in message.get("tool_calls") or []]


def _with_fix(probe: _Probe, witness: Witness) -> Witness:
    """The witness, with the first template variable whose value makes its probe stable."""
    source = probe.template.renderer.source(probe.tools)
    for name in sorted(engine.read_variables(source) - _GIVEN - set(probe.variables)):
        for value in (True, False):
            if probe.check(witness.conversation, witness.appended, **{name: value})[0] is True:
                return Witness(**{**witness.__dict__, "fix": {name: value}})
    return witness
