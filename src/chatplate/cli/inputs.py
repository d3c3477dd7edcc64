"""Reading what the commands render: a conversation file (or stdin) and the render options."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import InputError
from ..messages import is_pair_history, messages_from_pairs
from ..sources import load
from ..template import ChatTemplate

SHAPES = 'a list of messages, {"messages": [...], "tools": [...], "documents": [...]}, or a pair history [[user, assistant], ...]'


@dataclass
class Request:
    """Everything one render needs, gathered from the input file and the options."""

    messages: list[dict[str, Any]]
    tools: list[Any] | None = None
    documents: list[Any] | None = None
    variables: dict[str, Any] = field(default_factory=dict)

    def arguments(self) -> dict[str, Any]:
        """What render and encode take besides the messages: tools, documents, variables."""
        return {"tools": self.tools, "documents": self.documents, **self.variables}


def read_text(path: str, what: str) -> str:
    """A file's text, or stdin's for ``-``, as UTF-8 and verbatim (no newline translation)."""
    label = "<stdin>" if path == "-" else path
    if path == "-" and sys.stdin.isatty():
        # Otherwise a bare `chatplate render` looks hung.
        print(f"chatplate: reading the {what} from standard input (end with Ctrl-D), or give a FILE", file=sys.stderr)
    try:
        if path != "-":
            with open(path, encoding="utf-8", newline="") as handle:
                return handle.read()
        buffer = getattr(sys.stdin, "buffer", None)  # bytes: the locale's encoding does not matter
        return buffer.read().decode("utf-8") if buffer is not None else sys.stdin.read()
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {label}", path=label) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} file {label}: {exc}", path=label) from exc


def read_json(path: str, what: str) -> Any:
    """Parse JSON from a file, or from stdin for ``-``; errors name the file, line and column."""
    label = "<stdin>" if path == "-" else path
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{label}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", path=label
        ) from exc
    except RecursionError:
        raise InputError(f"{label}: JSON nested too deeply to read", path=label) from None


def read_request(
    path: str, tools_file: str | None, documents_file: str | None, variables: dict[str, Any]
) -> Request:
    """Read the conversation and merge in ``--tools``, ``--documents`` and parsed ``--var`` options."""
    data = read_json(path, "conversation")
    label = "<stdin>" if path == "-" else path
    if isinstance(data, dict) and "messages" in data:
        request = Request(messages=data["messages"], tools=data.get("tools"), documents=data.get("documents"))
    elif is_pair_history(data):
        request = Request(messages=messages_from_pairs(data))
    elif isinstance(data, list):
        request = Request(messages=data)
    else:
        raise InputError(f"{label}: expected {SHAPES}, got {type(data).__name__}", path=label)
    if tools_file is not None:
        request.tools = read_json(tools_file, "tools")
    if documents_file is not None:
        request.documents = read_json(documents_file, "documents")
    request.variables = variables
    return request


def read_tools(path: str) -> list[Any]:
    """``--tools``: a JSON file (or stdin) holding a list of tool schemas."""
    tools = read_json(path, "tools")
    if not isinstance(tools, list):
        label = "<stdin>" if path == "-" else path
        raise InputError(f"{label}: expected a list of tool schemas, got {type(tools).__name__}", path=label)
    return tools


def parse_variables(assignments: list[str]) -> dict[str, Any]:
    """``KEY=JSON`` pairs to a dict: ``enable_thinking=false`` -> ``{"enable_thinking": False}``."""
    import typer

    variables: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise typer.BadParameter(f"{item!r}: expected KEY=JSON, e.g. enable_thinking=false", param_hint="--var")
        try:
            variables[key] = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            spelled = _PYTHON_CONSTANTS.get(raw.strip())
            fix = f"write {key}={spelled}" if spelled else f"quote strings: {key}='\"{raw}\"'"
            raise typer.BadParameter(
                f"{item!r}: the value must be JSON (true, 3, \"text\", [..]); {fix}", param_hint="--var"
            ) from None
    return variables


# Python's spelling of JSON's constants, the likeliest --var mistake.
_PYTHON_CONSTANTS = {"True": "true", "False": "false", "None": "null"}


def parse_limits(assignments: list[str]) -> dict[str, int | float | None]:
    """``NAME=N`` pairs (``none`` for no bound) to :class:`chatplate.Limits` fields."""
    import typer

    from ..limits import LIMIT_NAMES

    limits: dict[str, int | float | None] = {}
    for item in assignments:
        key, _, raw = item.partition("=")
        if key not in LIMIT_NAMES:
            raise typer.BadParameter(f"{item!r}: the limits are {', '.join(sorted(LIMIT_NAMES))}", param_hint="--limit")
        try:
            limits[key] = None if raw.lower() == "none" else float(raw) if key == "max_seconds" else int(raw.replace("_", ""))
        except ValueError:
            raise typer.BadParameter(f"{item!r}: expected {key}=N (a whole number) or {key}=none", param_hint="--limit") from None
    return limits


def parse_now(value: str | None) -> datetime | None:
    """``--now`` as an ISO 8601 timestamp."""
    import typer

    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time such as 2024-07-26T12:00:00", param_hint="--now") from None


def load_template(
    source: str,
    *,
    name: str | None = None,
    revision: str | None = None,
    fallback: str | None = None,
    tokenizer: str | None = None,
    limits: dict[str, Any] | None = None,
    roles: list[str] | None = None,
) -> ChatTemplate:
    """The template the options describe: ``--template``/``--model`` with ``--name``,
    ``--revision``, ``--fallback``, ``--tokenizer``, ``--limit`` (parsed) and ``--role``."""
    template = load(source, name=name, revision=revision, fallback=fallback, tokenizer=tokenizer)
    if limits:
        template.limits = template.limits.replace(**limits)
    if roles:
        template.roles = template.roles | frozenset(roles)
    return template
