"""Bad input gets typed errors that say what and where; errors survive pickling."""

from __future__ import annotations

import pickle

import pytest

import chatplate
from chatplate import ChatTemplate, errors

LOOP = "{% for m in messages %}{{ m.content }}{% endfor %}"


@pytest.mark.parametrize("conversation", ["hello", {"role": "user", "content": "x"}, 42, None])
def test_non_list_conversation(conversation: object) -> None:
    with pytest.raises(chatplate.ConversationError, match="expected a list of messages"):
        ChatTemplate(LOOP).render(conversation)  # type: ignore[arg-type]


def test_empty_conversation() -> None:
    with pytest.raises(chatplate.ConversationError, match="empty"):
        ChatTemplate(LOOP).render([])


def test_non_mapping_message_names_index() -> None:
    with pytest.raises(chatplate.ConversationError, match=r"messages\[2\]") as info:
        ChatTemplate(LOOP).render([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, "c"])
    assert info.value.index == 2


def test_syntax_error_has_line_column_and_caret() -> None:
    source = "{% for m in messages %}\n{{ m.content }\n{% endfor %}"
    with pytest.raises(chatplate.TemplateSyntaxError) as info:
        ChatTemplate(source)
    err = info.value
    assert err.lineno == 2
    assert err.column == 14  # the lone "}" that should have been "}}"
    assert err.excerpt is not None and err.excerpt.splitlines()[1].index("^") - 4 == 13
    assert "line 2" in str(err) and "column 14" in str(err)


def test_syntax_error_unknown_tag() -> None:
    with pytest.raises(chatplate.TemplateSyntaxError) as info:
        ChatTemplate("hello\n  {% frobnicate %}")
    assert info.value.lineno == 2
    assert info.value.column == 6


def test_syntax_error_at_end_of_template() -> None:
    with pytest.raises(chatplate.TemplateSyntaxError) as info:
        ChatTemplate("{% if true %}\nyes")
    assert info.value.lineno == 2
    assert info.value.column == 4


def test_raise_exception_is_verbatim() -> None:
    source = "line one\n{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    with pytest.raises(chatplate.TemplateRaisedError) as info:
        ChatTemplate(source).render([{"role": "user", "content": "x"}])
    assert str(info.value) == "Conversation roles must alternate user/assistant/user/assistant/..."
    assert info.value.lineno == 2


def test_runtime_error_names_template_line() -> None:
    source = "first\nsecond\n{{ messages[0].content + 1 }}"
    with pytest.raises(chatplate.TemplateRuntimeError, match="line 3") as info:
        ChatTemplate(source).render([{"role": "user", "content": "x"}])
    assert info.value.lineno == 3
    assert isinstance(info.value.__cause__, TypeError)


def test_sandbox_violation_is_security_error() -> None:
    source = "{{ messages.append(1) }}"
    with pytest.raises(chatplate.TemplateSecurityError):
        ChatTemplate(source).render([{"role": "user", "content": "x"}])


def test_namespace_rejects_underscore_names() -> None:
    with pytest.raises(chatplate.TemplateSecurityError):
        ChatTemplate("{% set ns = namespace(_x=1) %}").render([{"role": "user", "content": "x"}])


def test_undefined_filter_is_syntax_error() -> None:
    with pytest.raises(chatplate.TemplateSyntaxError, match="from_json"):
        ChatTemplate("{{ messages | from_json }}")


def test_template_not_a_string() -> None:
    with pytest.raises(chatplate.InputError, match="must be a string"):
        ChatTemplate({"default": 3})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "error",
    [
        errors.ConversationError("messages[3].content: bad", index=3, field="content"),
        errors.TemplateSyntaxError("bad", template_name="t", lineno=2, column=5, excerpt="x\n^"),
        errors.TemplateRaisedError("verbatim", lineno=4),
        errors.UnknownBuiltinError("nope", source="lama", suggestions=["llama-3"]),
        errors.CorruptSourceError("bad json", path="/x/tokenizer_config.json"),
        errors.MissingDependencyError("install it", extra="gguf", package="gguf"),
        errors.TemplateNotFoundError("none", looked_for=["a", "b"]),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_pickle(error: errors.ChatplateError) -> None:
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert str(clone) == str(error)
    assert clone.context == error.context
    for key, value in error.context.items():
        assert getattr(clone, key) == value


def test_exception_tree() -> None:
    assert issubclass(errors.ConversationError, ValueError)
    assert issubclass(errors.TemplateNotFoundError, LookupError)
    assert issubclass(errors.MissingDependencyError, ImportError)
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert cls is errors.Fix or issubclass(cls, (errors.ChatplateError, errors.ChatplateWarning))


def test_a_fix_is_said_in_python_and_on_the_command_line_and_survives_pickling() -> None:
    import pickle

    error = errors.TemplateNotFoundError(
        "no template; choose one with {fix}", source="s", looked_for=["a"], fix=errors.Fix("name=...", "--name NAME")
    )
    assert str(error) == "no template; choose one with name=..."
    assert error.for_cli() == "no template; choose one with --name NAME"
    clone = pickle.loads(pickle.dumps(error))
    assert (str(clone), clone.for_cli(), clone.looked_for) == (str(error), error.for_cli(), ["a"])
    moved = error.prefixed("hub: ", looked_for=["here", "a"])
    assert type(moved) is errors.TemplateNotFoundError and moved.looked_for == ["here", "a"]
    assert (str(moved), moved.for_cli()) == ("hub: " + str(error), "hub: " + error.for_cli())
    plain = errors.InputError("braces {{ bos_token }} stay as they are")
    assert str(plain) == plain.for_cli() == "braces {{ bos_token }} stay as they are"
