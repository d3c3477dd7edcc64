"""The tokenizer chatplate builds from a model directory equals the one transformers'
``AutoTokenizer.from_pretrained`` builds: same class, same ids, same added tokens and flags.

Each case is a real model directory (the offline fixtures) changed the way Hub repos differ: a
transformers-4 style Llama file (Prepend+Replace normaliser, no pre-tokenizer), ``legacy`` and
``add_prefix_space`` settings, a ``config.json`` model type that overrides the declared class,
byte-level files declared as Llama, GPT-2/NeoX/Cohere/Gemma/Qwen classes over files whose
pipelines differ from the class's, added tokens missing from or re-flagged in the config.
"""

from __future__ import annotations

import functools
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatplate.tokens import ChatTokenizer
from tests import tokenizer_fixtures as fixtures

transformers = pytest.importorskip("transformers")

Edit = Callable[[dict[str, Any]], None]

V4_LLAMA_NORMALIZER = {
    "type": "Sequence",
    "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}],
}
DIGITS_BYTE_LEVEL = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    ],
}


def v4_llama(spec: dict[str, Any]) -> None:
    spec["normalizer"] = V4_LLAMA_NORMALIZER
    spec["pre_tokenizer"] = None
    spec["model"]["unk_token"] = "<unk>"


def gemma_file(spec: dict[str, Any]) -> None:
    spec["normalizer"] = {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
    spec["pre_tokenizer"] = None
    spec["model"]["unk_token"] = "<unk>"


def no_post_processor(spec: dict[str, Any]) -> None:
    spec["post_processor"] = None


def llama3_regex_no_nfc(spec: dict[str, Any]) -> None:
    spec["normalizer"] = None
    spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = fixtures.LLAMA3_SPLIT


def digits_pre_tokenizer(spec: dict[str, Any]) -> None:
    spec["pre_tokenizer"] = DIGITS_BYTE_LEVEL
    spec["normalizer"] = None


def drop_config_token(content: str) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["added_tokens_decoder"] = {k: v for k, v in config["added_tokens_decoder"].items() if v["content"] != content}

    return edit


def flag_config_token(content: str, **flags: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        for entry in config["added_tokens_decoder"].values():
            if entry["content"] == content:
                entry.update(flags)

    return edit


def drop_config_key(*keys: str) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        for key in keys:
            config.pop(key, None)

    return edit


# name: (base fixture, tokenizer.json edit, tokenizer_config updates or edit, config.json model_type)
CASES: dict[str, tuple[str, Edit | None, Any, str | None]] = {
    "llama-v5-file": ("mistral_v1", None, {}, None),
    "llama-v4-file": ("mistral_v1", v4_llama, {}, None),
    "llama-v4-legacy": ("mistral_v1", v4_llama, {"legacy": True}, None),
    "llama-v4-legacy-absent": ("mistral_v1", v4_llama, drop_config_key("legacy"), None),
    "llama-v4-fast-class": ("mistral_v1", v4_llama, {"tokenizer_class": "LlamaTokenizerFast"}, None),
    "llama-v4-config-llama": ("mistral_v1", v4_llama, {}, "llama"),
    "llama-v4-config-mistral": ("mistral_v1", v4_llama, {}, "mistral"),
    "llama-v4-config-phi3": ("mistral_v1", v4_llama, {}, "phi3"),
    "llama-v4-config-unknown-type": ("mistral_v1", v4_llama, {}, "yi"),
    "llama-no-prefix-space": ("mistral_v1", None, {"add_prefix_space": False}, None),
    "llama-no-post-processor": ("mistral_v1", no_post_processor, {}, None),
    "llama-v4-no-class-config-llama": ("mistral_v1", v4_llama, drop_config_key("tokenizer_class"), "llama"),
    "llama-v4-remote-code-overridden": (
        "mistral_v1", v4_llama, {"tokenizer_class": "InternLM2Tokenizer", "auto_map": {"AutoTokenizer": ["x.Tok", None]}},
        "internlm2",
    ),
    "code-llama-v4": ("mistral_v1", v4_llama, {"tokenizer_class": "CodeLlamaTokenizer"}, None),
    "code-llama-no-post-processor": ("mistral_v1", no_post_processor, {"tokenizer_class": "CodeLlamaTokenizer"}, None),
    "gemma-file": ("mistral_v1", gemma_file, {"tokenizer_class": "GemmaTokenizer", "legacy": None}, "gemma"),
    "gemma-over-v4-file": ("mistral_v1", v4_llama, {"tokenizer_class": "GemmaTokenizer"}, "gemma2"),
    "gemma-without-pad-mask-keys": ("mistral_v1", gemma_file, {"tokenizer_class": "GemmaTokenizer"}, None),
    "qwen2-chatml": ("chatml_bpe", None, {"tokenizer_class": "Qwen2Tokenizer"}, None),
    "qwen2-over-llama3-regex": ("chatml_bpe", llama3_regex_no_nfc, {"tokenizer_class": "Qwen2Tokenizer"}, None),
    "pttf-forced-qwen2": ("chatml_bpe", llama3_regex_no_nfc, {}, "qwen2"),
    "pttf-qwen3-keeps-file": ("chatml_bpe", llama3_regex_no_nfc, {}, "qwen3"),
    "qwen2-add-prefix-space": ("chatml_bpe", None, {"tokenizer_class": "Qwen2Tokenizer", "add_prefix_space": True}, None),
    "qwen2-no-unk-pad-keys": ("chatml_bpe", None, {"tokenizer_class": "Qwen2Tokenizer", "pad_token": None}, None),
    "qwen3_5": ("chatml_bpe", None, {"tokenizer_class": "Qwen2Tokenizer"}, "qwen3_5"),
    "qwen3_5-text-not-overridden": ("chatml_bpe", None, {"tokenizer_class": "Qwen2Tokenizer"}, "qwen3_5_text"),
    "llama-class-over-qwen2-type": ("chatml_bpe", None, {"tokenizer_class": "LlamaTokenizerFast"}, "qwen2"),
    "llama-class-byte-level-no-config": ("chatml_bpe", None, {"tokenizer_class": "LlamaTokenizerFast"}, None),
    "qwen2-type-no-class": ("chatml_bpe", None, drop_config_key("tokenizer_class"), "qwen2"),
    "qwen2-config-lacks-an-added-token": ("chatml_bpe", None, {"tokenizer_class": "Qwen2Tokenizer"}, None),
    "generic-config-lacks-an-added-token": ("chatml_bpe", None, {}, None),
    "generic-config-reflags-tool-call": ("chatml_bpe", None, {}, None),
    "qwen2-config-reflags-tool-call": ("chatml_bpe", None, {"tokenizer_class": "Qwen2Tokenizer"}, None),
    "qwen2-no-added-tokens-decoder": ("chatml_bpe", None, drop_config_key("added_tokens_decoder"), "qwen2"),
    "qwen2-config-lacks-im-start": ("chatml_bpe", None, {"tokenizer_class": "Qwen2Tokenizer"}, None),
    "gpt2-over-llama3-regex": ("llama3_bpe", None, {"tokenizer_class": "GPT2Tokenizer"}, None),
    "gpt2-starcoder2": ("llama3_bpe", None, {"tokenizer_class": "GPT2Tokenizer"}, "starcoder2"),
    "gpt2-granite-keeps-file": ("llama3_bpe", None, {"tokenizer_class": "GPT2Tokenizer"}, "granite"),
    "gpt2-over-digits": ("llama3_bpe", digits_pre_tokenizer, {"tokenizer_class": "GPT2Tokenizer"}, "llama"),
    "codegen-phi": ("llama3_bpe", None, {"tokenizer_class": "CodeGenTokenizer"}, "phi"),
    "gpt-neox": ("llama3_bpe", None, {"tokenizer_class": "GPTNeoXTokenizer"}, None),
    "cohere": ("chatml_bpe", None, {"tokenizer_class": "CohereTokenizer"}, None),
    "cohere-over-digits": ("llama3_bpe", digits_pre_tokenizer, {"tokenizer_class": "CohereTokenizer"}, "cohere"),
    "llama3-generic": ("llama3_bpe", None, {}, "llama"),
    "split-special-tokens": ("chatml_bpe", None, {"split_special_tokens": True}, None),
    "model-specific-token": ("chatml_bpe", None, {"image_token": "<|image_pad|>"}, None),
    "extra-special-tokens": ("llama3_bpe", None, {"additional_special_tokens": ["<|eot_id|>", "<|new_extra|>"]}, None),
}
CONFIG_EDITS = {
    "qwen2-config-lacks-an-added-token": drop_config_token("</tool_call>"),
    "generic-config-lacks-an-added-token": drop_config_token("</tool_call>"),
    "generic-config-reflags-tool-call": flag_config_token("<tool_call>", special=True, lstrip=True),
    "qwen2-config-reflags-tool-call": flag_config_token("<tool_call>", special=True, lstrip=True),
    "qwen2-config-lacks-im-start": drop_config_token("<|im_start|>"),
    "gemma-without-pad-mask-keys": drop_config_key("pad_token", "mask_token"),
}

BASES = {"mistral_v1": fixtures.mistral_v1_dir, "llama3_bpe": fixtures.llama3_bpe_dir, "chatml_bpe": fixtures.chatml_bpe_dir}

TEXTS = [
    "",
    "Hello world",
    " Hello world",
    "  two leading spaces",
    "trailing spaces   ",
    "double  spaces\tand\ttabs",
    "\nleading newline",
    "one\n\ntwo\r\nthree\n",
    "e\u0301 \u212b \ufb01 naïve café",
    "中文 日本語 한국어 🙂👍🏽",
    "digits 12345 3.14159 007",
    "def f(x):\n    return x ** 2\n",
    "don't I'm we've",
]


def texts_for(backend: Any) -> list[str]:
    specials = [token.content for token in backend.get_added_tokens_decoder().values()]
    combos = []
    for special in specials[:12]:
        combos += [special + "Hello", special + " Hello", special + "\nHello", "Hi" + special + "there",
                   special + special + "  x", " " + special, special + " "]
    return TEXTS + combos


def _build(tmp_root: Path, name: str) -> Path:
    base, edit, config_update, model_type = CASES[name]
    if base == "mistral_v1":
        pytest.importorskip("mistral_common")
        pytest.importorskip("sentencepiece")
    target = tmp_root / name
    shutil.copytree(BASES[base](), target)
    if edit is not None:
        spec = json.loads((target / "tokenizer.json").read_text(encoding="utf-8"))
        edit(spec)
        (target / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    config = json.loads((target / "tokenizer_config.json").read_text(encoding="utf-8"))
    if callable(config_update):
        config_update(config)
    else:
        config.update(config_update)
    if name in CONFIG_EDITS:
        CONFIG_EDITS[name](config)
    (target / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    if model_type is not None:
        (target / "config.json").write_text(json.dumps({"model_type": model_type}), encoding="utf-8")
    return target


@functools.cache
def pair(name: str, root: Path) -> tuple[Any, ChatTokenizer]:
    directory = _build(root, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.AutoTokenizer.from_pretrained(str(directory))
        ours = ChatTokenizer.from_model_dir(directory)
    return hf, ours


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("classes")


def _flags(decoder: dict[int, Any]) -> dict[int, tuple[Any, ...]]:
    return {
        index: (token.content, token.special, token.lstrip, token.rstrip, token.single_word, token.normalized)
        for index, token in decoder.items()
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_class_added_tokens_and_ids(name: str, root: Path) -> None:
    hf, ours = pair(name, root)
    assert ours.tokenizer_class == type(hf).__name__
    assert _flags(ours.backend.get_added_tokens_decoder()) == _flags(hf._tokenizer.get_added_tokens_decoder())
    assert ours.backend.encode_special_tokens == hf._tokenizer.encode_special_tokens
    for text in texts_for(hf._tokenizer):
        if "<FILL_ME>" in text and ours.tokenizer_class == "CodeLlamaTokenizer":
            continue  # CodeLlama's own infilling mode, which splits the text at <FILL_ME>: not reproduced
        for special in (False, True):
            expected = hf(text, add_special_tokens=special)["input_ids"]
            assert ours.backend.encode(text, add_special_tokens=special).ids == expected, (text, special)


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_named_special_tokens(name: str, root: Path) -> None:
    hf, ours = pair(name, root)
    assert (ours.bos_token, ours.eos_token, ours.pad_token) == (hf.bos_token, hf.eos_token, hf.pad_token)
    assert ours.adds_bos == (hf.bos_token_id is not None and hf("x")["input_ids"][:1] == [hf.bos_token_id])


def test_cases_cover_rebuilds_and_the_file_as_is(root: Path) -> None:
    """The matrix is not vacuous: both paths occur, and several rebuilds change the file's ids."""
    rebuilt = {name for name in CASES if pair(name, root)[1].rebuilt}
    assert {"llama-v4-file", "qwen2-chatml", "gpt-neox", "cohere", "gemma-file"} <= rebuilt
    assert {"llama-v4-config-mistral", "llama3-generic", "pttf-qwen3-keeps-file"}.isdisjoint(rebuilt)
    import tokenizers

    changed = 0
    for name in rebuilt:
        hf, _ = pair(name, root)
        raw = tokenizers.Tokenizer.from_file(str(root / name / "tokenizer.json"))
        changed += any(
            raw.encode(text, add_special_tokens=False).ids != hf(text, add_special_tokens=False)["input_ids"]
            for text in texts_for(hf._tokenizer)
        )
    assert changed >= 6


FUZZED = ["llama-v4-file", "llama-v4-legacy", "gpt2-over-digits", "qwen2-over-llama3-regex", "gpt-neox"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
       | st.lists(st.sampled_from([" ", "  ", "\n", "\t", "Hi", "é", "e\u0301", "12", "<s>", "</s>", "<|im_end|>",
                                   "<|eot_id|>", "<tool_call>", "x"]), max_size=10).map("".join))
@pytest.mark.parametrize("name", FUZZED)
def test_generated_text_same_ids(name: str, root: Path, text: str) -> None:
    hf, ours = pair(name, root)
    assert ours.backend.encode(text, add_special_tokens=False).ids == hf(text, add_special_tokens=False)["input_ids"]


# --- chatplate's copy of transformers' tables is the installed transformers' ----------------------


def test_model_type_tables_equal_transformers() -> None:
    from transformers.models.auto import tokenization_auto as auto

    from chatplate.tokens import classes

    assert classes._OVERRIDDEN_HUB_CLASS == frozenset(auto.MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS)
    generic = {"TokenizersBackend", "PreTrainedTokenizerFast", "PythonBackend"}
    theirs = {
        model_type: "TokenizersBackend" if name in generic else name.removesuffix("Fast")
        for model_type, name in auto.TOKENIZER_MAPPING_NAMES.items()
        if name is not None
    }
    assert {k: v.removesuffix("Fast") for k, v in classes._CLASS_OF_MODEL_TYPE.items()} == theirs


def test_every_other_rebuilding_class_is_known() -> None:
    """A class transformers maps to that has its own pipeline is either reproduced or known not to be."""
    from transformers.models.auto import tokenization_auto as auto

    from chatplate.tokens import classes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = {name.removesuffix("Fast") for name in auto.TOKENIZER_MAPPING_NAMES.values() if name}
        own_init = {
            name for name in names
            if (cls := auto.tokenizer_class_from_name(name)) is not None and "__init__" in cls.__dict__
            and name not in ("TokenizersBackend", "MistralCommonBackend")
        }
    assert own_init <= set(classes._PIPELINES) | classes._UNREPRODUCED_CLASSES
    assert set(classes._PIPELINES) <= own_init | {"CodeGenTokenizer"}


def test_a_rebuild_that_copies_the_vocab_as_text_equals_one_that_parses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuilt tokenizer copies the file's vocab and merges as text where the file is laid out
    as tokenizers writes it; the result must be the tokenizer the parse of the whole file gives,
    on every fixture and real vocabulary."""
    from chatplate.tokens import serialized
    from tests import vocabularies

    directories = [*fixtures.all_model_dirs().values(), *vocabularies.real_vocab_dirs().values()]
    split = serialized.split_at_vocab
    copied = []

    def recording(text: str) -> Any:
        found = split(text)
        copied.append(found is not None)
        return found

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monkeypatch.setattr(serialized, "split_at_vocab", recording)
        as_text = [ChatTokenizer.from_model_dir(d).backend.to_str() for d in directories]
        monkeypatch.setattr(serialized, "split_at_vocab", lambda text: None)
        parsed = [ChatTokenizer.from_model_dir(d).backend.to_str() for d in directories]
    assert any(copied)
    for directory, ours, theirs in zip(directories, as_text, parsed):
        assert ours == theirs, directory
