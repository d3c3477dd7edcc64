"""Training masks against transformers' ``return_assistant_tokens_mask`` on every public-corpus
template with ``{% generation %}`` blocks, on real tokenizers.

The expected mask is the reference's own reading of its spans (``char_to_token`` of each span's
first and last character, every token between trained), with its two defects fixed: a span
whose last character maps to token 0 masks the rest of the sequence (transformers issue 47325),
and a span whose first character maps to no token stops all later spans. Where neither defect
occurs, transformers' mask itself must match.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

import chatplate
from tests import tokenizer_fixtures
from tests.conftest import require_corpus
from tests.reference import reference_render

# The corpus and the generated cases pass every template the same extra keywords (as transformers'
# callers do); that most templates ignore some of them is expected here, and tested in
# test_unused_variables.
pytestmark = pytest.mark.filterwarnings("ignore::chatplate.UnusedVariableWarning")

transformers = pytest.importorskip("transformers")

NOW = dt.datetime(2024, 7, 26, 12, 0, 0)
TOKENIZERS = ["chatml_bpe", "llama3_bpe", "mistral_v1"]


def _tagged_templates() -> list[dict[str, Any]]:
    root = require_corpus()
    found = []
    for path in sorted((root / "public").glob("*.json")):
        if path.name.startswith("_"):
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["has_generation_tag"]:
            found.append(data)
    return found


@functools.cache
def tagged() -> dict[str, dict[str, Any]]:
    return {data["template_name"]: data for data in _tagged_templates()}


def _names() -> list[str]:
    try:
        return sorted(tagged())
    except BaseException:  # noqa: BLE001 - collection must not fail here; the test itself reports it
        return ["corpus-missing"]


@functools.cache
def model_dir(root: Path, tokenizer: str, name: str) -> Path:
    target = root / f"{tokenizer}--{name}"
    if not target.exists():
        shutil.copytree(tokenizer_fixtures.all_model_dirs()[tokenizer], target)
        (target / "chat_template.jinja").write_text(tagged()[name]["template"], encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("masks")


def cases(name: str) -> list[dict[str, Any]]:
    return [case for case in tagged()[name]["cases"] if "expected_generation_spans" in case]


def fixed_reference_mask(encoding: Any, length: int, spans: list[tuple[int, int]]) -> list[int]:
    mask = [0] * length
    for start, end in spans:
        first = next((encoding.char_to_token(c) for c in range(start, end) if encoding.char_to_token(c) is not None), None)
        last = next(
            (encoding.char_to_token(c) for c in range(end - 1, start - 1, -1) if encoding.char_to_token(c) is not None),
            None,
        )
        if first is None or last is None:
            continue
        for index in range(first, last + 1):
            mask[index] = 1
    return mask


def reference_has_defect(encoding: Any, spans: list[tuple[int, int]]) -> bool:
    for start, end in spans:
        if encoding.char_to_token(start) is None or encoding.char_to_token(end - 1) in (None, 0):
            return True
    return False


def call_kwargs(case: dict[str, Any]) -> dict[str, Any]:
    return dict(tools=case["tools"], documents=case["documents"], **case["extra_kwargs"])


# The corpus templates are paired with tokenizers they were not written for, so a template that
# writes no BOS over a tokenizer that adds one is expected here (the warning is tested in test_encode).
@pytest.mark.filterwarnings("ignore::chatplate.MissingBosWarning")
@pytest.mark.parametrize("tokenizer", TOKENIZERS)
@pytest.mark.parametrize("name", _names())
def test_masks_equal_the_reference_spans(name: str, tokenizer: str, root: Path) -> None:
    if tokenizer == "mistral_v1":
        pytest.importorskip("mistral_common")
    directory = model_dir(root, tokenizer, name)
    template = chatplate.load(str(directory))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.AutoTokenizer.from_pretrained(str(directory))
    compared = 0
    for case in cases(name):
        kwargs = call_kwargs(case)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = hf.apply_chat_template(
                    case["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                    sanitize_control_tokens=False, **kwargs,
                )
                text = hf.apply_chat_template(case["messages"], tokenize=False, **kwargs)
        except Exception:  # noqa: BLE001 - the template raised in the reference: chatplate must too
            with pytest.raises(chatplate.ChatplateError):
                template.encode(case["messages"], return_assistant_mask=True, sanitize_control_tokens=False, **kwargs)
            continue
        _, spans = reference_render(
            tagged()[name]["template"], case["messages"], with_spans=True, tools=case["tools"],
            documents=case["documents"], **{**hf.special_tokens_map, **case["extra_kwargs"]},
        )
        encoding = hf(text, add_special_tokens=False)
        ours = template.encode(case["messages"], return_assistant_mask=True, sanitize_control_tokens=False, **kwargs)
        assert ours.input_ids == theirs["input_ids"], case["id"]
        expected = fixed_reference_mask(encoding, len(theirs["input_ids"]), [tuple(s) for s in spans])
        assert ours.assistant_mask == expected, case["id"]
        assert ours.labels == [i if m else -100 for i, m in zip(ours.input_ids, expected)]
        if not reference_has_defect(encoding, [tuple(s) for s in spans]):
            assert ours.assistant_mask == theirs["assistant_masks"], case["id"]
        compared += 1
    assert compared or not cases(name)


def test_the_47325_defect_is_fixed(root: Path) -> None:
    """A span whose last character is in token 0: transformers trains the whole sequence."""
    directory = root / "defect"
    shutil.copytree(tokenizer_fixtures.chatml_bpe_dir(), directory)
    source = "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}"
    (directory / "chat_template.jinja").write_text(source, encoding="utf-8")
    messages = [{"role": "assistant", "content": "A"}, {"role": "user", "content": " then a user turn"}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.AutoTokenizer.from_pretrained(str(directory))
        theirs = hf.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ours = chatplate.load(str(directory)).encode(messages, return_assistant_mask=True)
    assert all(theirs["assistant_masks"])  # the defect: everything trained
    assert ours.assistant_mask == [1] + [0] * (len(ours.input_ids) - 1)
