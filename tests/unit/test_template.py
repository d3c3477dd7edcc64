"""ChatTemplate behaviour: variables, named templates, continuation, normalisation, caching."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest

import chatplate
from chatplate import ChatTemplate
from chatplate.engine import compiler

LOOP = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
USER = [{"role": "user", "content": "Hi"}]


def test_renders_messages() -> None:
    assert ChatTemplate(LOOP).render(USER) == "[user]Hi"


def test_one_trailing_newline_dropped() -> None:
    # keep_trailing_newline is off in the reference: exactly one final newline goes.
    assert ChatTemplate("{{ messages[0].content }}\n\n").render(USER) == "Hi\n"


def test_trim_and_lstrip_blocks() -> None:
    source = "{% for m in messages %}\n    {% if true %}\n{{ m.content }}\n    {% endif %}\n{% endfor %}"
    assert ChatTemplate(source).render(USER) == "Hi\n"


def test_bos_eos_from_constructor_and_overridable() -> None:
    t = ChatTemplate("{{ bos_token }}|{{ eos_token }}", bos_token="<s>", eos_token="</s>")
    assert t.render(USER) == "<s>|</s>"
    assert t.render(USER, bos_token="<B>") == "<B>|</s>"


def test_missing_bos_is_undefined_not_none() -> None:
    t = ChatTemplate("{{ bos_token is defined }}:{{ bos_token }}")
    assert t.render(USER) == "False:"


def test_extra_variables_reach_template() -> None:
    t = ChatTemplate("{{ enable_thinking }}-{{ custom.x }}")
    assert t.render(USER, enable_thinking=False, custom={"x": 3}) == "False-3"


def test_strftime_now_uses_given_time() -> None:
    t = ChatTemplate("{{ strftime_now('%d %B %Y %H:%M') }}")
    assert t.render(USER, now=datetime(2024, 7, 26, 12, 0)) == "26 July 2024 12:00"


def test_strftime_now_defaults_to_wall_clock() -> None:
    t = ChatTemplate("{{ strftime_now('%Y') }}")
    assert t.render(USER) == str(datetime.now().year)


def test_now_is_per_thread() -> None:
    t = ChatTemplate("{{ strftime_now('%Y') }}")
    results: dict[int, str] = {}

    def work(year: int) -> None:
        for _ in range(200):
            results[year] = t.render(USER, now=datetime(year, 1, 1))
            assert results[year] == str(year)

    threads = [threading.Thread(target=work, args=(y,)) for y in (2001, 2002)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {2001: "2001", 2002: "2002"}


def test_null_keys_dropped() -> None:
    t = ChatTemplate("{% for m in messages %}{{ m.content if m.content is defined else 'absent' }}{% endfor %}")
    assert t.render([{"role": "assistant", "content": None}]) == "absent"


def test_caller_messages_not_mutated() -> None:
    messages = [{"role": "assistant", "content": "Hello", "name": None}]
    ChatTemplate(LOOP + "{{ messages[0].content }}").render(messages, continue_final_message=True)
    assert messages == [{"role": "assistant", "content": "Hello", "name": None}]


def test_reasoning_aliased_in_reference_key_order() -> None:
    t = ChatTemplate("{{ messages[0] | tojson }}")
    out = t.render([{"role": "assistant", "content": "x", "reasoning": "because"}])
    assert out == '{"thinking": "because", "role": "assistant", "content": "x", "reasoning": "because", "reasoning_content": "because"}'


def test_tojson_does_not_escape_html_and_keeps_unicode() -> None:
    t = ChatTemplate("{{ messages[0].content | tojson }}")
    assert t.render([{"role": "user", "content": "<b>é</b>"}]) == '"<b>é</b>"'


def test_tojson_options() -> None:
    t = ChatTemplate("{{ {'b': 1, 'a': 2} | tojson(indent=2, sort_keys=True) }}")
    assert t.render(USER) == '{\n  "a": 2,\n  "b": 1\n}'


def test_rich_objects_become_placeholders() -> None:
    class Opaque:
        pass

    t = ChatTemplate("{{ messages[0].content }}|{{ messages[0].extra }}")
    assert t.render([{"role": "user", "content": "a", "extra": Opaque()}]) == "a|<Opaque>"


def test_named_templates_pick_tool_use_when_tools_given() -> None:
    t = ChatTemplate({"default": "plain", "tool_use": "tools:{{ tools | length }}"})
    assert t.render(USER) == "plain"
    assert t.render(USER, tools=[{"type": "function", "function": {"name": "f"}}]) == "tools:1"


def test_named_templates_without_default_raise() -> None:
    t = ChatTemplate({"rag": "r", "tool_use": "t"})
    with pytest.raises(chatplate.TemplateNotFoundError, match="rag"):
        t.render(USER)


def test_continue_final_message_content() -> None:
    t = ChatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>{% endfor %}")
    msgs = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "The answer is"}]
    assert t.render(msgs, continue_final_message=True) == "<user>Q</s><assistant>The answer is"


def test_continue_final_message_trimmed_template_rstrips() -> None:
    t = ChatTemplate("{% for m in messages %}{{ m.content | trim }}|{% endfor %}")
    msgs = [{"role": "assistant", "content": "Partial  "}]
    assert t.render(msgs, continue_final_message=True) == "Partial"


def test_continue_final_message_named_field() -> None:
    t = ChatTemplate("{% for m in messages %}<think>{{ m.reasoning_content }}</think>{{ m.content }}{% endfor %}")
    msgs = [{"role": "assistant", "content": "x", "reasoning_content": "Let me"}]
    assert t.render(msgs, continue_final_message="reasoning_content") == "<think>Let me"


def test_continue_final_message_errors() -> None:
    t = ChatTemplate(LOOP)
    with pytest.raises(chatplate.InputError):
        t.render(USER, continue_final_message=True, add_generation_prompt=True)
    with pytest.raises(chatplate.ContinuationError, match="reasoning_content"):
        t.render([{"role": "assistant", "content": "x", "reasoning_content": "r"}], continue_final_message="reasoning_content")
    with pytest.raises(chatplate.ContinuationError, match="does not appear"):
        ChatTemplate("{% for m in messages %}{{ m.role }}{% endfor %}{{ 'content' }}").render(
            USER, continue_final_message=True
        )


def test_documents_must_be_dicts() -> None:
    t = ChatTemplate(LOOP)
    with pytest.raises(chatplate.InputError, match=r"documents\[1\]"):
        t.render(USER, documents=[{"title": "a", "text": "b"}, "oops"])


def test_render_spans() -> None:
    source = "{% for m in messages %}{% if m.role == 'assistant' %}A:{% generation %}{{ m.content }}!{% endgeneration %}{% else %}U:{{ m.content }}{% endif %}{% endfor %}"
    result = ChatTemplate(source).render_spans(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    )
    assert result.text == "U:hiA:yo!"
    assert result.generation_spans == [(6, 9)]
    assert result.text[6:9] == "yo!"


def test_generation_tag_does_not_change_render() -> None:
    with_tag = ChatTemplate("{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}")
    assert with_tag.render(USER) == "Hi"


def test_compiles_once_per_source(monkeypatch: pytest.MonkeyPatch) -> None:
    source = LOOP + "{# unique-compile-test #}"
    calls = []
    original = compiler.ENVIRONMENT.from_string
    monkeypatch.setattr(compiler.ENVIRONMENT, "from_string", lambda s: calls.append(s) or original(s))
    first = ChatTemplate(source)
    second = ChatTemplate(source)
    for _ in range(3):
        first.render(USER)
        second.render(USER)
    assert len(calls) == 1


def test_messages_from_pairs() -> None:
    pairs = [["Hi", "Hello!"], ["How are you?", None]]
    assert chatplate.messages_from_pairs(pairs) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]


def test_messages_from_pairs_rejects_bad_pair() -> None:
    with pytest.raises(chatplate.ConversationError, match=r"pairs\[1\]") as info:
        chatplate.messages_from_pairs([["a", "b"], ["only one"]])
    assert info.value.index == 1


@pytest.mark.parametrize("documents", [{}, "", (), iter([])])
def test_empty_non_list_documents_render_like_the_reference(documents: object) -> None:
    # transformers checks only the documents it iterates over: nothing to check, nothing raised.
    t = ChatTemplate("{{ messages[0].content }}|{{ documents is none }}")
    assert t.render(USER, documents=documents).startswith("Hi|False")


@pytest.mark.parametrize("documents", [5, {"title": "t"}, ["text"]])
def test_bad_documents_are_type_errors(documents: object) -> None:
    with pytest.raises(chatplate.DocumentsError) as info:
        ChatTemplate(LOOP).render(USER, documents=documents)
    assert isinstance(info.value, TypeError)


def test_continuing_non_text_is_a_type_error() -> None:
    with pytest.raises(chatplate.ContinuationError) as info:
        ChatTemplate(LOOP).render([{"role": "assistant", "content": 3.5}], continue_final_message=True)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
