"""The fast tokenizer path on real vocabularies it was not developed on (see tests/vocabularies.py).

For every vocabulary transformers converts from llama.cpp's ``ggml-vocab-*.gguf`` files, either
``fastokens`` is used and gives the ids and offsets ``tokenizers`` gives, on a few hundred texts
built to break them and on generated text, or it is not used and chatplate says why. The load-time
self-check in ``chatplate.tokens.fast`` encodes a dozen probes; this is what it did not probe.

Needs ``CHATPLATE_LLAMA_CPP_SDIST`` (the llama-cpp-python sdist); skipped without it, unless
``CHATPLATE_REQUIRE_VOCABS=1``.
"""

from __future__ import annotations

import os
import random
import unicodedata
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatplate import TokenizerBackendWarning
from chatplate.tokens import ChatTokenizer
from chatplate.tokens.fast import FastEncoder
from tests import vocabularies

pytest.importorskip("fastokens")

VOCABS = vocabularies.real_vocab_dirs()
NONE = "no-vocabularies"

ENGLISH = (
    "Hello, world! How are you today?",
    "I'm sure they'll say it's fine, but we'd rather you didn't. SHOUTING and MiXeD case",
    "The quick brown fox jumps over the lazy dog.",
    "Can you summarise this article in three bullet points?",
    "Sure! Here's a short answer:\n\n1. First point\n2. Second point\n- a dash item",
    "“Curly quotes”, ‘single ones’, an ellipsis… and an em—dash – en dash",
    "e-mail: someone@example.com, url: https://example.com/path?q=1&r=2#frag",
)
MULTILINGUAL = (
    "東京は日本の首都です。富士山が見えます。",
    "中文测试：你好，世界！我想在apple工作1314151天～",
    "한국어 문장입니다. 안녕하세요!",
    "Привет, как дела? Съешь же ещё этих мягких французских булок. Ёж",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "नमस्ते दुनिया, यह हिंदी में एक वाक्य है।",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία",
    "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "עברית מימין לשמאל",
    "Tiếng Việt có dấu: Việt Nam, người, được",
    "ქართული ენა, Հայերեն, Türkçe ğüşıöç, Polski źdźbło",
    "កាន់តែពិសេសអាច ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ",
)
EMOJI = (
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🧑🏿‍💻", "🏳️‍🌈", "🏴‍☠️", "❤️‍🔥", "🇫🇷", "🇯🇵🇺🇸🇩🇪", "🦙", "✅", "☺️", "1️⃣", "🫠",
)
WHITESPACE = (
    " ", "  ", "   ", "        ", "\t", "\t\t", " \t ", "\n", "\n\n", "\n\n\n\n", "\r\n", "\r\n\r\n", "\r",
    " \n", "\n ", "  \n\t  \n", "\u00a0", "\u3000", "\u2028", "\u200b", "\f", "\v",
)
CODE = (
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    'if __name__ == "__main__":\n\tmain()\n',
    '<div class="a">&nbsp;<br/></div>',
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    '{"key": [1, 2.5, null, true], "nested": {"a": "b"}}',
    "x=1;y=2\nz = x+y  \n\n    indented\n\t\ttabbed",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "    ```python\n    print('hi')\n    ```",
    "'''''' ```````` \"\"\"\" ...... !!!!!! ?????? ------======= ////\\\\\\\\",
)
# Text that NFC changes: decomposed accents and Hangul, and characters NFC maps elsewhere.
NOT_NFC = (
    unicodedata.normalize("NFD", "café résumé naïve Ångström ñandú"),
    unicodedata.normalize("NFD", "한국어 문장"),
    "e\u0301 a\u0308 o\u0302\u0323 combining",
    "\u212b angstrom sign, \u2126 ohm sign, \u0344 and \u0958",
    "ﬁ ㎏ ① compatibility characters",
)
# Every byte a UTF-8 text can hold, one text each: the ASCII controls and characters up to U+00BF
# (all continuation bytes, after 0xC2), then the first character of every lead byte. Real
# byte-level vocabularies lack tokens for bytes their training data never held.
EVERY_BYTE = tuple(chr(code) for code in range(0xC0)) + tuple(
    chr((lead & 0x1F) << 6 if lead < 0xE0 else max(0x800, (lead & 0x0F) << 12) if lead < 0xF0 else max(0x10000, (lead & 0x07) << 18))
    for lead in range(0xC2, 0xF5)
)


def require_vocabs() -> None:
    if not VOCABS:
        message = "no real vocabularies (set CHATPLATE_LLAMA_CPP_SDIST to the llama-cpp-python sdist, see tests/vocabularies.py)"
        if os.environ.get("CHATPLATE_REQUIRE_VOCABS") == "1":
            pytest.fail(message + " and CHATPLATE_REQUIRE_VOCABS=1", pytrace=False)
        pytest.skip(message)


def digits(rng: random.Random) -> str:
    run = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 24)))
    return rng.choice([run, f"{run}.{rng.randint(0, 999)}", f"{int(run):,}", f"{run[:4]}-07-26", f"v{run[:3]}.{run[3:5]}"])


def texts_for(tokenizer: ChatTokenizer, seed: int = 0, count: int = 300) -> list[str]:
    """Fixed fragments alone, llama.cpp's test texts, chats framed with the vocabulary's own
    special tokens, then ``count`` random mixes of fragments (whitespace and added tokens at
    their edges, where pre-tokenizers and added-token matching disagree most easily)."""
    rng = random.Random(seed)
    added = sorted(tokenizer.added_tokens)
    # Large vocabularies carry thousands of added tokens; the test sees a varied sample of them,
    # the special ones first.
    specials = sorted(tokenizer.special_tokens)[:20] + rng.sample(added, min(40, len(added)))
    fragments = [*ENGLISH, *MULTILINGUAL, *EMOJI, *WHITESPACE, *CODE, *NOT_NFC]
    texts = [*fragments, *EVERY_BYTE, *vocabularies.llama_cpp_test_texts()]
    texts += [f"x{token} {token}{token}\n{token[:-1]}" for token in specials]
    opening, closing = (specials[0], specials[-1]) if specials else ("<|im_start|>", "<|im_end|>")
    for _ in range(40):
        turns = []
        for role in rng.choices(["system", "user", "assistant", "tool"], k=rng.randint(1, 5)):
            content = " ".join(rng.choice(fragments) for _ in range(rng.randint(1, 4)))
            turns.append(f"{opening}{role}\n{content}{closing}\n")
        texts.append("".join(turns))
    pieces = [lambda: rng.choice(fragments), lambda: digits(rng), lambda: rng.choice(WHITESPACE)]
    if specials:
        pieces.append(lambda: rng.choice(specials))
    for _ in range(count):
        parts = [rng.choice(pieces)() for _ in range(rng.randint(1, 6))]
        texts.append(rng.choice(["", " ", "\n"]).join(parts))
    return texts


@dataclass
class Pair:
    """One vocabulary loaded twice: ``fast`` asked for fastokens, ``slow`` on tokenizers."""

    name: str
    fast: ChatTokenizer
    slow: ChatTokenizer
    engine: str
    reasons: list[str]  # what chatplate said when it did not use fastokens


@pytest.fixture(scope="module", params=sorted(VOCABS) or [NONE])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    # Module scope with one parameter per vocabulary: pytest runs every test of a vocabulary
    # before loading the next, so only one pair of (large) tokenizers is held at a time.
    require_vocabs()
    name: str = request.param
    directory: Path = VOCABS[name]
    fast, slow = ChatTokenizer.from_model_dir(directory), ChatTokenizer.from_model_dir(directory)
    fast.engine_choice, slow.engine_choice = "fastokens", "tokenizers"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = fast.engine
    reported = [str(w.message) for w in caught if issubclass(w.category, TokenizerBackendWarning)]
    yield Pair(name, fast, slow, engine, reported)


def fast_results(fast: FastEncoder, texts: list[str]) -> list[tuple[Any, ...] | str]:
    """``fast.encode(texts, True)``, or, when that raises, each text alone: its result or the error."""
    try:
        return list(fast.encode(texts, True))
    except Exception:  # noqa: BLE001 - fastokens raises plain ValueErrors; which text did is the finding
        results: list[tuple[Any, ...] | str] = []
        for text in texts:
            try:
                results.append(fast.encode([text], True)[0])
            except Exception as exc:  # noqa: BLE001
                results.append(f"{type(exc).__name__}: {exc}")
        return results


def mismatches(pair: Pair, texts: list[str]) -> list[str]:
    """Every text on which fastokens and tokenizers disagree, described in full."""
    assert pair.fast.fast is not None
    # Text the fast path does not accept (not NFC under an NFC normalizer) goes to tokenizers
    # when chatplate encodes: the fast path is not asked to get it right.
    texts = [text for text in texts if pair.fast.fast.accepts(text)]
    expected = pair.slow.backend.encode_batch(texts, add_special_tokens=False)
    found = []
    for text, result, reference in zip(texts, fast_results(pair.fast.fast, texts), expected):
        if isinstance(result, str):
            found.append(f"{pair.name}: fastokens raises {result!r} on {text!r}; tokenizers gives ids {reference.ids}")
            continue
        # The ids, starts and ends (newer versions add a mask after them).
        ids, starts, ends = result[0].tolist(), result[1].tolist(), result[2].tolist()
        if ids != reference.ids:
            at = next((i for i, (a, b) in enumerate(zip(ids, reference.ids)) if a != b), min(len(ids), len(reference.ids)))
            found.append(
                f"{pair.name}: ids differ on {text!r} from token {at}: fastokens {ids[at:at + 8]} "
                f"{[pair.slow.backend.id_to_token(i) for i in ids[at:at + 8]]}, tokenizers {reference.ids[at:at + 8]} "
                f"{[pair.slow.backend.id_to_token(i) for i in reference.ids[at:at + 8]]}"
            )
        elif list(zip(starts, ends)) != list(reference.offsets):
            wrong = [(i, (s, e), theirs) for i, (s, e, theirs) in enumerate(zip(starts, ends, reference.offsets)) if (s, e) != theirs]
            found.append(f"{pair.name}: offsets differ on {text!r}: (token, fastokens, tokenizers) {wrong[:5]}")
    return found


def test_fastokens_is_exact_or_says_why(pair: Pair) -> None:
    if pair.engine != "fastokens":
        # Every vocabulary is accounted for: either checked below, or refused with a reason.
        assert pair.reasons, f"{pair.name}: fastokens was asked for, not used, and no reason was given"
        assert all(message.split("not fastokens:", 1)[-1].strip() for message in pair.reasons), pair.reasons
        # Refused for what its pipeline is, before loading: a vocabulary that fastokens fails to
        # load, or that fails the load-time check, is a case the fast path should handle.
        assert not any("cannot load it" in m or "differ from tokenizers'" in m for m in pair.reasons), pair.reasons
        return
    assert not pair.reasons, pair.reasons
    found = mismatches(pair, texts_for(pair.fast))
    assert not found, f"{len(found)} mismatches:\n" + "\n".join(found[:10])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text())
def test_generated_text_encodes_the_same(pair: Pair, text: str) -> None:
    if pair.engine != "fastokens":
        pytest.skip(f"{pair.name} is not encoded by fastokens: {'; '.join(pair.reasons)}")
    found = mismatches(pair, [text])
    assert not found, found[0]


def test_every_vocabulary_is_converted_or_skipped_with_a_reason() -> None:
    require_vocabs()
    skipped = vocabularies.skipped_vocabs()
    assert all(reason.strip() for reason in skipped.values()), skipped
    assert not set(skipped) & set(VOCABS)


def test_chatplate_encodes_every_text_as_tokenizers_does(pair: Pair) -> None:
    """Through chatplate's encoder, the texts the fast path refuses (bytes without a token, text
    that is not NFC) go to tokenizers: every text gets the reference's ids and offsets, and
    nothing raises."""
    from chatplate.tokens.encoding import encode_texts

    texts = texts_for(pair.fast, seed=1, count=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TokenizerBackendWarning)  # no fall back after a failure either
        ours = encode_texts(pair.fast, texts, None, True)
    theirs = encode_texts(pair.slow, texts, None, True)
    assert [(ids, offsets) for _, ids, offsets, _, _ in ours] == [(ids, offsets) for _, ids, offsets, _, _ in theirs]
