"""Real tokenizers, built offline, as complete model directories for tests and benchmarks.

Each directory holds what a Hub model repo holds for its tokenizer: ``tokenizer.json``,
``tokenizer_config.json`` (bos/eos/pad tokens, ``added_tokens_decoder`` in the format
transformers 4.x writes and Hub repos carry, ``tokenizer_class``) and ``chat_template.jinja``.
Every directory loads both with ``transformers.AutoTokenizer.from_pretrained(dir)`` and with
``tokenizers.Tokenizer.from_file(dir / "tokenizer.json")``, and the two give the same ids.

- ``mistral_v1_dir()``: the real Mistral-7B-Instruct-v0.1 SentencePiece model (32,000 pieces,
  byte fallback) shipped in the ``mistral-common`` package, converted to a fast tokenizer by
  transformers; ``[INST]`` chat template.
- ``llama3_bpe_dir()``: a byte-level BPE (2,000 merges' worth of vocabulary) trained here on a
  generated corpus, with Llama 3's pre-tokenizer regex, special tokens and BOS post-processor;
  Llama 3 chat template.
- ``chatml_bpe_dir()``: the same kind of BPE with Qwen2's NFC normalizer and regex, ChatML special
  tokens and the non-special added tokens ``<tool_call>`` / ``</tool_call>``; ChatML template with
  tools.

The ``*_dir()`` functions build once per process into one temporary directory (removed at exit)
and return the cached path; ``build_*(directory)`` build into a directory of your choice. Builds
are deterministic. Only the standard library is imported at module level: ``tokenizers`` is
needed for every build, ``transformers``, ``mistral-common``, ``sentencepiece`` and ``protobuf``
for the Mistral one (all in the ``test`` extra).
"""

from __future__ import annotations

import atexit
import functools
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "CHATML_TEMPLATE",
    "LLAMA3_TEMPLATE",
    "MISTRAL_V1_TEMPLATE",
    "all_model_dirs",
    "build_chatml_bpe",
    "build_llama3_bpe",
    "build_mistral_v1",
    "chatml_bpe_dir",
    "generated_corpus",
    "llama3_bpe_dir",
    "mistral_v1_dir",
    "mistral_v1_sentencepiece_model",
]

# transformers' "no limit" sentinel for model_max_length (int(1e30)), as it writes it.
NO_MAX_LENGTH = int(1e30)

MISTRAL_V1_TEMPLATE = """\
{%- if messages and messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] + '\\n\\n' %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set system_message = '' %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {{- '[INST] ' + (system_message if loop.first else '') + message['content'] + ' [/INST]' }}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token }}
    {%- else %}
        {{- raise_exception('Only system, user and assistant roles are supported!') }}
    {%- endif %}
{%- endfor %}
"""

LLAMA3_TEMPLATE = """\
{{- bos_token }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

CHATML_TEMPLATE = """\
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] + '\\n\\n' }}
    {%- endif %}
    {{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n<tools>' }}
    {%- for tool in tools %}
        {{- '\\n' + (tool | tojson) }}
    {%- endfor %}
    {{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments' }}
    {{- ' within <tool_call></tool_call> XML tags.<|im_end|>\\n' }}
{%- elif messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message['role'] == 'system' %}
        {%- if not loop.first %}
            {{- raise_exception('The system message must come first') }}
        {%- endif %}
    {%- elif message['role'] == 'tool' %}
        {{- '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message['role'] + '\\n' }}
        {%- if message['content'] %}
            {{- message['content'] }}
        {%- endif %}
        {%- for tool_call in message['tool_calls'] or [] %}
            {%- set call = tool_call['function'] if tool_call['function'] is defined else tool_call %}
            {%- if message['content'] or not loop.first %}
                {{- '\\n' }}
            {%- endif %}
            {{- '<tool_call>\\n{"name": "' + call['name'] + '", "arguments": ' }}
            {%- if call['arguments'] is string %}
                {{- call['arguments'] }}
            {%- else %}
                {{- call['arguments'] | tojson }}
            {%- endif %}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Llama 3's pre-tokenizer split (tokenizer.json of Meta-Llama-3-8B) and Qwen2's (single digits).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Llama 3.0's first ten added tokens, in its order (ids 128000-128009 there, 2000-2009 here).
LLAMA3_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|reserved_special_token_2|>",
    "<|reserved_special_token_3|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|reserved_special_token_4|>",
    "<|eot_id|>",
]
# Qwen2.5's order: special, then the tool-call tags as NON-special added tokens.
CHATML_ADDED_TOKENS = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
]

BPE_VOCAB_SIZE = 2000
CORPUS_CHARS = 300_000

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there one all we their has been would more when if no out so said what up its about "
    "into than them can only other new some could time these two may then do first any my now such like our "
    "over man me even most made after also did many before must through back years where much your way well "
    "down should because each just those people how too little state good very make world still own see men "
    "work long get here between both life being under never day same another know while last might us great "
    "old year off come since against go came right used take three hello weather city function answer question "
    "model token template message assistant user system tool call result data value number string list table "
    "don't it's I'm you're we've they'll she'd can't won't isn't"
).split()
_UNICODE = [
    "naïve café résumé façade",
    "Größe Straße über Ärger",
    "Привет, как дела? Всё хорошо.",
    "Γειά σου κόσμε",
    "你好，世界。今天天气很好。",
    "日本語のテキスト、カタカナとひらがな。",
    "한국어 문장입니다.",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "🙂 👍🏽 🧑‍🚀 🇫🇷 ❤️ 🎉",
    "e\u0301 n\u0303 a\u030a (combining marks)",
    "\u201cquotes\u201d \u2018single\u2019 \u2014 dash \u2026 ellipsis",
    "½ ¼ € £ ¥ © ™ ∑ √ ∞ ≤ ≥ →",
    "zero\u200bwidth non\u00a0breaking",
]
_CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
    "SELECT id, name FROM users WHERE age > 21 ORDER BY name;",
    '<div class="note">Some <b>bold</b> text</div>',
    "x = [1, 2, 3]  # comment\r\n",
    "if (a && b || !c) { return 0x1F; }",
]


_SYLLABLES = [
    onset + vowel
    for onset in ["", "b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "st", "tr", "ch", "sh", "th"]
    for vowel in ["a", "e", "i", "o", "u", "ai", "ou", "er", "in", "on"]
]


def _pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4)))


def generated_corpus(n_chars: int = CORPUS_CHARS, seed: int = 0) -> list[str]:
    """A deterministic training corpus: English-like sentences, unicode snippets, code; ~``n_chars``.

    Returned as paragraphs (each a few lines, whitespace and newlines kept) for ``train_from_iterator``.
    """
    rng = random.Random(seed)
    paragraphs: list[str] = []
    size = 0
    while size < n_chars:
        parts: list[str] = []
        for _ in range(rng.randint(4, 12)):
            roll = rng.random()
            if roll < 0.72:
                words = [rng.choice(_WORDS) if rng.random() < 0.8 else _pseudo_word(rng) for _ in range(rng.randint(3, 18))]
                sentence = " ".join(words)
                sentence = sentence[0].upper() + sentence[1:] + rng.choice([".", ".", ".", "!", "?", ",", ":", "..."])
                if rng.random() < 0.2:
                    sentence += f" {rng.randint(0, 10 ** rng.randint(1, 7))}"
            elif roll < 0.87:
                sentence = rng.choice(_UNICODE)
            else:
                sentence = rng.choice(_CODE)
            parts.append(sentence + rng.choice(["\n", " ", " ", "\n\n", "  ", "\t"]))
        paragraph = "".join(parts)
        paragraphs.append(paragraph)
        size += len(paragraph)
    return paragraphs


# --- writing a model directory -------------------------------------------------------------------


def _added_tokens_decoder(tokenizer: Any) -> dict[str, dict[str, Any]]:
    """``added_tokens_decoder`` as transformers 4.x writes it into tokenizer_config.json."""
    return {
        str(index): {
            "content": token.content,
            "lstrip": token.lstrip,
            "normalized": token.normalized,
            "rstrip": token.rstrip,
            "single_word": token.single_word,
            "special": token.special,
        }
        for index, token in sorted(tokenizer.get_added_tokens_decoder().items())
    }


def _write_model_dir(directory: Path, tokenizer: Any, config: dict[str, Any], chat_template: str) -> Path:
    """tokenizer.json (unless already there), tokenizer_config.json and chat_template.jinja."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "tokenizer.json").is_file():
        tokenizer.save(str(directory / "tokenizer.json"))
    config = {**config, "added_tokens_decoder": _added_tokens_decoder(tokenizer)}
    (directory / "tokenizer_config.json").write_text(
        json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (directory / "chat_template.jinja").write_text(chat_template, encoding="utf-8")
    return directory


def _train_byte_level_bpe(split_regex: str, *, nfc: bool, ignore_merges: bool) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if nfc:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(generated_corpus(), trainer=trainer)
    return tokenizer


# --- the three models ------------------------------------------------------------------------------


def _mistral_v1_model_bytes() -> bytes:
    """The Mistral-7B-(Instruct-)v0.1 SentencePiece model that ``mistral-common`` ships."""
    from importlib import resources

    data = resources.files("mistral_common") / "data"
    candidate = data / "tokenizer.model.v1"
    if candidate.is_file():
        return candidate.read_bytes()
    # Not under its usual name (it is ``tokenizer.model.v1`` in mistral-common 1.x): take any v1 SentencePiece file.
    found = sorted(entry.name for entry in data.iterdir() if entry.name.endswith(".model.v1"))
    if not found:
        shipped = sorted(entry.name for entry in data.iterdir())
        raise FileNotFoundError(f"mistral_common/data has no v1 SentencePiece model (*.model.v1); it ships {shipped}")
    return (data / found[0]).read_bytes()


def build_mistral_v1(directory: str | Path) -> Path:
    """Convert the Mistral v1 SentencePiece model with transformers and write a model directory.

    transformers' ``LlamaTokenizer.from_pretrained`` on a folder holding ``tokenizer.model`` extracts the
    vocab and merges (``SentencePieceExtractor``: needs sentencepiece and protobuf) into a BPE with byte
    fallback, no normalizer and ``Metaspace(prepend_scheme="first", split=False)``. It defaults
    ``add_bos_token`` to False, so it is passed explicitly: the saved post-processor then prepends ``<s>``.
    """
    from transformers import LlamaTokenizer

    directory = Path(directory)
    with tempfile.TemporaryDirectory(prefix="chatplate-spm-") as scratch:
        (Path(scratch) / "tokenizer.model").write_bytes(_mistral_v1_model_bytes())
        converted = LlamaTokenizer.from_pretrained(scratch, add_bos_token=True, add_eos_token=False, legacy=False)
    directory.mkdir(parents=True, exist_ok=True)
    converted._tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "additional_special_tokens": [],
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": False,
        "model_max_length": NO_MAX_LENGTH,
        "pad_token": None,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    return _write_model_dir(directory, converted._tokenizer, config, MISTRAL_V1_TEMPLATE)


def build_llama3_bpe(directory: str | Path) -> Path:
    """Train a Llama-3-shaped byte-level BPE and write a model directory."""
    from tokenizers import AddedToken, processors

    tokenizer = _train_byte_level_bpe(LLAMA3_SPLIT, nfc=False, ignore_merges=True)
    tokenizer.add_special_tokens([AddedToken(text, special=True, normalized=False) for text in LLAMA3_SPECIAL_TOKENS])
    bos = "<|begin_of_text|>"
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
            processors.TemplateProcessing(
                single=f"{bos}:0 $A:0",
                pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                special_tokens=[(bos, tokenizer.token_to_id(bos))],
            ),
        ]
    )
    config = {
        "bos_token": bos,
        "clean_up_tokenization_spaces": True,
        "eos_token": "<|eot_id|>",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": NO_MAX_LENGTH,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    return _write_model_dir(Path(directory), tokenizer, config, LLAMA3_TEMPLATE)


def build_chatml_bpe(directory: str | Path) -> Path:
    """Train a Qwen2-shaped byte-level BPE with ChatML tokens and write a model directory."""
    from tokenizers import AddedToken, processors

    tokenizer = _train_byte_level_bpe(QWEN2_SPLIT, nfc=True, ignore_merges=False)
    for text, special in CHATML_ADDED_TOKENS:
        token = AddedToken(text, special=special, normalized=False)
        if special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    config = {
        "add_prefix_space": False,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }
    return _write_model_dir(Path(directory), tokenizer, config, CHATML_TEMPLATE)


# --- cached per process --------------------------------------------------------------------------


@functools.cache
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="chatplate-tokenizers-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


@functools.cache
def mistral_v1_dir() -> Path:
    """Mistral-7B-Instruct-v0.1's tokenizer (real, 32,000 pieces), converted by transformers."""
    return build_mistral_v1(_root() / "mistral-v1")


@functools.cache
def mistral_v1_sentencepiece_model() -> Path:
    """The original SentencePiece file behind ``mistral_v1_dir()``, as ``tokenizer.model`` on disk."""
    path = _root() / "mistral-v1-sentencepiece" / "tokenizer.model"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_mistral_v1_model_bytes())
    return path


@functools.cache
def llama3_bpe_dir() -> Path:
    """A Llama-3-shaped byte-level BPE (2,000 tokens + 10 special), BOS added by its post-processor."""
    return build_llama3_bpe(_root() / "llama3-bpe")


@functools.cache
def chatml_bpe_dir() -> Path:
    """A Qwen2-shaped byte-level BPE with ChatML special tokens and non-special ``<tool_call>``."""
    return build_chatml_bpe(_root() / "chatml-bpe")


def all_model_dirs() -> dict[str, Path]:
    """Every fixture model directory by name (builds what is not built yet)."""
    return {"mistral_v1": mistral_v1_dir(), "llama3_bpe": llama3_bpe_dir(), "chatml_bpe": chatml_bpe_dir()}
