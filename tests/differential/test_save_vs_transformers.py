"""Directories written by chatplate load in transformers with the same templates, tokens and
prompts, and directories written by transformers load in chatplate the same way. Offline: the
tokenizer is a tiny WordLevel model built here."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import chatplate  # noqa: E402
from chatplate.sources import save_templates  # noqa: E402
from chatplate.template import ChatTemplate  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT = (
    "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
TOOL_USE = (
    "{{ bos_token }}<tools>{{ tools | tojson }}</tools>\n{% for m in messages %}"
    "[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
)
CRLF = (
    "{%- for m in messages %}\r\n{{- '<' + m.role + '>' }}\r\n{{ m.content }}\r\n{%- endfor %}\r\n"
    "{%- if add_generation_prompt %}\r\n<assistant>\r\n{%- endif %}\r\n"
)
TOKENS_SHOWN = (
    "{{ bos_token }}|{{ eos_token }}|{{ unk_token }}|{{ image_token }}|{{ audio_token }}|{{ messages[0].content }}"
)

MSGS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "yo"},
    {"role": "user", "content": "again"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "bos_token": {
        "__type": "AddedToken",
        "content": "<s>",
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": True,
    },
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": None,
    "image_token": "<img>",
    "extra_special_tokens": {"audio_token": "<aud>"},
    "model_max_length": 128,
    "chat_template": "STALE {{ messages }}",
}


def make_tokenizer_dir(directory: Path, config: dict[str, Any] | None = None) -> Path:
    vocab = {token: i for i, token in enumerate(["<unk>", "<s>", "</s>", "<pad>", "<img>", "<aud>", "hi", "yo"])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(config or CONFIG, indent=2), encoding="utf-8")
    return directory


def auto_tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def lf(text: str) -> str:
    # transformers opens .jinja files with universal newlines, so CRLF arrives as LF.
    return text.replace("\r\n", "\n")


def reference(tok: Any, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    out = tok.apply_chat_template(messages, tokenize=False, **kwargs)
    assert isinstance(out, str)
    return out


CASES = {
    "single": DEFAULT,
    "named-with-tool-use": {"default": DEFAULT, "tool_use": TOOL_USE},
    "crlf": CRLF,
    "named-crlf": {"default": CRLF, "tool_use": TOOL_USE.replace("\n", "\r\n"), "rag": "RAG {{ documents }}"},
    "tokens": TOKENS_SHOWN,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_saved_by_chatplate_loaded_by_transformers(tmp_path, case):
    directory = make_tokenizer_dir(tmp_path / "model")
    template = ChatTemplate(CASES[case])
    save_templates(template, directory)

    config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert "chat_template" not in config and config["image_token"] == "<img>"

    tok = auto_tokenizer(directory)
    ours = chatplate.load(directory)
    expected = CASES[case]
    if isinstance(expected, str):
        assert tok.chat_template == lf(expected)
        assert ours.templates == {"default": expected}
    else:
        assert tok.chat_template == {name: lf(text) for name, text in expected.items()}
        assert ours.templates == expected

    assert (ours.bos_token, ours.eos_token) == (tok.bos_token, tok.eos_token)
    assert {"bos_token": ours.bos_token, "eos_token": ours.eos_token, **ours.special_tokens} == tok.special_tokens_map

    for kwargs in (
        {},
        {"add_generation_prompt": True},
        {"tools": TOOLS},
        {"tools": TOOLS, "add_generation_prompt": True},
    ):
        assert ours.render(MSGS, **kwargs) == reference(tok, MSGS, **kwargs), kwargs


def test_tool_use_is_picked_only_with_tools(tmp_path):
    directory = make_tokenizer_dir(tmp_path / "model")
    save_templates(ChatTemplate({"default": DEFAULT, "tool_use": TOOL_USE}), directory)
    tok = auto_tokenizer(directory)
    ours = chatplate.load(directory)
    with_tools = ours.render(MSGS, tools=TOOLS)
    assert with_tools.startswith("<s><tools>[{")
    assert with_tools == reference(tok, MSGS, tools=TOOLS)
    assert ours.render(MSGS).startswith("<s><|system|>")


@pytest.mark.parametrize(
    "chat_template",
    [DEFAULT, {"default": DEFAULT, "tool_use": TOOL_USE}, {"tool_use": TOOL_USE, "rag": "R{{ documents }}"}],
    ids=["string", "named", "named-no-default"],
)
def test_saved_by_transformers_loaded_by_chatplate(tmp_path, chat_template):
    source = make_tokenizer_dir(tmp_path / "source")
    tok = auto_tokenizer(source)
    tok.chat_template = chat_template
    target = tmp_path / "saved"
    tok.save_pretrained(str(target))
    reloaded = auto_tokenizer(target)

    ours = chatplate.load(target)
    expected = chat_template if isinstance(chat_template, dict) else {"default": chat_template}
    assert ours.templates == expected
    assert (ours.bos_token, ours.eos_token) == (reloaded.bos_token, reloaded.eos_token)
    assert {
        "bos_token": ours.bos_token,
        "eos_token": ours.eos_token,
        **ours.special_tokens,
    } == reloaded.special_tokens_map
    assert ours.render(MSGS, tools=TOOLS) == reference(reloaded, MSGS, tools=TOOLS)
    if "default" in expected:
        assert ours.render(MSGS, add_generation_prompt=True) == reference(reloaded, MSGS, add_generation_prompt=True)


@pytest.mark.parametrize(
    "chat_template",
    [DEFAULT, [{"name": "default", "template": DEFAULT}, {"name": "tool_use", "template": TOOL_USE}]],
    ids=["string", "list"],
)
def test_legacy_config_key_read_alike(tmp_path, chat_template):
    directory = make_tokenizer_dir(tmp_path / "model", {**CONFIG, "chat_template": chat_template})
    tok = auto_tokenizer(directory)
    ours = chatplate.load(directory)
    assert ours.templates == (
        tok.chat_template if isinstance(tok.chat_template, dict) else {"default": tok.chat_template}
    )
    for kwargs in ({}, {"tools": TOOLS}):
        assert ours.render(MSGS, **kwargs) == reference(tok, MSGS, **kwargs)


def test_additional_templates_without_main_file_drop_the_config_key(tmp_path):
    directory = make_tokenizer_dir(tmp_path / "model", {**CONFIG, "chat_template": DEFAULT})
    (directory / "additional_chat_templates").mkdir()
    (directory / "additional_chat_templates" / "tool_use.jinja").write_text(TOOL_USE, encoding="utf-8")
    tok = auto_tokenizer(directory)
    ours = chatplate.load(directory)
    assert tok.chat_template == {"tool_use": TOOL_USE}
    assert ours.templates == {"tool_use": TOOL_USE}


@pytest.mark.parametrize("with_decoder", [False, True], ids=["map-applies", "map-ignored"])
def test_special_tokens_map_json_alike(tmp_path, with_decoder):
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>", "chat_template": TOKENS_SHOWN}
    if with_decoder:
        config["added_tokens_decoder"] = {
            "2": {
                "content": "</s>",
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
        }
    directory = make_tokenizer_dir(tmp_path / "model", config)
    (directory / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": {
                    "content": "<s>",
                    "lstrip": False,
                    "normalized": False,
                    "rstrip": False,
                    "single_word": False,
                },
                "eos_token": "<pad>",
                "image_token": "<img>",
            }
        ),
        encoding="utf-8",
    )
    tok = auto_tokenizer(directory)
    ours = chatplate.load(directory)
    assert {
        k: v
        for k, v in {"bos_token": ours.bos_token, "eos_token": ours.eos_token, **ours.special_tokens}.items()
        if v is not None
    } == tok.special_tokens_map
    assert ours.render(MSGS) == reference(tok, MSGS)


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": _text})


@pytest.fixture(scope="module")
def saved_named_dir(tmp_path_factory) -> Path:
    directory = make_tokenizer_dir(tmp_path_factory.mktemp("hyp") / "model")
    save_templates(ChatTemplate({"default": CRLF, "tool_use": TOOL_USE}), directory)
    return directory


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(_message, min_size=1, max_size=5), add_generation_prompt=st.booleans(), tools=st.booleans())
def test_generated_conversations_render_alike(saved_named_dir, messages, add_generation_prompt, tools):
    tok = _cached_tokenizer(saved_named_dir)
    ours = chatplate.load(saved_named_dir)
    kwargs: dict[str, Any] = {"add_generation_prompt": add_generation_prompt}
    if tools:
        kwargs["tools"] = TOOLS
    assert ours.render(messages, **kwargs) == reference(tok, messages, **kwargs)


_TOKENIZERS: dict[Path, Any] = {}


def _cached_tokenizer(directory: Path) -> Any:
    if directory not in _TOKENIZERS:
        _TOKENIZERS[directory] = auto_tokenizer(directory)
    return _TOKENIZERS[directory]


def test_save_round_trip_into_existing_transformers_dir(tmp_path):
    # A directory transformers wrote, with its own template files, re-saved by chatplate: the
    # stale named template disappears for both readers.
    source = make_tokenizer_dir(tmp_path / "source")
    tok = auto_tokenizer(source)
    tok.chat_template = {"default": DEFAULT, "tool_use": TOOL_USE, "rag": "R"}
    target = tmp_path / "saved"
    tok.save_pretrained(str(target))
    save_templates(ChatTemplate({"default": TOOL_USE, "rag": "R2"}), target)
    reloaded = auto_tokenizer(target)
    assert reloaded.chat_template == {"default": TOOL_USE, "rag": "R2"}
    assert chatplate.load(target).templates == {"default": TOOL_USE, "rag": "R2"}
    shutil.rmtree(target)
