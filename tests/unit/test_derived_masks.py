"""Derived training masks (templates without ``{% generation %}``) on the public corpus.

Each template is paired with the byte-level BPE fixture plus the template's own markers (every
``<...>`` literal it writes, and its BOS/EOS) as special tokens, as a model's real tokenizer has
them: the end of a turn is found by its control tokens.

- On every template with ``{% generation %}`` blocks, the masks derived from the same template
  with the blocks removed agree with the block masks on at least 98% of tokens overall.
- On every template without blocks, each assistant message's content is trained, and no user,
  system or tool content is.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import pytest

import chatplate
from chatplate import engine
from chatplate.tokens import ChatTokenizer
from tests import tokenizer_fixtures
from tests.conftest import require_corpus

# The corpus and the generated cases pass every template the same extra keywords (as transformers'
# callers do); that most templates ignore some of them is expected here, and tested in
# test_unused_variables.
pytestmark = pytest.mark.filterwarnings("ignore::chatplate.UnusedVariableWarning")

pytest.importorskip("tokenizers")


@functools.cache
def corpus() -> list[dict[str, Any]]:
    root = require_corpus()
    return [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((root / "public").glob("*.json"))
        if not path.name.startswith("_")
    ]


def _names(tagged: bool) -> list[str]:
    try:
        return [d["template_name"] for d in corpus() if d["has_generation_tag"] == tagged]
    except BaseException:  # noqa: BLE001 - the tests themselves report a missing corpus
        return ["corpus-missing"]


def template_data(name: str) -> dict[str, Any]:
    return next(d for d in corpus() if d["template_name"] == name)


@functools.cache
def _base_tokenizer_json() -> str:
    return (tokenizer_fixtures.chatml_bpe_dir() / "tokenizer.json").read_text(encoding="utf-8")


def tokenizer_for(data: dict[str, Any]) -> ChatTokenizer:
    from tokenizers import AddedToken, Tokenizer

    backend = Tokenizer.from_str(_base_tokenizer_json())
    markers = set(re.findall(r"<[^<>\s]{1,40}>", engine.literal_text(data["template"])))
    markers |= {token for token in (data["bos_token"], data["eos_token"]) if token}
    backend.add_special_tokens([AddedToken(m, special=True, normalized=False) for m in sorted(markers)])
    return ChatTokenizer(backend, {"bos_token": data["bos_token"], "eos_token": data["eos_token"]})


def without_blocks(source: str) -> str:
    # An always-true block in place of each generation block keeps the whitespace control.
    source = re.sub(r"\{%(-?)\s*generation\s*(-?)%\}", r"{%\1 if true \2%}", source)
    return re.sub(r"\{%(-?)\s*endgeneration\s*(-?)%\}", r"{%\1 endif \2%}", source)


def kwargs_of(case: dict[str, Any]) -> dict[str, Any]:
    return dict(tools=case["tools"], documents=case["documents"], **case["extra_kwargs"])


def agreement(name: str) -> tuple[int, int]:
    data = template_data(name)
    tokenizer = tokenizer_for(data)
    blocks = chatplate.ChatTemplate(data["template"], data["bos_token"], data["eos_token"], tokenizer=tokenizer)
    derived = chatplate.ChatTemplate(without_blocks(data["template"]), data["bos_token"], data["eos_token"], tokenizer=tokenizer)
    assert not engine.has_generation_blocks(derived.source)
    agree = total = 0
    for case in data["cases"]:
        if "expected_generation_spans" not in case:
            continue
        ours = blocks.encode(case["messages"], return_assistant_mask=True, **kwargs_of(case))
        theirs = derived.encode(case["messages"], return_assistant_mask=True, **kwargs_of(case))
        assert ours.input_ids == theirs.input_ids
        agree += sum(a == b for a, b in zip(ours.assistant_mask, theirs.assistant_mask))
        total += len(ours.input_ids)
    return agree, total


def test_derived_masks_agree_with_generation_blocks() -> None:
    per_template = {name: agreement(name) for name in _names(True)}
    assert len(per_template) >= 30
    overall = sum(a for a, _ in per_template.values()) / sum(t for _, t in per_template.values())
    worst = sorted((a / t, name) for name, (a, t) in per_template.items())[:5]
    assert overall >= 0.98, f"overall {overall:.4f}; lowest: {worst}"
    # Every template is mostly in agreement: a derivation that lost whole turns would show here.
    assert all(a / t >= 0.85 for a, t in per_template.values()), worst


def _find_contents(text: str, messages: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """Where each message's text content lands in ``text``, in order (messages whose content
    the template does not render verbatim are left out)."""
    found = []
    cursor = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        else:
            texts = [content] if isinstance(content, str) else []
        for piece in (t.strip() for t in texts):
            if len(piece) < 4:
                continue
            at = text.find(piece, cursor)
            if at < 0:
                continue
            found.append((at, at + len(piece), message["role"]))
            cursor = at + len(piece)
    return found


@pytest.mark.parametrize("name", _names(False))
def test_assistant_content_is_trained_and_nothing_else(name: str) -> None:
    data = template_data(name)
    template = chatplate.ChatTemplate(data["template"], data["bos_token"], data["eos_token"], tokenizer=tokenizer_for(data))
    checked = 0
    for case in data["cases"]:
        if case.get("add_generation_prompt") or case.get("continue_final_message") or "expected" not in case:
            continue
        try:
            enc = template.encode(case["messages"], return_assistant_mask=True, return_offsets=True, **kwargs_of(case))
        except chatplate.MaskError:
            continue
        assert enc.offsets is not None and enc.assistant_mask is not None
        trained = [0] * len(enc.text)
        for (start, end), flag in zip(enc.offsets, enc.assistant_mask):
            if flag:
                trained[start:end] = [1] * (end - start)
        for start, end, role in _find_contents(enc.text, case["messages"]):
            covered = trained[start:end]
            if role == "assistant":
                assert all(covered), (case["id"], enc.text[start:end])
            else:
                assert not any(covered), (case["id"], role, enc.text[start:end])
            checked += 1
    assert checked, "no message content found in any rendering"


HARMONY_LIKE = """{%- for m in messages -%}
<|start|>{{ m.role }}
{%- if m.role == 'assistant' -%}
{%- if loop.last and m.thinking %}<|channel|>analysis<|message|>{{ m.thinking }}<|end|><|start|>assistant{% endif -%}
<|channel|>final<|message|>{{ m.content }}{{ '<|return|>' if loop.last else '<|end|>' }}
{%- else %}<|message|>{{ m.content }}<|end|>{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}<|start|>assistant{% endif -%}"""


def trained_text(enc: Any) -> list[str]:
    """The trained runs of characters, in order."""
    runs: list[str] = []
    previous = False
    for (start, end), flag in zip(enc.offsets, enc.assistant_mask):
        if flag and previous:
            runs[-1] += enc.text[start:end]
        elif flag:
            runs.append(enc.text[start:end])
        previous = bool(flag)
    return runs


@pytest.mark.parametrize("source", ["hand-written", "trl__gptoss"])
def test_history_turns_closed_by_another_marker_than_the_last_are_trained_through_it(source: str) -> None:
    """A template that drops reasoning from history and closes history turns with <|end|> but
    the last with <|return|>: every assistant turn is trained from its generation prompt through
    its own closing marker."""
    if source == "hand-written":
        data: dict[str, Any] = {"template": HARMONY_LIKE, "bos_token": None, "eos_token": "<|return|>"}
    else:
        data = template_data(source)
    template = chatplate.ChatTemplate(data["template"], data["bos_token"], data["eos_token"], tokenizer=tokenizer_for(data))
    chat = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there", "thinking": "greet them"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye now", "thinking": "farewell"},
    ]
    enc = template.encode(chat, return_assistant_mask=True, return_offsets=True)
    history, last = trained_text(enc)
    assert history == "<|channel|>final<|message|>Hello there<|end|>"
    assert last.startswith("<|channel|>analysis<|message|>farewell") and last.endswith("Goodbye now<|return|>")
