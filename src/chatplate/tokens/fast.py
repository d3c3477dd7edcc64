"""An exact fast path for BPE tokenizers, through ``fastokens``.

``fastokens`` gives the same ids as ``tokenizers`` on byte-level BPE vocabularies (Llama 3,
Qwen2, DeepSeek, GPT-2) tens of times faster, and on SentencePiece-style BPE (Mistral, Llama 2
conversions) several times faster once the ``Metaspace`` step is done before it; but it gives no
offsets. Offsets are rebuilt here: each token's length in bytes comes from a table (the
byte-level alphabet spells every byte as one character; a byte-fallback token is one byte), a
cumulative sum gives byte positions, and a byte-to-character map turns them into the character
offsets ``tokenizers`` reports (a token inside a multi-byte character gets that character, as
there).

Exactness is checked, not assumed: :func:`fast_encoder` builds the fast path only for pipelines
it reproduces (see :func:`_unsupported`), then encodes a probe set with both engines and
compares ids and offsets; any difference (or an error) keeps ``tokenizers``, with a
:class:`~chatplate.TokenizerBackendWarning` when ``fastokens`` was asked for.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import InputError, MissingDependencyError, TokenizerBackendWarning
from . import serialized
from .spans import Spans, mask_from_offsets

if TYPE_CHECKING:
    import numpy as np
    import tokenizers

__all__ = ["BACKENDS", "FastEncoder", "fast_encoder"]

BACKENDS = ("auto", "fastokens", "tokenizers")
META = "\u2581"  # SentencePiece's visible space
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")

# Text that stresses what the fast path rebuilds: whitespace runs, digits, unicode of every width
# (combining marks, emoji joined by ZWJ, CJK), control tokens next to text, odd line ends.
_PROBES = (
    "Hello, world! How are you today?",
    "  leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nand\rreturns\n\n\n",
    "numbers 1 12 123 1234 3.14159 1,000,000",
    "Ünïcødé café naïve – “quotes” … ✓ 中文 日本語 한국어 Ελληνικά русский عربي",
    "emoji 😀👍🏽👨‍👩‍👧 🇫🇷 and combining e\u0301 a\u0308",
    "composed é ä ñ Å ﬁ ㎏ ①",
    "code: def f(x):\n    return x ** 2  # comment\n",
    "   \u3000\u00a0 odd spaces\u2028line separator",
    "'s 't 're 've 'm 'll 'd SHOUT Mixed",
    "a" * 300 + " " + "ab" * 150,
    # Every control character, and a character for each byte that can start a UTF-8 sequence: a
    # vocabulary without a token for some byte is encoded by tokenizers (which drops the byte)
    # but refused by fastokens.
    "".join(map(chr, range(1, 32))) + "\x7f",
    *(
        bytes([lead, 0xA0 if lead == 0xE0 else 0x90 if lead == 0xF0 else 0x80, 0x80, 0x80][: 2 + (lead >= 0xE0) + (lead >= 0xF0)])
        .decode("utf-8") for lead in range(0xC2, 0xF5)
    ),
)


class FastEncoder:
    """``fastokens`` for ids, a byte-length table for offsets.

    Byte-level vocabularies are encoded as they are. SentencePiece-style ones (a ``Metaspace``
    pre-tokenizer that prepends ``▁`` to the start of the input only, ``prepend_scheme="first"``,
    as transformers' Llama conversion writes it) are encoded with that step done here: spaces
    become ``▁`` and the text gets a leading ``▁`` unless it starts with one, a space or an added
    token; ``fastokens`` then runs the rest of the pipeline, and offsets are moved back by that
    leading character.
    """

    def __init__(
        self, fast: Any, lengths: np.ndarray, normalizes: bool, metaspace: tuple[str, ...] | None = None,
        missing_bytes: bytes = b"",
    ) -> None:
        self.fast = fast
        self.lengths = lengths
        # Tokens of no bytes (an empty added token) are never trained; most vocabularies have none.
        self.empty_tokens = bool((lengths == 0).any())
        # With an NFC normalizer, a text that is not already NFC would shift the offsets: such
        # texts go to tokenizers.
        self.normalizes = normalizes
        # For Metaspace pipelines: the added tokens (a text starting with one gets no leading ▁).
        self.metaspace = metaspace
        # Bytes the vocabulary has no token for (Falcon's control characters): tokenizers drops
        # them, fastokens refuses the text, so texts holding one go to tokenizers. Kept as the
        # other byte values, which a translate strips to see whether anything is left.
        self._present_bytes = bytes(sorted(set(range(256)) - set(missing_bytes))) if missing_bytes else None
        self._ints: np.ndarray | None = None

    def to_list(self, ids: np.ndarray) -> list[int]:
        """``ids`` as a list of Python ints, taken from one table of the vocabulary's ints (built
        on first use): the lists share those objects instead of each making its own, which
        spares an allocation (and a free) per token, a third of the cost of ``ids.tolist()``
        (measured on 5 M tokens)."""
        import numpy as np

        if self._ints is None:
            self._ints = np.arange(len(self.lengths)).astype(object)
        return self._ints[ids].tolist()  # type: ignore[no-any-return]

    def accepts(self, text: str) -> bool:
        """Whether the fast path encodes ``text`` exactly (otherwise it goes to tokenizers)."""
        if self.normalizes and not unicodedata.is_normalized("NFC", text):
            return False
        return self._present_bytes is None or not text.encode("utf-8").translate(None, self._present_bytes)

    def _prepared(self, text: str) -> tuple[str, int]:
        """The text ``fastokens`` encodes, and how many characters were put in front of it."""
        if self.metaspace is None:
            return text, 0
        spaced = text.replace(" ", META)
        if not text or text[0] in (" ", META) or text.startswith(self.metaspace):
            return spaced, 0
        return META + spaced, 1

    def encode(
        self, texts: Sequence[str], with_offsets: bool, spans: Sequence[Spans | None] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]]:
        """``(ids, starts, ends, mask)`` per text, as arrays (the ids are views of one buffer):
        ``starts``/``ends`` are character offsets (``None`` without ``with_offsets``), ``mask``
        the tokens overlapping the text's character ``spans`` (``None`` without them)."""
        import numpy as np

        prepared = [self._prepared(text) for text in texts]
        flat, bounds = self.fast.encode_batch_flat([text for text, _ in prepared], add_special_tokens=False)
        ids = np.frombuffer(flat, np.uint32)
        firsts = np.frombuffer(bounds, np.uint64).astype(np.int64)
        cuts = firsts.tolist()
        if not with_offsets and spans is None:
            return [(ids[low:high], None, None, None) for low, high in zip(cuts, cuts[1:])]
        # Every token's byte offsets, running on from text to text (one table lookup and one sum
        # for the batch), and where each text's bytes start: the sum before its first token (an
        # empty text: where the next one starts).
        lengths = self.lengths[ids]
        all_ends = np.cumsum(lengths)
        all_starts = all_ends - lengths
        firsts = firsts[:-1]
        bases = np.where(firsts > 0, all_ends[firsts - 1], 0).tolist() if len(ids) else [0] * len(prepared)
        masks = (
            self._masks(all_starts, all_ends, cuts, bases, prepared, spans) if spans is not None
            else [None] * len(prepared)
        )
        out: list[tuple[Any, Any, Any, Any]] = []
        for index, (text, added) in enumerate(prepared):
            low, high = cuts[index], cuts[index + 1]
            row = ids[low:high]
            if not with_offsets:
                out.append((row, None, None, masks[index]))
                continue
            starts, ends = all_starts[low:high] - bases[index], all_ends[low:high] - bases[index]
            if not text.isascii():
                data = np.frombuffer(text.encode("utf-8"), np.uint8)
                # The character each byte belongs to: count the bytes that start a character.
                char_of = np.cumsum((data & 0xC0) != 0x80) - 1
                char_of = np.append(char_of, len(text))  # the end of the text
                empty = ends == starts
                starts = char_of[starts]
                ends = np.where(empty, starts, char_of[np.maximum(ends - 1, 0)] + 1)
            if added:
                # The leading ▁ has no character of its own: as in tokenizers, it belongs to the
                # text's first character (a token that is only that ▁ spans that character).
                starts = np.maximum(starts - added, 0)
                ends = ends - added
                if len(ends) and ends[0] == 0:
                    ends[0] = 1
            out.append((row, starts, ends, masks[index]))
        return out

    def _masks(
        self, starts: np.ndarray, ends: np.ndarray, cuts: list[int], bases: list[int],
        prepared: list[tuple[str, int]], spans: Sequence[Spans | None],
    ) -> list[np.ndarray | None]:
        """Each text's token mask (the tokens overlapping its spans), for the whole batch at once:
        every span, moved to bytes and on by its text's ``bases``, is found by one search over
        the batch's byte offsets."""
        lows: list[int] = []
        highs: list[int] = []
        for (text, added), wanted, base in zip(prepared, spans, bases):
            if wanted:
                for low, high in _byte_spans(text, wanted, added):
                    lows.append(base + low)
                    highs.append(base + high)
        # Masks are read in bytes: the spans' edges moved to bytes cost far less than every
        # token's offset moved to characters.
        mask = mask_from_offsets(starts, ends, lows, highs, self.empty_tokens)
        return [mask[cuts[i] : cuts[i + 1]] if spans[i] is not None else None for i in range(len(prepared))]


def _byte_spans(text: str, spans: Spans, added: int) -> Spans:
    """``spans`` (characters of the text before :meth:`FastEncoder._prepared`) as byte spans
    of the ``text`` it prepared, which has ``added`` characters in front. The first character
    of the original owns the added ``▁``, so a span starting there starts at byte 0."""
    if text.isascii():
        return [(start + added if start else 0, end + added if end else 0) for start, end in spans]
    edges = sorted({edge for span in spans for edge in span})
    at: dict[int, int] = {}
    position = size = 0
    for edge in edges:
        moved = edge + added if edge else 0
        size += len(text[position:moved].encode("utf-8"))
        position = moved
        at[edge] = size
    return [(at[start], at[end]) for start, end in spans]


def fast_encoder(backend: tokenizers.Tokenizer, choice: str, origin: str) -> FastEncoder | None:
    """The fast path for ``backend`` when ``choice`` allows it and it is exact, else ``None``.

    ``choice`` is ``"auto"`` (use it when it is available and exact, quietly), ``"fastokens"``
    (the same, but say why when it cannot be used) or ``"tokenizers"`` (never).
    """
    if choice not in BACKENDS:
        raise InputError(f"tokenizer backend: expected one of {', '.join(BACKENDS)}, got {choice!r}")
    if choice == "tokenizers":
        return None
    try:
        import fastokens  # noqa: F401
        import numpy  # noqa: F401
    except ImportError as exc:
        if choice == "fastokens":
            raise MissingDependencyError(
                "the fastokens backend needs fastokens and numpy: pip install 'chatplate[fast]'",
                extra="fast", package=exc.name,
            ) from exc
        return None
    text = backend.to_str()
    split = serialized.split_at_vocab(text)
    spec = serialized.pipeline(text, split)
    vocab = backend.get_vocab(with_added_tokens=False)
    reason = _unsupported(spec, vocab)
    encoder = None
    if reason is None:
        try:
            encoder = _build(spec, text, split, vocab, backend)
            reason = _self_check(encoder, backend)
        except Exception as exc:  # noqa: BLE001 - fastokens raises plain exceptions on what it does not support
            reason = f"fastokens cannot load it ({failure(exc)})"
    if reason is None:
        return encoder
    if choice == "fastokens":
        warnings.warn(f"{origin}: using tokenizers, not fastokens: {reason}", TokenizerBackendWarning, stacklevel=4)
    return None


def failure(exc: BaseException) -> str:
    """What fastokens said when it failed, in one short line."""
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else type(exc).__name__


def _unsupported(spec: dict[str, Any], vocab: dict[str, int]) -> str | None:
    """Why the fast path cannot reproduce this pipeline's offsets, or ``None`` (``spec`` is the
    pipeline without its vocab, ``vocab`` the model's)."""
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        return "only BPE vocabularies are supported"
    ids = {*vocab.values(), *(token.get("id") for token in spec.get("added_tokens") or [])}
    gaps = (max(ids) + 1 - len(ids)) if ids else 0
    if gaps:
        return f"{gaps} ids between 0 and {max(ids)} name no token, and fastokens loads only vocabularies without gaps"
    if _is_metaspace(spec):
        for token in spec.get("added_tokens") or []:
            content = token.get("content") or ""
            if " " in content or META in content or token.get("lstrip") or token.get("rstrip") or token.get("single_word"):
                return f"added token {content!r} has spaces or matching flags the fast path does not reproduce"
        return None
    if model.get("byte_fallback"):
        return "byte fallback is supported only with a Metaspace pre-tokenizer"
    if not _is_byte_level(spec.get("pre_tokenizer")) or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        return "the pre-tokenizer is not byte-level"
    normalizer = spec.get("normalizer")
    if normalizer is not None and normalizer.get("type") != "NFC":
        return f"the normalizer ({normalizer.get('type')}) changes the text"
    for token in spec.get("added_tokens") or []:
        if token.get("lstrip") or token.get("rstrip") or token.get("single_word") or (
            token.get("normalized") and not token.get("special") and normalizer is not None
        ):
            return f"added token {token.get('content')!r} has matching flags the fast path does not reproduce"
    processor = spec.get("post_processor") or {}
    for step in [processor, *(processor.get("processors") or [])]:
        if step.get("type") == "ByteLevel" and step.get("trim_offsets"):
            return "the post-processor trims offsets"
    return None


def _is_metaspace(spec: dict[str, Any]) -> bool:
    """A SentencePiece-style pipeline the fast path handles: no normalizer, and a Metaspace
    pre-tokenizer that does not split and prepends ``▁`` to the start of the input only."""
    pre = spec.get("pre_tokenizer") or {}
    return (
        spec.get("normalizer") is None and pre.get("type") == "Metaspace" and pre.get("replacement") == META
        and pre.get("split") is False and pre.get("prepend_scheme") == "first"
    )


def _is_byte_level(pre_tokenizer: dict[str, Any] | None) -> bool:
    if not pre_tokenizer:
        return False
    steps = pre_tokenizer.get("pretokenizers") if pre_tokenizer.get("type") == "Sequence" else [pre_tokenizer]
    kinds = [step.get("type") for step in steps or []]
    return bool(kinds) and kinds[-1] == "ByteLevel" and set(kinds) <= {"Split", "ByteLevel", "Digits"} and not any(
        step.get("add_prefix_space") for step in steps if step.get("type") == "ByteLevel"
    )


def _build(
    spec: dict[str, Any], text: str, split: serialized.Split | None, vocab: dict[str, int], backend: tokenizers.Tokenizer
) -> FastEncoder:
    """The fast path for the pipeline ``spec`` (``text`` is its JSON, cut at ``split``; ``vocab``
    the model's tokens)."""
    import fastokens
    import numpy as np

    lengths = np.zeros(backend.get_vocab_size(with_added_tokens=True), np.int64)
    added = backend.get_added_tokens_decoder()
    if _is_metaspace(spec):
        # The Metaspace step is done before fastokens runs (FastEncoder._prepared); lengths are
        # then bytes of that text: ▁ is three, a byte-fallback token one.
        fast = fastokens.Tokenizer.from_json_str(serialized.rewrite(text, split, {"pre_tokenizer": None}, {}))
        for token, index in vocab.items():
            lengths[index] = 1 if _BYTE_TOKEN.fullmatch(token) else len(token.encode("utf-8"))
        metaspace: tuple[str, ...] | None = tuple(token.content for token in added.values())
        missing = b""
    else:
        # As it is: fastokens parses it without holding the GIL.
        fast = fastokens.Tokenizer.from_json_str(text)
        decode = _byte_decoder()
        outside = _outside_alphabet()
        for token, index in vocab.items():
            # A token spelt in the byte-level alphabet has a byte per character.
            lengths[index] = len(token) if outside.search(token) is None else len(token.encode("utf-8"))
        metaspace = None
        missing = bytes(sorted(byte for char, byte in decode.items() if char not in vocab))
    for index, token in added.items():
        if index < len(lengths):
            lengths[index] = len(token.content.encode("utf-8"))
    return FastEncoder(fast, lengths, (spec.get("normalizer") or {}).get("type") == "NFC", metaspace, missing)


@lru_cache(maxsize=1)
def _outside_alphabet() -> re.Pattern[str]:
    """A character outside the byte-level alphabet."""
    return re.compile("[^" + re.escape("".join(_byte_decoder())) + "]")


def _self_check(encoder: FastEncoder, backend: tokenizers.Tokenizer) -> str | None:
    import numpy as np

    added = [token.content for token in backend.get_added_tokens_decoder().values()][:8]
    probes = [*_PROBES, " ".join(added) + " text" + "".join(added), "".join(f"x{token} " for token in added)]
    # Texts the fast path would hand to tokenizers anyway are no test of it.
    probes = [text for text in probes if encoder.accepts(text)]
    expected = backend.encode_batch(probes, add_special_tokens=False)
    for text, (row, starts, ends, _), reference in zip(probes, encoder.encode(probes, True), expected):
        ids = row.tolist()
        if ids != reference.ids:
            return f"its ids differ from tokenizers' on {text[:40]!r}"
        offsets = np.stack([starts, ends], axis=1).tolist() if ids else []
        if offsets != [list(pair) for pair in reference.offsets]:
            return f"its offsets differ from tokenizers' on {text[:40]!r}"
    return None


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """The byte-level alphabet: one printable character per byte (GPT-2's table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes)}
