"""Hypothesis strategies for conversations shaped like the ones real callers send."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Text that stresses templates: whitespace at the edges, newlines, unicode, Jinja-looking syntax.
text = st.one_of(
    st.text(min_size=0, max_size=40),
    st.sampled_from(["Hello!", "  padded  ", "line one\nline two\n", "{{ not jinja }} {% raw %}", "Ünïcødé ✓ 中文", "<|im_end|>"]),
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city"}},
            "required": ["city"],
        },
    },
}


@st.composite
def part(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text", "text", "image", "image_url"]))
    if kind == "text":
        return {"type": "text", "text": draw(text)}
    if kind == "image":
        return {"type": "image"}
    return {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}


@st.composite
def content(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["text", "text", "text", "parts", "none", "empty", "number"]))
    if kind == "parts":
        return [draw(part()) for _ in range(draw(st.integers(1, 3)))]
    if kind == "none":
        return None
    if kind == "empty":
        return ""
    if kind == "number":
        return draw(st.integers(-5, 5))
    return draw(text)


@st.composite
def assistant_message(draw: st.DrawFn, tool_call: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": draw(content())}
    if draw(st.booleans()) and draw(st.booleans()):
        message["reasoning_content"] = draw(text)
    if tool_call:
        arguments: Any = {"city": draw(text)}
        if draw(st.booleans()):
            arguments = json.dumps(arguments)  # OpenAI sends arguments as a JSON string
        call = {"type": "function", "id": "call_1", "function": {"name": "get_weather", "arguments": arguments}}
        message["tool_calls"] = [call] * draw(st.integers(1, 2))
    if draw(st.integers(0, 5)) == 0:
        message["name"] = "helper"
    return message


@st.composite
def conversations(draw: st.DrawFn, allow_tools: bool = True) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    for _ in range(draw(st.integers(1, 3))):
        role = draw(st.sampled_from(["user"] * 8 + ["developer", "ipython", "system"]))
        messages.append({"role": role, "content": draw(content())})
        if allow_tools and draw(st.integers(0, 4)) == 0:
            messages.append(draw(assistant_message(tool_call=True)))
            tool_result: dict[str, Any] = {"role": "tool", "content": draw(text), "tool_call_id": "call_1"}
            if draw(st.booleans()):
                tool_result["name"] = "get_weather"
            messages.append(tool_result)
        if draw(st.integers(0, 6)) > 0:  # now and then two turns in a row from the same side
            messages.append(draw(assistant_message(tool_call=False)))
    if draw(st.booleans()) and len(messages) > 1:
        messages.pop()  # end on the user turn (or tool result)
    return messages


@st.composite
def render_options(draw: st.DrawFn) -> dict[str, Any]:
    options: dict[str, Any] = {"add_generation_prompt": draw(st.booleans())}
    if not options["add_generation_prompt"] and draw(st.integers(0, 3)) == 0:
        options["continue_final_message"] = draw(st.sampled_from([True, True, "reasoning_content", "thinking", "reasoning"]))
    if draw(st.integers(0, 3)) == 0:
        options["tools"] = [WEATHER_TOOL]
    if draw(st.integers(0, 3)) == 0:
        options["enable_thinking"] = draw(st.booleans())
    if draw(st.integers(0, 5)) == 0:
        options["documents"] = [{"title": "Doc", "text": draw(text)}]
    return options
