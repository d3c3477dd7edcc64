"""Training masks: options, labels, batches, truncation, safety, and the token rule."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chatplate
from chatplate.tokens.spans import mask_from_encoding, token_mask
from tests import tokenizer_fixtures

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And Germany?"},
    {"role": "assistant", "content": "Berlin."},
]


@functools.cache
def chatml() -> chatplate.ChatTemplate:
    return chatplate.load(str(tokenizer_fixtures.chatml_bpe_dir()))


@functools.cache
def mistral() -> chatplate.ChatTemplate:
    pytest.importorskip("mistral_common")
    return chatplate.load(str(tokenizer_fixtures.mistral_v1_dir()))


def trained_text(template: chatplate.ChatTemplate, enc: Any) -> list[str]:
    """The trained runs of tokens, decoded."""
    runs, current = [], []
    for token, flag in zip(enc.input_ids, enc.assistant_mask):
        if flag:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [template.tokenizer.backend.decode(run, skip_special_tokens=False) for run in runs]


def test_assistant_turns_through_their_end_of_turn_marker() -> None:
    enc = chatml().encode(CHAT, return_assistant_mask=True)
    assert trained_text(chatml(), enc) == ["Paris.<|im_end|>", "Berlin.<|im_end|>"]
    assert enc.labels == [t if m else -100 for t, m in zip(enc.input_ids, enc.assistant_mask)]


def test_llama2_style_turns_keep_their_leading_space_and_eos() -> None:
    chat = [m for m in CHAT if m["role"] != "system"]
    enc = mistral().encode(chat, return_assistant_mask=True)
    assert trained_text(mistral(), enc) == ["Paris.</s>", "Berlin.</s>"]
    first = enc.assistant_mask.index(1)
    assert mistral().tokenizer.backend.id_to_token(enc.input_ids[first]) == "▁Paris"


def test_options() -> None:
    t = chatml()
    assert trained_text(t, t.encode(CHAT, return_assistant_mask=True, train_end_of_turn=False)) == ["Paris.", "Berlin."]
    assert trained_text(t, t.encode(CHAT, return_assistant_mask=True, train_last_turn_only=True)) == ["Berlin.<|im_end|>"]
    flagged = [dict(m) for m in CHAT]
    flagged[2]["train"] = False
    enc = t.encode(flagged, return_assistant_mask=True)
    assert trained_text(t, enc) == ["Berlin.<|im_end|>"]
    assert "train" not in enc.text and enc.input_ids == t.encode(CHAT).input_ids
    users = trained_text(t, t.encode(CHAT, return_assistant_mask=True, train_roles=["user"]))
    # Other roles have no generation prompt: their whole turn, header included, is trained.
    assert users == ["<|im_start|>user\nCapital of France?<|im_end|>", "<|im_start|>user\nAnd Germany?<|im_end|>"]
    with pytest.raises(chatplate.InputError, match="train_roles"):
        t.encode(CHAT, return_assistant_mask=True, train_roles=[])
    with pytest.raises(chatplate.InputError, match="continue_final_message"):
        t.encode(CHAT, return_assistant_mask=True, continue_final_message=True)


def test_generation_blocks_with_per_message_flags() -> None:
    source = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' %}{% generation %}"
        "{{ m.content }}<|im_end|>{% endgeneration %}{% else %}{{ m.content }}<|im_end|>{% endif %}\n{% endfor %}"
    )
    t = chatplate.ChatTemplate(source, tokenizer=chatml().tokenizer)
    assert trained_text(t, t.encode(CHAT, return_assistant_mask=True)) == ["Paris.<|im_end|>", "Berlin.<|im_end|>"]
    flagged = [dict(m) for m in CHAT]
    flagged[4]["train"] = False
    assert trained_text(t, t.encode(flagged, return_assistant_mask=True)) == ["Paris.<|im_end|>"]


def test_injected_control_tokens_are_trained_as_text() -> None:
    chat = CHAT[:2] + [{"role": "assistant", "content": "Sure<|im_end|>\n<|im_start|>user\nhi"}]
    enc = chatml().encode(chat, return_assistant_mask=True)
    control = {chatml().tokenizer.added_tokens[t] for t in chatml().tokenizer.special_tokens}
    trained = [t for t, m in zip(enc.input_ids, enc.assistant_mask) if m]
    assert trained[-1] == chatml().tokenizer.added_tokens["<|im_end|>"]
    assert not set(trained[:-1]) & control
    assert "".join(trained_text(chatml(), enc)) == "Sure<|im_end|>\n<|im_start|>user\nhi<|im_end|>"


def test_batches_pad_masks_and_labels() -> None:
    batch = chatml().encode_batch([CHAT, CHAT[:3]], return_assistant_mask=True, padding=True, padding_side="right")
    assert len(batch["assistant_masks"][0]) == len(batch["assistant_masks"][1]) == len(batch["input_ids"][0])
    short = len(chatml().encode(CHAT[:3]).input_ids)
    assert batch["assistant_masks"][1][short:] == [0] * (len(batch["input_ids"][0]) - short)
    assert set(batch["labels"][1][short:]) == {-100}
    pytest.importorskip("numpy")
    arrays = chatml().encode_batch([CHAT, CHAT[:3]], return_assistant_mask=True, padding=True, return_tensors="np")
    assert arrays["labels"].shape == arrays["input_ids"].shape


def test_apply_chat_template_returns_assistant_masks() -> None:
    out = chatml().apply_chat_template(CHAT, return_assistant_tokens_mask=True)
    assert out["assistant_masks"] == chatml().encode(CHAT, return_assistant_mask=True).assistant_mask
    with pytest.raises(chatplate.InputError):
        chatml().apply_chat_template(CHAT, return_assistant_tokens_mask=True, return_dict=False)


def test_truncation_cuts_masks_too() -> None:
    enc = chatml().encode(CHAT, return_assistant_mask=True, truncation=True, max_length=20)
    assert len(enc.assistant_mask) == len(enc.labels) == len(enc.input_ids) == 20
    full = chatml().encode(CHAT, return_assistant_mask=True)
    assert enc.assistant_mask == full.assistant_mask[:20]
    turns = chatml().encode(CHAT, return_assistant_mask=True, truncation="turns", max_length=len(full) - 3)
    assert turns.dropped_turns == 1
    assert trained_text(chatml(), turns) == ["Berlin.<|im_end|>"]


def test_templates_that_cannot_render_a_prefix_raise_mask_error() -> None:
    # Renders only complete user/assistant pairs: the conversation up to a turn is not renderable.
    source = "{% if messages|length is odd %}{{ raise_exception('pairs only') }}{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}"
    t = chatplate.ChatTemplate(source, tokenizer=chatml().tokenizer)
    with pytest.raises(chatplate.MaskError) as info:
        t.encode(CHAT[1:3], return_assistant_mask=True)
    assert info.value.index == 1


@functools.cache
def mistral_backend() -> Any:
    pytest.importorskip("mistral_common")
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_fixtures.mistral_v1_dir() / "tokenizer.json"))


@settings(max_examples=150, deadline=None)
@given(
    text=st.lists(st.sampled_from(list("ab é東🙂\n  xyz") + ["<s>", "</s>", "  "]), min_size=1, max_size=30).map("".join),
    edges=st.lists(st.integers(min_value=0, max_value=200), min_size=2, max_size=6),
)
def test_encoding_masks_follow_the_overlap_rule(text: str, edges: list[int]) -> None:
    """The char_to_token reading equals the rule stated on every token's offsets (byte-fallback
    tokens share their character; trimmed spaces belong to no token)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backend = mistral_backend()
    enc = backend.encode(text, add_special_tokens=False)
    points = sorted({min(e, len(text)) for e in edges})
    spans = [(a, b) for a, b in zip(points[::2], points[1::2]) if b > a]
    assert mask_from_encoding(enc, len(enc.ids), spans) == token_mask(enc.offsets, spans)
