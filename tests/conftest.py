"""Shared fixtures: where the conformance corpus lives, and whether its absence is fatal."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest


def corpus_dir() -> Path | None:
    """The public conformance corpus: $CHATPLATE_CORPUS, else ``shared/corpus`` beside the repo."""
    configured = os.environ.get("CHATPLATE_CORPUS")
    path = Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "corpus"
    return path if (path / "public").is_dir() else None


def require_corpus() -> Path:
    path = corpus_dir()
    if path is None:
        message = "conformance corpus not found (set CHATPLATE_CORPUS to the corpus directory)"
        if os.environ.get("CHATPLATE_REQUIRE_CORPUS") == "1":
            pytest.fail(message + " and CHATPLATE_REQUIRE_CORPUS=1", pytrace=False)
        pytest.skip(message)
    return path


def corpus_conversations() -> list[list[dict[str, Any]]]:
    """The corpus's conversations (message lists); without the corpus, one small stand-in."""
    root = corpus_dir()
    if root is None:
        return [[{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi <s> there"}]]
    data = json.loads((root / "conversations.json").read_text(encoding="utf-8"))
    return [c["messages"] for c in data["conversations"]]
