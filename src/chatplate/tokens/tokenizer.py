"""``ChatTokenizer``: a ``tokenizers.Tokenizer`` plus what chat encoding needs to know about it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CorruptSourceError, SourceError

if TYPE_CHECKING:
    import tokenizers

__all__ = ["ChatTokenizer", "SENTENCEPIECE_ONLY_HINT"]

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


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    return None


class ChatTokenizer:
    """The model's tokenizer (a ``tokenizers.Tokenizer``) with its chat-relevant settings.

    ``config`` is the model's ``tokenizer_config.json`` (optional): bos/eos/pad tokens, padding
    and truncation sides, ``model_max_length`` and the special flags of added tokens come from it.

        tok = ChatTokenizer.from_file("model/tokenizer.json")
        tok.backend.encode("Hello", add_special_tokens=False).ids
    """

    def __init__(self, backend: tokenizers.Tokenizer, config: Mapping[str, Any] | None = None) -> None:
        self.backend = backend
        self.config: dict[str, Any] = dict(config or {})
        added = backend.get_added_tokens_decoder()
        self.added_tokens: dict[str, int] = {token.content: index for index, token in added.items()}
        special = {token.content for token in added.values() if token.special}
        for entry in (self.config.get("added_tokens_decoder") or {}).values():
            if isinstance(entry, Mapping) and entry.get("special") and isinstance(entry.get("content"), str):
                special.add(entry["content"])
        for key in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"):
            text = _token_text(self.config.get(key))
            if text is not None and text in self.added_tokens:
                special.add(text)
        self.special_tokens: frozenset[str] = frozenset(special)
        self._control_tokens: dict[str, tuple[str, ...]] = {}
        self.bos_token = _token_text(self.config.get("bos_token"))
        self.eos_token = _token_text(self.config.get("eos_token"))
        self.pad_token = _token_text(self.config.get("pad_token"))
        tokenizer_class = str(self.config.get("tokenizer_class") or "").removesuffix("Fast")
        default_side = "left" if tokenizer_class in _LEFT_PADDING_CLASSES else "right"
        self.padding_side: str = self.config.get("padding_side") or default_side
        self.truncation_side: str = self.config.get("truncation_side") or "right"
        max_length = self.config.get("model_max_length")
        # transformers writes a huge sentinel (1e30) when the model has no limit.
        self.model_max_length: int | None = int(max_length) if isinstance(max_length, (int, float)) and max_length < 1e12 else None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], config: Mapping[str, Any] | None = None) -> ChatTokenizer:
        """Load ``tokenizer.json``; errors say which file and what is wrong."""
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.is_file():
            raise SourceError(f"tokenizer file not found: {path}", source=str(path))
        try:
            backend = Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - the Rust side raises plain Exceptions
            raise CorruptSourceError(
                f"{path} is not a valid tokenizer.json ({str(exc).splitlines()[0][:200]}); re-save it with "
                "transformers or tokenizers",
                path=str(path),
            ) from exc
        return cls(backend, config)

    @classmethod
    def from_model_dir(cls, directory: str | os.PathLike[str]) -> ChatTokenizer:
        """Load ``tokenizer.json`` with the settings of ``tokenizer_config.json`` beside it."""
        root = Path(directory)
        config: dict[str, Any] = {}
        config_path = root / "tokenizer_config.json"
        if config_path.is_file():
            try:
                loaded = json.loads(config_path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise CorruptSourceError(f"{config_path}: not valid JSON ({exc})", path=str(config_path)) from exc
            if isinstance(loaded, dict):
                config = loaded
        tokenizer_path = root / "tokenizer.json"
        if not tokenizer_path.is_file() and (root / "tokenizer.model").is_file():
            raise SourceError(
                f"cannot encode with {root}: " + SENTENCEPIECE_ONLY_HINT.format(dir=root), source=str(root)
            )
        return cls.from_file(tokenizer_path, config)

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

    def control_tokens(self, template_text: str) -> tuple[str, ...]:
        """Tokens that data must not produce: every special token, and every other added token the
        template writes literally (whitespace tokens aside, which templates write as text).

        Computed once per template: it scans the template text for every added token, and encode
        calls ask on every call.
        """
        tokens = self._control_tokens.get(template_text)
        if tokens is None:
            tokens = self._control_tokens[template_text] = tuple(
                token
                for token in self.added_tokens
                if token in self.special_tokens or (token in template_text and not token.isspace())
            )
        return tokens
