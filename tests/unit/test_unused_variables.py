"""Keyword arguments the template never reads warn with ``UnusedVariableWarning``."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import chatplate
from chatplate import ChatTemplate
from chatplate.errors import ChatplateWarning, UnusedVariableWarning
from tests import tokenizer_fixtures

CHAT = [{"role": "user", "content": "Hi"}]

THINKING = (
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% if enable_thinking is defined and not enable_thinking %}"
    "<think></think>{% endif %}{% endif %}"
)


def unused_warnings(call: Callable[[], Any]) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [w for w in caught if issubclass(w.category, UnusedVariableWarning)]


def test_misspelt_keyword_warns_naming_the_close_match() -> None:
    t = ChatTemplate(THINKING, origin="my-model")
    [w] = unused_warnings(lambda: t.render(CHAT, add_generation_prompt=True, enable_thinkng=False))
    assert w.category is UnusedVariableWarning
    assert issubclass(w.category, ChatplateWarning)
    message = str(w.message)
    assert "'enable_thinkng'" in message
    assert "did you mean 'enable_thinking'?" in message
    assert "my-model" in message
    assert "ignored" in message
    # The keyword really is ignored, as in transformers.
    assert t.render(CHAT, add_generation_prompt=True, enable_thinkng=False).endswith("<assistant>")


def test_misspelt_named_parameter_is_suggested_even_if_the_template_does_not_read_it() -> None:
    t = ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}")
    [w] = unused_warnings(lambda: t.render(CHAT, add_generation_promt=True))
    assert "'add_generation_promt'" in str(w.message)
    assert "did you mean 'add_generation_prompt'?" in str(w.message)


def test_no_close_match_names_nothing() -> None:
    t = ChatTemplate(THINKING)
    [w] = unused_warnings(lambda: t.render(CHAT, xyzzy=1))
    message = str(w.message)
    assert "'xyzzy'" in message
    assert "did you mean" not in message
    assert message.endswith("it is ignored.")


def test_several_unread_keywords_each_warn() -> None:
    t = ChatTemplate(THINKING)
    caught = unused_warnings(lambda: t.render(CHAT, alpha_one=1, beta_two=2, enable_thinking=True))
    assert sorted(str(w.message).split("'")[1] for w in caught) == ["alpha_one", "beta_two"]


@pytest.mark.parametrize(
    ("source", "keyword"),
    [
        ("{% if flag is defined and flag %}yes{% endif %}", "flag"),
        ("{{ level | default('low') }}", "level"),
        ("{% macro show() %}{{ mode }}{% endmacro %}{{ show() }}", "mode"),
        ("{% macro show(x=fallback) %}{{ x }}{% endmacro %}{{ show() }}", "fallback"),
        ("{% if style is not defined %}{% set style = 'plain' %}{% endif %}{{ style }}", "style"),
        ("{% set effort = effort | default('medium') %}{{ effort }}", "effort"),
        ("{% for m in messages %}{% generation %}{{ m.content }}{{ suffix }}{% endgeneration %}{% endfor %}", "suffix"),
        ("{% for m in messages %}{% if m.role == stop_role %}{% break %}{% endif %}{{ m.content }}{% endfor %}", "stop_role"),
        ("{% set ns = namespace(seen=false) %}{% for m in messages %}{% set ns.seen = marker %}{% endfor %}", "marker"),
        ("{% filter upper %}{{ shout }}{% endfilter %}", "shout"),
        ("{{ bos_token }}", "bos_token"),
    ],
)
def test_keywords_the_template_reads_do_not_warn(source: str, keyword: str) -> None:
    t = ChatTemplate(source)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedVariableWarning)
        t.render(CHAT, **{keyword: "x"})
        t.render_spans(CHAT, **{keyword: "x"})


def test_special_token_overrides_never_warn() -> None:
    t = ChatTemplate("{{ messages[0].content }}", special_tokens={"image_token": "<img>"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedVariableWarning)
        t.render(CHAT, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", image_token="<i>")


def test_warns_once_per_template_and_name() -> None:
    t = ChatTemplate(THINKING)

    def many() -> None:
        for _ in range(50):
            t.render(CHAT, enable_thinkng=False)
            t.render_spans(CHAT, enable_thinkng=False)

    assert len(unused_warnings(many)) == 1
    # Another name on the same template still warns, once.
    assert len(unused_warnings(lambda: [t.render(CHAT, other_name=1) for _ in range(5)])) == 1
    # Another template instance has its own record.
    assert len(unused_warnings(lambda: ChatTemplate(THINKING).render(CHAT, enable_thinkng=False))) == 1


def test_no_extra_keywords_no_warning_and_no_analysis() -> None:
    t = ChatTemplate(THINKING)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedVariableWarning)
        for _ in range(3):
            t.render(CHAT, add_generation_prompt=True)
            t.render_spans(CHAT)
    # The hot path without variables never parses the template for its names.
    assert t._read_names == {}
    t.render(CHAT, enable_thinking=True)
    assert list(t._read_names) == ["default"]


def test_named_templates_are_checked_against_the_one_picked() -> None:
    t = ChatTemplate(
        {"default": "{{ messages[0].content }}", "tool_use": "{{ tools | length }}{{ tool_style }}"}, origin="m"
    )
    tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}}]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedVariableWarning)
        t.render(CHAT, tools=tools, tool_style="json")
    [w] = unused_warnings(lambda: t.render(CHAT, tool_style="json"))
    assert "m [default]" in str(w.message)


def test_warning_points_at_the_caller_of_render_and_encode() -> None:
    t = ChatTemplate(THINKING, tokenizer=str(tokenizer_fixtures.chatml_bpe_dir()))
    calls: list[Callable[[], Any]] = [
        lambda: t.render(CHAT, name_a=1),
        lambda: t.render_spans(CHAT, name_b=1),
        lambda: t.encode(CHAT, name_c=1),
        lambda: t.encode_batch([CHAT, CHAT], name_d=1),
        lambda: t.apply_chat_template(CHAT, tokenize=False, name_e=1),
        lambda: t.apply_chat_template(CHAT, name_f=1),
    ]
    for call in calls:
        [w] = unused_warnings(call)
        assert w.filename == __file__, (w.filename, str(w.message))


def test_apply_chat_template_keywords_taken_as_parameters_do_not_warn() -> None:
    t = ChatTemplate(THINKING, tokenizer=str(tokenizer_fixtures.chatml_bpe_dir()))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedVariableWarning)
        t.apply_chat_template(CHAT, tokenize=False, now=None, limits=None)
        t.apply_chat_template(CHAT, return_offsets=True, train_roles=["assistant"], now=None)
    [w] = unused_warnings(lambda: t.apply_chat_template(CHAT, tokenize=False, enable_thinkng=False))
    assert "did you mean 'enable_thinking'?" in str(w.message)


def test_pickled_template_still_renders_and_warns() -> None:
    t = ChatTemplate(THINKING, origin="pickled")
    assert len(unused_warnings(lambda: t.render(CHAT, enable_thinkng=False))) == 1
    clone = pickle.loads(pickle.dumps(t))
    assert clone.render(CHAT, add_generation_prompt=True, enable_thinking=False) == t.render(
        CHAT, add_generation_prompt=True, enable_thinking=False
    )
    # Rebuilt in the new process (or here): its own cache and its own once-per-name record.
    [w] = unused_warnings(lambda: clone.render(CHAT, enable_thinkng=False))
    assert "did you mean 'enable_thinking'?" in str(w.message)
    assert len(unused_warnings(lambda: clone.render(CHAT, enable_thinkng=False))) == 0


def test_loaded_template_with_real_tokenizer_warns() -> None:
    t = chatplate.load(str(tokenizer_fixtures.chatml_bpe_dir()))
    [w] = unused_warnings(lambda: t.encode(CHAT, add_generation_promt=True))
    assert "did you mean 'add_generation_prompt'?" in str(w.message)
