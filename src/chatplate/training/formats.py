"""Dataset records in the common SFT formats, turned into conversations.

=================  ============================================================================
``openai``         ``{"messages": [{"role", "content", ...}], "tools": [...]}``
``sharegpt``       ``{"conversations": [{"from": "human"|"gpt"|"system"|"function_call"|"observation",
                   "value": ...}], "system": ..., "tools": ...}`` (turns with ``role``/``content`` too)
``pairs``          ``[[user, assistant], ...]`` or ``{"pairs"|"history": [[user, assistant], ...]}``
``alpaca``         ``{"instruction", "input", "output", "system", "history": [[q, a], ...]}``
``prompt_completion``  ``{"prompt": str | messages, "completion": str | messages}``
=================  ============================================================================

Validate, then normalise: :func:`to_example` checks a record's shape for its format and returns
an :class:`Example` (messages and tools); a record that does not fit raises :class:`RecordError`
with a ``reason`` (``unknown_format``, ``bad_record``, ``bad_role``) and a message saying what
is wrong and where.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, RecordError
from ..messages import STANDARD_ROLES, is_pair_history, messages_from_pairs

__all__ = ["FORMATS", "Example", "detect_format", "to_example"]

FORMATS = ("openai", "sharegpt", "pairs", "alpaca", "prompt_completion")

# Roles a conversation may carry (chat templates decide what they render).
_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
}


@dataclass
class Example:
    """One training conversation: its messages and the tools its template should see."""

    messages: list[dict[str, Any]]
    tools: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def detect_format(record: Any) -> str:
    """The format of one record, from its keys.

    >>> detect_format({"conversations": [{"from": "human", "value": "hi"}]})
    'sharegpt'
    >>> detect_format([["hi", "hello"]])
    'pairs'
    """
    if isinstance(record, Mapping):
        if isinstance(record.get("messages"), list):
            return "openai"
        if isinstance(record.get("conversations"), list):
            return "sharegpt"
        if "instruction" in record and "output" in record:
            return "alpaca"
        if "prompt" in record and "completion" in record:
            return "prompt_completion"
        if is_pair_history(record.get("pairs")) or is_pair_history(record.get("history")):
            return "pairs"
        keys = ", ".join(sorted(map(str, record))[:8]) or "none"
        raise RecordError(
            f"unknown record format (keys: {keys}); expected 'messages', 'conversations' (ShareGPT), "
            "'instruction'/'output' (Alpaca), 'prompt'/'completion' or a pair history; name the format with "
            "--format if it is one of these",
            reason="unknown_format",
        )
    if is_pair_history(record):
        return "pairs"
    raise RecordError(f"unknown record format: a {type(record).__name__}, not an object", reason="unknown_format")


def to_example(record: Any, format: str | None = None) -> Example:
    """Validate ``record`` as ``format`` (detected when ``None``) and return its conversation.

    >>> to_example({"instruction": "Add 2 and 2", "input": "", "output": "4"}).messages
    [{'role': 'user', 'content': 'Add 2 and 2'}, {'role': 'assistant', 'content': '4'}]
    """
    chosen = format or detect_format(record)
    if chosen not in FORMATS:
        raise InputError(f"format: expected one of {', '.join(FORMATS)}, got {chosen!r}")
    if chosen == "pairs":
        return _from_pairs(record)
    if not isinstance(record, Mapping):
        raise RecordError(f"a {chosen} record must be an object, got {type(record).__name__}", reason="bad_record")
    example = {"openai": _from_openai, "sharegpt": _from_sharegpt, "alpaca": _from_alpaca,
               "prompt_completion": _from_prompt_completion}[chosen](record)
    example.tools = _tools(record)
    _check_roles(example.messages)
    _weights_to_train_flags(example.messages)
    return example


def _weights_to_train_flags(messages: list[dict[str, Any]]) -> None:
    # OpenAI's fine-tuning format (and ShareGPT exports) mark untrained turns with "weight": 0.
    for message in messages:
        if "weight" in message:
            weight = message.pop("weight")
            if weight in (0, False):
                message.setdefault("train", False)


def _tools(record: Mapping[str, Any]) -> list[Any] | None:
    tools = record.get("tools")
    if tools is None or tools == "" or tools == []:
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except (ValueError, RecursionError) as exc:
            raise RecordError(f"tools: not valid JSON ({exc})", reason="bad_record") from exc
    if not isinstance(tools, list):
        raise RecordError(f"tools: expected a list of tool schemas, got {type(tools).__name__}", reason="bad_record")
    return tools


def _check_roles(messages: list[dict[str, Any]]) -> None:
    if not messages:
        raise RecordError("the conversation has no messages", reason="bad_record")
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise RecordError(f"messages[{index}]: expected an object, got {type(message).__name__}", reason="bad_record")
        role = message.get("role")
        if role not in STANDARD_ROLES:
            raise RecordError(
                f"messages[{index}].role: {role!r} is not a chat role (expected one of {', '.join(sorted(STANDARD_ROLES))})",
                reason="bad_role",
            )


def _from_openai(record: Mapping[str, Any]) -> Example:
    messages = record["messages"]
    if not isinstance(messages, list):
        raise RecordError("messages: expected a list", reason="bad_record")
    return Example([dict(m) if isinstance(m, Mapping) else m for m in messages])


def _from_sharegpt(record: Mapping[str, Any]) -> Example:
    turns = record.get("conversations")
    if not isinstance(turns, list):
        raise RecordError("conversations: expected a list of {from, value} objects", reason="bad_record")
    messages: list[dict[str, Any]] = []
    system = record.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    for index, turn in enumerate(turns):
        if isinstance(turn, Mapping) and "role" in turn and "from" not in turn:
            # Many exports keep OpenAI-style messages under "conversations".
            messages.append(dict(turn))
            continue
        if not isinstance(turn, Mapping) or "from" not in turn or "value" not in turn:
            raise RecordError(f"conversations[{index}]: expected an object with 'from' and 'value'", reason="bad_record")
        speaker = turn["from"]
        role = _SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            raise RecordError(
                f"conversations[{index}].from: {speaker!r} is not a ShareGPT role (expected one of "
                f"{', '.join(_SHAREGPT_ROLES)})",
                reason="bad_role",
            )
        value = turn["value"]
        if speaker == "function_call":
            message: dict[str, Any] = {"role": "assistant", "tool_calls": [_tool_call(value, index)]}
        else:
            message = {"role": role, "content": value}
        if "weight" in turn:
            message["weight"] = turn["weight"]
        messages.append(message)
    return Example(messages)


def _tool_call(value: Any, index: int) -> dict[str, Any]:
    call = value
    if isinstance(value, str):
        try:
            call = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise RecordError(f"conversations[{index}].value: a function_call must be JSON ({exc})", reason="bad_record") from exc
    if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
        raise RecordError(f"conversations[{index}].value: a function_call needs a 'name'", reason="bad_record")
    return {"type": "function", "function": {"name": call["name"], "arguments": call.get("arguments", {})}}


def _from_pairs(record: Any) -> Example:
    pairs = record
    if isinstance(record, Mapping):
        pairs = record.get("pairs") if record.get("pairs") is not None else record.get("history")
    if not is_pair_history(pairs):
        raise RecordError("expected a pair history [[user, assistant], ...] of strings", reason="bad_record")
    messages = messages_from_pairs(pairs)
    system = record.get("system") if isinstance(record, Mapping) else None
    if isinstance(system, str) and system:
        messages.insert(0, {"role": "system", "content": system})
    example = Example(messages)
    if isinstance(record, Mapping):
        example.tools = _tools(record)
    _check_roles(example.messages)
    return example


def _text(record: Mapping[str, Any], key: str, *, required: bool) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"{key}: expected a string, got {type(value).__name__}", reason="bad_record")
    return value


def _from_alpaca(record: Mapping[str, Any]) -> Example:
    instruction = _text(record, "instruction", required=True)
    extra_input = _text(record, "input", required=False)
    output = _text(record, "output", required=True)
    messages: list[dict[str, Any]] = []
    system = record.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    history = record.get("history")
    if history:
        # LLaMA-Factory's Alpaca: earlier [instruction, response] pairs come first.
        if not is_pair_history(history) or any(answer is None for _, answer in history):
            raise RecordError("history: expected [[instruction, response], ...] of strings", reason="bad_record")
        messages += messages_from_pairs(history)
    prompt = f"{instruction}\n\n{extra_input}" if extra_input else instruction
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return Example(messages)


def _from_prompt_completion(record: Mapping[str, Any]) -> Example:
    prompt, completion = record.get("prompt"), record.get("completion")
    if isinstance(prompt, str) and isinstance(completion, str):
        return Example([{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}])
    if isinstance(prompt, list) and isinstance(completion, list):
        return Example([dict(m) if isinstance(m, Mapping) else m for m in [*prompt, *completion]])
    raise RecordError(
        "prompt/completion: expected two strings or two lists of messages, got "
        f"{type(prompt).__name__} and {type(completion).__name__}",
        reason="bad_record",
    )
