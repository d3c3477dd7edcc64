"""Tool calls read from generated text: the call, its status and the text it came from.

A call is never dropped: text that looked like a call but does not read as one becomes a
:class:`ToolCall` whose ``status`` says what went wrong and whose ``raw`` keeps the text.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..tools import to_tool_schemas
from .formats import CallSyntax

__all__ = ["ToolCall", "CallStatus", "read_calls", "coerce_arguments", "coerce_value", "schema_types", "tool_schemas"]

# The statuses, in the order a call is judged (the first that applies is reported).
CallStatus = str
OK = "ok"
MISSING_NAME = "missing_name"  # no function name could be read
INVALID_JSON = "invalid_json"  # the arguments (or the call) are not valid JSON
INVALID_SYNTAX = "invalid_syntax"  # a pythonic call list that Python cannot read
MALFORMED = "malformed"  # the region does not have the format's shape
UNCLOSED = "unclosed"  # the turn ended before the call's closing marker
UNKNOWN_TOOL = "unknown_tool"  # ``tools`` were given and none has this name


@dataclass
class ToolCall:
    """One tool call as generated.

    ``arguments`` is a dict when the arguments read as an object, else the raw argument text
    (so the call can still be shown, repaired or rendered). ``raw`` is the call's whole text.

    >>> ToolCall("get_weather", {"city": "Paris"}).to_message()
    {'type': 'function', 'function': {'name': 'get_weather', 'arguments': {'city': 'Paris'}}}
    """

    name: str | None
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None
    status: CallStatus = OK
    raw: str = ""
    error: str | None = None
    # Argument values are text the format does not type (XML-style formats): typed by the schema.
    untyped: bool = field(default=False, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_message(self) -> dict[str, Any]:
        """The OpenAI-shaped ``tool_calls`` entry that chat templates read."""
        call: dict[str, Any] = {"type": "function", "function": {"name": self.name or "", "arguments": self.arguments}}
        if self.id is not None:
            call["id"] = self.id
        return call

    def _fail(self, status: CallStatus, error: str) -> ToolCall:
        if self.status == OK:
            self.status, self.error = status, error
        return self


def tool_schemas(tools: Sequence[Any] | None) -> dict[str, Mapping[str, Any]] | None:
    """Map tool names to their parameter schemas (``None`` when no tools were given); functions
    are converted as templates see them (:func:`chatplate.tools.to_tool_schemas`)."""
    schemas = to_tool_schemas(tools)
    if schemas is None:
        return None
    out: dict[str, Mapping[str, Any]] = {}
    for schema in schemas:
        function = schema.get("function", schema)
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            parameters = function.get("parameters")
            out[function["name"]] = parameters if isinstance(parameters, Mapping) else {}
    return out


def read_calls(
    text: str,
    syntaxes: Sequence[CallSyntax],
    *,
    closed: bool = True,
    tools: Mapping[str, Mapping[str, Any]] | None = None,
    name: str | None = None,
) -> list[ToolCall]:
    """Read the calls in one region's ``text`` with the first syntax that reads it cleanly.

    ``closed`` is false when the turn ended inside the region; ``name`` is a name the format
    gave outside the region (a harmony recipient). When no syntax reads the region cleanly, the
    first syntax's reading is kept, with its statuses.

    >>> from chatplate.responses.formats import CallSyntax
    >>> [c.name for c in read_calls('{"name": "f", "arguments": {}}', [CallSyntax("json")])]
    ['f']
    """
    if not text.strip() and name is None:
        return []
    attempts = []
    for syntax in syntaxes:
        calls = _READERS[syntax.kind](text, syntax)
        for call in calls:
            if call.name is None and name is not None:
                call.name = name
                call.status, call.error = (OK, None) if call.status == MISSING_NAME else (call.status, call.error)
        if calls and all(call.ok for call in calls):
            attempts = [calls]
            break
        attempts.append(calls or [ToolCall(name, text, raw=text)._fail(MALFORMED, "no call could be read")])
    calls = attempts[0]
    for call in calls:
        if call.untyped and isinstance(call.arguments, dict):
            call.arguments = coerce_arguments(call.arguments, (tools or {}).get(call.name or ""))
        if not closed:
            call._fail(UNCLOSED, "the turn ended before the call was closed")
        if tools is not None and call.name is not None and call.name not in tools:
            call._fail(UNKNOWN_TOOL, f"no tool named {call.name!r} was given")
    return calls


def coerce_arguments(arguments: dict[str, str], schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """Type untyped argument text by the tool's JSON schema; without one, read JSON literals.

    A value that does not read as its declared type stays the raw string.

    >>> coerce_arguments({"days": "3", "city": "Paris"}, {"properties": {"days": {"type": "integer"}}})
    {'days': 3, 'city': 'Paris'}
    """
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    out: dict[str, Any] = {}
    for key, raw in arguments.items():
        spec = properties.get(key) if isinstance(properties, Mapping) else None
        out[key] = coerce_value(raw, schema_types(spec)) if spec is not None else _literal(raw)
    return out


def schema_types(spec: Any) -> list[str]:
    """The JSON types a parameter schema allows, in order (``anyOf``/``oneOf`` flattened,
    ``nullable`` adding ``null``), as transformers reads them."""
    if not isinstance(spec, Mapping):
        return []
    declared = spec.get("type")
    types = [declared] if isinstance(declared, str) else [t for t in declared or () if isinstance(t, str)]
    for key in ("anyOf", "oneOf"):
        for choice in spec.get(key) or ():
            types += schema_types(choice)
    if spec.get("nullable") and "null" not in types:
        types.append("null")
    return types


_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def coerce_value(raw: str, types: Sequence[str]) -> Any:
    """``raw`` as the first of ``types`` it reads as (a ``string`` type takes it last, so
    ``["string", "null"]`` still reads ``null``); ``raw`` itself if none does. The rules are
    transformers' (``3.0`` is an integer, no NaN, ``True``/``1`` are booleans)."""
    for kind in types:
        try:
            if kind == "integer":
                try:
                    return int(raw)
                except ValueError:
                    number = float(raw)
                    if number.is_integer():
                        return int(number)
            elif kind == "number":
                number = float(raw)
                if math.isfinite(number):
                    return int(number) if number.is_integer() and "." not in raw else number
            elif kind == "boolean" and raw.strip().lower() in _BOOLEANS:
                return _BOOLEANS[raw.strip().lower()]
            elif kind == "null" and raw.strip() in ("null", "None"):
                return None
            elif kind in ("object", "array"):
                value = json.loads(raw)
                if isinstance(value, dict if kind == "object" else list):
                    return value
        except ValueError:
            pass
    return raw


def _literal(raw: str) -> Any:
    """A JSON literal when the text is one (``3``, ``true``, ``{"a": 1}``), else the text."""
    text = raw.strip()
    if text and (text[0] in '-0123456789[{"' or text in ("true", "false", "null")):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return raw


# ----------------------------------------------------------------------------------- readers


_DECODER = json.JSONDecoder()


def _read_json(text: str, syntax: CallSyntax) -> list[ToolCall]:
    decoder = _DECODER
    calls: list[ToolCall] = []
    position, end = 0, len(text)
    while True:
        while position < end and (text[position].isspace() or text[position] in ",;"):
            position += 1
        if position >= end:
            return calls
        start = position
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError as exc:
            rest = text[start:]
            found = re.search(r'"(?:name|tool_name)"\s*:\s*"((?:[^"\\]|\\.)*)"', rest)
            call = ToolCall(found.group(1) if found else None, rest.strip(), raw=rest)
            calls.append(call._fail(INVALID_JSON, f"not valid JSON: {exc}"))
            return calls
        items = value if isinstance(value, list) else [value]
        for item in items:
            calls.append(_call_from_object(item, text[start:position]))


_CALL_KEYS = frozenset(("name", "tool_name", "function", "arguments", "parameters"))


def _call_from_object(item: Any, raw: str) -> ToolCall:
    if not isinstance(item, dict):
        return ToolCall(None, raw.strip(), raw=raw)._fail(MALFORMED, "a call must be a JSON object")
    if len(item) == 1 and isinstance(next(iter(item.values())), dict) and not (_CALL_KEYS & set(item)):
        item = {"name": next(iter(item)), "arguments": next(iter(item.values()))}  # {"NAME": {arguments}}
    function = item.get("function") if isinstance(item.get("function"), dict) else item
    name = next((function[k] for k in ("name", "tool_name") if isinstance(function.get(k), str)), None)
    arguments: Any = next((function[k] for k in ("arguments", "parameters") if k in function), {})
    call_id = next((item[k] for k in ("id", "tool_call_id") if isinstance(item.get(k), (str, int))), None)
    call = ToolCall(name, arguments, None if call_id is None else str(call_id), raw=raw)
    if isinstance(arguments, str):
        try:
            call.arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return call._fail(INVALID_JSON, "the arguments string is not valid JSON")
    if not isinstance(call.arguments, dict):
        call.arguments = json.dumps(call.arguments, ensure_ascii=False)
        call._fail(MALFORMED, "the arguments are not a JSON object")
    if name is None:
        call._fail(MISSING_NAME, "the call has no name")
    return call


def _read_pattern(text: str, syntax: CallSyntax) -> list[ToolCall]:
    pattern = _compiled(syntax.pattern)
    calls: list[ToolCall] = []
    position = 0
    for match in pattern.finditer(text):
        gap = text[position:match.start()]
        if gap.strip():
            calls.append(ToolCall(None, gap.strip(), raw=gap)._fail(MALFORMED, "text between calls"))
        position = match.end()
        groups = match.groupdict()
        raw_name = groups.get("name")
        call = ToolCall(raw_name.strip() if raw_name else None, {}, groups.get("id"), raw=match.group(0))
        args = groups.get("args")
        if args is not None:
            _read_args(call, args, syntax)
        if call.name is None:
            call._fail(MISSING_NAME, "the call has no name")
        calls.append(call)
    rest = text[position:]
    if rest.strip():
        named = _compiled(syntax.name_at_start).match(rest) if syntax.name_at_start else None
        call = ToolCall(named.group("name").strip() if named else None, rest.strip(), raw=rest)
        calls.append(call._fail(MALFORMED, "the call does not have the format's shape"))
    return calls


def _read_args(call: ToolCall, args: str, syntax: CallSyntax) -> None:
    if syntax.args == "xml":
        values: dict[str, str] = {}
        for found in _compiled(syntax.param or "").finditer(args):
            value = found.group("value")
            # Templates put the value on its own line: one newline each side is layout.
            if value.startswith("\n"):
                value = value[1:]
            if value.endswith("\n"):
                value = value[:-1]
            values[found.group("key").strip()] = value
        call.arguments, call.untyped = values, True
        return
    text = _gemma_to_json(args) if syntax.args == "gemma" else args
    text = text.strip()
    if not text:
        call.arguments = {}
        return
    try:
        value = json.loads(text)
    except ValueError as exc:
        call.arguments = args.strip()
        call._fail(INVALID_JSON, f"the arguments are not valid JSON: {exc}")
        return
    if isinstance(value, dict):
        call.arguments = value
    else:
        call.arguments = args.strip()
        call._fail(MALFORMED, "the arguments are not a JSON object")


_GEMMA_QUOTE = '<|"|>'
_BARE_KEY = re.compile(r'([{,]\s*)([A-Za-z_][\w.\-]*)(\s*:)')


def _gemma_to_json(text: str) -> str:
    """Gemma writes objects with bare keys and ``<|"|>`` around strings; make that JSON."""
    pieces = text.split(_GEMMA_QUOTE)
    out = []
    for index, piece in enumerate(pieces):
        out.append(json.dumps(piece, ensure_ascii=False) if index % 2 else _BARE_KEY.sub(r'\1"\2"\3', piece))
    return "".join(out)


def _read_pythonic(text: str, syntax: CallSyntax) -> list[ToolCall]:
    source = text.strip()
    try:
        tree = ast.parse(source, mode="eval").body
        nodes = tree.elts if isinstance(tree, (ast.List, ast.Tuple)) else [tree]
    except SyntaxError as exc:
        try:  # one call a line, without brackets (OLMo 3)
            nodes = [statement.value for statement in ast.parse(source).body if isinstance(statement, ast.Expr)]
        except SyntaxError:
            nodes = []
        if not nodes:
            found = re.match(r"\s*\[?\s*([\w.]+)\s*\(", text)
            return [ToolCall(found.group(1) if found else None, source, raw=text)._fail(
                INVALID_SYNTAX, f"not a Python call list: {exc.msg}")]
    calls = []
    for node in nodes:
        raw = ast.get_source_segment(source, node) or ""
        if not isinstance(node, ast.Call) or _dotted(node.func) is None:
            calls.append(ToolCall(None, raw, raw=raw)._fail(MALFORMED, "not a function call"))
            continue
        call = ToolCall(_dotted(node.func), {}, raw=raw)
        try:
            call.arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg is not None}
        except ValueError:
            call.arguments = raw
            call._fail(MALFORMED, "an argument is not a literal")
        if node.args or any(kw.arg is None for kw in node.keywords):
            call._fail(MALFORMED, "positional arguments have no names")
        calls.append(call)
    return calls


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


_READERS = {"json": _read_json, "pattern": _read_pattern, "pythonic": _read_pythonic}


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL)
