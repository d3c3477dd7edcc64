"""Round trip as the oracle for response parsing: for every corpus template and built-in, render
an assistant turn after the template's generation prompt, parse the rendered turn, and get back
what the template displayed. "Displayed" is judged two independent ways, neither by the parser:
the message's texts and calls found in the rendered turn, or the template rendering the parsed
message to the very same text.
"""

from __future__ import annotations

import json
import random
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatplate
from chatplate.responses import ContentDelta, ContentRetracted, ReasoningDelta, ToolCallDone
from tests.conftest import corpus_dir

pytestmark = pytest.mark.filterwarnings("ignore::chatplate.UnusedVariableWarning")

NOW = datetime(2024, 7, 26, 12)
USER = [{"role": "user", "content": "Find me a flight from London to Rome."}]
TOOLS = [
    {"type": "function", "function": {"name": "search_flights", "description": "Search flights.", "parameters": {
        "type": "object", "properties": {"origin": {"type": "string"}, "passengers": {"type": "integer"}},
        "required": ["origin"]}}},
    {"type": "function", "function": {"name": "book_seat", "description": "Book a seat.", "parameters": {
        "type": "object", "properties": {"row": {"type": "integer"}, "seat": {"type": "string"}}}}},
]
REASONING = "They want flights, so search first and then answer."
CONTENT = "Here are the flights I found for you."


def _call(index: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    # Nine alphanumerics suit Mistral's templates; Kimi's write the id in place of the name.
    return {"id": f"fl1ght00{index}", "type": "function", "function": {"name": name, "arguments": arguments}}


CALL_A = _call(1, "search_flights", {"origin": "LHR", "passengers": 2})
CALL_B = _call(2, "book_seat", {"row": 14, "seat": "C"})
VARIANTS = {
    "content": {"content": CONTENT},
    "reasoning+content": {"reasoning_content": REASONING, "content": CONTENT},
    "one call": {"content": CONTENT, "tool_calls": [CALL_A]},
    "two calls": {"content": CONTENT, "tool_calls": [CALL_A, CALL_B]},
    "reasoning+call": {"reasoning_content": REASONING, "content": "", "tool_calls": [CALL_A]},
}


def _sources() -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    root = corpus_dir()
    if root is not None:
        for path in sorted((root / "public").glob("*.json")):
            if not path.name.startswith("_"):
                out.append((path.stem, path))
    registry = Path(chatplate.__file__).parent / "sources" / "registry"
    out += [(f"builtin:{p.stem}", p.stem) for p in sorted(registry.glob("*.jinja"))]
    return out


def _template(source: Any) -> chatplate.ChatTemplate:
    if isinstance(source, Path):
        doc = json.loads(source.read_text(encoding="utf-8"))
        return chatplate.ChatTemplate(doc["template"], doc["bos_token"], doc["eos_token"])
    return chatplate.load(source)


def _typed(message: dict[str, Any]) -> dict[str, Any]:
    """The message with its text as a list of parts, for templates that take only those."""
    return {**message, "content": [{"type": "text", "text": message["content"]}]}


def _turn(t: chatplate.ChatTemplate, message: dict[str, Any]) -> tuple[str, str] | None:
    """(prompt, rendered turn) or None when the template refuses the message."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for user, last in ((USER, message), ([_typed(USER[0])], _typed(message))):
            try:
                prompt = t.render(user, tools=TOOLS, add_generation_prompt=True, now=NOW)
                whole = t.render(user + [last], tools=TOOLS, now=NOW)
                break
            except chatplate.TemplateError:
                continue
        else:
            return None
    start = 0
    while start < min(len(prompt), len(whole)) and prompt[start] == whole[start]:
        start += 1
    # A template may open history turns differently from its generation prompt: start the turn
    # at the marker the two only share the beginning of.
    for opener, closer in (("<", ">"), ("[", "]")):
        cut = whole.rfind(opener, 0, start)
        if cut > whole.rfind(closer, 0, start) and cut >= start - 40:
            start = cut
    return whole[:start], whole[start:]


def _shown(message: dict[str, Any], turn: str) -> dict[str, Any]:
    content = message.get("content") or ""
    out: dict[str, Any] = {"content": content if content in turn else ""}
    if message.get("reasoning_content") and message["reasoning_content"] in turn:
        out["reasoning"] = message["reasoning_content"]
    calls = [c["function"] for c in message.get("tool_calls") or () if c["function"]["name"] in turn]
    if calls:
        out["calls"] = [(c["name"], c["arguments"]) for c in calls]
    return out


def _got(parsed: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"content": parsed.get("content") or ""}
    if parsed.get("reasoning_content"):
        out["reasoning"] = parsed["reasoning_content"]
    if parsed.get("tool_calls"):
        out["calls"] = [(c["function"]["name"], c["function"]["arguments"]) for c in parsed["tool_calls"]]
    return out


def _round_trips(t: chatplate.ChatTemplate, message: dict[str, Any], prompt: str, turn: str,
                 parsed: dict[str, Any]) -> bool:
    if _shown(message, turn) == _got(parsed):
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            again = t.render(USER + [dict(parsed)], tools=TOOLS, now=NOW)
        except chatplate.TemplateError:
            return False
    return again == prompt + turn


def _stream(t: chatplate.ChatTemplate, prompt: str, pieces: list[str]) -> tuple[dict[str, Any], list[Any]]:
    parser = t.response_parser(prefix=prompt, tools=TOOLS)
    events: list[Any] = []
    for piece in pieces:
        events += parser.feed(piece)
    events += parser.close()
    return parser.finish(), events


def _random_pieces(text: str, rng: random.Random) -> list[str]:
    pieces, at = [], 0
    while at < len(text):
        size = rng.randint(1, 12)
        pieces.append(text[at:at + size])
        at += size
    return pieces


SOURCES = _sources()


@pytest.mark.parametrize(("name", "source"), SOURCES, ids=[name for name, _ in SOURCES])
def test_round_trip(name: str, source: Any) -> None:
    t = _template(source)
    rendered = 0
    failures = []
    for variant, fields in VARIANTS.items():
        message = {"role": "assistant", **fields}
        found = _turn(t, message)
        if found is None:
            continue
        rendered += 1
        prompt, turn = found
        parsed = t.parse_response(turn, prefix=prompt, tools=TOOLS)
        if not _round_trips(t, message, prompt, turn, parsed):
            failures.append(f"{variant}: {turn!r} -> {dict(parsed)}")
            continue
        assert all(call.ok for call in parsed.calls), (variant, [(c.name, c.status, c.error) for c in parsed.calls])
        # The same message whether the turn arrives whole, per character or in random chunks.
        rng = random.Random(f"{name}/{variant}")
        for pieces in (list(turn), _random_pieces(turn, rng)):
            streamed, events = _stream(t, prompt, pieces)
            assert streamed == parsed, (variant, dict(streamed), dict(parsed))
            content = "".join(e.text for e in events if isinstance(e, ContentDelta))
            for retracted in (e.text for e in events if isinstance(e, ContentRetracted)):
                content = content.replace(retracted, "", 1)
            assert content.strip() == parsed["content"]
            reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta)).strip()
            assert reasoning == parsed.get("reasoning_content", "")
            assert [e.call.name for e in events if isinstance(e, ToolCallDone)] == [
                c["function"]["name"] for c in parsed.get("tool_calls", [])]
    assert rendered > 0, f"{name}: the template rendered none of the assistant turns"
    assert not failures, "\n".join(failures)


def test_round_trip_covers_formats() -> None:
    """The corpus and built-ins exercise reasoning, tool calls and channels, not only plain text."""
    names = {_template(source).response_format.name for _, source in SOURCES}
    joined = " ".join(names)
    for part in ("think", "hermes", "qwen3-coder-xml", "glm-xml", "gemma", "mistral", "deepseek", "harmony",
                 "cohere-action", "pythonic-tagged", "bare-json", "json-tagged", "llama4-json"):
        assert part in joined, f"no template detected as {part}: {sorted(names)}"


_TEXT = st.text(alphabet=st.characters(whitelist_categories=("L", "N"), whitelist_characters=" .,!?-'"),
                min_size=1, max_size=40).map(str.strip).filter(bool)
# Argument values without quotes: some templates write them into Python or JSON unescaped (LFM2
# writes a lone quote between two others), which no parser can read back.
_VALUE = st.text(alphabet=st.characters(whitelist_categories=("L", "N"), whitelist_characters=" .,!?-"),
                 min_size=1, max_size=40).map(str.strip).filter(bool)
_PROPERTY_TEMPLATES = [n for n in ("trl__qwen3", "trl__qwen3_5_think", "trl__glm4moe", "trl__gptoss",
                                   "trl__gemma4", "axolotl__mistral_v3_tekken", "trl__deepseekv3_training",
                                   "trl__lfm2_2_5", "axolotl__command_a_tool_use")]


@pytest.mark.parametrize("name", _PROPERTY_TEMPLATES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=_TEXT, reasoning=_TEXT, value=_VALUE, number=st.integers(0, 10**6), calls=st.integers(0, 2),
       seed=st.integers(0, 2**16))
def test_generated_messages_round_trip(name: str, content: str, reasoning: str, value: str, number: int, calls: int,
                                       seed: int) -> None:
    root = corpus_dir()
    if root is None:
        pytest.skip("corpus missing")
    t = _template(root / "public" / f"{name}.json")
    tool_calls = [_call(1, "search_flights", {"origin": value, "passengers": number}),
                  _call(2, "book_seat", {"row": number, "seat": value})][:calls]
    message: dict[str, Any] = {"role": "assistant", "content": content, "reasoning_content": reasoning}
    if tool_calls:
        message["tool_calls"] = tool_calls
    found = _turn(t, message)
    if found is None:
        message.pop("reasoning_content")
        found = _turn(t, message)
    if found is None:
        return  # the template refuses this shape (gpt-oss: content with thinking and calls)
    prompt, turn = found
    parsed = t.parse_response(turn, prefix=prompt, tools=TOOLS)
    assert _round_trips(t, message, prompt, turn, parsed), (turn, dict(parsed))
    streamed, _ = _stream(t, prompt, _random_pieces(turn, random.Random(seed)))
    assert streamed == parsed
