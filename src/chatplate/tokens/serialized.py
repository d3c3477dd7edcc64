"""``tokenizer.json`` text read and rewritten without parsing its model's vocab and merges.

They are most of the file. As Python objects they took longer to make than tokenizers or
fastokens take to load them (0.23 s of Llama 3's 128k tokens, 60 ms of Mistral's 32k, and as long
again to write them back), holding the GIL that a background load leaves to its caller. A file
laid out as tokenizers writes it (the model last, its vocab and merges after its settings) is
split there; any other layout is parsed whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Split", "split_at_vocab", "pipeline", "rewrite"]

_MODEL_KEY = re.compile(r',\s*"model"\s*:\s*\{')
_VOCAB_KEY = re.compile(r',\s*"vocab"\s*:')
# After the vocab and merges: the model's and the file's closing braces, nothing else.
_CLOSING = re.compile(r'[\]}]\s*}\s*}\s*$')


@dataclass(frozen=True)
class Split:
    """A ``tokenizer.json`` cut where its model's vocab begins."""

    head: dict[str, Any]  # every top-level key but the model
    model: dict[str, Any]  # the model's settings, before its vocab
    vocab: str  # the text from the vocab's key to the end of the file


def split_at_vocab(text: str) -> Split | None:
    """``text`` cut where its model's vocab begins, or ``None`` for a layout other than
    tokenizers'.

    >>> split_at_vocab('{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}').model
    {'type': 'BPE'}
    """
    model = _MODEL_KEY.search(text)
    vocab = _VOCAB_KEY.search(text, model.end()) if model else None
    if model is None or vocab is None or not _CLOSING.search(text[-200:]):
        return None
    try:
        head = json.loads(text[: model.start()] + "}")
        settings = json.loads("{" + text[model.end() : vocab.start()] + "}")
    except ValueError:
        return None
    if not isinstance(head, dict) or not isinstance(settings, dict) or "model" in head:
        return None
    return Split(head, settings, text[vocab.start() + 1 :].lstrip())


def pipeline(text: str, split: Split | None) -> dict[str, Any]:
    """The tokenizer without its model's vocab and merges (``split`` is ``split_at_vocab(text)``)."""
    if split is not None:
        return {**split.head, "model": split.model}
    spec = json.loads(text)
    if isinstance(spec, dict) and isinstance(spec.get("model"), dict):
        spec["model"] = {key: value for key, value in spec["model"].items() if key not in ("vocab", "merges")}
    return spec  # type: ignore[no-any-return]


def rewrite(text: str, split: Split | None, head: dict[str, Any], model: dict[str, Any]) -> str:
    """``text`` with the top-level keys in ``head`` and the model's keys in ``model`` set (``split``
    is ``split_at_vocab(text)``). The vocab and merges are copied as text when every key set is
    one the file has before them; otherwise the whole file is parsed and written again."""
    if split is not None and set(head) <= set(split.head) and set(model) <= set(split.model):
        return json.dumps({**split.head, **head})[:-1] + ',"model":' + json.dumps({**split.model, **model})[:-1] + "," + split.vocab
    whole = json.loads(text)
    return json.dumps({**whole, **head, "model": {**whole["model"], **model}})
