"""Response formats as data: how reasoning, content and tool calls are written in what a model
generates.

A :class:`ResponseFormat` combines one reasoning syntax, one tool-call syntax (or a channel
syntax, for harmony-style models), the markers that wrap the answer, and the stop markers that
end the turn. The syntaxes are listed once here (:data:`REASONING_SYNTAXES`,
:data:`TOOL_CALL_SYNTAXES`, :data:`CHANNEL_SYNTAXES`); detection (``responses/detection.py``)
picks the combination a template renders, by parsing what the template itself writes for a probe
conversation. Nothing here is keyed by model name: a fine-tune that keeps its base model's
markers is parsed by the same syntax.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

__all__ = [
    "ReasoningSyntax",
    "CallSyntax",
    "ToolCallSyntax",
    "ChannelSyntax",
    "ResponseFormat",
    "REASONING_SYNTAXES",
    "TOOL_CALL_SYNTAXES",
    "CHANNEL_SYNTAXES",
    "CONTENT_WRAPPERS",
]


@dataclass(frozen=True)
class ReasoningSyntax:
    """Reasoning between ``open`` and ``close``."""

    name: str
    open: str
    close: str


@dataclass(frozen=True)
class CallSyntax:
    """How the text of one tool-call region becomes calls.

    - ``json``: one or more JSON values (objects, or lists of objects) with a name key
      (``name``/``tool_name``, or an OpenAI ``function`` object) and an arguments key
      (``arguments``/``parameters``, an object or a JSON string).
    - ``pattern``: ``pattern`` (a regular expression with groups ``name`` and optionally ``id``
      and ``args``) matched repeatedly over the region; ``args`` says how the ``args`` group reads:
      ``json``, ``xml`` (``param`` is a regular expression with groups ``key`` and ``value``; the
      values are untyped text), or ``gemma`` (JSON with bare keys and ``<|"|>`` string quotes).
    - ``pythonic``: a Python list of calls, ``[f(a=1), g(b="x")]``.
    """

    kind: Literal["json", "pattern", "pythonic"]
    pattern: str | None = None
    args: Literal["json", "xml", "gemma"] = "json"
    param: str | None = None
    # Early name for streaming: a regular expression matched at the region's start (group ``name``).
    name_at_start: str | None = None


@dataclass(frozen=True)
class ToolCallSyntax:
    """Where tool calls sit in a response and how each reads.

    ``open`` markers start a call region and ``close`` markers end it; with no ``close`` a region
    runs to the next opener, the section's end or the end of the turn. With no ``open`` the
    whole answer is a call when it parses as one (Llama 3's bare JSON). ``section`` markers wrap
    all the calls of a turn. ``syntaxes`` are tried in order on each region.
    """

    name: str
    open: tuple[str, ...]
    syntaxes: tuple[CallSyntax, ...]
    close: tuple[str, ...] = ()
    section: tuple[str, str] | None = None
    # Markers this syntax puts around the answer, dropped from the content.
    wrappers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChannelSyntax:
    """Responses made of headed messages (gpt-oss harmony and its kind).

    Each message is ``[start] HEADER message BODY end``. A header matching ``reasoning`` makes the
    body reasoning; one matching ``call`` (group ``name``) makes it a tool call read by ``body``;
    any other header makes it content.
    """

    name: str
    start: str
    message: str
    ends: tuple[str, ...]
    reasoning: str
    call: str
    body: CallSyntax


@dataclass(frozen=True)
class ResponseFormat:
    """One way of writing an assistant turn: what detection found for a template.

    ``reason`` says why each part was chosen (which probe it parsed back).
    """

    name: str
    reasoning: ReasoningSyntax | None = None
    tool_calls: ToolCallSyntax | None = None
    channels: ChannelSyntax | None = None
    # Markers around the answer that are not part of it (Cohere's <|START_RESPONSE|>).
    wrappers: tuple[str, ...] = ()
    # Markers that end the turn: text after the first one is not part of the message.
    stops: tuple[str, ...] = ()
    reason: str = ""
    # The template's generation prompt, used as the prefix when the caller gives none.
    generation_prompt: str = ""

    def with_stops(self, stops: tuple[str, ...]) -> ResponseFormat:
        return replace(self, stops=stops)


# Patterns shared by the XML-argument families: `<function=NAME>` and `<function name="NAME">`.
_XML_FUNCTION = r'<function(?:=|\s+name=")(?P<name>[^">\n]+)"?\s*>(?P<args>.*?)</function>'
_XML_PARAMETER = r'<parameter(?:=|\s+name=")(?P<key>[^">\n]+)"?(?:\s+\w+="[^"]*")*\s*>(?P<value>.*?)</parameter>'
_JSON = CallSyntax("json")
# <invoke>, also namespaced: <minimax:invoke>, <atem:invoke>, DeepSeek V3.2's <｜DSML｜invoke>.
_NS = r"(?P<ns>\w+:|｜DSML｜)?"
_INVOKE = CallSyntax(
    "pattern", rf'<{_NS}invoke\s+name="(?P<name>[^"]+)"\s*>(?P<args>.*?)</(?P=ns)?invoke>',
    "xml", rf'<{_NS}parameter\s+name="(?P<key>[^"]+)"[^>]*>(?P<value>.*?)</(?P=ns)?parameter>',
    r'\s*<(?:\w+:|｜DSML｜)?invoke\s+name="(?P<name>[^"]+)"',
)


REASONING_SYNTAXES: tuple[ReasoningSyntax, ...] = (
    ReasoningSyntax("think", "<think>", "</think>"),
    ReasoningSyntax("mistral-think", "[THINK]", "[/THINK]"),
    ReasoningSyntax("cohere-thinking", "<|START_THINKING|>", "<|END_THINKING|>"),
    ReasoningSyntax("gemma-thought", "<|channel>thought", "<channel|>"),
    ReasoningSyntax("seed-think", "<seed:think>", "</seed:think>"),
    ReasoningSyntax("hunyuan-think", "<think:opensource>", "</think:opensource>"),
)

TOOL_CALL_SYNTAXES: tuple[ToolCallSyntax, ...] = (
    # Hermes, Qwen 2.5/3, EXAONE 4: <tool_call>{"name": ..., "arguments": ...}</tool_call>
    ToolCallSyntax("hermes", ("<tool_call>",), (_JSON,), close=("</tool_call>",)),
    # Qwen3-Coder, Qwen 3.5+, Nemotron 3: <tool_call><function=N><parameter=K>V</parameter></function></tool_call>
    ToolCallSyntax(
        "qwen3-coder-xml", ("<tool_call>",),
        (CallSyntax("pattern", _XML_FUNCTION, "xml", _XML_PARAMETER, r"\s*<function(?:=|\s+name=\")(?P<name>[^\">\n]+)"),),
        close=("</tool_call>",),
    ),
    # Seed-OSS: the same XML inside <seed:tool_call>.
    ToolCallSyntax(
        "seed-xml", ("<seed:tool_call>",),
        (CallSyntax("pattern", _XML_FUNCTION, "xml", _XML_PARAMETER, r"\s*<function(?:=|\s+name=\")(?P<name>[^\">\n]+)"),),
        close=("</seed:tool_call>",),
    ),
    # GLM 4.5+: <tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value></tool_call>
    ToolCallSyntax(
        "glm-xml", ("<tool_call>",),
        (CallSyntax(
            "pattern", r"\s*(?P<name>[^\s<>]+)(?P<args>(?:\s*<arg_key>.*?</arg_key>\s*<arg_value>.*?</arg_value>)*)\s*",
            "xml", r"<arg_key>(?P<key>.*?)</arg_key>\s*<arg_value>(?P<value>.*?)</arg_value>", r"\s*(?P<name>[^\s<>]+)\s",
        ),),
        close=("</tool_call>",),
    ),
    # MiniMax M2 and other <invoke name="N"><parameter name="K">V</parameter></invoke> blocks.
    ToolCallSyntax(
        "invoke-xml", ("<minimax:tool_call>", "<atem:function_calls>", "<｜DSML｜function_calls>", "<function_calls>"),
        (_INVOKE,),
        close=("</minimax:tool_call>", "</atem:function_calls>", "</｜DSML｜function_calls>", "</function_calls>"),
    ),
    # Mistral: [TOOL_CALLS]NAME[CALL_ID]ID[ARGS]{...} (v11+), or the older [TOOL_CALLS][{...}, ...].
    ToolCallSyntax(
        "mistral", ("[TOOL_CALLS]",),
        (
            CallSyntax(
                "pattern", r"\s*(?P<name>[^\[\]{}\s]+)\s*(?:\[CALL_ID\](?P<id>[^\[]*))?\[ARGS\](?P<args>.*)",
                name_at_start=r"\s*(?P<name>[^\[\]{}\s]+)\s*\[",
            ),
            _JSON,
        ),
    ),
    # DeepSeek V3 / R1: fenced JSON after the name; V3.1: JSON right after the separator.
    ToolCallSyntax(
        "deepseek", ("<｜tool▁call▁begin｜>",),
        (
            CallSyntax(
                "pattern", r"\s*(?:function)?<｜tool▁sep｜>(?P<name>[^\n]+)\n```(?:json)?\n(?P<args>.*?)\n```\s*",
                name_at_start=r"\s*(?:function)?<｜tool▁sep｜>(?P<name>[^\n]+)\n",
            ),
            CallSyntax("pattern", r"\s*(?P<name>[^<\n]+?)\s*<｜tool▁sep｜>(?P<args>.*)",
                       name_at_start=r"\s*(?P<name>[^<\n]+?)\s*<｜tool▁sep｜>"),
        ),
        close=("<｜tool▁call▁end｜>",),
        section=("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"),
    ),
    # Kimi K2: the call id (functions.NAME:INDEX) names the function.
    ToolCallSyntax(
        "kimi", ("<|tool_call_begin|>",),
        (CallSyntax(
            "pattern", r"\s*(?P<id>(?:functions\.)?(?P<name>[^:\s<]+)(?::\d+)?)\s*<\|tool_call_argument_begin\|>(?P<args>.*)",
            name_at_start=r"\s*(?:functions\.)?(?P<name>[^:\s<]+)(?::\d+)?\s*<",
        ),),
        close=("<|tool_call_end|>",),
        section=("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"),
    ),
    # Gemma 4: <|tool_call>call:NAME{key:<|"|>text<|"|>,n:1}<tool_call|>
    ToolCallSyntax(
        "gemma", ("<|tool_call>",),
        (CallSyntax("pattern", r"\s*call:(?P<name>[^{\s]+)(?P<args>\{.*\})\s*", "gemma",
                    name_at_start=r"\s*call:(?P<name>[^{\s]+)\{"),),
        close=("<tool_call|>",),
    ),
    # LFM2, Llama 4, OLMo 3: pythonic lists (or JSON) between markers.
    ToolCallSyntax("pythonic-tagged", ("<|tool_call_start|>", "<|python_start|>", "<function_calls>"),
                   (CallSyntax("pythonic"), _JSON), close=("<|tool_call_end|>", "<|python_end|>", "</function_calls>")),
    # Functionary v3.1: <function=NAME>{...}</function>
    ToolCallSyntax("function-json", ("<function=",), (CallSyntax(
        "pattern", r"(?P<name>[^>\s]+)>(?P<args>.*)", name_at_start=r"(?P<name>[^>\s]+)>"),), close=("</function>",)),
    # Cohere Command R+/A: <|START_ACTION|>[{"tool_name": ..., "parameters": ...}]<|END_ACTION|>
    ToolCallSyntax("cohere-action", ("<|START_ACTION|>",), (_JSON,), close=("<|END_ACTION|>",)),
    # Jamba, Nemotron Nano 2, InternLM 2, Apertus and other JSON between tags.
    ToolCallSyntax("json-tagged", ("<tool_calls>", "<function_call>", "<TOOLCALL>", "<|action_start|><|plugin|>",
                                   "<|tools_prefix|>"), (_JSON,),
                   close=("</tool_calls>", "</function_call>", "</TOOLCALL>", "<|action_end|>", "<|tools_suffix|>")),
    # Phi-4-mini: <|tool_call|>{...}<|/tool_call|>
    ToolCallSyntax("phi4", ("<|tool_call|>",), (_JSON,), close=("<|/tool_call|>",)),
    # Granite 3: a JSON list after <|tool_call|>, to the end of the turn.
    ToolCallSyntax("granite", ("<|tool_call|>",), (_JSON,)),
    # Hunyuan: GLM-like arguments in tags with an :opensource suffix.
    ToolCallSyntax(
        "hunyuan-xml", ("<tool_call:opensource>",),
        (CallSyntax(
            "pattern", r"\s*(?P<name>[^\s<>]+)\s*<tool_sep:opensource>(?P<args>.*)", "xml",
            r"<arg_key:opensource>(?P<key>.*?)</arg_key:opensource>\s*<arg_value:opensource>(?P<value>.*?)"
            r"</arg_value:opensource>", r"\s*(?P<name>[^\s<>]+)\s*<",
        ),),
        close=("</tool_call:opensource>",),
        section=("<tool_calls:opensource>", "</tool_calls:opensource>"),
    ),
    # Llama 4's template: the answer between <|python_start|> and <|python_end|>, then JSON calls.
    ToolCallSyntax("llama4-json", ("<|python_end|>",), (_JSON,), wrappers=("<|python_start|>",)),
    # Llama 3.1+: <|python_tag|>{...} (ends at the end of the turn).
    ToolCallSyntax("python-tag", ("<|python_tag|>",), (_JSON, CallSyntax("pythonic"))),
    # Llama 3.x / 4 without a marker: the whole answer is a JSON call or a pythonic list.
    ToolCallSyntax("bare-json", (), (_JSON,)),
    ToolCallSyntax("bare-pythonic", (), (CallSyntax("pythonic"),)),
)

CHANNEL_SYNTAXES: tuple[ChannelSyntax, ...] = (
    # Functionary v3.2: >>>RECIPIENT, a line; "all" is the answer, a function name a call.
    ChannelSyntax(
        "recipient-lines", ">>>", "\n", (), reasoning=r"(?!)", call=r"^\s*(?!all\s*$)(?P<name>[^\s>]+)\s*$",
        body=CallSyntax("pattern", r"(?P<args>.+)"),
    ),
    # gpt-oss harmony: <|channel|>analysis / commentary to=functions.N / final.
    ChannelSyntax(
        "harmony", "<|start|>", "<|message|>", ("<|end|>", "<|call|>", "<|return|>"),
        reasoning=r"<\|channel\|>\s*analysis\b(?!.*\bto=)",
        call=r"\bto=(?!user\b|all\b)(?:functions\.)?(?P<name>[^\s<]+)",
        body=CallSyntax("pattern", r"(?P<args>.+)"),
    ),
    # Headed messages addressed to=self for reasoning and to=TOOL for calls with an invoke body.
    ChannelSyntax(
        "recipient-invoke", "<|start|>", "<|message|>", ("<|eom|>", "<|eot|>", "<|end|>"),
        reasoning=r"\bto=self\b",
        call=r"\bto=(?!user\b|all\b)(?P<name>[^\s<]+)",
        body=CallSyntax(
            "pattern", r"\s*(?:<(?:\w+:)?function_calls>\s*)?" + _INVOKE.pattern + r"(?:\s*</(?:\w+:)?function_calls>)?\s*",
            "xml", _INVOKE.param,
        ),
    ),
)

# Markers that frame the answer without being part of it.
CONTENT_WRAPPERS: tuple[str, ...] = ("<|START_RESPONSE|>", "<|END_RESPONSE|>", "<|START_TEXT|>", "<|END_TEXT|>")
