"""Hypothesis strategies for conversations shaped like the ones real callers send."""

from __future__ import annotations

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
def content(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["text", "text", "text", "parts", "none"]))
    if kind == "parts":
        return [{"type": "text", "text": draw(text)} for _ in range(draw(st.integers(1, 2)))]
    if kind == "none":
        return None
    return draw(text)


@st.composite
def assistant_message(draw: st.DrawFn, tool_call: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": draw(content())}
    if draw(st.booleans()) and draw(st.booleans()):
        message["reasoning_content"] = draw(text)
    if tool_call:
        message["tool_calls"] = [
            {
                "type": "function",
                "id": "call_1",
                "function": {"name": "get_weather", "arguments": {"city": draw(text)}},
            }
        ]
    return message


@st.composite
def conversations(draw: st.DrawFn, allow_tools: bool = True) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    for _ in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(content())})
        if allow_tools and draw(st.integers(0, 4)) == 0:
            messages.append(draw(assistant_message(tool_call=True)))
            messages.append({"role": "tool", "content": draw(text), "tool_call_id": "call_1"})
        messages.append(draw(assistant_message(tool_call=False)))
    if draw(st.booleans()):
        messages.pop()  # end on the user turn (or tool result)
    return messages


@st.composite
def render_options(draw: st.DrawFn) -> dict[str, Any]:
    options: dict[str, Any] = {"add_generation_prompt": draw(st.booleans())}
    if not options["add_generation_prompt"] and draw(st.integers(0, 3)) == 0:
        options["continue_final_message"] = True
    if draw(st.integers(0, 3)) == 0:
        options["tools"] = [WEATHER_TOOL]
    if draw(st.integers(0, 3)) == 0:
        options["enable_thinking"] = draw(st.booleans())
    return options
