"""``decode`` against transformers' ``tokenizer.decode`` on the fixture tokenizers, and its input errors."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

import chatplate
from chatplate.errors import InputError
from chatplate.tokens.tokenizer import ChatTokenizer
from tests import tokenizer_fixtures

MODELS = ["mistral_v1", "llama3_bpe", "chatml_bpe"]

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi <s> there , isn 't it ?"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Ünïcødé 東京 🙂  two  spaces\n\nand lines"},
        {"role": "assistant", "content": "ok <|im_end|> </s> <tool_call>"},
        {"role": "user", "content": "again ?"},
    ],
]


def _hf_tokenizer(directory: Path) -> Any:
    transformers = pytest.importorskip("transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoTokenizer.from_pretrained(str(directory))


@pytest.fixture(scope="module", params=MODELS)
def model(request: pytest.FixtureRequest) -> tuple[Any, chatplate.ChatTemplate]:
    directory = tokenizer_fixtures.all_model_dirs()[request.param]
    return _hf_tokenizer(directory), chatplate.load(str(directory))


def _prompt_ids(template: chatplate.ChatTemplate) -> list[list[int]]:
    rows = []
    for messages in CONVERSATIONS:
        for gen in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rows.append(template.encode(messages, add_generation_prompt=gen).input_ids)
    return rows


@pytest.mark.parametrize("skip", [False, True])
def test_decode_matches_transformers(model: tuple, skip: bool) -> None:
    hf, template = model
    rows = _prompt_ids(template)
    for ids in rows:
        expected = hf.decode(ids, skip_special_tokens=skip)
        assert template.decode(ids, skip_special_tokens=skip) == expected
        assert template.tokenizer.decode(ids, skip_special_tokens=skip) == expected
        assert template.decode(tuple(ids), skip_special_tokens=skip) == expected
        # Prefixes cut tokens mid-character and mid-word.
        for end in (1, 2, 5, len(ids) // 2):
            assert template.decode(ids[:end], skip_special_tokens=skip) == hf.decode(ids[:end], skip_special_tokens=skip)
    if not skip:
        # A rendered prompt keeps its special tokens; the fixtures' templates all write some.
        assert any(template.decode(ids) != template.decode(ids, skip_special_tokens=True) for ids in rows)


def test_decode_default_keeps_special_tokens(model: tuple) -> None:
    hf, template = model
    ids = _prompt_ids(template)[0]
    assert template.decode(ids) == hf.decode(ids)


def test_decode_empty_and_unknown_ids(model: tuple) -> None:
    hf, template = model
    assert template.decode([]) == hf.decode([]) == ""
    beyond = template.tokenizer.backend.get_vocab_size() + 100
    assert template.decode([beyond, 5]) == hf.decode([beyond, 5])


def test_decode_numpy_and_torch(model: tuple) -> None:
    hf, template = model
    ids = _prompt_ids(template)[1]
    expected = hf.decode(ids)
    np = pytest.importorskip("numpy")
    assert template.decode(np.array(ids, dtype=np.int64)) == expected
    assert template.decode(np.array(ids, dtype=np.int32), skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
    assert template.decode(list(np.array(ids))) == expected  # numpy integer scalars
    torch = pytest.importorskip("torch")
    assert template.decode(torch.tensor(ids)) == expected


def _with_config(source: Path, target: Path, **changes: Any) -> Path:
    shutil.copytree(source, target)
    config_path = target / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update(changes)
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return target


PUNCTUATED = "Hello , world ! isn 't it ? I 'm sure . We 've said it ' so '"


@pytest.mark.parametrize("force", [False, True])
def test_clean_up_spaces_on_bpe_follows_transformers(tmp_path: Path, force: bool) -> None:
    # transformers 5 ignores clean_up_tokenization_spaces for BPE unless the config forces it.
    directory = _with_config(
        tokenizer_fixtures.llama3_bpe_dir(), tmp_path / "llama3",
        clean_up_tokenization_spaces=True,
        clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output=force,
    )
    hf = _hf_tokenizer(directory)
    ours = ChatTokenizer.from_model_dir(directory)
    ids = ours.backend.encode(PUNCTUATED, add_special_tokens=False).ids
    assert ours.decode(ids) == hf.decode(ids)
    assert (ours.decode(ids) == PUNCTUATED) is not force


def test_clean_up_spaces_on_wordpiece_follows_transformers(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    words = sorted(set(PUNCTUATED.lower().replace("'", " ' ").split()) | {"'", "[UNK]"})
    tokenizer = Tokenizer(models.WordPiece({word: index for index, word in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(cleanup=False)  # so only transformers' clean-up can remove spaces
    directory = tmp_path / "wordpiece"
    directory.mkdir()
    tokenizer.save(str(directory / "tokenizer.json"))
    for clean in (True, False):
        config = {"clean_up_tokenization_spaces": clean, "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]"}
        (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
        hf = _hf_tokenizer(directory)
        ours = ChatTokenizer.from_model_dir(directory)
        ids = ours.backend.encode(PUNCTUATED, add_special_tokens=False).ids
        assert ours.decode(ids) == hf.decode(ids)
        assert (" ," in ours.decode(ids)) is not clean


@pytest.fixture(scope="module")
def chatml() -> chatplate.ChatTemplate:
    return chatplate.load(str(tokenizer_fixtures.chatml_bpe_dir()))


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        ([[1, 2], [3]], "decode a batch row by row"),
        ("hello", "got str"),
        (b"\x01\x02", "got bytes"),
        (7, "pass [id]"),
        ({"input_ids": [1, 2]}, "got dict"),
        ([1, "2"], "item 1 is str"),
        ([1, 2.0], "item 1 is float"),
        ([True, 2], "item 0 is bool"),
        ([None], "item 0 is NoneType"),
        ([5, -1], "-1 at position 1"),
        ([2**32], "is not a token id"),
    ],
)
def test_decode_rejects_what_is_not_one_sequence_of_ids(chatml: chatplate.ChatTemplate, ids: Any, words: str) -> None:
    with pytest.raises(InputError, match="decode") as info:
        chatml.decode(ids)
    assert words in str(info.value)


def test_decode_rejects_arrays_that_are_not_one_sequence(chatml: chatplate.ChatTemplate) -> None:
    np = pytest.importorskip("numpy")
    with pytest.raises(InputError, match="row by row"):
        chatml.decode(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(InputError, match="pass \\[id\\]"):
        chatml.decode(np.int64(3))
    with pytest.raises(InputError, match="item 0 is float"):
        chatml.decode(np.array([1.5, 2.0]))


def test_decode_rejects_a_non_bool_flag(chatml: chatplate.ChatTemplate) -> None:
    with pytest.raises(InputError, match="skip_special_tokens"):
        chatml.decode([1, 2], skip_special_tokens="yes")  # type: ignore[arg-type]


def test_decode_without_a_tokenizer_says_so() -> None:
    with pytest.raises(InputError, match="has no tokenizer"):
        chatplate.ChatTemplate("{{ messages[0].content }}").decode([1, 2])
