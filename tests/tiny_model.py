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


def build_tiny_llama_gguf(model_dir: Path, path: Path) -> Path:
    """Write the tiny Llama in ``model_dir`` (from :func:`build_tiny_llama`) as a llama.cpp GGUF.

    Written directly with the ``gguf`` package, as llama.cpp's ``convert_hf_to_gguf.py`` writes a
    Qwen2-style byte-level BPE Llama (that script refuses the fixture's pre-tokenizer, whose
    hash it does not know): F32 tensors, Q/K rows permuted to llama.cpp's RoPE layout,
    ``tokenizer.ggml.*`` with model ``gpt2`` and pre-tokenizer ``qwen2`` (the fixture's split
    regex), ``<|im_end|>`` as EOS and the chat template. Deterministic; a fraction of a second.
    """
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    spec = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    settings = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    weights = load_file(str(model_dir / "model.safetensors"))

    n_vocab, n_embd, n_head = config["vocab_size"], config["hidden_size"], config["num_attention_heads"]
    n_head_kv = config["num_key_value_heads"]
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [gguf.TokenType.UNUSED] * n_vocab
    for text, index in spec["model"]["vocab"].items():
        tokens[index], types[index] = text, gguf.TokenType.NORMAL
    ids = {}
    for added in spec["added_tokens"]:
        tokens[added["id"]] = added["content"]
        types[added["id"]] = gguf.TokenType.CONTROL if added["special"] else gguf.TokenType.USER_DEFINED
        ids[added["content"]] = added["id"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("chatplate tiny llama")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(n_embd)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(ids["<|endoftext|>"])  # as Qwen2 GGUFs: a BOS id, never added
    writer.add_add_bos_token(False)
    writer.add_eos_token_id(ids[settings["eos_token"]])
    writer.add_pad_token_id(ids[settings["pad_token"]])
    writer.add_chat_template((model_dir / "chat_template.jinja").read_text(encoding="utf-8"))

    def permute(w: np.ndarray, heads: int) -> np.ndarray:
        # transformers' rotate-half RoPE layout -> llama.cpp's interleaved pairs (as convert_hf_to_gguf)
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    names = {
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    }
    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"].astype(np.float32))
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"].astype(np.float32))
    if "lm_head.weight" in weights and not config.get("tie_word_embeddings"):
        writer.add_tensor("output.weight", weights["lm_head.weight"].astype(np.float32))
    for layer in range(config["num_hidden_layers"]):
        for hf, name in names.items():
            w = weights[f"model.layers.{layer}.{hf}.weight"].astype(np.float32)
            if name == "attn_q":
                w = permute(w, n_head)
            elif name == "attn_k":
                w = permute(w, n_head_kv)
            writer.add_tensor(f"blk.{layer}.{name}.weight", np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@functools.cache
def tiny_llama_gguf() -> Path:
    """:func:`tiny_llama_dir`'s model as a GGUF file (llama.cpp), built once per process."""
    return build_tiny_llama_gguf(tiny_llama_dir(), tokenizer_fixtures._root() / "tiny-llama-gguf" / "tiny-llama.gguf")
