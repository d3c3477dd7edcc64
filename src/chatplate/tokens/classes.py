"""The tokenizer transformers 5 builds for a model directory, rebuilt from the same files.

``tokenizer.json`` alone does not decide the ids transformers produces. ``AutoTokenizer`` first
picks a tokenizer class from ``tokenizer_config.json`` and ``config.json``; a class with its own
pipeline (``LlamaTokenizer``, ``Qwen2Tokenizer``, ``GemmaTokenizer``, ...) keeps only the vocab,
merges and post-processor of the file and supplies its own normaliser, pre-tokenizer and model
options. Then the added tokens of ``tokenizer_config.json`` (with their flags) and the named
special tokens are laid over the backend. A Llama-2-style file read as it is gives different ids
for leading spaces and for text after a special token; this module reproduces what transformers
5.23 does instead, with the ``tokenizers`` library doing every step transformers has it do.

The tables below are transformers 5.23's own (``tests/unit/test_tokenizer_classes.py`` checks
them against the installed transformers).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import TokenizerClassWarning
from . import serialized

if TYPE_CHECKING:
    import tokenizers

__all__ = ["GENERIC", "NAMED_SPECIAL_TOKENS", "Backend", "build_backend", "choose_class", "token_content"]

GENERIC = "TokenizersBackend"
_GENERIC_NAMES = frozenset({GENERIC, "PreTrainedTokenizer", "PythonBackend", "BloomTokenizer"})
_MISTRAL_COMMON = "MistralCommonBackend"


# Model types whose declared tokenizer class transformers overrides with its own mapping
# (MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS).
_OVERRIDDEN_HUB_CLASS = frozenset(
    """arctic camembertv2-base chatlm cohere_asr ernie4_5 ernie4_5_moe fuyu h2ovl_chat hyperclovax
    hyperclovax_vision_v2 hyperclovax_vlm internlm2 internlm3 iquestcoder jamba llava llava_next minicpm3
    minicpmv minimax_m2 modernbert modernbert-decoder molmo molmo2 nemotron nvfp4 opencua openvla
    paddleocr_vl phi3 phi3_v phimoe qwen2 qwen3_5 qwen3_5_moe qwen3_5_moe_text qwen4_exp siglip2 smolvlm
    step3_vl vipllava""".split()
)


def _types(classes: Mapping[str, str]) -> dict[str, str]:
    return {model_type: name for name, types in classes.items() for model_type in types.split()}


# transformers' model type -> tokenizer class mapping (TOKENIZER_MAPPING_NAMES).
_CLASS_OF_MODEL_TYPE = _types(
    {
        GENERIC: """EvollaModel arctic aria beam bigbird_pegasus camembertv2-base canary chatlm cohere_asr
        ernie4_5 ernie4_5_moe flex_olmo fuyu glm glm4 glm4_moe glm4_moe_lite glm4v glm4v_moe glm_image glmasr
        got_ocr2 gpt_bigcode gradium_phonon_tts granite granitemoe granitemoehybrid granitemoeshared h2ovl_chat
        hyperclovax hyperclovax_vlm internlm2 internlm3 iquestcoder jamba kimi_k25 kimi_linear kosmos-2 llava
        llava_next mimo_v2_flash minicpm3 minicpm_ocr minicpmv minicpmv4_6 minicpmv4_7 minimax_m2 modernbert
        modernbert-decoder molmo molmo2 nemo_speechlm nemotron nvfp4 nystromformer olmo2 olmo3 olmo_hybrid
        opencua openvla paddleocr_vl pegasus_x persimmon phi3 phi3_v phimoe pix2struct pocket_tts smolvlm
        stablelm step3_vl umt5 vipllava xlm-roberta-xl""",
        _MISTRAL_COMMON: "ministral ministral3 mistral mistral3 mistral_large4 mixtral pixtral voxtral voxtral_realtime",
        "Qwen2Tokenizer": """audioflamingo3 colqwen2 cosmos3_omni dots3_note fun_asr_nano hunyuan_vl internvl
        lighton_ocr moss_transcribe_diarize ovis2 qianfan_ocr qwen2 qwen2_5_omni qwen2_5_vl qwen2_audio qwen2_moe
        qwen2_vl qwen3 qwen3_asr qwen3_moe qwen3_next qwen3_omni_moe qwen3_vl qwen3_vl_moe vibevoice""",
        "Qwen3_5Tokenizer": "qwen3_5 qwen3_5_moe qwen3_5_moe_text qwen3_5_text qwen4_exp",
        "CohereTokenizer": "aya_vision cohere cohere2",
        "GPT2Tokenizer": """blip-2 codegen dbrx emu3 gpt2 gpt_neo gptj hyperclovax_vision_v2 instructblip
        instructblipvideo jais2 opt phi starcoder2""",
        "CodeLlamaTokenizer": "code_llama",
        "GemmaTokenizer": """diffusion_gemma gemma gemma2 gemma3 gemma3_text gemma3n gemma3n_text recurrent_gemma
        shieldgemma2 t5gemma zaya""",
        "GPTNeoXTokenizer": "falcon_mamba gpt_neox mamba mamba2 mpt olmo olmoe rwkv xlstm",
        "LlamaTokenizer": "idefics idefics2",
        "Siglip2Tokenizer": "siglip2",
        # Non-chat classes: chatplate warns that their pipelines are not reproduced.
        "AlbertTokenizer": "albert yoso",
        "BartTokenizer": "florence2",
        "BarthezTokenizer": "barthez",
        "BartphoTokenizer": "bartpho",
        "BertGenerationTokenizer": "bert-generation",
        "BertJapaneseTokenizer": "bert-japanese",
        "BertTokenizer": "align bark bert blip bros chinese_clip convbert distilbert electra ernie flava git grounding-dino layoutlm megatron-bert mm-grounding-dino nezha nomic_bert qdqbert realm retribert squeezebert tvp vilt visual_bert",
        "BertweetTokenizer": "bertweet",
        "BigBirdTokenizer": "big_bird",
        "BioGptTokenizer": "biogpt",
        "BlenderbotSmallTokenizer": "blenderbot-small",
        "BlenderbotTokenizer": "blenderbot",
        "ByT5Tokenizer": "byt5",
        "CLIPTokenizer": "aimv2 clip clipseg groupvit omdet-turbo oneformer owlv2 owlvit sam3 sam3_video xclip",
        "CTRLTokenizer": "ctrl",
        "CamembertTokenizer": "camembert",
        "CanineTokenizer": "canine",
        "ClvpTokenizer": "clvp",
        "CpmAntTokenizer": "cpmant",
        "CpmTokenizer": "cpm",
        "DPRQuestionEncoderTokenizer": "dpr",
        "DebertaTokenizer": "deberta",
        "DebertaV2Tokenizer": "deberta-v2",
        "DiaTokenizer": "dia",
        "EsmTokenizer": "esm",
        "EsmcTokenizer": "esmc esmfold2",
        "FNetTokenizer": "fnet",
        "FSMTTokenizer": "fsmt",
        "FlaubertTokenizer": "flaubert",
        "FunnelTokenizer": "funnel",
        "GPTNeoXJapaneseTokenizer": "gpt_neox_japanese",
        "GPTSw3Tokenizer": "gpt-sw3",
        "HerbertTokenizer": "herbert",
        "LEDTokenizer": "led",
        "LasrTokenizer": "lasr_ctc lasr_encoder",
        "LayoutLMv2Tokenizer": "layoutlmv2",
        "LayoutLMv3Tokenizer": "layoutlmv3",
        "LayoutXLMTokenizer": "layoutxlm",
        "LukeTokenizer": "luke",
        "LxmertTokenizer": "lxmert",
        "M2M100Tokenizer": "m2m_100",
        "MBart50Tokenizer": "mbart50",
        "MBartTokenizer": "mbart",
        "MLukeTokenizer": "mluke",
        "MPNetTokenizer": "mpnet",
        "MarianTokenizer": "marian",
        "MarkupLMTokenizer": "markuplm",
        "MgpstrTokenizer": "mgp-str",
        "MobileBertTokenizer": "mobilebert",
        "MvpTokenizer": "mvp",
        "MyT5Tokenizer": "myt5",
        "NllbTokenizer": "nllb nllb-moe",
        "NougatTokenizer": "nougat pp_formulanet",
        "OpenAIGPTTokenizer": "openai-gpt",
        "PLBartTokenizer": "plbart",
        "ParakeetTokenizer": "granite_speech5_ctc nemotron3_5_asr nemotron_asr_streaming parakeet_ctc parakeet_rnnt parakeet_tdt",
        "PegasusTokenizer": "pegasus",
        "PerceiverTokenizer": "perceiver",
        "PhobertTokenizer": "phobert",
        "ProphetNetTokenizer": "prophetnet",
        "RagTokenizer": "rag",
        "ReformerTokenizer": "reformer",
        "RemBertTokenizer": "rembert",
        "RoCBertTokenizer": "roc_bert",
        "RoFormerTokenizer": "roformer",
        "RobertaTokenizer": "bart bridgetower clap data2vec-text ibert lilt longformer mega mra roberta roberta-prelayernorm",
        "SeamlessM4TTokenizer": "seamless_m4t seamless_m4t_v2",
        "SiglipTokenizer": "siglip",
        "Speech2TextTokenizer": "speech_to_text",
        "SpeechT5Tokenizer": "speecht5",
        "SplinterTokenizer": "splinter",
        "T5Tokenizer": "mt5 musicgen musicgen_melody switch_transformers t5",
        "TapasTokenizer": "tapas",
        "Tipsv2Tokenizer": "tipsv2",
        "UdopTokenizer": "udop",
        "VideoPrismTokenizer": "videoprism",
        "VitsTokenizer": "vits",
        "Wav2Vec2CTCTokenizer": "data2vec-audio hubert unispeech unispeech-sat wav2vec2 wav2vec2-bert wav2vec2-conformer",
        "Wav2Vec2PhonemeCTCTokenizer": "wav2vec2_phoneme",
        "WhisperTokenizer": "whisper",
        "XGLMTokenizer": "xglm",
        "XLMRobertaTokenizer": "gte jina_embeddings_v3 metaclip_2 trocr xlm-roberta xmod",
        "XLMTokenizer": "xlm",
        "XLNetTokenizer": "xlnet",
    }
)

NAMED_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen3.5 counts combining marks as letters.
_QWEN3_5_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


# -- choosing the class ------------------------------------------------------------------------


def _strip_fast(name: str) -> str:
    return name.removesuffix("Fast")


def _resolve(name: str) -> str:
    """A declared class name as transformers resolves it: a reproduced or other known class, or
    the generic backend (unknown names, ``PreTrainedTokenizerFast``, ...)."""
    name = _strip_fast(name)
    if name in _PIPELINES or name in _UNREPRODUCED_CLASSES:
        return name
    return GENERIC


def choose_class(
    tokenizer_config: Mapping[str, Any], model_config: Mapping[str, Any] | None, tokenizer_json: str
) -> str:
    """The class transformers 5.23's ``AutoTokenizer.from_pretrained(directory)`` would build.

    ``tokenizer_json`` is the raw text of ``tokenizer.json`` (one of transformers' rules looks for
    ``"ByteLevel"`` in it). Returns :data:`GENERIC` when the file is used as it is.

    >>> choose_class({"tokenizer_class": "LlamaTokenizerFast"}, {"model_type": "llama"}, '{"pre_tokenizer": null}')
    'LlamaTokenizer'
    >>> choose_class({"tokenizer_class": "LlamaTokenizerFast"}, {"model_type": "mistral"}, '{"pre_tokenizer": null}')
    'TokenizersBackend'
    """
    model_config = model_config or {}
    model_type = model_config.get("model_type")
    model_type = model_type if isinstance(model_type, str) else ""
    auto_map = tokenizer_config.get("auto_map")
    if isinstance(auto_map, Mapping):
        auto_map = auto_map.get("AutoTokenizer")
    if auto_map is not None and model_type in _OVERRIDDEN_HUB_CLASS:
        auto_map = None  # transformers ignores remote code for these types
    declared = tokenizer_config.get("tokenizer_class") or model_config.get("tokenizer_class")
    declared = declared if isinstance(declared, str) else None
    mapped = _CLASS_OF_MODEL_TYPE.get(model_type)
    if auto_map is not None:
        # Remote code: only runs with trust_remote_code, which chatplate never does.
        return GENERIC
    # A Llama class over a byte-level file (Llama 3, DeepSeek, Falcon 3 repos) is read as it is.
    if (
        declared is not None
        and _strip_fast(declared) == "LlamaTokenizer"
        and mapped != _MISTRAL_COMMON
        and model_type not in _OVERRIDDEN_HUB_CLASS
        and '"ByteLevel"' in tokenizer_json
    ):
        return GENERIC
    # The declared class disagrees with the model type's own.
    if declared is not None and model_type and mapped is not None and _strip_fast(mapped) != _strip_fast(declared):
        if mapped in (GENERIC, _MISTRAL_COMMON):
            # Mistral's own backend needs tekken.json and mistral-common; from tokenizer.json,
            # transformers builds the generic backend.
            return GENERIC
        chosen = _resolve(mapped if model_type in _OVERRIDDEN_HUB_CLASS else declared)
        return chosen
    if declared is not None:
        return _resolve(declared)
    if mapped is not None and mapped != _MISTRAL_COMMON:
        return _strip_fast(mapped)
    return GENERIC


# -- the class pipelines -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Pipeline:
    """What a class's ``__init__`` sets up: BPE model options, named-token defaults, and the
    normaliser / pre-tokenizer / decoder it installs (built from the effective settings)."""

    model: Callable[[Mapping[str, Any]], dict[str, Any]]
    components: Callable[[Mapping[str, Any]], dict[str, Any]]
    defaults: Mapping[str, str | None]
    extra_named: Mapping[str, str] = field(default_factory=dict)
    add_bos: bool = False
    rewrite_post_processor: bool = False
    respecial_all: bool = False
    add_specials_as_special: bool = False


def _sentencepiece_bpe(unk: Any) -> dict[str, Any]:
    return {"unk_token": unk, "fuse_unk": True, "byte_fallback": True, "continuing_subword_prefix": None,
            "end_of_word_suffix": None}


def _byte_level_bpe() -> dict[str, Any]:
    return {"unk_token": None, "fuse_unk": False, "byte_fallback": False, "continuing_subword_prefix": "",
            "end_of_word_suffix": ""}


def _metaspace(scheme: str) -> Any:
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=False)


def _sentencepiece_decoder(strip: bool) -> Any:
    from tokenizers import decoders

    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if strip:
        steps.append(decoders.Strip(content=" ", left=1))
    return decoders.Sequence(steps)


def _llama(settings: Mapping[str, Any]) -> dict[str, Any]:
    add_prefix_space = settings.get("add_prefix_space")
    add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
    if not add_prefix_space:
        scheme = "never"
    else:
        scheme = "first" if not settings.get("legacy", False) else "always"
    return {"normalizer": None, "pre_tokenizer": _metaspace(scheme), "decoder": _sentencepiece_decoder(add_prefix_space)}


def _code_llama(settings: Mapping[str, Any]) -> dict[str, Any]:
    add_prefix_space = settings.get("add_prefix_space")
    add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
    return {
        "normalizer": None,
        "pre_tokenizer": _metaspace("first" if add_prefix_space else "never"),
        "decoder": _sentencepiece_decoder(True),
    }


def _gemma(settings: Mapping[str, Any]) -> dict[str, Any]:
    from tokenizers import normalizers, pre_tokenizers

    return {
        "normalizer": normalizers.Replace(" ", "▁"),
        "pre_tokenizer": pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False),
        "decoder": _sentencepiece_decoder(False),
    }


def _qwen(regex: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def components(settings: Mapping[str, Any]) -> dict[str, Any]:
        from tokenizers import Regex, decoders, normalizers, pre_tokenizers

        return {
            "normalizer": normalizers.NFC(),
            "pre_tokenizer": pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
                    pre_tokenizers.ByteLevel(add_prefix_space=bool(settings.get("add_prefix_space")), use_regex=False),
                ]
            ),
            "decoder": decoders.ByteLevel(),
        }

    return components


def _cohere(settings: Mapping[str, Any]) -> dict[str, Any]:
    from tokenizers import decoders, normalizers, pre_tokenizers

    add_prefix_space = bool(settings.get("add_prefix_space"))
    return {
        "normalizer": normalizers.NFC(),
        "pre_tokenizer": pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, trim_offsets=True),
            ]
        ),
        "decoder": decoders.ByteLevel(add_prefix_space=add_prefix_space, trim_offsets=True),
    }


def _gpt2(settings: Mapping[str, Any]) -> dict[str, Any]:
    from tokenizers import decoders, pre_tokenizers

    return {
        "normalizer": None,
        "pre_tokenizer": pre_tokenizers.ByteLevel(add_prefix_space=bool(settings.get("add_prefix_space"))),
        "decoder": decoders.ByteLevel(),
    }


def _codegen(settings: Mapping[str, Any]) -> dict[str, Any]:
    from tokenizers import processors

    # Its own post-processor, kept only when the file has none.
    return {**_gpt2(settings), "post_processor": processors.ByteLevel(add_prefix_space=True, use_regex=True, trim_offsets=False)}


def _gpt_neox(settings: Mapping[str, Any]) -> dict[str, Any]:
    from tokenizers import decoders, normalizers, pre_tokenizers

    trim_offsets = settings.get("trim_offsets")
    return {
        "normalizer": normalizers.NFC(),
        "pre_tokenizer": pre_tokenizers.ByteLevel(
            add_prefix_space=bool(settings.get("add_prefix_space")),
            trim_offsets=True if trim_offsets is None else bool(trim_offsets),
        ),
        "decoder": decoders.ByteLevel(),
    }


def _unk_from(settings: Mapping[str, Any]) -> dict[str, Any]:
    return _sentencepiece_bpe(token_content(settings.get("unk_token")))


_ENDOFTEXT = "<|endoftext|>"
_PIPELINES: dict[str, _Pipeline] = {
    "LlamaTokenizer": _Pipeline(
        model=lambda s: _sentencepiece_bpe(None), components=_llama,
        defaults={"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
    ),
    "CodeLlamaTokenizer": _Pipeline(
        model=_unk_from, components=_code_llama,
        defaults={"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
        extra_named={"prefix_token": "▁<PRE>", "middle_token": "▁<MID>", "suffix_token": "▁<SUF>",
                     "eot_token": "▁<EOT>", "fill_token": "<FILL_ME>"},
        add_bos=True,
    ),
    "GemmaTokenizer": _Pipeline(
        model=_unk_from, components=_gemma,
        defaults={"unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                  "mask_token": "<mask>"},
    ),
    "Qwen2Tokenizer": _Pipeline(
        model=lambda s: _byte_level_bpe(), components=_qwen(_QWEN2_SPLIT),
        defaults={"unk_token": _ENDOFTEXT, "bos_token": None, "eos_token": _ENDOFTEXT, "pad_token": _ENDOFTEXT},
        respecial_all=True,
    ),
    "Qwen3_5Tokenizer": _Pipeline(
        model=lambda s: _byte_level_bpe(), components=_qwen(_QWEN3_5_SPLIT),
        defaults={"unk_token": _ENDOFTEXT, "bos_token": None, "eos_token": _ENDOFTEXT, "pad_token": _ENDOFTEXT},
    ),
    "CohereTokenizer": _Pipeline(
        model=lambda s: _byte_level_bpe(), components=_cohere,
        defaults={"unk_token": "<UNK>", "bos_token": "<BOS_TOKEN>", "eos_token": "<|END_OF_TURN_TOKEN|>",
                  "pad_token": "<PAD>", "cls_token": "<CLS>", "sep_token": "<SEP>", "mask_token": "<MASK_TOKEN>"},
        add_specials_as_special=True,
    ),
    "GPT2Tokenizer": _Pipeline(
        model=lambda s: _byte_level_bpe(), components=_gpt2,
        defaults={"unk_token": _ENDOFTEXT, "bos_token": _ENDOFTEXT, "eos_token": _ENDOFTEXT, "pad_token": None},
    ),
    "CodeGenTokenizer": _Pipeline(
        model=lambda s: _byte_level_bpe(), components=_codegen,
        defaults={"unk_token": _ENDOFTEXT, "bos_token": _ENDOFTEXT, "eos_token": _ENDOFTEXT, "pad_token": None},
    ),
    "GPTNeoXTokenizer": _Pipeline(
        model=lambda s: _byte_level_bpe(), components=_gpt_neox,
        defaults={"unk_token": _ENDOFTEXT, "bos_token": _ENDOFTEXT, "eos_token": _ENDOFTEXT,
                  "pad_token": "<|padding|>"},
        rewrite_post_processor=True,
    ),
}


# Classes in that mapping that build a pipeline of their own which chatplate does not reproduce
# (none is a chat model's): the file is then used as it is, with a warning. FNet and Parakeet
# have no pipeline of their own, so transformers uses their files as they are too.
_UNREPRODUCED_CLASSES = frozenset(_CLASS_OF_MODEL_TYPE.values()) - set(_PIPELINES) - {
    GENERIC, _MISTRAL_COMMON, "FNetTokenizer", "ParakeetTokenizer",
}


# -- building the backend ----------------------------------------------------------------------


@dataclass
class Backend:
    """A built tokenizer and what the build decided: the class, whether its pipeline replaced
    the file's, and the named special tokens (``bos_token`` ... as strings, ``None`` for none)."""

    tokenizer: tokenizers.Tokenizer
    tokenizer_class: str
    rebuilt: bool
    special_tokens: dict[str, str | None]
    extra_special_tokens: list[str]


def token_content(value: Any) -> str | None:
    """The text of a token given as a string, a config object or an ``AddedToken``."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        value = value.get("content")
        return value if isinstance(value, str) else None
    content = getattr(value, "content", None)
    return content if isinstance(content, str) else None


def _added_token(entry: Mapping[str, Any]) -> Any:
    from tokenizers import AddedToken

    flags = {key: bool(entry[key]) for key in ("single_word", "lstrip", "rstrip", "normalized", "special") if key in entry}
    return AddedToken(entry["content"], **flags)


def _token_key(token: Any) -> tuple[Any, ...]:
    return (token.content, token.single_word, token.lstrip, token.rstrip, token.normalized, token.special)


def build_backend(
    tokenizer_json: str,
    tokenizer_config: Mapping[str, Any] | None = None,
    model_config: Mapping[str, Any] | None = None,
    *,
    origin: str = "tokenizer.json",
) -> Backend:
    """Build the tokenizer transformers would build from these three files' contents.

    ``tokenizer_json`` is the text of ``tokenizer.json``; the configs are the parsed
    ``tokenizer_config.json`` and ``config.json`` (either may be empty). Raises ``ValueError``
    (from ``json`` or ``tokenizers``) when the file is not a valid tokenizer.

        backend = build_backend(Path("tokenizer.json").read_text(), {"tokenizer_class": "LlamaTokenizer"})
        backend.tokenizer_class, backend.rebuilt
    """
    config = dict(tokenizer_config or {})
    class_name = choose_class(config, model_config, tokenizer_json)
    pipeline = _PIPELINES.get(class_name)
    if pipeline is None and class_name in _UNREPRODUCED_CLASSES:
        _warn(f"{origin}: transformers builds this tokenizer as {class_name}, whose pipeline chatplate does not "
              "reproduce; tokenizer.json is used as it is, so ids may differ from transformers'")
    # The settings a class __init__ sees: the config's keys over the class defaults.
    settings: dict[str, Any] = {**(pipeline.defaults if pipeline else {}), **config}
    if pipeline is None:
        tokenizer, file_added = _from_file(tokenizer_json)
    else:
        built = _rebuild(tokenizer_json, pipeline, settings)
        if built is None:
            _warn(f"{origin}: transformers would rebuild this tokenizer as {class_name}, which needs a BPE model; "
                  "the file's model is not one, so it is used as it is")
            pipeline = None
            tokenizer, file_added = _from_file(tokenizer_json)
        else:
            tokenizer, file_added = built
    named, extras = _named_special_tokens(config, settings, pipeline, _listed_added_tokens(config, file_added))
    _overlay_added_tokens(tokenizer, _listed_added_tokens(config, file_added), named, extras, pipeline)
    _set_post_processor(tokenizer, named.get("bos_token"), pipeline)
    tokenizer.encode_special_tokens = bool(config.get("split_special_tokens", False))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return Backend(
        tokenizer=tokenizer,
        tokenizer_class=class_name,
        rebuilt=pipeline is not None,
        special_tokens={key: token_content(value) for key, value in named.items()},
        extra_special_tokens=[str(token_content(value)) for value in extras],
    )


def _warn(message: str) -> None:
    warnings.warn(message, TokenizerClassWarning, stacklevel=4)


def _from_file(tokenizer_json: str) -> tuple[tokenizers.Tokenizer, list[Any]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    return tokenizer, [token for _, token in sorted(tokenizer.get_added_tokens_decoder().items())]


def _rebuild(tokenizer_json: str, pipeline: _Pipeline, settings: Mapping[str, Any]) -> tuple[tokenizers.Tokenizer, list[Any]] | None:
    """The class's own pipeline over the file's vocab, merges and post-processor; no added tokens
    yet (transformers re-adds them from the config). ``None`` when the file's model is not BPE."""
    from tokenizers import Tokenizer

    split = serialized.split_at_vocab(tokenizer_json)
    spec = serialized.pipeline(tokenizer_json, split)
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict) or spec["model"].get("type") != "BPE":
        return None
    file_added = sorted(
        (entry for entry in spec.get("added_tokens") or [] if isinstance(entry, Mapping) and isinstance(entry.get("content"), str)),
        key=lambda entry: entry.get("id", 0),
    )
    blanks = {"added_tokens": [], "normalizer": None, "pre_tokenizer": None, "decoder": None, "truncation": None,
              "padding": None}
    overrides = {"dropout": None, "ignore_merges": False, **pipeline.model(settings)}
    text = serialized.rewrite(tokenizer_json, split, blanks, overrides)
    tokenizer = Tokenizer.from_str(text)
    components = pipeline.components(settings)
    tokenizer.normalizer = components["normalizer"]
    tokenizer.pre_tokenizer = components["pre_tokenizer"]
    tokenizer.decoder = components["decoder"]
    if tokenizer.post_processor is None and "post_processor" in components:
        tokenizer.post_processor = components["post_processor"]
    return tokenizer, [_added_token(entry) for entry in file_added]


def _listed_added_tokens(config: Mapping[str, Any], file_added: list[Any]) -> list[Any]:
    """The added tokens transformers re-adds: tokenizer_config's ``added_tokens_decoder`` (in id
    order) when it has one, else the file's."""
    decoder = config.get("added_tokens_decoder")
    if not isinstance(decoder, Mapping):
        return file_added
    entries = []
    for index, entry in decoder.items():
        if isinstance(entry, Mapping) and isinstance(entry.get("content"), str):
            try:
                entries.append((int(index), entry))
            except (TypeError, ValueError):
                continue
    return [_added_token(entry) for _, entry in sorted(entries, key=lambda item: item[0])]


def _named_special_tokens(
    config: Mapping[str, Any], settings: Mapping[str, Any], pipeline: _Pipeline | None, listed: list[Any]
) -> tuple[dict[str, Any], list[Any]]:
    """Named special tokens (``bos_token``..., then model-specific ``*_token`` keys) and the extra
    special tokens, each a string or an ``AddedToken``. A string naming a listed added token takes
    that token (and its flags)."""
    by_content = {token.content: token for token in listed}

    def token(value: Any) -> Any:
        if isinstance(value, str):
            return by_content.get(value, value)
        if isinstance(value, Mapping) and isinstance(value.get("content"), str):
            return _added_token(value)
        return None

    named: dict[str, Any] = {key: token(settings.get(key)) for key in NAMED_SPECIAL_TOKENS}
    for key, value in (pipeline.extra_named if pipeline else {}).items():
        named[key] = token(value)
    for key, value in config.items():
        if key.endswith("_token") and key not in NAMED_SPECIAL_TOKENS and (
            isinstance(value, str) or (isinstance(value, Mapping) and value.get("__type") == "AddedToken")
        ):
            named[key] = token(value)
    extras_value = config.get("extra_special_tokens") or config.get("additional_special_tokens")
    if isinstance(extras_value, Mapping):
        named.update((key, token(value)) for key, value in extras_value.items())
        extras_value = []
    extras = [token(value) for value in extras_value or [] if token(value) is not None]
    if pipeline is not None:
        extras += [token(value) for value in pipeline.extra_named.values()]
    return {key: value for key, value in named.items() if value is not None}, extras


def _overlay_added_tokens(
    tokenizer: tokenizers.Tokenizer, listed: list[Any], named: dict[str, Any], extras: list[Any], pipeline: _Pipeline | None
) -> None:
    """transformers' added-token steps, in its order, through the same ``tokenizers`` calls."""
    from tokenizers import AddedToken

    present = tokenizer.get_added_tokens_decoder().values()
    present_keys = {_token_key(token) for token in present}
    # A listed token already present with other flags is added again: the config's flags win.
    to_add: list[Any] = [token for token in listed if _token_key(token) not in present_keys]
    known = {token.content for token in present} | {token.content for token in to_add}
    for value in [*named.values(), *extras]:
        content = token_content(value)
        if content not in known:
            to_add.append(value)
            known.add(content)
    named_contents = {token_content(value) for value in named.values()}
    tokens = []
    for value in to_add:
        if isinstance(value, str):
            value = AddedToken(value, special=True)
        elif not value.special and value.content in named_contents:
            value = AddedToken(value.content, single_word=value.single_word, lstrip=value.lstrip,
                               rstrip=value.rstrip, normalized=value.normalized, special=True)
        tokens.append(value)
    if tokens:
        tokenizer.add_tokens(tokens)
    if pipeline is not None and pipeline.respecial_all:
        every = dict.fromkeys(str(token_content(value)) for value in [*named.values(), *extras])
        tokenizer.add_tokens([AddedToken(content, special=True) for content in every])
    if pipeline is not None and pipeline.add_specials_as_special:
        tokenizer.add_special_tokens([
            AddedToken(value, special=True, normalized=False) if isinstance(value, str) else value
            for value in [*named.values(), *extras]
        ])


def _set_post_processor(tokenizer: tokenizers.Tokenizer, bos_value: Any, pipeline: _Pipeline | None) -> None:
    """transformers writes its own post-processor when the file has none or the class asks for
    one, from its add_bos/add_eos flags. The config's flags never count when there is a
    tokenizer.json, so only a class default (CodeLlama's) adds BOS; nothing adds EOS."""
    from tokenizers import processors

    if tokenizer.post_processor is not None and not (pipeline and (pipeline.add_bos or pipeline.rewrite_post_processor)):
        return
    bos = token_content(bos_value)
    bos_id = tokenizer.token_to_id(bos) if bos is not None else None
    if pipeline is not None and pipeline.add_bos and bos_id is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
        )
    else:
        tokenizer.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
