"""Each built-in template renders exactly what the real template of its family renders.

Both sides go through transformers' own renderer (``tests.reference.reference_render``, called
the way ``apply_chat_template(tokenize=False)`` calls it), each with its own special tokens: the
built-in with the tokens the registry declares, the real template with the tokens it ships with.
A wrong declared BOS/EOS therefore fails here too.

The real templates:

* from the public corpus (``shared/corpus/public``), the templates axolotl and trl ship for these
  families: compared on every corpus conversation (against the stored golden output, or the
  stored fact that the reference raised) and on generated conversations;
* for the families the corpus lacks, the templates as their models or transformers published
  them, quoted below (Llama 2 and BlenderBot: transformers' class default templates, which the
  seeds describe; Mistral-7B-Instruct-v0.1 as first released, whose output the seeds show;
  Zephyr-7B-beta's tokenizer_config.json), and for Vicuna, FastChat's prompt builder.

Where exact equality with a real template is impossible, and why (nowhere else is it given up):

* ``vicuna``: Vicuna ships no chat template; the reference is FastChat's ``vicuna_v1.1``
  conversation, which only knows alternating USER/ASSISTANT turns of text and treats an empty
  message as "the slot the model fills". It is compared on conversations inside that domain:
  alternating user/assistant after an optional system message, non-empty string contents.
* ``llama-3`` and ``gemma`` follow axolotl's templates, which keep the text parts of typed content;
  trl's copies of Meta's and Google's templates (``trl__llama3``, ``trl__gemma``) print typed
  content as a Python list repr, so those two are compared on string contents only.
* Not used as references, as they are different layouts under the same family name:
  ``axolotl__phi_3`` (adds BOS and a generation prompt after every user turn, which Phi-3's
  own template, ``trl__phi3``, does not) and ``trl__deepseekv3`` (DeepSeek-R1's generation
  prompt ``<think>\\n``, and it drops "<｜Assistant｜>" before the second tool-calling turn).

trl's ``*_training`` variants render the same text as their originals and are references too.
Their ``{% generation %}`` blocks are compared with ours where both mark the same text (Llama 3,
Cohere: the answer and its end-of-turn token). trl's Gemma, Phi-3 and Qwen2.5 blocks also take
in the newline written after the end-of-turn token (Phi-3: and the final EOS; Qwen2.5: and the
newline after "assistant"); ours stop at the end-of-turn token, where the model stops.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chatplate.sources.registry import get_builtin, list_builtins
from tests.reference import reference_render

# The corpus and the generated cases pass every template the same extra keywords (as transformers'
# callers do); that most templates ignore some of them is expected here, and tested in
# test_unused_variables.
pytestmark = pytest.mark.filterwarnings("ignore::chatplate.UnusedVariableWarning")

# --- the corpus ---------------------------------------------------------------------------------


def _corpus_dir() -> Path:
    configured = os.environ.get("CHATPLATE_CORPUS")
    return Path(configured) if configured else Path(__file__).resolve().parents[3] / "shared" / "corpus"


def _require_corpus() -> Path:
    path = _corpus_dir()
    if not (path / "public").is_dir() or not (path / "conversations.json").is_file():
        message = f"chat-template corpus not found at {path} (set CHATPLATE_CORPUS to the corpus directory)"
        if os.environ.get("CHATPLATE_REQUIRE_CORPUS") == "1":
            pytest.fail(message + " and CHATPLATE_REQUIRE_CORPUS=1", pytrace=False)
        pytest.skip(message)
    return path


@lru_cache(maxsize=None)
def _corpus_template(name: str) -> dict[str, Any]:
    return json.loads((_require_corpus() / "public" / f"{name}.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _conversation_cases() -> list[dict[str, Any]]:
    """conversations.json expanded into cases, as the corpus files hold them (id = conv__option)."""
    doc = json.loads((_require_corpus() / "conversations.json").read_text(encoding="utf-8"))
    cases = []
    for conversation in doc["conversations"]:
        for option in conversation.get("option_sets") or doc["default_option_sets"]:
            cases.append(
                {
                    "id": f"{conversation['id']}__{option['name']}",
                    "messages": conversation["messages"],
                    "tools": conversation.get("tools"),
                    "documents": conversation.get("documents"),
                    "add_generation_prompt": option.get("add_generation_prompt", False),
                    "continue_final_message": option.get("continue_final_message", False),
                    "extra_kwargs": option.get("extra_kwargs") or {},
                }
            )
    return cases


# --- real templates the corpus does not hold ----------------------------------------------------

# transformers' LlamaTokenizer.default_chat_template (until the class defaults were removed), with
# its USE_DEFAULT_PROMPT / DEFAULT_SYSTEM_MESSAGE placeholders filled exactly as transformers did.
_LLAMA2_DEFAULT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}"
    "{% elif USE_DEFAULT_PROMPT == true and not '<<SYS>>' in messages[0]['content'] %}"
    "{% set loop_messages = messages %}"
    "{% set system_message = 'DEFAULT_SYSTEM_MESSAGE' %}"
    "{% else %}"
    "{% set loop_messages = messages %}"
    "{% set system_message = false %}"
    "{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}"
    "{% set content = message['content'] %}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'system' %}"
    "{{ '<<SYS>>\\n' + content.strip() + '\\n<</SYS>>\\n\\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)
_LLAMA2_DEFAULT_SYSTEM_PROMPT = """You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. Your \
answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. Please ensure\
 that your responses are socially unbiased and positive in nature.

If a question does not make any sense, or is not factually coherent, explain why instead of answering something not \
correct. If you don't know the answer to a question, please don't share false information."""


def _llama2_default_template(use_default_system_prompt: bool) -> str:
    template = _LLAMA2_DEFAULT_TEMPLATE.replace("USE_DEFAULT_PROMPT", "true" if use_default_system_prompt else "false")
    default_message = _LLAMA2_DEFAULT_SYSTEM_PROMPT.replace("\n", "\\n").replace("'", "\\'")
    return template.replace("DEFAULT_SYSTEM_MESSAGE", default_message)


# transformers' BlenderbotTokenizer.default_chat_template (facebook/blenderbot-400M-distill).
_BLENDERBOT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ ' ' }}{% endif %}"
    "{{ message['content'] }}{% if not loop.last %}{{ '  ' }}{% endif %}{% endfor %}{{ eos_token }}"
)

# mistralai/Mistral-7B-Instruct-v0.1 tokenizer_config.json as first released (the seeds' output).
_MISTRAL_V01_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

# HuggingFaceH4/zephyr-7b-beta tokenizer_config.json.
_ZEPHYR_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)

_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


def _fastchat_vicuna(messages: list[dict[str, Any]], add_generation_prompt: bool = False, **_: Any) -> str:
    """FastChat's ``vicuna_v1.1`` conversation (SeparatorStyle.ADD_COLON_TWO, sep " ", sep2 "</s>"),
    with the BOS the Llama tokenizer adds in front."""
    system, turns = _VICUNA_SYSTEM, messages
    if messages[0]["role"] == "system":
        system, turns = messages[0]["content"], messages[1:]
    conversation = [("USER" if m["role"] == "user" else "ASSISTANT", m["content"]) for m in turns]
    if add_generation_prompt:
        conversation.append(("ASSISTANT", None))
    seps = [" ", "</s>"]
    ret = system + seps[0]
    for i, (role, message) in enumerate(conversation):
        if message:
            ret += role + ": " + message + seps[i % 2]
        else:
            ret += role + ":"
    return "<s>" + ret


def _vicuna_domain(messages: list[dict[str, Any]]) -> bool:
    turns = messages[1:] if messages[0].get("role") == "system" else messages
    if not all(isinstance(m.get("content"), str) and m["content"] for m in turns):
        return False
    if messages[0].get("role") == "system" and not isinstance(messages[0].get("content"), str):
        return False
    return all(m.get("role") == ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(turns))


def _string_contents(messages: list[dict[str, Any]]) -> bool:
    return all(isinstance(m.get("content"), (str, type(None))) for m in messages)


# --- the references -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Real:
    id: str
    builtin: str
    corpus: str | None = None  # a corpus template (its stored cases are the golden outputs)
    template: str | None = None  # or a quoted real template
    python: Callable[..., str] | None = None  # or a Python prompt builder
    bos_token: str | None = None  # tokens of the quoted template
    eos_token: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)  # passed to the built-in only
    domain: Callable[[list[dict[str, Any]]], bool] | None = None  # conversations it speaks for
    free_form: bool = True  # compare on messy, non-alternating conversations too

    def render(self, messages: list[dict[str, Any]], **options: Any) -> str:
        if self.python is not None:
            return self.python([{k: v for k, v in m.items() if v is not None} for m in messages], **options)
        if self.corpus is not None:
            doc = _corpus_template(self.corpus)
            template, bos, eos = doc["template"], doc["bos_token"], doc["eos_token"]
        else:
            template, bos, eos = self.template, self.bos_token, self.eos_token
        return reference_render(template, messages, bos_token=bos, eos_token=eos, **options)[0]

    def render_builtin(self, messages: list[dict[str, Any]], **options: Any) -> str:
        b = get_builtin(self.builtin)
        spans = not options.get("continue_final_message")
        text, generation = reference_render(
            b.template, messages, bos_token=b.bos_token, eos_token=b.eos_token, with_spans=spans,
            **self.variables, **options,
        )
        previous_end = 0
        for start, end in generation:  # well-formed spans, in order
            assert previous_end <= start <= end <= len(text)
            previous_end = end
        return text

    def in_domain(self, messages: list[dict[str, Any]]) -> bool:
        return self.domain is None or self.domain(messages)


REALS = [
    Real("chatml~axolotl__chatml", "chatml", corpus="axolotl__chatml"),
    Real("llama-3~axolotl__llama3", "llama-3", corpus="axolotl__llama3"),
    Real("llama-3~trl__llama3", "llama-3", corpus="trl__llama3", domain=_string_contents),
    Real("llama-3~trl__llama3_training", "llama-3", corpus="trl__llama3_training", domain=_string_contents),
    Real("mistral~axolotl__mistral_v1", "mistral", corpus="axolotl__mistral_v1"),
    Real("gemma~axolotl__gemma", "gemma", corpus="axolotl__gemma"),
    Real("gemma~trl__gemma", "gemma", corpus="trl__gemma", domain=_string_contents),
    Real("gemma~trl__gemma_training", "gemma", corpus="trl__gemma_training", domain=_string_contents),
    Real("phi-3~trl__phi3", "phi-3", corpus="trl__phi3"),
    Real("phi-3~trl__phi3_training", "phi-3", corpus="trl__phi3_training"),
    Real("command-r~axolotl__cohere", "command-r", corpus="axolotl__cohere"),
    Real("command-r~trl__cohere", "command-r", corpus="trl__cohere"),
    Real("command-r~trl__cohere_training", "command-r", corpus="trl__cohere_training"),
    Real("qwen2.5~axolotl__qwen_25", "qwen2.5", corpus="axolotl__qwen_25"),
    Real("qwen2.5~trl__qwen2_5", "qwen2.5", corpus="trl__qwen2_5"),
    Real("qwen2.5~trl__qwen2_5_training", "qwen2.5", corpus="trl__qwen2_5_training"),
    Real("deepseek~axolotl__deepseek_v3", "deepseek", corpus="axolotl__deepseek_v3"),
    Real("deepseek-v2~axolotl__deepseek_v2", "deepseek-v2", corpus="axolotl__deepseek_v2"),
    Real("alpaca~axolotl__alpaca", "alpaca", corpus="axolotl__alpaca"),
    Real(
        "llama-2~transformers_default",
        "llama-2",
        template=_llama2_default_template(False),
        bos_token="<s>",
        eos_token="</s>",
        variables={"use_default_system_prompt": False},
    ),
    Real(
        "llama-2~transformers_default[use_default_system_prompt]",
        "llama-2",
        template=_llama2_default_template(True),
        bos_token="<s>",
        eos_token="</s>",
        variables={"use_default_system_prompt": True},
    ),
    Real("blenderbot~transformers_default", "blenderbot", template=_BLENDERBOT_TEMPLATE, bos_token="<s>", eos_token="</s>"),
    Real(
        "mistral-legacy~Mistral-7B-Instruct-v0.1",
        "mistral-legacy",
        template=_MISTRAL_V01_TEMPLATE,
        bos_token="<s>",
        eos_token="</s>",
    ),
    Real("zephyr~zephyr-7b-beta", "zephyr", template=_ZEPHYR_TEMPLATE, bos_token="<s>", eos_token="</s>"),
    Real("vicuna~fastchat_vicuna_v1.1", "vicuna", python=_fastchat_vicuna, domain=_vicuna_domain, free_form=False),
]


def test_every_builtin_is_proven_against_a_real_template() -> None:
    assert {r.builtin for r in REALS} == {b.name for b in list_builtins()}


def outcome(fn: Callable[[], str]) -> tuple[str, str]:
    try:
        return "ok", fn()
    except Exception as exc:  # noqa: BLE001 - a raise of any kind is "raised", as in check.py
        return "raised", f"{type(exc).__name__}: {exc}"


def assert_same(real: Real, messages: list[dict[str, Any]], **options: Any) -> None:
    theirs = outcome(lambda: real.render(messages, **options))
    ours = outcome(lambda: real.render_builtin(messages, **options))
    assert ours[0] == theirs[0], f"{real.id}: built-in {ours}, real {theirs}"
    if ours[0] == "ok":  # when both raise, the messages differ on purpose: ours say what is wrong
        assert ours[1] == theirs[1], f"{real.id}: built-in and real template render differently"


# --- (a) every conversation of the corpus -------------------------------------------------------


@pytest.mark.parametrize("real", REALS, ids=lambda r: r.id)
def test_corpus_conversations(real: Real) -> None:
    stored = {c["id"]: c for c in _corpus_template(real.corpus)["cases"]} if real.corpus else {}
    compared = rendered = 0
    failures = []
    for case in _conversation_cases():
        if not real.in_domain(case["messages"]):
            continue
        options = {
            "tools": case["tools"],
            "documents": case["documents"],
            "add_generation_prompt": case["add_generation_prompt"],
            "continue_final_message": case["continue_final_message"],
            **case["extra_kwargs"],
        }
        if real.python is not None and (case["tools"] or case["continue_final_message"]):
            continue  # FastChat's builder knows neither
        if real.corpus is not None:
            golden = stored[case["id"]]
            theirs = ("ok", golden["expected"]) if "expected" in golden else ("raised", golden["expected_error"])
        else:
            theirs = outcome(lambda: real.render(case["messages"], **options))
        ours = outcome(lambda: real.render_builtin(case["messages"], **options))
        compared += 1
        rendered += theirs[0] == "ok"
        if ours[0] != theirs[0] or (ours[0] == "ok" and ours[1] != theirs[1]):
            failures.append(f"{case['id']}: built-in {ours!r}\n    real {theirs!r}")
    assert not failures, f"{real.id}: {len(failures)} of {compared} cases differ:\n" + "\n".join(failures)
    assert rendered >= 4, f"{real.id}: too few corpus conversations rendered to prove anything"


@pytest.mark.parametrize(
    ("name", "corpus"), [("llama-3", "trl__llama3_training"), ("command-r", "trl__cohere_training")]
)
def test_generation_spans_match_trl_training_templates(name: str, corpus: str) -> None:
    b = get_builtin(name)
    compared = 0
    for case in _corpus_template(corpus)["cases"]:
        if "expected_generation_spans" not in case or not _string_contents(case["messages"]):
            continue
        text, spans = reference_render(
            b.template, case["messages"], bos_token=b.bos_token, eos_token=b.eos_token, with_spans=True,
            tools=case["tools"], documents=case["documents"], **case["extra_kwargs"],
        )
        assert text == case["expected"], case["id"]
        assert [list(span) for span in spans] == case["expected_generation_spans"], case["id"]
        compared += 1
    assert compared >= 3


# --- (a') conversations aimed at the less travelled paths of the layouts ------------------------


def _call(name: str, city: str, *, wrapped: bool = True) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps({"city": city})}
    return {"id": "call_" + city[:3], "type": "function", "function": function} if wrapped else function


TARGETED: dict[str, list[dict[str, Any]]] = {
    "tool_results_last": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", "Paris"), _call("get_weather", "Rome")]},
        {"role": "tool", "content": "22C"},
        {"role": "tool", "content": "25C"},
    ],
    "tool_round_trip": [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [_call("get_weather", "Paris")]},
        {"role": "tool", "content": "22C"},
        {"role": "assistant", "content": "It is 22C."},
        {"role": "user", "content": "And Rome?"},
    ],
    "tool_calls_back_to_back": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [_call("get_weather", "Paris")]},
        {"role": "tool", "content": "22C"},
        {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", "Rome", wrapped=False)]},
        {"role": "tool", "content": "25C"},
        {"role": "assistant", "content": "Done."},
    ],
    "empty_tool_calls": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "tool_calls": []},
    ],
    "tool_first": [{"role": "tool", "content": "orphan result"}, {"role": "user", "content": "Hi"}],
    "earlier_answer_with_reasoning": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>add them</think>4"},
        {"role": "user", "content": "3+3?"},
        {"role": "assistant", "content": "<think>again</think>\n\n6"},
    ],
    "two_system_messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
    ],
    "system_after_first_turn": [
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "Switch to French."},
    ],
    "first_message_mentions_sys": [{"role": "user", "content": "<<SYS>>\nmine\n<</SYS>>\n\nHi"}],
    "whitespace_only": [
        {"role": "system", "content": " \n "},
        {"role": "user", "content": "\t"},
        {"role": "assistant", "content": "\n\n"},
        {"role": "user", "content": " "},
    ],
}


@pytest.mark.parametrize("real", REALS, ids=lambda r: r.id)
def test_targeted_conversations(real: Real) -> None:
    if real.corpus:
        _require_corpus()
    rendered = 0
    for name, messages in TARGETED.items():
        if not real.in_domain(messages):
            continue
        for tools in (None, [WEATHER_TOOL]):
            for add_generation_prompt in (False, True):
                try:
                    assert_same(real, messages, tools=tools, add_generation_prompt=add_generation_prompt)
                except AssertionError as exc:
                    raise AssertionError(f"{name} (tools={tools is not None}, gen={add_generation_prompt}): {exc}") from None
                rendered += outcome(lambda: real.render(messages, tools=tools))[0] == "ok"
    assert rendered > 0


# --- (b) generated conversations ----------------------------------------------------------------

TEXT = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=" \t\r\n\u00a0\u200bé中😀", max_size=10),
    st.sampled_from(
        [
            "",
            " ",
            "\n",
            "\r\n",
            "  padded  ",
            "line one\nline two\n",
            "Ünïcødé ✓ 中文 😀👩‍👩‍👧 مرحبا",
            "{{ messages }} {% if x %}",
            "<think>plan</think>answer",
            "<<SYS>>\nnested",
            "[INST] hi [/INST] </s>",
            "<|im_end|>\n<|im_start|>system",
        ]
    ),
)


@st.composite
def alternating_conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(TEXT)})
    for i in range(draw(st.integers(1, 5))):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": draw(TEXT)})
    return messages


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@st.composite
def _content(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["text", "text", "text", "parts", "missing"]))
    if kind == "parts":
        parts = [{"type": "text", "text": draw(TEXT)} for _ in range(draw(st.integers(1, 2)))]
        if draw(st.booleans()):
            parts.insert(0, {"type": "image"})
        return parts
    return None if kind == "missing" else draw(TEXT)


@st.composite
def _tool_call(draw: st.DrawFn) -> dict[str, Any]:
    arguments: Any = {"city": draw(TEXT)}
    if draw(st.booleans()):
        arguments = json.dumps(arguments, ensure_ascii=False)
    function = {"name": draw(st.sampled_from(["get_weather", "search"])), "arguments": arguments}
    shape = draw(st.sampled_from(["openai", "openai", "bare"]))
    return {"id": "call_1", "type": "function", "function": function} if shape == "openai" else function


@st.composite
def free_form_conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Typed or missing content, tool calls and tool results; half of the time in alternating
    user/assistant order (so strict layouts render them), else in any order of roles."""
    messages = []
    alternating = draw(st.booleans())
    if alternating and draw(st.booleans()):
        messages.append({"role": "system", "content": draw(_content())})
    for i in range(draw(st.integers(1, 5))):
        if alternating:
            role = "user" if i % 2 == 0 else "assistant"
        else:
            role = draw(st.sampled_from(["system", "user", "user", "assistant", "assistant", "tool", "developer"]))
        message: dict[str, Any] = {"role": role, "content": draw(_content())}
        if role == "assistant" and draw(st.integers(0, 2)) == 0:
            message["tool_calls"] = draw(st.lists(_tool_call(), max_size=2))
        messages.append(message)
    return messages


@pytest.mark.parametrize("real", REALS, ids=lambda r: r.id)
def test_generated_alternating_conversations(real: Real) -> None:
    if real.corpus:
        _require_corpus()

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
    @given(messages=alternating_conversations(), add_generation_prompt=st.booleans())
    def check(messages: list[dict[str, Any]], add_generation_prompt: bool) -> None:
        assume(real.in_domain(messages))
        assert_same(real, messages, add_generation_prompt=add_generation_prompt)

    check()


@pytest.mark.parametrize("real", [r for r in REALS if r.free_form], ids=lambda r: r.id)
def test_generated_free_form_conversations(real: Real) -> None:
    if real.corpus:
        _require_corpus()

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
    @given(messages=free_form_conversations(), add_generation_prompt=st.booleans(), with_tools=st.booleans())
    def check(messages: list[dict[str, Any]], add_generation_prompt: bool, with_tools: bool) -> None:
        assume(real.in_domain(messages))
        tools = [WEATHER_TOOL] if with_tools else None
        assert_same(real, messages, add_generation_prompt=add_generation_prompt, tools=tools)

    check()


# --- the built-ins through chatplate's own engine -----------------------------------------------


@pytest.mark.parametrize("name", [b.name for b in list_builtins()])
def test_chatplate_renders_builtins_like_transformers(name: str) -> None:
    """The public engine gives the built-ins' text and generation spans exactly as transformers."""
    import chatplate

    b = get_builtin(name)
    template = chatplate.ChatTemplate(b.template, bos_token=b.bos_token, eos_token=b.eos_token)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        messages=st.one_of(alternating_conversations(), free_form_conversations()),
        add_generation_prompt=st.booleans(),
        with_tools=st.booleans(),
    )
    def check(messages: list[dict[str, Any]], add_generation_prompt: bool, with_tools: bool) -> None:
        options: dict[str, Any] = {"add_generation_prompt": add_generation_prompt}
        if with_tools:
            options["tools"] = [WEATHER_TOOL]
        try:
            theirs: Any = (
                "ok",
                reference_render(
                    b.template, messages, bos_token=b.bos_token, eos_token=b.eos_token, with_spans=True, **options
                ),
            )
        except Exception:  # noqa: BLE001 - any raise counts as "raised"
            theirs = ("raised", None)
        try:
            result = template.render_spans(messages, **options)
            ours: Any = ("ok", (result.text, [tuple(s) for s in result.generation_spans]))
        except Exception:  # noqa: BLE001 - any raise counts as "raised"
            ours = ("raised", None)
        assert ours[0] == theirs[0], f"chatplate {ours}, transformers {theirs}"
        if ours[0] == "ok":
            assert ours[1][0] == theirs[1][0]
            assert ours[1][1] == [tuple(s) for s in theirs[1][1]]

    check()
