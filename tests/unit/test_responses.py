"""Response parsing: each syntax on text written as the model families write it, the rules for
ambiguous cases, call statuses, schema typing, and streaming bounds."""

from __future__ import annotations

import json
import random

import pytest

import chatplate
from chatplate.responses import (
    ContentDelta,
    ContentRetracted,
    ReasoningDelta,
    ResponseFormat,
    ResponseParser,
    ToolCallArgumentsDelta,
    ToolCallDone,
    ToolCallStarted,
)
from chatplate.responses.formats import CHANNEL_SYNTAXES, REASONING_SYNTAXES, TOOL_CALL_SYNTAXES

REASONING = {r.name: r for r in REASONING_SYNTAXES}
CALLS = {c.name: c for c in TOOL_CALL_SYNTAXES}
CHANNELS = {c.name: c for c in CHANNEL_SYNTAXES}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"},
        "ratio": {"type": "number"}, "tags": {"type": "array"}, "note": {"type": ["string", "null"]}}}}},
]


def fmt(reasoning: str | None = None, calls: str | None = None, channels: str | None = None,
        stops: tuple[str, ...] = ()) -> ResponseFormat:
    return ResponseFormat(
        "test", reasoning=REASONING.get(reasoning or ""), tool_calls=CALLS.get(calls or ""),
        channels=CHANNELS.get(channels or ""), stops=stops,
    )


def parse(f: ResponseFormat, text: str, **kwargs: object) -> dict:
    return ResponseParser(f, **kwargs).parse(text)


def calls_of(message: dict) -> list[tuple[str, object]]:
    return [(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls", [])]


# One response per family, as the family's models write it (not taken from any template here).
FAMILIES = [
    ("hermes", None, "<think>\nplan\n</think>\n\nSure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
     "{\"city\": \"Oslo\", \"days\": 2}}\n</tool_call><|im_end|>", ("<|im_end|>",), "think",
     [("get_weather", {"city": "Oslo", "days": 2})], "Sure.", "plan"),
    ("qwen3-coder-xml", None, "Sure.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n"
     "<parameter=days>\n2\n</parameter>\n</function>\n</tool_call><|im_end|>", ("<|im_end|>",), None,
     [("get_weather", {"city": "Oslo", "days": 2})], "Sure.", None),
    ("seed-xml", None, "<seed:think>plan</seed:think>Sure.<seed:tool_call><function=get_weather><parameter=city>Oslo"
     "</parameter></function></seed:tool_call>", (), "seed-think", [("get_weather", {"city": "Oslo"})], "Sure.", "plan"),
    ("glm-xml", None, "<think>plan</think>Sure.<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo"
     "</arg_value>\n<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n</tool_call>", (), "think",
     [("get_weather", {"city": "Oslo", "days": 2})], "Sure.", "plan"),
    ("invoke-xml", None, "<think>plan</think>Sure.<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter "
     "name=\"city\">Oslo</parameter>\n</invoke>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Rome"
     "</parameter>\n</invoke>\n</minimax:tool_call>", (), "think",
     [("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"})], "Sure.", "plan"),
    ("mistral", "v11 with ids", "[THINK]plan[/THINK]Sure.[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{\"city\": "
     "\"Oslo\"}[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Rome\"}</s>", ("</s>",), "mistral-think",
     [("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"})], "Sure.", "plan"),
    ("mistral", "old list", "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}, \"id\": "
     "\"a1b2c3d4e\"}]</s>", ("</s>",), None, [("get_weather", {"city": "Oslo"})], "", None),
    ("deepseek", "v3 fenced", "Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
     "```json\n{\"city\": \"Oslo\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>",
     ("<｜end▁of▁sentence｜>",), None, [("get_weather", {"city": "Oslo"})], "Sure.", None),
    ("deepseek", "v3.1", "plan</think>Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
     "{\"city\": \"Oslo\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>", ("<｜end▁of▁sentence｜>",),
     "think", [("get_weather", {"city": "Oslo"})], "Sure.", "plan"),
    ("kimi", None, "Sure.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
     "<|tool_call_argument_begin|>{\"city\": \"Oslo\"}<|tool_call_end|><|tool_calls_section_end|><|im_end|>",
     ("<|im_end|>",), None, [("get_weather", {"city": "Oslo"})], "Sure.", None),
    ("gemma", None, "<|channel>thought\nplan<channel|><|tool_call>call:get_weather{city:<|\"|>Oslo, NO<|\"|>,"
     "days:2,tags:[<|\"|>a<|\"|>]}<tool_call|>", (), "gemma-thought",
     [("get_weather", {"city": "Oslo, NO", "days": 2, "tags": ["a"]})], "", "plan"),
    ("pythonic-tagged", None, "Sure.<|tool_call_start|>[get_weather(city='Oslo', days=2), get_weather(city=\"Rome\")]"
     "<|tool_call_end|><|im_end|>", ("<|im_end|>",), None,
     [("get_weather", {"city": "Oslo", "days": 2}), ("get_weather", {"city": "Rome"})], "Sure.", None),
    ("cohere-action", None, "<|START_THINKING|>plan<|END_THINKING|><|START_ACTION|>[\n{\"tool_call_id\": \"0\", "
     "\"tool_name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}\n]<|END_ACTION|><|END_OF_TURN_TOKEN|>",
     ("<|END_OF_TURN_TOKEN|>",), "cohere-thinking", [("get_weather", {"city": "Oslo"})], "", "plan"),
    ("granite", None, "<|tool_call|>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]"
     "<|end_of_text|>", ("<|end_of_text|>",), None, [("get_weather", {"city": "Oslo"})], "", None),
    ("python-tag", None, "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}<|eom_id|>",
     ("<|eom_id|>",), None, [("get_weather", {"city": "Oslo"})], "", None),
    ("invoke-xml", "dsml", "Sure.<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter "
     "name=\"city\" string=\"true\">Oslo</｜DSML｜parameter>\n<｜DSML｜parameter name=\"days\" string=\"false\">2"
     "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls><｜end▁of▁sentence｜>", ("<｜end▁of▁sentence｜>",),
     None, [("get_weather", {"city": "Oslo", "days": 2})], "Sure.", None),
    ("function-json", None, "Sure.<function=get_weather>{\"city\": \"Oslo\"}</function><|eom_id|>", ("<|eom_id|>",),
     None, [("get_weather", {"city": "Oslo"})], "Sure.", None),
    ("phi4", None, "<|tool_call|>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}<|/tool_call|><|end|>",
     ("<|end|>",), None, [("get_weather", {"city": "Oslo"})], "", None),
    ("json-tagged", "nemotron", "<TOOLCALL>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]</TOOLCALL>",
     (), None, [("get_weather", {"city": "Oslo"})], "", None),
    ("json-tagged", "name-keyed", "<|tools_prefix|>[{\"get_weather\": {\"city\": \"Oslo\"}}]<|tools_suffix|>", (), None,
     [("get_weather", {"city": "Oslo"})], "", None),
    ("hunyuan-xml", None, "<think:opensource>plan</think:opensource>Sure.<tool_calls:opensource>\n<tool_call:opensource>"
     "get_weather<tool_sep:opensource>\n<arg_key:opensource>city</arg_key:opensource>\n<arg_value:opensource>Oslo"
     "</arg_value:opensource>\n</tool_call:opensource>\n</tool_calls:opensource>", (), "hunyuan-think",
     [("get_weather", {"city": "Oslo"})], "Sure.", "plan"),
    ("pythonic-tagged", "one a line", "<function_calls>\nget_weather(city='Oslo')\nget_weather(city='Rome', days=2)\n"
     "</function_calls><|im_end|>", ("<|im_end|>",), None,
     [("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome", "days": 2})], "", None),
    ("bare-json", None, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}<|eot_id|>",
     ("<|eot_id|>",), None, [("get_weather", {"city": "Oslo"})], "", None),
    ("bare-pythonic", None, "[get_weather(city='Oslo')]<|eot|>", ("<|eot|>",), None,
     [("get_weather", {"city": "Oslo"})], "", None),
]


@pytest.mark.parametrize(
    ("calls", "variant", "text", "stops", "reasoning", "expected_calls", "content", "expected_reasoning"),
    FAMILIES, ids=[f"{f[0]}-{f[1]}" if f[1] else f[0] for f in FAMILIES],
)
def test_family(calls, variant, text, stops, reasoning, expected_calls, content, expected_reasoning) -> None:
    f = fmt(reasoning, calls, stops=stops)
    # DeepSeek V3.1 and R1 open reasoning in the prompt; the others do not.
    prefix = "<｜Assistant｜><think>" if "v3.1" == variant else None
    message = parse(f, text, prefix=prefix, tools=TOOLS)
    assert calls_of(message) == expected_calls
    assert message["content"] == content
    assert message.get("reasoning_content") == expected_reasoning
    assert message.ok, [(c.status, c.error) for c in message.calls]
    if stops:
        assert message.stop in stops
    # Streamed per character: the same message.
    parser = ResponseParser(f, prefix=prefix, tools=TOOLS)
    for char in text:
        parser.feed(char)
    assert parser.finish() == message


def test_mistral_call_ids_are_kept() -> None:
    message = parse(fmt(calls="mistral"), "[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{}")
    assert message["tool_calls"][0]["id"] == "a1b2c3d4e"


def test_kimi_id_names_the_function() -> None:
    text = "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:3<|tool_call_argument_begin|>{}" \
           "<|tool_call_end|><|tool_calls_section_end|>"
    call = parse(fmt(calls="kimi"), text)["tool_calls"][0]
    assert (call["id"], call["function"]["name"]) == ("functions.get_weather:3", "get_weather")


def test_recipient_lines() -> None:
    f = fmt(channels="recipient-lines", stops=("<|eot_id|>",))
    text = "all\nLet me look.>>>get_weather\n{\"city\": \"Oslo\"}<|eot_id|>"
    message = parse(f, text, prefix="<|start_header_id|>assistant<|end_header_id|>\n\n>>>")
    assert message["content"] == "Let me look."
    assert calls_of(message) == [("get_weather", {"city": "Oslo"})]


class TestHarmony:
    F = fmt(channels="harmony", stops=("<|return|>",))

    def test_analysis_then_final(self) -> None:
        text = "<|channel|>analysis<|message|>plan<|end|><|start|>assistant<|channel|>final<|message|>Done.<|return|>"
        message = parse(self.F, text, prefix="<|start|>assistant")
        assert (message["content"], message["reasoning_content"]) == ("Done.", "plan")

    @pytest.mark.parametrize("header", [
        "<|channel|>commentary to=functions.get_weather <|constrain|>json",
        " to=functions.get_weather<|channel|>commentary json",
        "<|channel|>analysis to=functions.get_weather code",  # the recipient on the analysis channel
    ])
    def test_recipient_anywhere_in_the_header(self, header: str) -> None:
        text = f"<|channel|>analysis<|message|>plan<|end|><|start|>assistant{header}<|message|>{{\"city\": \"Oslo\"}}<|call|>"
        message = parse(self.F, text, prefix="<|start|>assistant")
        assert calls_of(message) == [("get_weather", {"city": "Oslo"})]
        assert message["reasoning_content"] == "plan"


class TestRules:
    THINK = fmt("think", "hermes", stops=("<|im_end|>",))

    def test_reasoning_opened_by_the_prompt(self) -> None:
        message = parse(self.THINK, "plan</think>answer", prefix="<|im_start|>assistant\n<think>\n")
        assert (message["reasoning_content"], message["content"]) == ("plan", "answer")

    def test_prompt_that_closed_reasoning(self) -> None:
        prompt = "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        assert parse(self.THINK, "answer", prefix=prompt) == {"role": "assistant", "content": "answer"}

    def test_earlier_turns_of_the_prompt_do_not_count(self) -> None:
        prompt = "<|im_start|>user\nwhat is <think>?<|im_end|>\n<|im_start|>assistant\n"
        assert parse(self.THINK, "answer", prefix=prompt)["content"] == "answer"

    def test_bare_closer_retracts_streamed_content(self) -> None:
        parser = ResponseParser(self.THINK)
        events = parser.feed("plan") + parser.feed("</think>answer")
        assert ContentRetracted("plan") in events
        assert events.index(ContentRetracted("plan")) < events.index(ReasoningDelta("plan"))
        message = parser.finish()
        assert (message["reasoning_content"], message["content"]) == ("plan", "answer")

    def test_call_inside_unclosed_reasoning(self) -> None:
        message = parse(self.THINK, "<think>I should call it<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>")
        assert message["reasoning_content"] == "I should call it"
        assert calls_of(message) == [("f", {})]
        assert message.reasoning_closed is False

    def test_stop_ends_the_message(self) -> None:
        message = parse(self.THINK, "answer<|im_end|>\nleftover")
        assert (message["content"], message.stop, message.trailing) == ("answer", "<|im_end|>", "\nleftover")

    @pytest.mark.parametrize("name", ["reasoning", "thinking"])
    def test_reasoning_field_name(self, name: str) -> None:
        message = ResponseParser(self.THINK, reasoning_field=name).parse("<think>plan</think>ok")
        assert message[name] == "plan" and "reasoning_content" not in message

    def test_unknown_reasoning_field(self) -> None:
        with pytest.raises(chatplate.InputError, match="reasoning_field"):
            ResponseParser(self.THINK, reasoning_field="thoughts")

    def test_bare_json_answer_that_is_no_call_stays_content(self) -> None:
        answer = '{"answer": 42}'
        message = parse(fmt(calls="bare-json"), answer)
        assert message["content"] == answer and "tool_calls" not in message


class TestStatuses:
    F = fmt(calls="hermes", stops=("<|im_end|>",))

    def test_invalid_json_keeps_the_call(self) -> None:
        message = parse(self.F, '<tool_call>{"name": "get_weather", "arguments": {"city": Oslo}}</tool_call>')
        call = message.calls[0]
        assert (call.status, call.name) == ("invalid_json", "get_weather")
        assert "Oslo" in call.raw and not message.ok
        assert message["tool_calls"][0]["function"]["name"] == "get_weather"

    def test_unclosed(self) -> None:
        message = parse(self.F, '<tool_call>{"name": "get_weather", "arguments": {}}<|im_end|>')
        assert message.calls[0].status == "unclosed"
        assert calls_of(message) == [("get_weather", {})]

    def test_unknown_tool(self) -> None:
        message = parse(self.F, '<tool_call>{"name": "launch", "arguments": {}}</tool_call>', tools=TOOLS)
        assert message.calls[0].status == "unknown_tool"

    def test_missing_name(self) -> None:
        assert parse(self.F, '<tool_call>{"arguments": {}}</tool_call>').calls[0].status == "missing_name"

    def test_pythonic_syntax_error(self) -> None:
        message = parse(fmt(calls="pythonic-tagged"), "<|tool_call_start|>[get_weather(city='Oslo]<|tool_call_end|>")
        assert message.calls[0].status == "invalid_syntax" and message.calls[0].name == "get_weather"


class TestSchemaTyping:
    F = fmt(calls="qwen3-coder-xml")

    def _args(self, params: dict[str, str], tools: object = TOOLS) -> dict:
        body = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in params.items())
        text = f"<tool_call>\n<function=get_weather>\n{body}</function>\n</tool_call>"
        return parse(self.F, text, tools=tools)["tool_calls"][0]["function"]["arguments"]

    def test_by_schema(self) -> None:
        args = self._args({"city": "123", "days": "3.0", "metric": "True", "ratio": "0.5", "tags": '["a"]',
                           "note": "null"})
        assert args == {"city": "123", "days": 3, "metric": True, "ratio": 0.5, "tags": ["a"], "note": None}

    def test_value_not_of_its_type_stays_text(self) -> None:
        assert self._args({"days": "three"}) == {"days": "three"}

    def test_without_schema_json_literals_are_read(self) -> None:
        assert self._args({"city": "Oslo", "days": "3"}, tools=None) == {"city": "Oslo", "days": 3}

    def test_python_function_tools(self) -> None:
        def get_weather(city: str, days: int) -> str:
            """Weather.

            Args:
                city: The city.
                days: How many days.
            """
            return city

        assert self._args({"city": "42", "days": "2"}, tools=[get_weather]) == {"city": "42", "days": 2}


class TestStreaming:
    F = fmt("think", "hermes", stops=("<|im_end|>",))
    TEXT = "<think>a plan</think>The answer <tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": " \
           "\"Oslo\"}}</tool_call><|im_end|>"

    def test_marker_split_across_chunks_is_never_content(self) -> None:
        for cut in range(1, len(self.TEXT)):
            parser = ResponseParser(self.F)
            events = parser.feed(self.TEXT[:cut]) + parser.feed(self.TEXT[cut:]) + parser.close()
            content = "".join(e.text for e in events if isinstance(e, ContentDelta))
            assert "<" not in content, (cut, content)

    def test_held_back_text_is_bounded_by_the_longest_marker(self) -> None:
        parser = ResponseParser(self.F)
        longest = max(len(m) for m in ("<think>", "</think>", "<tool_call>", "<|im_end|>"))
        sent = 0
        text = "".join(random.Random(1).choice("ab <|/>") for _ in range(2000))
        for index, char in enumerate(text, 1):
            sent += sum(len(e.text) for e in parser.feed(char) if isinstance(e, (ContentDelta, ReasoningDelta)))
            assert index - sent < longest

    def test_tool_call_events(self) -> None:
        parser = ResponseParser(self.F)
        events = []
        for char in self.TEXT:
            events += parser.feed(char)
        started = [e for e in events if isinstance(e, ToolCallStarted)]
        assert started == [ToolCallStarted(0, "get_weather")]
        # Started before the call is done, while its arguments stream.
        done = next(i for i, e in enumerate(events) if isinstance(e, ToolCallDone))
        assert events.index(started[0]) < done
        args = "".join(e.text for e in events if isinstance(e, ToolCallArgumentsDelta))
        assert json.loads(args.rstrip("}").split(":", 1)[1] + "}") == {"city": "Oslo"}

    @pytest.mark.parametrize("directory", ["chatml_bpe_dir", "mistral_v1_dir"])
    def test_ids_one_at_a_time_decode_as_the_whole(self, directory: str) -> None:
        from tests import tokenizer_fixtures

        t = chatplate.load(getattr(tokenizer_fixtures, directory)())
        text = " Zürich, 東京 and 🙂 again:  spaced words"
        ids = t.tokenizer.plain.encode(text, add_special_tokens=False).ids
        whole = t.parse_response(ids, prefix="")
        assert whole["content"] == t.decode(ids).strip()
        stream = t.response_parser(prefix="")
        pieces = []
        for token in ids:
            pieces += [e.text for e in stream.feed([token]) if isinstance(e, ContentDelta)]
        pieces += [e.text for e in stream.close() if isinstance(e, ContentDelta)]
        assert "".join(pieces) == t.decode(ids)
        assert stream.finish() == whole

    def test_feed_after_finish(self) -> None:
        parser = ResponseParser(self.F)
        parser.finish()
        with pytest.raises(chatplate.InputError):
            parser.feed("x")


def test_template_facade_detects_and_explains() -> None:
    t = chatplate.load("qwen2.5")
    assert t.response_format.name == "hermes"
    assert "hermes" in t.response_format.reason
    message = t.parse_response('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>')
    assert calls_of(message) == [("get_weather", {"city": "Oslo"})]
