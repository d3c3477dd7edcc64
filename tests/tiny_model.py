"""A tiny random-weight causal LM, saved with a tokenizer fixture, for real generation in tests."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

from tests import tokenizer_fixtures


def build_tiny_llama(directory: Path) -> Path:
    """A 2-layer Llama with the ChatML byte-level BPE fixture's vocabulary and template."""
    import torch
    import transformers

    directory.mkdir(parents=True, exist_ok=True)
    for item in tokenizer_fixtures.chatml_bpe_dir().iterdir():
        shutil.copy(item, directory / item.name)
    vocab = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    size = max([*vocab["model"]["vocab"].values(), *(t["id"] for t in vocab["added_tokens"])]) + 1
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(directory)
    return directory


@functools.cache
def tiny_llama_dir() -> Path:
    return build_tiny_llama(tokenizer_fixtures._root() / "tiny-llama")
