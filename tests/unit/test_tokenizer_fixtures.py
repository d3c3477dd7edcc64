"""The offline tokenizer fixtures are real, complete model directories that transformers and
``tokenizers`` load identically, and they pin the transformers 5.23 loading behaviour that chatplate
(which reads tokenizer.json directly) has to match."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import tokenizer_fixtures as fixtures

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

NAMES = ["mistral_v1", "llama3_bpe", "chatml_bpe"]
BUILDERS = {"mistral_v1": fixtures.mistral_v1_dir, "llama3_bpe": fixtures.llama3_bpe_dir, "chatml_bpe": fixtures.chatml_bpe_dir}
SPECIALS = {
    "mistral_v1": ["<unk>", "<s>", "</s>"],
    "llama3_bpe": fixtures.LLAMA3_SPECIAL_TOKENS,
    "chatml_bpe": [text for text, _ in fixtures.CHATML_ADDED_TOKENS],
}
BOS = {"mistral_v1": "<s>", "llama3_bpe": "<|begin_of_text|>", "chatml_bpe": None}

TEXTS = [
    "",
    "Hello world",
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "  two leading spaces",
    "trailing spaces   ",
    "   ",
    "double  spaces  and\ttabs\t\there",
    "line one\nline two\n\n\nline five\r\nwindows\n",
    "\n starts with a newline",
    "numbers 0 7 42 1234567 3.14159 -2e10",
    "naïve café résumé Größe Straße",
    "e\u0301 n\u0303 a\u030a (decomposed) vs é ñ å (composed)",
    "Привет мир, Γειά σου κόσμε",
    "中文 日本語のテキスト 한국어",
    "مرحبا بالعالم नमस्ते",
    "🙂 👍🏽 🧑‍🚀 🇫🇷 ❤️ 🦙",
    "zero\u200bwidth non\u00a0breaking \u3000ideographic space",
    "\x00 control \x07 chars \x7f",
    "def f(x):\n    return x ** 2\n",
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    "don't won't I'm you're we've they'll she'd IT'S",
    "<s>[INST] Hi [/INST] Hello</s>[INST] again [/INST]",
    "</s>follows an eos",
    "<s> <s>  <s>\n</s>",
    "<unk> and <s>hello",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "text<|eot_id|>more text <|eot_id|> spaced",
    "<|reserved_special_token_3|><|end_of_text|>",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
    "a<tool_call>b</tool_call>c",
    "<|im_start <|eot_id <s <|im_end|",  # partial specials are plain text
    "<|endoftext|><|endoftext|>",
    "x" * 300,
    "a " * 200,
]


@functools.cache
def raw(name: str) -> Any:
    return tokenizers.Tokenizer.from_file(str(BUILDERS[name]() / "tokenizer.json"))


@functools.cache
def hf(name: str) -> Any:
    return transformers.AutoTokenizer.from_pretrained(BUILDERS[name]())


def config(name: str) -> dict[str, Any]:
    return json.loads((BUILDERS[name]() / "tokenizer_config.json").read_text(encoding="utf-8"))


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    if request.param == "mistral_v1":
        pytest.importorskip("mistral_common")
        pytest.importorskip("sentencepiece")
        pytest.importorskip("google.protobuf")
    return request.param


# --- the directories ---------------------------------------------------------------------------


def test_directory_is_complete(name: str) -> None:
    directory = BUILDERS[name]()
    assert sorted(path.name for path in directory.iterdir()) == ["chat_template.jinja", "tokenizer.json", "tokenizer_config.json"]
    cfg = config(name)
    assert cfg["bos_token"] == BOS[name]
    assert cfg["eos_token"] == {"mistral_v1": "</s>", "llama3_bpe": "<|eot_id|>", "chatml_bpe": "<|im_end|>"}[name]
    assert cfg.get("pad_token") == {"mistral_v1": None, "llama3_bpe": None, "chatml_bpe": "<|endoftext|>"}[name]
    # added_tokens_decoder mirrors tokenizer.json's added tokens, flags included
    added = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    assert {int(index): entry for index, entry in cfg["added_tokens_decoder"].items()} == {
        token["id"]: {key: token[key] for key in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
        for token in added
    }
    assert [entry["content"] for entry in cfg["added_tokens_decoder"].values()] == SPECIALS[name]


def test_dirs_are_cached_and_listed() -> None:
    dirs = fixtures.all_model_dirs()
    assert list(dirs) == NAMES
    assert fixtures.llama3_bpe_dir() is fixtures.llama3_bpe_dir() is dirs["llama3_bpe"]
    assert len({path.parent for path in dirs.values()}) == 1


@pytest.mark.parametrize("build", [fixtures.build_llama3_bpe, fixtures.build_chatml_bpe])
def test_trained_builds_are_deterministic(build: Any, tmp_path: Path) -> None:
    cached = {"build_llama3_bpe": fixtures.llama3_bpe_dir, "build_chatml_bpe": fixtures.chatml_bpe_dir}[build.__name__]()
    fresh = build(tmp_path / "again")
    for file in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (fresh / file).read_bytes() == (cached / file).read_bytes(), file


def test_trained_vocab_size() -> None:
    for directory in (fixtures.llama3_bpe_dir(), fixtures.chatml_bpe_dir()):
        model = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))["model"]
        assert len(model["vocab"]) == fixtures.BPE_VOCAB_SIZE


# --- transformers and tokenizers agree ------------------------------------------------------------


def test_loads_in_transformers_and_tokenizers(name: str) -> None:
    tokenizer = hf(name)
    assert tokenizer.is_fast
    assert type(tokenizer).__name__ == {"mistral_v1": "LlamaTokenizer"}.get(name, "TokenizersBackend")
    assert tokenizer.bos_token == BOS[name]
    assert raw(name).get_vocab_size(with_added_tokens=True) == len(tokenizer)


def test_transformers_keeps_the_tokenizer_json_pipeline(name: str) -> None:
    """AutoTokenizer's backend serialises exactly as the file: the same normalizer, pre-tokenizer,
    model, post-processor, decoder and added tokens (for the Llama class this holds only because
    the file was written by transformers 5 itself; see the legacy test below)."""
    assert json.loads(hf(name)._tokenizer.to_str()) == json.loads(raw(name).to_str())


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_same_ids(name: str, text: str) -> None:
    for add_special_tokens in (False, True):
        ours = raw(name).encode(text, add_special_tokens=add_special_tokens).ids
        assert ours == hf(name).encode(text, add_special_tokens=add_special_tokens), add_special_tokens


_pieces = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=" \t\n\r\u00a0\u3000", max_size=4),
    st.text(alphabet="aé中🙂\u0301 .'0", max_size=8),
    st.sampled_from(sorted({token for tokens in SPECIALS.values() for token in tokens}) + ["[INST]", " [/INST]", "<|", "|>"]),
)
generated_text = st.lists(_pieces, max_size=8).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=generated_text)
def test_same_ids_generated(name: str, text: str) -> None:
    assert raw(name).encode(text, add_special_tokens=False).ids == hf(name).encode(text, add_special_tokens=False)
    assert raw(name).encode(text).ids == hf(name).encode(text)


def test_special_tokens_are_single_ids(name: str) -> None:
    cfg = config(name)
    for index, entry in cfg["added_tokens_decoder"].items():
        token = entry["content"]
        assert raw(name).token_to_id(token) == int(index) == hf(name).convert_tokens_to_ids(token)
        assert raw(name).encode(token, add_special_tokens=False).ids == [int(index)]
        assert hf(name).encode(token, add_special_tokens=False) == [int(index)]
        inside = raw(name).encode(f"before{token}after", add_special_tokens=False).ids
        assert int(index) in inside and inside.count(int(index)) == 1
    flags = {token.content: token.special for token in raw(name).get_added_tokens_decoder().values()}
    assert flags == {entry["content"]: entry["special"] for entry in cfg["added_tokens_decoder"].values()}


def test_bos_comes_from_the_post_processor(name: str) -> None:
    plain = raw(name).encode("Hello world", add_special_tokens=False).ids
    with_specials = raw(name).encode("Hello world").ids
    bos = BOS[name]
    assert with_specials == ([raw(name).token_to_id(bos)] if bos else []) + plain
    assert hf(name).encode("Hello world") == with_specials


def test_chatml_has_a_non_special_added_token() -> None:
    tokenizer = raw("chatml_bpe")
    ids = tokenizer.encode("<tool_call>x</tool_call><|im_end|>", add_special_tokens=False).ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<tool_call>x</tool_call>"
    assert hf("chatml_bpe").decode(ids, skip_special_tokens=True) == "<tool_call>x</tool_call>"
    assert "<tool_call>" not in hf("chatml_bpe").all_special_tokens


# --- chat templates ----------------------------------------------------------------------------

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Weather in Paris?"},
]
RENDERED = {
    "mistral_v1": "<s>[INST] Be brief.\n\nHi there [/INST] Hello!</s>[INST] Weather in Paris? [/INST]",
    "llama3_bpe": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWeather in Paris?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "chatml_bpe": (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
}


def test_chat_template_file_is_loaded(name: str) -> None:
    template = (BUILDERS[name]() / "chat_template.jinja").read_text(encoding="utf-8")
    assert hf(name).chat_template == template


def test_apply_chat_template_renders(name: str) -> None:
    assert hf(name).apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True) == RENDERED[name]


def test_apply_chat_template_ids_are_the_rendered_text_without_added_specials(name: str) -> None:
    """transformers tokenizes the rendered chat with add_special_tokens=False (the template writes BOS)."""
    ids = hf(name).apply_chat_template(MESSAGES, tokenize=True, add_generation_prompt=True, return_dict=False)
    assert ids == raw(name).encode(RENDERED[name], add_special_tokens=False).ids
    if BOS[name] is not None:
        assert ids.count(raw(name).token_to_id(BOS[name])) == 1


def test_mistral_template_rejects_non_alternating_roles() -> None:
    pytest.importorskip("mistral_common")
    with pytest.raises(Exception, match="alternate"):
        hf("mistral_v1").apply_chat_template([{"role": "assistant", "content": "x"}], tokenize=False)


def test_chatml_template_with_tools() -> None:
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {}}},
    }
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "22C"},
    ]
    rendered = hf("chatml_bpe").apply_chat_template(messages, tools=[tool], tokenize=False, add_generation_prompt=True)
    assert rendered.startswith("<|im_start|>system\n# Tools\n\n")
    assert '\n{"type": "function", "function": {"name": "get_weather"' in rendered
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert f"<|im_start|>assistant\n{call}<|im_end|>\n" in rendered
    assert rendered.endswith("<|im_start|>user\n<tool_response>\n22C\n</tool_response><|im_end|>\n<|im_start|>assistant\n")
    ids = raw("chatml_bpe").encode(rendered, add_special_tokens=False).ids
    assert ids.count(raw("chatml_bpe").token_to_id("<tool_call>")) == 2  # one in the system prompt, one in the call
    assert ids == hf("chatml_bpe").apply_chat_template(messages, tools=[tool], add_generation_prompt=True, return_dict=False)


# --- the Mistral model is the real one -------------------------------------------------------------

# Texts without leading or repeated whitespace: there SentencePiece and the converted tokenizer agree.
SENTENCEPIECE_TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "naïve café 中文 🙂 🦙",
    "a\nb\n\nc",
    "x = 1234567",
]


@pytest.fixture(scope="module")
def sentencepiece_model() -> Any:
    pytest.importorskip("mistral_common")
    spm = pytest.importorskip("sentencepiece")
    return spm.SentencePieceProcessor(model_file=str(fixtures.mistral_v1_sentencepiece_model()))


def test_mistral_is_the_real_sentencepiece_model(sentencepiece_model: Any) -> None:
    assert sentencepiece_model.vocab_size() == raw("mistral_v1").get_vocab_size() == 32000
    hello = raw("mistral_v1").encode("Hello world", add_special_tokens=False).ids
    assert hello == sentencepiece_model.encode("Hello world") == [22557, 1526]
    for text in SENTENCEPIECE_TEXTS:
        assert raw("mistral_v1").encode(text, add_special_tokens=False).ids == sentencepiece_model.encode(text), text


@pytest.mark.parametrize("text", [" leading", "  two leading", "double  space", "   "])
def test_mistral_whitespace_follows_transformers_not_sentencepiece(sentencepiece_model: Any, text: str) -> None:
    """The converted tokenizer (Metaspace, prepend_scheme="first", split=False, one BPE over the whole
    text) is not SentencePiece on leading or repeated spaces. transformers is the reference."""
    ours = raw("mistral_v1").encode(text, add_special_tokens=False).ids
    assert ours == hf("mistral_v1").encode(text, add_special_tokens=False)
    assert ours != sentencepiece_model.encode(text)


# --- transformers 5.23 loading behaviour that reading tokenizer.json directly must match ---------------


def _copy_with(tmp_path: Path, source: Path, **config_updates: Any) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    cfg = json.loads((target / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg.update(config_updates)
    (target / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return target


@pytest.mark.parametrize("flags", [{"add_bos_token": False}, {"add_bos_token": True, "add_eos_token": True}])
@pytest.mark.parametrize("model", ["mistral_v1", "chatml_bpe"])
def test_config_add_bos_eos_are_ignored_when_tokenizer_json_exists(tmp_path: Path, model: str, flags: dict[str, bool]) -> None:
    """from_pretrained drops add_bos_token/add_eos_token from tokenizer_config.json when there is a
    tokenizer.json: the file's post-processor alone decides what add_special_tokens=True adds."""
    if model == "mistral_v1":
        pytest.importorskip("mistral_common")
    tokenizer = transformers.AutoTokenizer.from_pretrained(_copy_with(tmp_path, BUILDERS[model](), **flags))
    assert tokenizer.encode("Hello world") == raw(model).encode("Hello world").ids


def test_llama_class_rebuilds_a_legacy_tokenizer_json(tmp_path: Path) -> None:
    """For tokenizer_class LlamaTokenizer(Fast), transformers 5 keeps only vocab, merges, added tokens
    and post-processor from tokenizer.json and rebuilds the rest: a transformers-4 style file
    (Prepend+Replace normalizer, no pre-tokenizer, as on the Hub for Llama 2 / Mistral v0.1) loads as
    no normalizer + Metaspace, whose prepend_scheme comes from the config's ``legacy`` flag."""
    pytest.importorskip("mistral_common")
    normalizers = tokenizers.normalizers
    legacy_backend = tokenizers.Tokenizer.from_file(str(fixtures.mistral_v1_dir() / "tokenizer.json"))
    legacy_backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    legacy_backend.pre_tokenizer = None
    for legacy, scheme in ((True, "always"), (False, "first")):
        directory = _copy_with(tmp_path / str(legacy), fixtures.mistral_v1_dir(), legacy=legacy)
        legacy_backend.save(str(directory / "tokenizer.json"))
        loaded = json.loads(transformers.AutoTokenizer.from_pretrained(directory)._tokenizer.to_str())
        assert loaded["normalizer"] is None
        assert loaded["pre_tokenizer"] == {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": False}
        file_ids = legacy_backend.encode("  two leading", add_special_tokens=False).ids
        assert transformers.AutoTokenizer.from_pretrained(directory).encode("  two leading", add_special_tokens=False) != file_ids
