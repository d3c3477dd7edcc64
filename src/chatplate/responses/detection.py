"""Which response format a template uses, found from what the template renders.

The template is asked to render probe assistant turns (an answer; reasoning and an answer; one
and two tool calls; reasoning and a call) after its own generation prompt. Each known syntax
(``responses/formats.py``) is then asked to parse those turns back; the one that recovers what
the probe put in is chosen, and the reason says which probes it recovered. The template's name
and its model are never consulted, so a fine-tune that keeps its base model's markers is
detected the same way.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..rendering import common_prefix
from .formats import (
    CHANNEL_SYNTAXES,
    CONTENT_WRAPPERS,
    REASONING_SYNTAXES,
    TOOL_CALL_SYNTAXES,
    ResponseFormat,
)
from .parser import ResponseParser, _first_marker

__all__ = ["detect_format", "PROBE_TOOLS", "probe_turns"]

Render = Callable[..., str]

# Markers that open a part of a turn in some format: what follows an answer is only a stop when
# it opens nothing.
_OPENERS = frozenset(
    [m for c in TOOL_CALL_SYNTAXES for m in c.open + (c.section or ())]
    + [m for r in REASONING_SYNTAXES for m in (r.open, r.close)]
    + [c.start for c in CHANNEL_SYNTAXES]
)

USER = "What is the weather in Paris?"
CONTENT = "It is sunny in Paris today."
REASONING = "The user asks about the weather, so I should look it up."
PROBE_TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city."},
            "days": {"type": "integer", "description": "How many days."}}, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Get the local time.",
        "parameters": {"type": "object", "properties": {
            "timezone": {"type": "string", "description": "An IANA time zone."}}, "required": ["timezone"]}}},
]
_CALLS = (("get_weather", {"city": "Paris", "days": 3}), ("get_time", {"timezone": "Europe/Paris"}))
# Mistral templates want 9-character alphanumeric ids; Kimi's write the id instead of the name.
_ID_STYLES = (lambda name, i: ("abcDEF12" + str(i))[:9], lambda name, i: f"functions.{name}:{i}")


@dataclass(frozen=True)
class ProbeTurn:
    """One probe: the assistant message, the prompt before it and the turn the template wrote."""

    message: dict[str, Any]
    prefix: str
    response: str


def probe_turns(render: Render, **variables: Any) -> tuple[dict[str, ProbeTurn], str]:
    """Render the probe turns a template accepts, by kind (``plain``, ``reasoning``, ``call``,
    ``calls``, ``reasoning_call``, ``call_only``), and the template's generation prompt."""
    user = [{"role": "user", "content": USER}]
    kinds: dict[str, dict[str, Any]] = {
        "plain": {"content": CONTENT},
        "reasoning": {"reasoning_content": REASONING, "content": CONTENT},
    }
    turns: dict[str, ProbeTurn] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # OpenAI-shaped tools first; some templates read bare function objects.
        for tools in (PROBE_TOOLS, [tool["function"] for tool in PROBE_TOOLS]):
            try:
                prompt = render(user, tools=tools, add_generation_prompt=True, **variables)
                bare = render(user, tools=tools, **variables)
                break
            except Exception:  # noqa: BLE001 - a template that cannot take the probe has no detectable format
                continue
        else:
            return turns, ""
        # Some templates concatenate the arguments as a string: JSON text is the second try.
        for style, as_text in ((style, as_text) for as_text in (False, True) for style in _ID_STYLES):
            calls = [_call(name, json.dumps(args) if as_text else args, style(name, i))
                     for i, (name, args) in enumerate(_CALLS)]
            kinds.update({
                "call": {"content": CONTENT, "tool_calls": calls[:1]},
                "calls": {"content": CONTENT, "tool_calls": calls},
                "reasoning_call": {"reasoning_content": REASONING, "content": "", "tool_calls": calls[:1]},
                "call_only": {"content": "", "tool_calls": calls[:1]},
            })
            for kind, fields in kinds.items():
                if kind in turns and (kind in ("plain", "reasoning") or _CALLS[0][0] in turns[kind].response):
                    continue
                message = {"role": "assistant", **fields}
                try:
                    whole = render(user + [message], tools=tools, **variables)
                except Exception:  # noqa: BLE001 - templates refuse some shapes (content with thinking and calls)
                    continue
                start = _turn_start(prompt, whole)
                turns[kind] = ProbeTurn(message, whole[:start], whole[start:])
    return turns, prompt[common_prefix(prompt, bare):]


def detect_format(
    render: Render, *, source: str = "", eos_token: str | None = None, variables: Mapping[str, Any] | None = None
) -> ResponseFormat:
    """The response format a template renders, and why.

    >>> import chatplate
    >>> t = chatplate.load("qwen2.5")
    >>> detect_format(t.render, source=t.source, eos_token=t.eos_token).tool_calls.name
    'hermes'
    """
    variables = dict(variables or {})
    turns, generation_prompt = probe_turns(render, **variables)
    stops = _stops(turns, eos_token)
    plain = turns.get("plain")
    wrappers = tuple(w for w in CONTENT_WRAPPERS if plain and (w in plain.response or w in plain.prefix))
    base = ResponseFormat("plain", wrappers=wrappers, stops=stops, generation_prompt=generation_prompt)
    reasons = [f"stops {', '.join(stops) or 'none'} (what ends the probe's answer)"]

    for channels in CHANNEL_SYNTAXES:
        if not any(channels.start in turn.prefix[-100:] + turn.response for turn in turns.values()):
            continue
        candidate = replace(base, name=channels.name, channels=channels)
        recovered = [kind for kind, turn in turns.items() if _recovers(candidate, turn)]
        # Channels must explain more than the answer: reasoning or calls the turns show.
        shows_more = any(set(displayed(turns[kind].message, turns[kind].response)) - {"content"} for kind in recovered)
        if "plain" in recovered and shows_more:
            reasons.insert(0, f"channels {channels.name}: parsed back the probe turns {', '.join(recovered)}")
            return replace(candidate, reason="; ".join(reasons))

    # Every pairing of a reasoning syntax and a tool-call syntax the turns (or, for reasoning,
    # the template's text) show; the pairing that parses back the most probe turns wins, and a
    # syntax is only added where it parses back more.
    seen = "".join(turn.prefix[-200:] + turn.response for turn in turns.values())
    reasonings = [None] + [r for r in REASONING_SYNTAXES if r.close in seen or r.close in source]
    tool_calls = [None] + [c for c in TOOL_CALL_SYNTAXES if (not c.open and _CALLS[0][0] in seen)
                           or any(m in seen for m in c.open)]
    best: tuple[int, int, ResponseFormat, list[str]] = (-1, 0, base, [])
    for reasoning in reasonings:
        for calls in tool_calls:
            candidate = replace(base, reasoning=reasoning, tool_calls=calls)
            candidate = candidate.with_stops(tuple(dict.fromkeys(base.stops + _call_stops(candidate, turns))))
            recovered = [kind for kind, turn in turns.items() if _recovers(candidate, turn)]
            # Ties go to the simpler format, except that reasoning the template's text mentions
            # is kept (templates that strip past reasoning still get it from the model).
            bonus = int(reasoning is not None and reasoning.close in source)
            if (len(recovered), bonus) > best[:2]:
                best = (len(recovered), bonus, candidate, recovered)
    chosen = best[2]
    if chosen.reasoning is not None:
        reasons.insert(0, f"reasoning {chosen.reasoning.name} ({chosen.reasoning.open}...{chosen.reasoning.close})")
    if chosen.tool_calls is not None:
        reasons.insert(len(reasons) - 1, f"tool calls {chosen.tool_calls.name}")
    elif any("tool_calls" in t.message and _CALLS[0][0] in t.response for t in turns.values()):
        reasons.insert(len(reasons) - 1, "tool calls: the template writes them in a syntax chatplate does not "
                                         "know; they stay in the content")
    reasons.append(f"parsed back the probe turns {', '.join(best[3]) or 'none'} of {', '.join(turns) or 'none'}")
    parts = [p for p in (chosen.reasoning and chosen.reasoning.name, chosen.tool_calls and chosen.tool_calls.name) if p]
    return replace(chosen, name=" + ".join(parts) or "plain", reason="; ".join(reasons))


def _call(name: str, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _turn_start(prompt: str, whole: str) -> int:
    """Where the assistant turn starts in ``whole``: after what it shares with the prompt, moved
    back to the start of a marker the two only share the beginning of (a template that writes a
    different opening for history turns than for its generation prompt)."""
    start = common_prefix(prompt, whole)
    for opener, closer in (("<", ">"), ("[", "]")):
        cut = whole.rfind(opener, 0, start)
        if cut > whole.rfind(closer, 0, start) and cut >= start - 40:
            start = cut
    return start


def _stops(turns: Mapping[str, ProbeTurn], eos_token: str | None) -> tuple[str, ...]:
    """What ends a turn: the marker after the answer of a turn that has nothing else after it.

    In a turn with tool calls the answer may come first, so there the marker counts only when
    the turn ends with it (Gemma 4's ``<|tool_response>``); what opens an unknown call syntax is
    never taken for a stop, so its calls stay in the content rather than vanish.
    """
    stops: list[str] = []
    for turn in turns.values():
        content = turn.message.get("content")
        if content and content in turn.response:
            rest = turn.response[turn.response.rindex(content) + len(content):]
            marker = _first_marker(rest)
            if not marker or marker in _OPENERS:
                continue
            if "tool_calls" in turn.message and rest.strip() != marker:
                continue
            stops.append(marker)
    if eos_token:
        stops.append(eos_token)
    return tuple(dict.fromkeys(stops))


def _call_stops(fmt: ResponseFormat, turns: Mapping[str, ProbeTurn]) -> tuple[str, ...]:
    """Markers that end a turn after its last call (``<|observation|>``, ``<|tool_response>``)."""
    calls = fmt.tool_calls
    if calls is None:
        return ()
    ends = tuple(calls.close) + ((calls.section[1],) if calls.section else ())
    found = []
    for turn in turns.values():
        if turn.message.get("content"):
            continue
        positions = [turn.response.rfind(end) + len(end) for end in ends if end in turn.response]
        if positions:
            marker = _first_marker(turn.response[max(positions):])
            if marker and marker not in calls.open:
                found.append(marker)
    return tuple(found)


def _recovers(fmt: ResponseFormat, turn: ProbeTurn) -> bool:
    """Whether ``fmt`` parses the probe turn back to what the probe put in (as far as displayed)."""
    try:
        message = ResponseParser(fmt, prefix=turn.prefix, tools=PROBE_TOOLS).parse(turn.response)
    except Exception:  # noqa: BLE001 - a syntax that cannot read the turn does not recover it
        return False
    return displayed(turn.message, turn.response) == comparable(message)


def displayed(message: Mapping[str, Any], response: str) -> dict[str, Any]:
    """What of ``message`` the rendered ``response`` shows: the fields a parser can give back."""
    out: dict[str, Any] = {"content": message.get("content") or ""}
    if out["content"] and out["content"] not in response:
        out["content"] = ""
    reasoning = message.get("reasoning_content")
    if reasoning and reasoning in response:
        out["reasoning"] = reasoning
    calls = [c["function"] for c in message.get("tool_calls") or () if c["function"]["name"] in response]
    if calls:
        out["calls"] = [(c["name"], json.loads(c["arguments"]) if isinstance(c["arguments"], str) else c["arguments"])
                        for c in calls]
    return out


def comparable(message: Mapping[str, Any]) -> dict[str, Any]:
    """A parsed message in the shape :func:`displayed` gives."""
    out: dict[str, Any] = {"content": message.get("content") or ""}
    for key in ("reasoning_content", "reasoning", "thinking"):
        if message.get(key):
            out["reasoning"] = message[key]
    calls = [c["function"] for c in message.get("tool_calls") or ()]
    if calls:
        out["calls"] = [(c["name"], c["arguments"]) for c in calls]
    return out
