"""The built-in template registry: names, tokens, templates, and the outputs the seeds document.

Rendering here uses a minimal jinja2 sandbox set up the way transformers sets one up (see
``shared/corpus/README.md``), so these tests stay fast and offline; the differential tests render
the same templates through transformers itself and compare them with the real templates.
"""

from __future__ import annotations

import functools
import json
import pickle
import re
from importlib import resources
from typing import Any

import jinja2
import pytest
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from chatplate.errors import TemplateNotFoundError, UnknownBuiltinError
from chatplate.sources.registry import DEFAULT_BUILTIN, Builtin, get_builtin, list_builtins

REQUIRED = [
    "chatml",
    "llama-2",
    "llama-3",
    "mistral",
    "gemma",
    "phi-3",
    "zephyr",
    "vicuna",
    "alpaca",
    "blenderbot",
    "command-r",
    "qwen2.5",
    "deepseek",
]

DS_BOS = "<｜begin▁of▁sentence｜>"
DS_EOS = "<｜end▁of▁sentence｜>"

# The special tokens of each layout's models (tokenizer_config.json of the reference models).
TOKENS = {
    "alpaca": ("<s>", "</s>"),
    "blenderbot": ("<s>", "</s>"),
    "chatml": (None, "<|im_end|>"),
    "command-r": ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    "deepseek": (DS_BOS, DS_EOS),
    "deepseek-v2": (DS_BOS, DS_EOS),
    "gemma": ("<bos>", "<eos>"),
    "llama-2": ("<s>", "</s>"),
    "llama-3": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral": ("<s>", "</s>"),
    "mistral-legacy": ("<s>", "</s>"),
    "phi-3": ("<s>", "<|endoftext|>"),
    "qwen2.5": (None, "<|im_end|>"),
    "vicuna": ("<s>", "</s>"),
    "zephyr": ("<s>", "</s>"),
}

# The conversation of the seeds (transformers' chat-templating docs and the fine-tuning notebook).
SEED_CHAT = [
    {"role": "user", "content": "Hello, how are you?"},
    {"role": "assistant", "content": "I'm doing great. How can I help you today?"},
    {"role": "user", "content": "I'd like to show off how chat templating works!"},
]


# --- a minimal renderer: transformers' sandbox settings, spans through sentinels ---------------

_OPEN, _CLOSE = "\x02", "\x03"  # never produced by the templates or the test data


class TemplateRaised(Exception):
    pass


class _Generation(Extension):
    """``{% generation %}...{% endgeneration %}``: renders its body, fenced by sentinels."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_fence"), [], [], body).set_lineno(lineno)

    def _fence(self, caller: Any) -> str:
        return _OPEN + caller() + _CLOSE


def _raise(message: str) -> None:
    raise TemplateRaised(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False) -> str:
    return json.dumps(  # transformers' tojson: no HTML escaping
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _env() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    return env


ENV = _env()


@functools.lru_cache(maxsize=None)
def _compiled(source: str) -> jinja2.Template:
    return ENV.from_string(source)


def render_spans(name: str, messages: list[dict[str, Any]], **variables: Any) -> tuple[str, list[str]]:
    """(text, [text of each generation block]) for a built-in with its own special tokens."""
    b = get_builtin(name)
    context = {"bos_token": b.bos_token, "eos_token": b.eos_token, **variables}
    raw = _compiled(b.template).render(messages=messages, **context)
    text, spans, start = [], [], None
    for ch in raw:
        if ch == _OPEN:
            start = len(text)
        elif ch == _CLOSE:
            spans.append("".join(text[start:]))
        else:
            text.append(ch)
    return "".join(text), spans


def render(name: str, messages: list[dict[str, Any]], **variables: Any) -> str:
    return render_spans(name, messages, **variables)[0]


# --- registry -----------------------------------------------------------------------------------


def test_required_builtins_exist_sorted_and_unique() -> None:
    names = [b.name for b in list_builtins()]
    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert set(REQUIRED) <= set(names)
    assert set(names) == set(TOKENS), "every built-in needs its tokens checked here"
    assert all(isinstance(b, Builtin) for b in list_builtins())


@pytest.mark.parametrize("name", sorted(TOKENS))
def test_builtin_has_description_tokens_and_template(name: str) -> None:
    b = get_builtin(name)
    assert b.name == name
    assert b.description.strip() == b.description and b.description
    assert "\n" not in b.description and len(b.description) <= 120
    assert (b.bos_token, b.eos_token) == TOKENS[name]
    assert isinstance(b.template, str) and "{%" in b.template
    assert b.template is get_builtin(name).template  # read once, then cached


def test_builtin_is_frozen() -> None:
    b = get_builtin("chatml")
    with pytest.raises(AttributeError):
        b.name = "other"  # type: ignore[misc]


def test_default_builtin_is_chatml_without_bos() -> None:
    assert DEFAULT_BUILTIN == "chatml"
    assert get_builtin(DEFAULT_BUILTIN).bos_token is None
    assert get_builtin(DEFAULT_BUILTIN).eos_token == "<|im_end|>"


def test_package_data_matches_registry() -> None:
    files = {
        p.name[: -len(".jinja")]
        for p in resources.files("chatplate.sources.registry").iterdir()
        if p.name.endswith(".jinja")
    }
    assert files == {b.name for b in list_builtins()}


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ("chatml", "chatml"),
        ("ChatML", "chatml"),
        ("LLAMA_3", "llama-3"),
        ("llama3", "llama-3"),
        ("Llama2", "llama-2"),
        ("llama_2", "llama-2"),
        ("phi3", "phi-3"),
        ("PHI_3", "phi-3"),
        ("qwen2_5", "qwen2.5"),
        ("Qwen2.5", "qwen2.5"),
        ("cohere", "command-r"),
        ("command_r", "command-r"),
        ("deepseek-v3", "deepseek"),
        ("DeepSeek_V2", "deepseek-v2"),
        ("mistral_legacy", "mistral-legacy"),
        ("  zephyr ", "zephyr"),
    ],
)
def test_names_are_case_and_separator_insensitive(asked: str, expected: str) -> None:
    assert get_builtin(asked).name == expected


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownBuiltinError) as info:
        get_builtin("lama-3")
    err = info.value
    assert isinstance(err, TemplateNotFoundError) and isinstance(err, LookupError)
    assert err.source == "lama-3"
    assert err.suggestions[0] == "llama-3"
    assert "llama-3" in str(err) and "`chatplate list`" in str(err)
    assert "chatml" in err.looked_for and len(err.looked_for) == len(list_builtins())


@pytest.mark.parametrize(("asked", "suggested"), [("gemma2", "gemma"), ("qwen-2.5", "qwen2.5"), ("vicunna", "vicuna")])
def test_typos_suggest_the_builtin(asked: str, suggested: str) -> None:
    with pytest.raises(UnknownBuiltinError) as info:
        get_builtin(asked)
    assert suggested in info.value.suggestions


def test_unknown_name_without_close_match() -> None:
    with pytest.raises(UnknownBuiltinError) as info:
        get_builtin("gpt-neox-custom-xyz")
    assert info.value.suggestions == []
    assert "did you mean" not in str(info.value)
    assert "`chatplate list`" in str(info.value)


def test_non_string_name() -> None:
    with pytest.raises(UnknownBuiltinError):
        get_builtin(None)  # type: ignore[arg-type]


def test_unknown_builtin_error_pickles() -> None:
    with pytest.raises(UnknownBuiltinError) as info:
        get_builtin("lama-3")
    clone = pickle.loads(pickle.dumps(info.value))
    assert type(clone) is UnknownBuiltinError
    assert clone.suggestions == info.value.suggestions and str(clone) == str(info.value)


# --- templates ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TOKENS))
def test_template_compiles_in_the_sandbox(name: str) -> None:
    ENV.parse(get_builtin(name).template)  # raises TemplateSyntaxError if not
    assert ENV.from_string(get_builtin(name).template) is not None


@pytest.mark.parametrize("name", sorted(TOKENS))
def test_generation_tag_does_not_change_the_text(name: str) -> None:
    b = get_builtin(name)
    assert re.search(r"\{%-?\s*generation\s*-?%\}", b.template)
    # Words that would make transformers' continue_final_message accept a reasoning field the
    # template does not actually read.
    assert "thinking" not in b.template and "reasoning_content" not in b.template
    plain = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", b.template)
    conversation = [*SEED_CHAT, {"role": "assistant", "content": "  Sure!\n"}]
    variables = {"bos_token": b.bos_token, "eos_token": b.eos_token}
    for gen in (False, True):
        with_tag = render(name, conversation, add_generation_prompt=gen)
        without = ENV.from_string(plain).render(messages=conversation, add_generation_prompt=gen, **variables)
        assert with_tag == without


# What the assistant must produce in each layout for SEED_CHAT + a final answer "Sure!":
# its text and the end-of-turn marker (the prompt before it is not part of it).
ANSWER = "I'm doing great. How can I help you today?"
GENERATED = {
    "alpaca": [ANSWER + "</s>", "Sure!</s>"],
    "blenderbot": [ANSWER, "Sure!</s>"],
    "chatml": [ANSWER + "<|im_end|>", "Sure!<|im_end|>"],
    "command-r": [ANSWER + "<|END_OF_TURN_TOKEN|>", "Sure!<|END_OF_TURN_TOKEN|>"],
    "deepseek": [ANSWER + DS_EOS, "Sure!" + DS_EOS],
    "deepseek-v2": [ANSWER + DS_EOS, "Sure!" + DS_EOS],
    "gemma": [ANSWER + "<end_of_turn>", "Sure!<end_of_turn>"],
    "llama-2": [" " + ANSWER + " </s>", " Sure! </s>"],
    "llama-3": [ANSWER + "<|eot_id|>", "Sure!<|eot_id|>"],
    "mistral": [" " + ANSWER + "</s>", " Sure!</s>"],
    "mistral-legacy": [ANSWER + "</s>", "Sure!</s>"],
    "phi-3": [ANSWER + "<|end|>", "Sure!<|end|>"],
    "qwen2.5": [ANSWER + "<|im_end|>", "Sure!<|im_end|>"],
    "vicuna": [" " + ANSWER + "</s>", " Sure!</s>"],
    "zephyr": [ANSWER + "</s>", "Sure!</s>"],
}


@pytest.mark.parametrize("name", sorted(TOKENS))
def test_generation_blocks_hold_the_answer_and_its_end_of_turn(name: str) -> None:
    text, spans = render_spans(name, [*SEED_CHAT, {"role": "assistant", "content": "Sure!"}])
    assert spans == GENERATED[name]
    for span in spans:
        assert span in text


# The generation prompt each layout appends (None: the prompt already ends where the answer starts).
GENERATION_PROMPT = {
    "alpaca": "\n\n### Response:\n",
    "blenderbot": None,
    "chatml": "<|im_start|>assistant\n",
    "command-r": "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
    "deepseek": "<｜Assistant｜>",
    "deepseek-v2": "<｜Assistant｜>",
    "gemma": "<start_of_turn>model\n",
    "llama-2": None,
    "llama-3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "mistral": None,
    "mistral-legacy": None,
    "phi-3": "<|assistant|>\n",
    "qwen2.5": "<|im_start|>assistant\n",
    "vicuna": "ASSISTANT:",
    "zephyr": "<|assistant|>\n",
}


@pytest.mark.parametrize("name", sorted(TOKENS))
def test_add_generation_prompt(name: str) -> None:
    without = render(name, SEED_CHAT)
    with_prompt = render(name, SEED_CHAT, add_generation_prompt=True)
    prompt = GENERATION_PROMPT[name]
    if prompt is None:
        assert with_prompt == without
    elif name == "phi-3":  # Phi-3 ends with EOS unless it asks for the answer
        assert without.endswith("<|end|>\n<|endoftext|>")
        assert with_prompt == without[: -len("<|endoftext|>")] + prompt
    else:
        assert with_prompt == without + prompt


# --- the seeds' documented outputs --------------------------------------------------------------


def test_blenderbot_matches_the_documented_output() -> None:
    # transformers' docs (the seed is their Japanese edition) render BlenderBot's template as:
    documented = (
        " Hello, how are you?  I'm doing great. How can I help you today?   "
        "I'd like to show off how chat templating works!</s>"
    )
    assert render("blenderbot", SEED_CHAT) == documented
    # The seed page was captured with runs of spaces collapsed: the same page shows the Llama
    # template's "' '  + message['content']" as "' ' + message['content']", and its prose says
    # that two spaces follow every message but the last. Collapsed, the output is the seed's string.
    seed = " Hello, how are you? I'm doing great. How can I help you today? I'd like to show off how chat templating works!</s>"
    assert re.sub(" +", " ", render("blenderbot", SEED_CHAT)) == seed


def test_llama2_matches_the_seed_without_default_system_prompt() -> None:
    seed = (
        "<s>[INST] Hello, how are you? [/INST] I'm doing great. How can I help you today? </s>"
        "<s>[INST] I'd like to show off how chat templating works! [/INST]"
    )
    assert render("llama-2", SEED_CHAT, use_default_system_prompt=False) == seed
    assert render("llama-2", SEED_CHAT) == seed  # off unless asked for


META_DEFAULT = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, "
    "while being safe. Your answers should not include any harmful, unethical, racist, sexist, toxic, "
    "dangerous, or illegal content. Please ensure that your responses are socially unbiased and "
    "positive in nature.\n\nIf a question does not make any sense, or is not factually coherent, "
    "explain why instead of answering something not correct. If you don't know the answer to a "
    "question, please don't share false information."
)


def test_llama2_default_system_prompt_switch() -> None:
    on = render("llama-2", SEED_CHAT, use_default_system_prompt=True)
    assert on == (
        "<s>[INST] <<SYS>>\n" + META_DEFAULT + "\n<</SYS>>\n\nHello, how are you? [/INST] "
        "I'm doing great. How can I help you today? </s>"
        "<s>[INST] I'd like to show off how chat templating works! [/INST]"
    )
    custom = render("llama-2", SEED_CHAT, use_default_system_prompt=True, default_system_message="Be brief.")
    assert custom.startswith("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello, how are you? [/INST]")
    # A system message of the conversation wins over the default.
    own = render("llama-2", [{"role": "system", "content": "Talk like a pirate."}, *SEED_CHAT], use_default_system_prompt=True)
    assert own.startswith("<s>[INST] <<SYS>>\nTalk like a pirate.\n<</SYS>>\n\nHello") and META_DEFAULT not in own


def test_mistral_legacy_matches_the_seed() -> None:
    seed = (
        "<s>[INST] Hello, how are you? [/INST]I'm doing great. How can I help you today?</s> "
        "[INST] I'd like to show off how chat templating works! [/INST]"
    )
    assert render("mistral-legacy", SEED_CHAT) == seed


def test_chatml_matches_the_documented_output() -> None:
    chat = [
        {
            "role": "system",
            "content": "You are a helpful chatbot that will do its best not to say anything so stupid that people tweet about it.",
        },
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "I'm doing great!"},
    ]
    assert render("chatml", chat) == (
        "<|im_start|>system\nYou are a helpful chatbot that will do its best not to say anything so stupid "
        "that people tweet about it.<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n"
        "<|im_start|>assistant\nI'm doing great!<|im_end|>\n"
    )


# --- unsupported input raises with a clear message ----------------------------------------------


def _m(role: str, content: Any = "x", **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **extra}


_DICT_ARGS_CALL = {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
_PARTS = [{"type": "text", "text": "hi"}]


@pytest.mark.parametrize(
    ("name", "messages", "fragment"),
    [
        ("gemma", [_m("system"), _m("user")], "system role is not supported"),
        ("gemma", [_m("user"), _m("user")], "alternate"),
        ("mistral", [_m("assistant")], "messages[0]"),
        ("mistral", [_m("user"), _m("tool")], 'got "tool"'),
        ("mistral-legacy", [_m("system"), _m("user")], "alternate"),
        ("llama-2", [_m("system"), _m("user"), _m("user")], "messages[2]"),
        ("vicuna", [_m("user"), _m("tool")], 'got "tool"'),
        ("command-r", [_m("assistant")], "alternate"),
        ("chatml", [_m("user", _PARTS)], "must be a string"),
        ("qwen2.5", [_m("user", _PARTS)], "must be a string"),
        ("deepseek", [_m("user"), _m("assistant", "", tool_calls=[_DICT_ARGS_CALL])], "JSON string"),
        ("chatml", [{"content": "no role"}], "role"),
    ],
)
def test_unsupported_input_raises_a_clear_message(name: str, messages: list, fragment: str) -> None:
    with pytest.raises(TemplateRaised) as info:
        render(name, messages)
    assert str(info.value).startswith(name + ":")
    assert fragment in str(info.value)


def test_typed_text_parts_where_the_real_templates_accept_them() -> None:
    content = [{"type": "image"}, {"type": "text", "text": " Hi "}, {"type": "text", "text": "there "}]
    parts = [{"role": "user", "content": content}]
    assert render("llama-3", parts).endswith("user<|end_header_id|>\n\nHi there<|eot_id|>")
    assert render("gemma", parts) == "<bos><start_of_turn>user\nHithere<end_of_turn>\n"
    assert render("mistral", parts) == "<s> [INST]  Hi there  [/INST]"


def test_qwen_tools_and_tool_calls() -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "22C"},
        {"role": "tool", "content": "sunny"},
    ]
    text, spans = render_spans("qwen2.5", messages, tools=[tool], add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools")
    assert '\n<tools>\n{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}\n</tools>' in text
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n22C\n</tool_response>\n<tool_response>\nsunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ) in text
    assert spans == ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>']
