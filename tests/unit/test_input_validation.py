"""Bad input is refused before rendering, with a typed error naming the message and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import chatplate
from chatplate import ChatTemplate
from tests.hostile import deep_data

TEMPLATE = ChatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}")


def refused(messages: Any, **kwargs: Any) -> chatplate.ConversationError:
    with pytest.raises(chatplate.ConversationError) as info:
        TEMPLATE.render(messages, **kwargs)
    return info.value


@pytest.mark.parametrize(
    ("message", "field", "words"),
    [
        ({"content": "no role"}, "role", "needs a string role"),
        ({"role": None, "content": "x"}, "role", "needs a string role"),
        ({"role": 3, "content": "x"}, "role", "needs a string role"),
        ({"role": ["user"], "content": "x"}, "role", "needs a string role"),
        ({"role": "user", "content": b"raw bytes"}, "content", "decode it to str"),
        ({"role": "user", "content": bytearray(b"x")}, "content", "decode it to str"),
        ({"role": "user", "content": object()}, "content", "convert it to text"),
        ({"role": "user", "content": {1, 2}}, "content", "convert it to text"),
        ({"role": "assistant", "content": "x", "reasoning_content": b"bytes"}, "reasoning_content", "decode"),
    ],
)
def test_unusable_role_or_text_names_message_and_field(message: dict[str, Any], field: str, words: str) -> None:
    error = refused([{"role": "user", "content": "fine"}, message])
    assert (error.index, error.field) == (1, field)
    assert str(error).startswith(f"messages[1].{field}:") and words in str(error)


def test_content_that_templates_can_print_is_accepted() -> None:
    # Numbers, parts, mappings, and media objects inside parts (as placeholders, like transformers).
    class Image:
        pass

    rendered = TEMPLATE.render([
        {"role": "user", "content": 3},
        {"role": "user", "content": [{"type": "text", "text": "t"}, {"type": "image", "image": Image()}]},
        {"role": "user", "content": None},
    ])
    assert rendered.startswith("<user>3<user>[{'type': 'text', 'text': 't'}, {'type': 'image', 'image': '<Image>'}]")


@pytest.mark.parametrize(
    ("messages", "where"),
    [
        ([{"role": "user", "content": "bad \udcff"}], "messages[0].content"),
        ([{"role": "user", "content": [{"type": "text", "text": "\ud800"}]}], "messages[0].content[0].text"),
        ([{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": "\udfff"}}}]}],
         "messages[0].tool_calls[0].function.arguments.a"),
    ],
)
def test_lone_surrogates_are_refused_with_their_place(messages: list[dict[str, Any]], where: str) -> None:
    error = refused(messages)
    assert str(error).startswith(where + ":") and "lone surrogate" in str(error)


def test_lone_surrogates_in_tools_documents_and_variables() -> None:
    user = [{"role": "user", "content": "x"}]
    with pytest.raises(chatplate.ToolSchemaError, match=r"tools\[0\]\.function\.description: .*surrogate"):
        TEMPLATE.render(user, tools=[{"type": "function", "function": {"name": "f", "description": "\ud83d"}}])
    with pytest.raises(chatplate.DocumentsError, match=r"documents\[0\]\.text: .*surrogate"):
        TEMPLATE.render(user, documents=[{"title": "t", "text": "\udc00"}])
    with pytest.raises(chatplate.InputError, match=r"variables\.note: .*surrogate"), \
            pytest.warns(chatplate.UnusedVariableWarning, match="'note'"):
        TEMPLATE.render(user, note="\udc00")


def test_cycles_and_deep_data_are_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    error = refused([{"role": "user", "content": "x", "meta": loop}])
    assert error.field == "meta" and "contains itself" in str(error)
    error = refused([{"role": "user", "content": "x", "meta": deep_data(5000)}])
    assert error.field == "meta" and "max_depth=100" in str(error)
    # A genuine deep structure renders with a raised limit.
    limits = chatplate.Limits(max_depth=300)
    assert TEMPLATE.render([{"role": "user", "content": "x", "meta": deep_data(200)}], limits=limits) == "<user>x"


def test_input_size_and_message_count_limits() -> None:
    with pytest.raises(chatplate.TemplateResourceError) as info:
        TEMPLATE.render([{"role": "user", "content": "x" * 101}], limits=chatplate.Limits(max_input_chars=100))
    assert info.value.limit == "max_input_chars" and info.value.value > 100
    # Shared parts count as they print: a small structure that repeats itself is large.
    shared = ["y" * 10] * 10
    with pytest.raises(chatplate.TemplateResourceError, match="max_input_chars"):
        TEMPLATE.render([{"role": "user", "content": "x", "meta": [shared] * 10}], limits=chatplate.Limits(max_input_chars=500))
    with pytest.raises(chatplate.TemplateResourceError) as info:
        TEMPLATE.render([{"role": "user", "content": "x"}] * 11, limits=chatplate.Limits(max_messages=10))
    assert (info.value.limit, info.value.value, info.value.maximum) == ("max_messages", 11, 10)


def test_empty_template_is_refused_like_load() -> None:
    for source in ("", "  \n"):
        with pytest.raises(chatplate.InputError, match="empty"):
            ChatTemplate(source)
        with pytest.raises(chatplate.InputError, match="empty"):
            chatplate.load(source)


def test_tools_that_are_not_a_list() -> None:
    for tools in (True, 3, "tool", len):
        with pytest.raises(chatplate.ToolSchemaError, match="expected a list"):
            TEMPLATE.render([{"role": "user", "content": "x"}], tools=tools)


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ('{"chat_template": "x", "extra": ' + "[" * 50_000 + "]" * 50_000 + "}", "nests arrays or objects too deeply"),
        (json.dumps({"chat_template": 42}), "'chat_template' is a number"),
        (json.dumps({"chat_template": "{{ bos_token }}", "bos_token": ["<s>"]}), "'bos_token' is a list"),
        (json.dumps({"chat_template": [{"name": 1, "template": "x"}]}), "chat_template"),
    ],
)
def test_corrupt_tokenizer_config_names_the_file(tmp_path: Path, config: str, words: str) -> None:
    (tmp_path / "tokenizer_config.json").write_text(config)
    with pytest.raises(chatplate.CorruptSourceError) as info:
        chatplate.load(str(tmp_path)).render([{"role": "user", "content": "x"}])
    assert info.value.path == str(tmp_path / "tokenizer_config.json")
    assert words in str(info.value)


def test_deep_json_in_a_dataset_row_is_a_counted_bad_row(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    from tests import tokenizer_fixtures

    rows = [json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
            '{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}"]
    source = tmp_path / "chats.jsonl"
    source.write_text("\n".join(rows) + "\n")
    template = chatplate.load(str(tokenizer_fixtures.chatml_bpe_dir()))
    summary = chatplate.prepare(source, tmp_path / "out.parquet", template, workers=1)
    assert (summary.rows_read, summary.rows_written, dict(summary.rejected)) == (2, 1, {"bad_json": 1})
    [error] = [json.loads(line) for line in Path(summary.errors_path or "").read_text().splitlines()]
    assert error["reason"] == "bad_json" and "nested too deeply" in error["error"]
