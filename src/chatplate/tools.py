"""Tools for chat templates: JSON schemas from typed, documented Python functions.

A tool reaches a template either as a JSON-schema dict, passed through untouched, or as a Python
function, converted here to the very dict transformers 5.23 builds (``get_json_schema``), key
order included, since templates usually print tools with ``tojson``.

>>> def get_weather(city: str, unit: str = "celsius") -> str:
...     '''Current weather in a city.
...
...     Args:
...         city: Name of the city.
...         unit: Temperature unit. (choices: ["celsius", "fahrenheit"])
...     '''
>>> get_json_schema(get_weather)["function"]["parameters"]["properties"]["unit"]
{'type': 'string', 'enum': ['celsius', 'fahrenheit'], 'description': 'Temperature unit.'}
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from enum import Enum
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .errors import ToolSchemaError

__all__ = ["get_json_schema", "to_tool_schemas"]

# --------------------------------------------------------------------------------------------
# Docstrings
#
# The reference parses Google-style docstrings with a handful of regular expressions whose quirks
# decide what ends up in the schema. The helpers below reproduce those quirks exactly; the ones
# worth knowing are noted where they happen.
# --------------------------------------------------------------------------------------------

# A section header counts for the description even in the middle of a line ("See Args: below").
_SECTION_WORDS = ("Args:", "Returns:", "Raises:")

# "name:" at the start of a line (after spaces or tabs) opens an argument's description.
_ARG_HEADER = re.compile(r"([ \t]*)(\w+):")

# IGNORECASE so that "(Choices: ...)" also works; it is applied to a single-line description.
_CHOICES = re.compile(r"\(choices:\s*(.*)\)\s*\Z", re.IGNORECASE)

_WHITESPACE_RUN = re.compile(r"\s+")


def _first_of(text: str, words: Sequence[str], start: int = 0) -> int:
    """Index of the earliest occurrence of any of ``words`` at or after ``start``, else len(text)."""
    hits = [index for word in words if (index := text.find(word, start)) != -1]
    return min(hits, default=len(text))


def _section_body_start(doc: str, header: str) -> int | None:
    """Where the body of the first ``header`` section begins, or None.

    A header only opens a section when it starts a line that is not the docstring's first line,
    and is followed directly by a newline: "Args:" on the first line, or "Args:  " with trailing
    spaces, opens nothing, exactly as in the reference.
    """
    marker = header + "\n"
    at = doc.find(marker)
    while at != -1:
        before = doc[:at]
        if "\n" in before[len(before.rstrip()) :]:
            return at + len(marker)
        at = doc.find(marker, at + 1)
    return None


def _one_line(text: str) -> str:
    # Line breaks, with the indentation around them, become one space; other spacing is kept.
    return _WHITESPACE_RUN.sub(lambda run: " " if "\n" in run.group() else run.group(), text)


def _continues(line: str, indent: str) -> bool:
    # A line indented deeper than the argument's own line belongs to its description, even if it
    # looks like "name: ..." itself.
    return line.startswith(indent) and line[len(indent) : len(indent) + 1] in (" ", "\t")


def _split_args(block: str) -> dict[str, str]:
    """Argument descriptions from the body of an ``Args:`` section."""
    lines = [line for line in block.split("\n") if line.strip()]
    text = "\n".join(lines)
    starts: list[int] = []
    offset = 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1

    described: dict[str, str] = {}
    index = 0
    while index < len(lines):
        header = _ARG_HEADER.match(lines[index])
        if header is None:
            # Lines that are not "name: ..." and follow no argument are ignored; this is what
            # makes "x (int): ..." go unnoticed.
            index += 1
            continue
        indent, name = header.group(1), header.group(2)
        # The description starts at the first non-space after the colon. When the rest of the line
        # is empty that is on the next line, even if the next line is "other: ...": an argument
        # with an empty description swallows the one that follows it.
        body = starts[index] + header.end()
        while body < len(text) and text[body].isspace():
            body += 1
        if body == len(text):
            described[name] = ""
            break
        body_line = index
        while body_line + 1 < len(lines) and starts[body_line + 1] <= body:
            body_line += 1
        stop = body_line + 1
        while stop < len(lines) and (
            _ARG_HEADER.match(lines[stop]) is None or _continues(lines[stop], indent)
        ):
            stop += 1
        end = starts[stop] - 1 if stop < len(lines) else len(text)
        described[name] = _one_line(text[body:end].strip())
        index = stop
    return described


def _parse_docstring(doc: str) -> tuple[str, dict[str, str], str | None]:
    """(description, argument descriptions, returns description or None) of a cleaned docstring."""
    description = doc[: _first_of(doc, _SECTION_WORDS)].strip()

    arguments: dict[str, str] = {}
    args_at = _section_body_start(doc, "Args:")
    if args_at is not None:
        # The Args: body ends at the first "Returns:" or "Raises:" anywhere, even mid-sentence.
        block = doc[args_at : _first_of(doc, ("Returns:", "Raises:"), args_at)].rstrip()
        arguments = _split_args(block)

    returns = None
    returns_at = _section_body_start(doc, "Returns:")
    if returns_at is not None:
        returns = doc[returns_at : _first_of(doc, ("Raises:",), returns_at)].strip()
    return description, arguments, returns


# --------------------------------------------------------------------------------------------
# Type hints
# --------------------------------------------------------------------------------------------

# Python types whose values can be written as JSON scalars, and so may appear in an "enum".
_SCALAR_NAMES: dict[type, str] = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}

_SUPPORTED = (
    "int, float, str, bool, None, Any, an Enum, typing.Literal, and list, tuple, dict and Union (X | Y) of those"
)


class _Unsupported(Exception):
    """The hint has no JSON schema equivalent. A return hint like this is simply left out."""


class _Invalid(Exception):
    """The hint cannot even be looked at (it is not hashable); fatal for a return hint too."""


def _show(hint: Any) -> str:
    if isinstance(hint, type) and not get_args(hint):
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def _plain_types() -> dict[Any, dict[str, Any]]:
    # Built on every call: callers add keys to the dicts they get back.
    table: dict[Any, dict[str, Any]] = {
        int: {"type": "integer"},
        float: {"type": "number"},
        str: {"type": "string"},
        bool: {"type": "boolean"},
        type(None): {"type": "null"},
        list: {"type": "array"},
        tuple: {"type": "array"},
        dict: {"type": "object"},
        Any: {},
    }
    # The reference maps these whenever Pillow / torch are installed. We never import them: a
    # hint naming one of these classes can only exist if its module is already loaded.
    image = getattr(sys.modules.get("PIL.Image"), "Image", None)
    if image is not None:
        table[image] = {"type": "image"}
    tensor = getattr(sys.modules.get("torch"), "Tensor", None)
    if tensor is not None:
        table[tensor] = {"type": "audio"}
    return table


def _scalar_enum(values: list[Any]) -> dict[str, Any]:
    # "type" lists each JSON type once, in order of first appearance (not sorted, unlike Unions).
    names = list(dict.fromkeys(_SCALAR_NAMES[type(value)] for value in values))
    return {"type": names[0] if len(names) == 1 else names, "enum": values}


def _schema_for(hint: Any) -> dict[str, Any]:
    origin, args = get_origin(hint), get_args(hint)

    if origin is None and isinstance(hint, type) and issubclass(hint, Enum):
        values = [member.value for member in hint]
        if not values:
            raise _Unsupported(f"the Enum {hint.__qualname__} has no members, so no value could match it")
        odd = [value for value in values if type(value) not in _SCALAR_NAMES]
        if odd:
            raise _Unsupported(
                f"the Enum {hint.__qualname__} has member values that are not JSON scalars ({odd!r}); "
                "member values must be int, float, str, bool or None"
            )
        return _scalar_enum(values)

    if origin is None:
        try:
            schema = _plain_types().get(hint)
        except TypeError as exc:
            raise _Invalid(f"the type hint {hint!r} is not a type ({exc})") from None
        if schema is None:
            raise _Unsupported(f"the type hint {_show(hint)} has no JSON schema equivalent")
        return schema

    if origin is Union or origin is types.UnionType:
        members = [_schema_for(arg) for arg in args if arg is not type(None)]
        if len(members) == 1:
            schema = members[0]
        elif all(set(member) == {"type"} and isinstance(member["type"], str) for member in members):
            # Plain types collapse into a sorted type list; list | tuple are both "array", so dedupe.
            names = sorted({member["type"] for member in members})
            schema = {"type": names[0] if len(names) == 1 else names}
        else:
            # Anything carrying items, enum, ... would lose them in a type list.
            schema = {"anyOf": members}
        if type(None) in args:
            schema["nullable"] = True
        return schema

    if origin is Literal and args:
        odd = [arg for arg in args if type(arg) not in _SCALAR_NAMES]
        if odd:
            raise _Unsupported(
                f"the Literal values {odd!r} are not JSON scalars; Literal values must be int, float, str, bool or None"
            )
        return _scalar_enum(list(args))

    if origin is list:
        return {"type": "array", "items": _schema_for(args[0])} if args else {"type": "array"}

    if origin is tuple:
        if not args:
            return {"type": "array"}
        if len(args) == 1:
            raise _Unsupported(
                f"{_show(hint)} is a tuple of exactly one element, which is not converted; use list[...] if it "
                "can hold more than one element, or the element type itself if it is really just one"
            )
        if ... in args:
            raise _Unsupported(f"{_show(hint)} uses '...', which is not converted; use list[...] for variable length")
        return {"type": "array", "prefixItems": [_schema_for(arg) for arg in args]}

    if origin is dict:
        # JSON object keys are always strings, so only the value type can be described.
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = _schema_for(args[1])
        return schema

    raise _Unsupported(f"the type hint {_show(hint)} has no JSON schema equivalent")


def _hint_problem(name: str, argument: str | None, hint: Any, exc: Exception) -> ToolSchemaError:
    where = f"{name}(): return type" if argument is None else f"{name}(): argument {argument!r}"
    shown = _show(hint)
    reason = str(exc)
    if shown not in reason:
        # The culprit is nested; show the whole hint too so it can be found.
        reason += f" (in the hint {shown})"
    return ToolSchemaError(
        f"{where}: {reason}. Supported hints are {_SUPPORTED}; change the hint to one of these, "
        "or pass a JSON schema dict instead of the function",
        function=name,
        argument=argument,
    )


def _parameters_schema(func: Callable[..., Any], name: str) -> dict[str, Any]:
    try:
        hints = get_type_hints(func)
    except Exception as exc:  # noqa: BLE001 - any failure to evaluate annotations is the caller's to fix
        raise ToolSchemaError(
            f"{name}(): its type hints cannot be evaluated ({type(exc).__name__}: {exc}); define or import "
            "every name used in an annotation in the function's module",
            function=name,
            argument=None,
        ) from exc
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise ToolSchemaError(
            f"{name}: no signature can be read from it ({exc}); pass a JSON schema dict instead",
            function=name,
            argument=None,
        ) from exc

    # An unannotated leading self/cls is the receiver of an unbound method, not a tool argument.
    receiver = None
    first = next(iter(signature.parameters.values()), None)
    if first is not None and first.name in ("self", "cls") and first.annotation is inspect.Parameter.empty:
        receiver = first.name

    required = []
    for param in signature.parameters.values():
        if param.name == receiver:
            continue
        if param.annotation is inspect.Parameter.empty:
            raise ToolSchemaError(
                f"{name}(): argument {param.name!r} has no type hint; add one (for example "
                f"`{param.name}: str`) so its JSON type is known",
                function=name,
                argument=param.name,
            )
        if param.default is inspect.Parameter.empty:
            required.append(param.name)

    properties: dict[str, Any] = {}
    for hinted, hint in hints.items():
        if hinted == receiver:
            continue
        is_return = hinted == "return"
        try:
            properties[hinted] = _schema_for(hint)
        except _Unsupported as exc:
            # The model never produces the return value, so a return type it cannot see is dropped
            # rather than blocking the tool.
            if not is_return:
                raise _hint_problem(name, hinted, hint, exc) from None
        except _Invalid as exc:
            raise _hint_problem(name, None if is_return else hinted, hint, exc) from None

    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _missing_description(name: str, argument: str, doc: str, has_args: bool) -> ToolSchemaError:
    if re.search(rf"(?m)^\s*\**{re.escape(argument)}\s*\(", doc):
        hint = f"write it as `{argument}: description`; the `{argument} (type): description` form is not recognised"
    elif not has_args:
        hint = (
            f"add an Args: section (the word Args: alone on a line after the description) with a line "
            f"`{argument}: description`"
        )
    else:
        hint = f"document it under Args: as `{argument}: description`"
    return ToolSchemaError(
        f"{name}(): argument {argument!r} has no description in the docstring; {hint}",
        function=name,
        argument=argument,
    )


def _choices(name: str, argument: str, payload: str) -> list[Any]:
    example = '(choices: ["a", "b"])'
    try:
        values = json.loads(payload)
    except ValueError as exc:
        raise ToolSchemaError(
            f"{name}(): the (choices: ...) of argument {argument!r} is not valid JSON ({exc}); "
            f"write them as a JSON array, e.g. {example}",
            function=name,
            argument=argument,
        ) from None
    try:
        # Iterating, not checking for a list, is deliberate: a JSON string becomes its characters
        # and an object its keys, as in the reference.
        items: Iterator[Any] = iter(values)
    except TypeError:
        raise ToolSchemaError(
            f"{name}(): the (choices: ...) of argument {argument!r} is {payload.strip()}, not a list; "
            f"write them as a JSON array, e.g. {example}",
            function=name,
            argument=argument,
        ) from None
    return [item.strip() if isinstance(item, str) else item for item in items]


def get_json_schema(func: Callable[..., Any]) -> dict[str, Any]:
    """The tool schema of a typed function with a Google-style docstring, as transformers builds it.

    The docstring gives the tool's description and, under ``Args:``, one ``name: description``
    per argument (a trailing ``(choices: [...])`` becomes an ``enum``). Type hints give the JSON
    types; arguments without a default are required. An implicit ``self``/``cls`` is skipped.
    The result is equal to ``transformers.utils.get_json_schema(func)``, key order included.

    >>> def multiply(x: float, y: float = 1.0) -> float:
    ...     '''Multiply two numbers.
    ...
    ...     Args:
    ...         x: The first number.
    ...         y: The second number.
    ...     '''
    >>> get_json_schema(multiply)["function"]["parameters"]
    {'type': 'object', 'properties': {'x': {'type': 'number', 'description': 'The first number.'}, \
'y': {'type': 'number', 'description': 'The second number.'}}, 'required': ['x']}

    Raises:
        ToolSchemaError: no docstring, an argument without type hint or description, a type hint
            with no JSON equivalent, or malformed choices.
    """
    name = getattr(func, "__name__", "operation")
    doc = inspect.getdoc(func)
    if not doc:
        raise ToolSchemaError(
            f"{name}() has no docstring; add a Google-style docstring with a description and an Args: "
            "section describing each argument, or pass a JSON schema dict instead",
            function=name,
            argument=None,
        )
    doc = doc.strip()
    description, arguments, returns = _parse_docstring(doc)

    parameters = _parameters_schema(func, name)
    returned = parameters["properties"].pop("return", None)
    if returned is not None and returns is not None:
        returned["description"] = returns

    for argument, schema in parameters["properties"].items():
        if argument not in arguments:
            raise _missing_description(name, argument, doc, _section_body_start(doc, "Args:") is not None)
        text = arguments[argument]
        choices = _CHOICES.search(text)
        if choices is not None:
            # Assigning keeps "enum" where a Literal or Enum hint already put it.
            schema["enum"] = _choices(name, argument, choices.group(1))
            text = text[: choices.start()].strip()
        schema["description"] = text

    function: dict[str, Any] = {"name": name, "description": description, "parameters": parameters}
    if returned is not None:
        function["return"] = returned
    return {"type": "function", "function": function}


def to_tool_schemas(
    tools: Sequence[dict[str, Any] | Callable[..., Any]] | None,
) -> list[dict[str, Any]] | None:
    """The ``tools`` list a template sees: dicts as given, functions converted by :func:`get_json_schema`.

    ``None`` stays ``None``. Only plain functions and bound methods are converted; any other
    callable (a ``functools.partial``, a class, an object with ``__call__``) is rejected, as in
    transformers.

    >>> def ping(host: str):
    ...     '''Ping a host.
    ...
    ...     Args:
    ...         host: Host name.
    ...     '''
    >>> schema = {"type": "function", "function": {"name": "noop", "parameters": {}}}
    >>> tools = to_tool_schemas([schema, ping])
    >>> tools[0] is schema, tools[1]["function"]["name"]
    (True, 'ping')

    Raises:
        ToolSchemaError: a tool is neither a dict nor a function, or a function cannot be converted.
    """
    if tools is None:
        return None
    if isinstance(tools, (str, bytes)) or not isinstance(tools, Iterable):
        raise ToolSchemaError(
            f"tools: expected a list of JSON schemas or Python functions, got {type(tools).__name__}"
            + (" (a single tool? wrap it in a list)" if callable(tools) else "")
        )
    schemas: list[dict[str, Any]] = []
    for position, tool in enumerate(tools):
        if isinstance(tool, dict):
            schemas.append(tool)
        elif inspect.isfunction(tool) or inspect.ismethod(tool):
            schemas.append(get_json_schema(tool))
        else:
            message = f"tools[{position}]: expected a JSON schema dict or a Python function, got {type(tool).__name__}"
            if isinstance(tools, Mapping):
                message += "; tools must be a list, so wrap a single schema as [schema]"
            elif isinstance(tool, Mapping):
                message += "; convert it with dict(...)"
            elif callable(tool):
                message += "; wrap it in a def with type hints and a docstring, or pass its JSON schema dict"
            raise ToolSchemaError(message, function=None, argument=None)
    return schemas
