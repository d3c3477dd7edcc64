"""Built-in chat templates: well-known chat layouts, written as plain Jinja.

Each built-in is a ``NAME.jinja`` file in this package plus one :class:`Builtin` entry below
with the special tokens the layout's models use. The templates render exactly what the models'
own templates render (``tests/differential/test_registry_vs_real.py`` proves it against the real
templates), and mark what the assistant must produce, end-of-turn token included, with
``{% generation %}`` so training masks work for every built-in.

Names are case-insensitive and ``_``/``-`` insensitive (``LLAMA_3`` is ``llama-3``); a few
explicit aliases cover the spellings people actually type (``llama3``, ``qwen2_5``, ``cohere``).
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from importlib import resources

from ...errors import UnknownBuiltinError

__all__ = ["Builtin", "DEFAULT_BUILTIN", "get_builtin", "list_builtins"]

DEFAULT_BUILTIN = "chatml"


@dataclass(frozen=True)
class Builtin:
    """A built-in chat template: its name, a one-line description and its special tokens.

    ``template`` (the Jinja source) is read from the package the first time it is asked for.
    """

    name: str
    description: str
    bos_token: str | None
    eos_token: str | None

    @property
    def template(self) -> str:
        return _read_template(self.name)


@functools.lru_cache(maxsize=None)
def _read_template(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.jinja").read_text(encoding="utf-8")


_DEEPSEEK_BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"  # <｜begin▁of▁sentence｜>
_DEEPSEEK_EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"  # <｜end▁of▁sentence｜>

_BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin(
            "alpaca",
            "Alpaca instruction format: '### Instruction:' / '### Response:' blocks; a leading "
            "system message is the preamble",
            "<s>",
            "</s>",
        ),
        Builtin(
            "blenderbot",
            "BlenderBot: message contents joined by spaces, then EOS; no roles or system prompt",
            "<s>",
            "</s>",
        ),
        Builtin(
            "chatml",
            "ChatML: <|im_start|>role ... <|im_end|> for any role, no BOS (the default)",
            None,
            "<|im_end|>",
        ),
        Builtin(
            "command-r",
            "Cohere Command-R / Aya: <|START_OF_TURN_TOKEN|> turns with SYSTEM/USER/CHATBOT tokens",
            "<BOS_TOKEN>",
            "<|END_OF_TURN_TOKEN|>",
        ),
        Builtin(
            "deepseek",
            "DeepSeek-V3: <\uff5cUser\uff5c>/<\uff5cAssistant\uff5c> turns with DeepSeek's tool "
            "call and tool output blocks",
            _DEEPSEEK_BOS,
            _DEEPSEEK_EOS,
        ),
        Builtin(
            "deepseek-v2",
            "DeepSeek-V2.5 / V2-Lite chat: <\uff5cUser\uff5c>/<\uff5cAssistant\uff5c> turns, "
            "system text in place",
            _DEEPSEEK_BOS,
            _DEEPSEEK_EOS,
        ),
        Builtin(
            "gemma",
            "Gemma / Gemma 2 instruct: <start_of_turn>user|model turns; no system role",
            "<bos>",
            "<eos>",
        ),
        Builtin(
            "llama-2",
            "Llama 2 chat: [INST] <<SYS>> ... [/INST] answer </s>; use_default_system_prompt=True "
            "adds Meta's default system prompt",
            "<s>",
            "</s>",
        ),
        Builtin(
            "llama-3",
            "Llama 3 Instruct: <|start_header_id|>role<|end_header_id|> turns ending in <|eot_id|>",
            "<|begin_of_text|>",
            "<|eot_id|>",
        ),
        Builtin(
            "mistral",
            "Mistral-7B-Instruct (v1 tokenizer): <s> [INST] user [/INST] answer</s>, optional "
            "system message in the first turn",
            "<s>",
            "</s>",
        ),
        Builtin(
            "mistral-legacy",
            "Mistral-7B-Instruct-v0.1 as first released: <s>[INST] user [/INST]answer</s> , no "
            "system role",
            "<s>",
            "</s>",
        ),
        Builtin(
            "phi-3",
            "Phi-3 instruct: <|system|>/<|user|>/<|assistant|> turns ending in <|end|>",
            "<s>",
            "<|endoftext|>",
        ),
        Builtin(
            "qwen2.5",
            "Qwen2.5 Instruct: ChatML with Qwen's default system prompt, tools and <tool_call> blocks",
            None,
            "<|im_end|>",
        ),
        Builtin(
            "vicuna",
            "Vicuna v1.1/v1.5: system prompt, then 'USER: ... ASSISTANT: ...</s>' turns",
            "<s>",
            "</s>",
        ),
        Builtin(
            "zephyr",
            "Zephyr: <|system|>/<|user|>/<|assistant|> turns, each ending in </s>",
            "<s>",
            "</s>",
        ),
    )
}

# Other spellings, keyed by their normalised form (see _key). Small and explicit on purpose.
_ALIASES: dict[str, str] = {
    "llama2": "llama-2",
    "llama3": "llama-3",
    "phi3": "phi-3",
    "commandr": "command-r",
    "cohere": "command-r",
    "qwen2-5": "qwen2.5",
    "qwen25": "qwen2.5",
    "deepseek-v3": "deepseek",
}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _resolve(name: str) -> str | None:
    key = _key(name)
    if key in _BUILTINS:
        return key
    return _ALIASES.get(key)


def get_builtin(name: str) -> Builtin:
    """The built-in template called ``name`` (case-, ``_``- and ``-``-insensitive, aliases too).

    Raises :class:`~chatplate.errors.UnknownBuiltinError` with close matches as ``suggestions``.
    """
    if not isinstance(name, str):
        raise UnknownBuiltinError(
            f"a built-in template name must be a string, not {type(name).__name__}",
            source=repr(name),
            looked_for=sorted(_BUILTINS),
            suggestions=[],
        )
    resolved = _resolve(name)
    if resolved is not None:
        return _BUILTINS[resolved]
    suggestions = _suggest(name)
    if suggestions:
        hint = "did you mean " + " or ".join(repr(s) for s in suggestions) + "? "
    else:
        hint = ""
    raise UnknownBuiltinError(
        f"no built-in chat template named {name!r}; {hint}`chatplate list` shows all built-ins",
        source=name,
        looked_for=sorted(_BUILTINS),
        suggestions=suggestions,
    )


def list_builtins() -> list[Builtin]:
    """Every built-in template, sorted by name."""
    return [_BUILTINS[name] for name in sorted(_BUILTINS)]


def _suggest(name: str) -> list[str]:
    """Canonical names close to ``name`` (best first), matching aliases as well as names."""
    candidates = {**{n: n for n in _BUILTINS}, **_ALIASES}
    matches = difflib.get_close_matches(_key(name), list(candidates), n=6, cutoff=0.6)
    suggestions: list[str] = []
    for match in matches:
        canonical = candidates[match]
        if canonical not in suggestions:
            suggestions.append(canonical)
    return suggestions[:3]
