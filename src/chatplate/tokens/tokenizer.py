"""``ChatTokenizer``: a ``tokenizers.Tokenizer`` plus what chat encoding needs to know about it."""

from __future__ import annotations

import json
import operator
import os
import threading
import time
import warnings
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CorruptSourceError, InputError, SourceError, TokenizerBackendWarning
from .classes import GENERIC, NAMED_SPECIAL_TOKENS, build_backend, token_content

if TYPE_CHECKING:
    import tokenizers

    from .fast import FastEncoder

__all__ = ["ChatTokenizer", "SENTENCEPIECE_ONLY_HINT", "read_json_object", "json_kind"]

SENTENCEPIECE_ONLY_HINT = (
    "it has only a SentencePiece tokenizer.model; chatplate reads tokenizer.json. Convert it once with "
    "transformers: python -c \"from transformers import AutoTokenizer as A; A.from_pretrained('{dir}')"
    ".save_pretrained('{dir}')\" (needs sentencepiece and protobuf), then load the directory again"
)


# transformers 5.23 tokenizer classes whose class attribute pads on the left; a config that does
# not say otherwise gets that side there, so it gets it here too.
_LEFT_PADDING_CLASSES = frozenset(
    {"LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer", "CohereTokenizer", "XLNetTokenizer", "Siglip2Tokenizer"}
)


class ChatTokenizer:
    """The model's tokenizer (a ``tokenizers.Tokenizer``) with its chat-relevant settings.

    ``config`` is the model's ``tokenizer_config.json`` (optional): bos/eos/pad tokens, padding
    and truncation sides, ``model_max_length`` and the special flags of added tokens come from it.

        tok = ChatTokenizer.from_file("model/tokenizer.json")
        tok.backend.encode("Hello", add_special_tokens=False).ids
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        config: Mapping[str, Any] | None = None,
        *,
        tokenizer_class: str = GENERIC,
        rebuilt: bool = False,
        special_tokens: Mapping[str, str | None] | None = None,
    ) -> None:
        self.backend = backend
        self.config: dict[str, Any] = dict(config or {})
        # The transformers class this tokenizer mirrors, and whether that class's own pipeline
        # replaced the file's (see chatplate.tokens.classes).
        self.tokenizer_class = tokenizer_class
        self.rebuilt = rebuilt
        if special_tokens is None:
            special_tokens = {key: token_content(self.config.get(key)) for key in NAMED_SPECIAL_TOKENS}
        added = backend.get_added_tokens_decoder()
        self.added_tokens: dict[str, int] = {token.content: index for index, token in added.items()}
        special = {token.content for token in added.values() if token.special}
        for entry in (self.config.get("added_tokens_decoder") or {}).values():
            if isinstance(entry, Mapping) and entry.get("special") and isinstance(entry.get("content"), str):
                special.add(entry["content"])
        special.update(text for text in special_tokens.values() if text is not None and text in self.added_tokens)
        self.special_tokens: frozenset[str] = frozenset(special)
        self.bos_token = special_tokens.get("bos_token")
        self.eos_token = special_tokens.get("eos_token")
        self.pad_token = special_tokens.get("pad_token")
        default_side = "left" if tokenizer_class in _LEFT_PADDING_CLASSES else "right"
        self.padding_side: str = self.config.get("padding_side") or default_side
        self.truncation_side: str = self.config.get("truncation_side") or "right"
        max_length = self.config.get("model_max_length")
        # transformers writes a huge sentinel (1e30) when the model has no limit.
        self.model_max_length: int | None = int(max_length) if isinstance(max_length, (int, float)) and max_length < 1e12 else None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], config: Mapping[str, Any] | None = None) -> ChatTokenizer:
        """Load ``tokenizer.json`` (with ``config``, a parsed ``tokenizer_config.json``, if given);
        errors say which file and what is wrong."""
        return cls._build(Path(path), dict(config or {}), None)

    @classmethod
    def from_model_dir(cls, directory: str | os.PathLike[str]) -> ChatTokenizer:
        """Load the tokenizer transformers' ``AutoTokenizer.from_pretrained(directory)`` builds:
        ``tokenizer.json`` with the settings of ``tokenizer_config.json`` and the model type of
        ``config.json`` beside it, which decide the tokenizer class and its pipeline."""
        root = Path(directory)
        tokenizer_path = root / "tokenizer.json"
        if not tokenizer_path.is_file() and (root / "tokenizer.model").is_file():
            raise SourceError(
                f"cannot encode with {root}: " + SENTENCEPIECE_ONLY_HINT.format(dir=root), source=str(root)
            )
        configs = [read_json_object(p, str(root)) if p.is_file() else {} for p in (root / "tokenizer_config.json", root / "config.json")]
        return cls._build(tokenizer_path, *configs)

    @classmethod
    def _build(cls, path: Path, config: dict[str, Any], model_config: dict[str, Any] | None) -> ChatTokenizer:
        if not path.is_file():
            raise SourceError(f"tokenizer file not found: {path}", source=str(path))
        try:
            text = path.read_text(encoding="utf-8")
            built = build_backend(text, config, model_config, origin=str(path))
        except Exception as exc:  # noqa: BLE001 - json, UnicodeDecodeError and the Rust side's plain Exceptions
            raise CorruptSourceError(
                f"{path} is not a valid tokenizer.json ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}); "
                "re-save it with transformers or tokenizers",
                path=str(path),
            ) from exc
        return cls(
            built.tokenizer,
            config,
            tokenizer_class=built.tokenizer_class,
            rebuilt=built.rebuilt,
            special_tokens=built.special_tokens,
        )

    # -- ids -------------------------------------------------------------------------------

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self.backend.token_to_id(token)

    @cached_property
    def bos_id(self) -> int | None:
        return self.token_id(self.bos_token)

    @cached_property
    def eos_id(self) -> int | None:
        return self.token_id(self.eos_token)

    @cached_property
    def pad_id(self) -> int | None:
        return self.token_id(self.pad_token)

    # -- which engine encodes ---------------------------------------------------------------------

    #: ``"auto"`` (``fastokens`` where it is exact for this tokenizer, once enough text has been
    #: encoded to pay for loading it), ``"fastokens"`` (from the first encode, with a warning when
    #: it cannot be used) or ``"tokenizers"``.
    engine_choice: str = "auto"
    # Loading fastokens and checking it takes up to seconds on large vocabularies, about what
    # tokenizers needs for a few million characters: "auto" switches after that much text.
    FAST_AFTER_CHARS = 2_000_000
    _encoded_chars = 0
    #: Seconds spent building (and checking) the fast path.
    fast_seconds = 0.0
    _loading: tuple[threading.Thread, list[FastEncoder | None]] | None = None

    @cached_property
    def fast(self) -> FastEncoder | None:
        """The exact fast path (``fastokens``), when the engine choice and this tokenizer allow."""
        if self._loading is not None:
            thread, result = self._loading
            thread.join()
            self._loading = None
            return result[0]
        return self._build_fast()

    def _build_fast(self) -> FastEncoder | None:
        from . import collector
        from .fast import fast_encoder

        started = time.perf_counter()
        try:
            # The vocabulary is parsed into Python objects that form no cycles.
            with collector.paused():
                return fast_encoder(self.backend, self.engine_choice, self.tokenizer_class)
        finally:
            self.fast_seconds = time.perf_counter() - started

    @property
    def fast_loading(self) -> bool:
        """Whether the fast path is still loading in the background (see :meth:`expect`)."""
        return self._loading is not None and self._loading[0].is_alive()

    def fast_for(self, chars: int) -> FastEncoder | None:
        """The fast path to encode ``chars`` characters with, or ``None`` for ``tokenizers``
        (with ``"auto"``, also while the fast path is still loading in the background: the
        ids are the same either way)."""
        if self.engine_choice == "tokenizers":
            return None
        if self.engine_choice == "auto" and "fast" not in self.__dict__:
            if self._loading is not None:
                return None if self.fast_loading else self.fast
            self._encoded_chars += chars
            if self._encoded_chars < self.FAST_AFTER_CHARS:
                return None
        return self.fast

    def expect(self, chars: int, background: bool = False) -> None:
        """Say how much text is coming: with ``"auto"``, the fast path loads now if that is
        enough to pay for loading it (``prepare`` knows its input's size). With ``background``,
        it loads on a thread while the caller goes on (``fastokens`` builds without holding
        the GIL), and tokenizers encodes until it is ready."""
        if self.engine_choice != "auto" or chars < self.FAST_AFTER_CHARS or "fast" in self.__dict__ or self._loading:
            return
        if not background:
            self.fast  # noqa: B018 - load (and check) it now
            return
        result: list[FastEncoder | None] = [None]

        def load() -> None:
            # Errors become "no fast path" inside fast_encoder; "auto" warns of nothing.
            result[0] = self._build_fast()

        thread = threading.Thread(target=load, name="chatplate-fastokens-load", daemon=True)
        self._loading = (thread, result)
        thread.start()

    def drop_fast(self, error: BaseException) -> None:
        """Encode with tokenizers from now on, after the fast path failed with ``error`` (a
        ``TokenizerBackendWarning`` says so)."""
        from .fast import failure

        self.__dict__["fast"] = None
        warnings.warn(
            f"{self.tokenizer_class}: using tokenizers from now on: fastokens failed on this input ({failure(error)})",
            TokenizerBackendWarning,
            stacklevel=2,
        )

    @property
    def engine(self) -> str:
        """Which library encodes now: ``"fastokens"`` or ``"tokenizers"`` (with ``"auto"``,
        ``tokenizers`` until enough text has been encoded, and while the fast path loads)."""
        if self.engine_choice == "auto" and "fast" not in self.__dict__ and (self._loading is None or self.fast_loading):
            return "tokenizers"
        return "fastokens" if self.fast is not None else "tokenizers"

    def __getstate__(self) -> dict[str, Any]:
        # A fastokens tokenizer does not pickle: worker processes build (and check) their own.
        state = dict(self.__dict__)
        state.pop("fast", None)
        state.pop("_loading", None)
        return state

    # -- text ------------------------------------------------------------------------------

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        """Turn token ids back into text, as transformers' ``tokenizer.decode(ids,
        skip_special_tokens=...)`` does for this tokenizer.

        ``ids`` is one sequence: a list or tuple of ints, or a 1-D numpy array or torch tensor.
        ``skip_special_tokens`` leaves out special tokens (BOS, EOS, ``<|im_end|>``...). As in
        transformers, ``clean_up_tokenization_spaces`` from ``tokenizer_config.json`` applies,
        except to BPE tokenizers (unless the config forces it there too).

            tok = ChatTokenizer.from_model_dir("model-dir")
            tok.decode(tok.backend.encode("Hello", add_special_tokens=False).ids)
            'Hello'
        """
        if not isinstance(skip_special_tokens, bool):
            raise InputError(f"decode: skip_special_tokens must be True or False, got {type(skip_special_tokens).__name__}")
        # tokenizers' own default is to skip special tokens; transformers' is not to.
        text = self.backend.decode(token_ids(ids), skip_special_tokens=skip_special_tokens)
        return _clean_up_tokenization(text) if self._cleans_up_spaces else text

    @cached_property
    def _cleans_up_spaces(self) -> bool:
        # transformers 5 ignores the flag for BPE models: the clean-up eats real spaces there.
        if not self.config.get("clean_up_tokenization_spaces"):
            return False
        return type(self.backend.model).__name__ != "BPE" or bool(
            self.config.get("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output")
        )

    @cached_property
    def adds_bos(self) -> bool:
        """Whether the tokenizer's own post-processor starts a sequence with BOS."""
        if self.bos_id is None:
            return False
        ids = self.backend.encode("", add_special_tokens=True).ids
        return bool(ids) and ids[0] == self.bos_id

    @cached_property
    def plain(self) -> tokenizers.Tokenizer:
        """The same tokenizer without added tokens: encodes control-token text as ordinary text."""
        from tokenizers import Tokenizer

        spec = json.loads(self.backend.to_str())
        spec["added_tokens"] = []
        spec["post_processor"] = None
        spec["truncation"] = None
        spec["padding"] = None
        return Tokenizer.from_str(json.dumps(spec))

    @cached_property
    def unreachable_tokens(self) -> frozenset[str]:
        """Added tokens the model's own vocabulary does not hold, whitespace aside: plain text can
        never produce them (``<tool_call>``, ``<think>``, ``<|fim_prefix|>``), unlike tokens a
        SentencePiece model defines in its vocabulary (Gemma's HTML tags), which text does."""
        model = self.backend.model
        return frozenset(
            token for token in self.added_tokens if not token.isspace() and model.token_to_id(token) is None
        )

    def data_control_tokens(self, template_text: str) -> tuple[str, ...]:
        """What data other than the assistant's own messages must not produce: the
        :meth:`control_tokens`, and every added token plain text cannot produce."""
        tokens = self.control_tokens(template_text)
        return tokens + tuple(sorted(self.unreachable_tokens.difference(tokens)))

    def control_tokens(self, template_text: str) -> tuple[str, ...]:
        """Tokens that data must not produce: every special token, and every other added token the
        template writes literally (whitespace tokens aside, which templates write as text). (The
        encoder asks once per template and keeps the markers it makes of them.)
        """
        return tuple(
            token
            for token in self.added_tokens
            if token in self.special_tokens or (token in template_text and not token.isspace())
        )


_MAX_ID = 2**32 - 1  # the Rust side holds ids as u32


def token_ids(ids: Any, what: str = "decode") -> list[int]:
    """One sequence of ids as a list of ints, from a list, tuple, numpy array or torch tensor."""
    if not isinstance(ids, (list, tuple)) and hasattr(ids, "tolist") and not isinstance(ids, (str, bytes)):
        ids = ids.tolist()  # numpy and torch, without importing either
    if not isinstance(ids, (list, tuple)):
        hint = "; for a single id pass [id]" if isinstance(ids, int) else ""
        raise InputError(
            f"{what}: expected one sequence of token ids (a list or tuple of ints, or a 1-D numpy array or torch "
            f"tensor), got {type(ids).__name__}{hint}"
        )
    out = list(ids)
    for position, value in enumerate(out):
        if type(value) is int:
            continue
        if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0):
            raise InputError(
                f"{what}: item {position} is a {type(value).__name__}, not a token id; " + (
                    "decode takes one sequence, so decode a batch row by row: [t.decode(row) for row in batch]"
                    if what == "decode" else "pass one sequence"
                )
            )
        try:
            if isinstance(value, bool):
                raise TypeError
            out[position] = operator.index(value)  # numpy and torch integer scalars
        except TypeError:
            raise InputError(
                f"{what}: token ids must be ints; item {position} is {type(value).__name__} {value!r:.40}"
            ) from None
    if out and (min(out) < 0 or max(out) > _MAX_ID):
        bad = next(value for value in out if value < 0 or value > _MAX_ID)
        raise InputError(f"{what}: {bad} at position {out.index(bad)} is not a token id (ids are 0 to {_MAX_ID})")
    return out


def _clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: drop the space tokenizers left before punctuation."""
    return (
        text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
    )


def read_json_object(path: Path, origin: str) -> dict[str, Any]:
    """The JSON object in ``path``; a ``CorruptSourceError`` that says what is wrong otherwise."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        raise CorruptSourceError(
            f"{path} is not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}).",
            source=origin,
            path=str(path),
        ) from None
    except OSError as exc:
        raise CorruptSourceError(
            f"{path} cannot be read: {exc.strerror or exc}", source=origin, path=str(path)
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptSourceError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}. Fix the file "
            "(or download it again if it was cut short).",
            source=origin,
            path=str(path),
        ) from None
    except RecursionError:
        raise CorruptSourceError(
            f"{path} nests arrays or objects too deeply to read (thousands of levels); no model file does this: "
            "the file is corrupt or hostile",
            source=origin,
            path=str(path),
        ) from None
    if not isinstance(data, dict):
        raise CorruptSourceError(
            f"{path} must hold a JSON object, but holds {json_kind(data)}.", source=origin, path=str(path)
        )
    return data


def json_kind(value: Any) -> str:
    """What a JSON value is, in words: ``json_kind([])`` is ``'a list'``."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    if value is None:
        return "null"
    return kinds.get(type(value), f"a {type(value).__name__}")
