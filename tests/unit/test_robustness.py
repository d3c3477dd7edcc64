"""Every error that leaves the public API is a ChatplateError: generated templates, messages,
tools, variables and files, hostile or merely broken, never raise a raw Python exception."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatplate
from chatplate import ChatTemplate, Limits
from tests import tokenizer_fixtures

# The corpus and the generated cases pass every template the same extra keywords (as transformers'
# callers do); that most templates ignore some of them is expected here, and tested in
# test_unused_variables.
pytestmark = pytest.mark.filterwarnings("ignore::chatplate.UnusedVariableWarning")

EXAMPLES = int(os.environ.get("CHATPLATE_EXAMPLES", "150"))
# Small bounds keep each example fast; the defaults are exercised by tests/unit/test_limits.py.
LIMITS = Limits(max_output_chars=200_000, max_work=20_000, max_depth=30, max_seconds=5)
ALLOWED = (chatplate.ChatplateError,)

# -- templates, from a small grammar of what chat templates (and attackers) write ----------------

NAMES = ["messages", "m", "tools", "x", "loop", "ns", "bos_token", "add_generation_prompt", "undefined_name", "caller"]
FILTERS = [
    "length", "tojson", "trim", "upper", "string", "list", "first", "last", "join", "reverse", "sort", "unique",
    "dictsort", "items", "default('d')", "center(30)", "indent(2)", "wordwrap(5)", "replace('a', 'bb')", "format(1)",
    "batch(2, 'f')", "slice(2)", "sum", "int", "float", "abs", "round", "safe", "e", "striptags", "title", "wordcount",
    "map('upper')", "map(attribute='role')", "select", "reject('none')", "selectattr('role')", "groupby('role')",
    "truncate(5)", "urlencode", "xmlattr", "pprint", "filesizeformat", "min", "max", "random", "count", "tojson(indent=2)",
]
ATTRS = ["role", "content", "items", "keys", "get", "split", "strip", "__class__", "append", "index", "format", "_private"]
BINOPS = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "<", "in", "and", "or", "not in", "is"]


def expressions() -> st.SearchStrategy[str]:
    leaves = st.one_of(
        st.sampled_from(NAMES),
        st.integers(-3, 70).map(str),
        st.sampled_from(["10 ** 10", "-1", "1.5", "none", "true", "[]", "{}", "[1, 'a']", "{'role': 'user'}", "range(5)",
                         "namespace(a=1)", "dict(a=1)", "lipsum(1)", "cycler(1, 2)", "joiner()"]),
        st.text(alphabet="ab<|>%{}\\\n '\"", max_size=8).map(repr),
    )

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(BINOPS), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(inner, st.sampled_from(FILTERS)).map(lambda t: f"({t[0]} | {t[1]})"),
            st.tuples(inner, st.sampled_from(ATTRS)).map(lambda t: f"{t[0]}.{t[1]}"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
            st.tuples(inner, st.sampled_from(ATTRS), inner).map(lambda t: f"{t[0]}.{t[1]}({t[2]})"),
            st.tuples(inner, inner).map(lambda t: f"[{t[0]}, {t[1]}]"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
            inner.map(lambda e: f"raise_exception({e})"),
            inner.map(lambda e: f"f({e})"),
            inner.map(lambda e: f"{e} is string"),
        )

    return st.recursive(leaves, extend, max_leaves=6)


def statements() -> st.SearchStrategy[str]:
    expr = expressions()
    leaves = st.one_of(
        expr.map(lambda e: "{{ " + e + " }}"),
        st.text(alphabet="ab<|>\n ", max_size=6),
        expr.map(lambda e: "{% set x = " + e + " %}"),
        expr.map(lambda e: "{% set ns.a = " + e + " %}"),
        st.just("{% break %}"),
        st.just("{% generation %}g{% endgeneration %}"),
    )

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(expr, inner).map(lambda t: "{% for m in " + t[0] + " %}" + t[1] + "{% endfor %}"),
            st.tuples(expr, inner).map(lambda t: "{% for m in " + t[0] + " recursive %}" + t[1] + "{{ loop(m) }}{% endfor %}"),
            st.tuples(expr, inner, inner).map(lambda t: "{% if " + t[0] + " %}" + t[1] + "{% else %}" + t[2] + "{% endif %}"),
            inner.map(lambda body: "{% macro f(n) %}" + body + "{{ f(n) }}{% endmacro %}{{ f(1) }}"),
            inner.map(lambda body: "{% macro g() %}{{ caller() }}{% endmacro %}{% call g() %}" + body + "{% endcall %}"),
            inner.map(lambda body: "{% filter upper %}" + body + "{% endfilter %}"),
            inner.map(lambda body: "{% set s %}" + body + "{% endset %}{{ s }}"),
            st.lists(inner, min_size=2, max_size=3).map("".join),
        )

    return st.recursive(leaves, extend, max_leaves=5)


# -- data, including what no template can mean --------------------------------------------------


class Opaque:
    pass


def _values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(min_value=10**50, max_value=10**60),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10),
        st.sampled_from(["<|im_end|>", "hi <|im_", "end|>", "<tool_call>", "\udcff", "\x00", "🙂" * 3]),
        st.binary(max_size=4), st.builds(Opaque), st.just(math.pi),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.tuples(inner, inner), st.dictionaries(st.text(max_size=5), inner, max_size=3),
            st.frozensets(st.integers(), max_size=2),
        ),
        max_leaves=8,
    )


def messages() -> st.SearchStrategy[Any]:
    message = st.one_of(
        st.fixed_dictionaries(
            {"role": st.one_of(st.sampled_from(["user", "assistant", "system", "tool", "im_end", "", "a b"]), _values()),
             "content": _values()},
            optional={"tool_calls": _values(), "reasoning_content": _values(), "name": _values()},
        ),
        _values(),
    )
    return st.one_of(st.lists(message, max_size=4), _values())


# -- the properties -------------------------------------------------------------------------------


def attempt(call: Any) -> None:
    try:
        call()
    except ALLOWED:
        pass


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(source=statements(), conversation=messages(), tools=st.one_of(st.none(), _values()), extra=_values(),
       prompt=st.booleans())
def test_generated_templates_and_data_raise_only_chatplate_errors(
    source: str, conversation: Any, tools: Any, extra: Any, prompt: bool
) -> None:
    source = "{% set ns = namespace(a=0) %}" + source

    def render() -> None:
        template = ChatTemplate(source, limits=LIMITS)
        template.render(conversation, tools=tools, add_generation_prompt=prompt, x=extra)
        template.render_spans(conversation, tools=tools, x=extra)

    attempt(render)


@pytest.fixture(scope="module")
def encoder() -> ChatTemplate:
    return chatplate.load(str(tokenizer_fixtures.chatml_bpe_dir()))


@settings(max_examples=max(EXAMPLES // 3, 10), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(source=statements(), conversation=messages(), extra=_values())
def test_generated_encodes_raise_only_chatplate_errors(encoder: ChatTemplate, source: str, conversation: Any, extra: Any) -> None:
    def encode() -> None:
        template = ChatTemplate(source, tokenizer=encoder.tokenizer, limits=LIMITS)
        try:
            template.encode(conversation, x=extra, return_offsets=True)
        finally:
            template.encode(conversation, x=extra, return_assistant_mask=True)

    attempt(encode)


@pytest.mark.parametrize("text", ["{{ '\\ud800' }}", "{{ '%c' % 55296 }}", "a{{ messages[0].content[:1] }}"])
def test_a_template_that_writes_a_lone_surrogate_cannot_be_encoded(encoder: ChatTemplate, text: str) -> None:
    template = ChatTemplate(text, tokenizer=encoder.tokenizer)
    if "content" in text:
        with pytest.raises(chatplate.ConversationError):
            template.encode([{"role": "user", "content": "\udcffx"}])
        return
    assert template.render([{"role": "user", "content": "x"}])  # text can hold it
    with pytest.raises(chatplate.TemplateError, match="surrogate"):
        template.encode([{"role": "user", "content": "x"}])


FILES = ["tokenizer_config.json", "chat_template.jinja", "chat_template.json", "model.gguf", "config.json", "tokenizer.json"]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(FILES),
    content=st.one_of(
        st.binary(max_size=64),
        st.text(max_size=40).map(str.encode),
        st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=6)),
                     lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
                         ["chat_template", "bos_token", "eos_token", "name", "template", "added_tokens_decoder", "content"]),
                         inner, max_size=3)), max_leaves=10).map(lambda v: __import__("json").dumps(v).encode()),
        st.integers(1, 20000).map(lambda n: b'{"chat_template": ' + b"[" * n + b"]" * n + b"}"),
        st.just(b"GGUF\x03\x00\x00\x00" + b"\xff" * 24),
    ),
)
def test_broken_files_raise_only_chatplate_errors(tmp_path_factory: pytest.TempPathFactory, name: str, content: bytes) -> None:
    directory: Path = tmp_path_factory.mktemp("model")
    (directory / name).write_bytes(content)
    if name != "tokenizer_config.json":
        (directory / "tokenizer_config.json").write_text('{"chat_template": "{{ messages[0].content }}"}')

    def load_and_use() -> None:
        target = directory / name if name.endswith((".gguf", ".jinja")) else directory
        template = chatplate.load(str(target))
        template.render([{"role": "user", "content": "x"}])
        if (directory / "tokenizer.json").exists():
            template.encode([{"role": "user", "content": "x"}])

    attempt(load_and_use)
