"""A conversation with a model: render with chatplate, generate, parse, append.

Each turn encodes the conversation with ``add_generation_prompt=True`` (or
``continue_final_message`` to continue the last assistant message), sends the token ids to the
backend, stops on the template's end-of-turn tokens, parses what comes back into the assistant
message (reasoning, content, tool calls) and appends it. Python functions given as tools run
when the model calls them (``run_tools=True``); their results are appended as tool messages
and generation continues.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..responses.events import ContentDelta, ResponseEvent
from ..template import ChatTemplate
from .backends import Backend, Sampling, backend_for

__all__ = ["Chat", "ToolResult", "TurnDone"]


@dataclass(frozen=True)
class ToolResult:
    """A tool ran: the tool message appended to the conversation."""

    message: dict[str, Any]


@dataclass(frozen=True)
class TurnDone:
    """The model's turn ended: the assistant message appended (and its parse)."""

    message: dict[str, Any]


class Chat:
    """A conversation with a model, rendered by chatplate exactly.

    ``model`` is a model directory with weights (transformers), a ``.gguf`` file (llama.cpp)
    or the URL of an OpenAI-compatible server; ``template`` is where the chat template and
    tokenizer come from when the model is not (a URL), and defaults to ``model``.

    >>> chat = Chat("path/to/model", system="You are terse.")  # doctest: +SKIP
    >>> chat.send("Hello")["content"]  # doctest: +SKIP
    'Hi.'
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        template: str | os.PathLike[str] | ChatTemplate | None = None,
        backend: Backend | None = None,
        system: str | None = None,
        tools: Sequence[Mapping[str, Any] | Callable[..., Any]] | None = None,
        run_tools: bool = False,
        messages: Sequence[Mapping[str, Any]] | None = None,
        sampling: Sampling | None = None,
        variables: Mapping[str, Any] | None = None,
        max_tool_rounds: int = 8,
    ) -> None:
        if model is None and (template is None or backend is None):
            raise InputError("Chat: give a model (directory, .gguf or URL), or both template= and backend=")
        if template is None and str(model).startswith(("http://", "https://")):
            raise InputError(
                f"Chat({model!r}): a server does not give chatplate its template; name where the template and "
                "tokenizer come from: template='path/to/model' (a model directory, tokenizer_config.json or hub id)"
            )
        source = template if template is not None else model
        if isinstance(source, ChatTemplate):
            self.template = source
        else:
            from ..sources import load

            self.template = load(source)  # type: ignore[arg-type]
        self.backend: Backend = backend if backend is not None else backend_for(model)  # type: ignore[arg-type]
        self.tools = list(tools) if tools else None
        self.run_tools = run_tools
        self.sampling = sampling or Sampling()
        self.variables: dict[str, Any] = dict(variables or {})
        self.max_tool_rounds = max_tool_rounds
        self.messages: list[dict[str, Any]] = [dict(m) for m in messages or ()]
        if system is not None:
            self.set_system(system)
        self.last_prompt_ids: list[int] | None = None  # what the model was given last

    # ------------------------------------------------------------------------- the turn

    def send(self, content: str | None = None, *, continue_final_message: bool = False) -> dict[str, Any]:
        """Add a user message (unless ``content`` is None), generate the reply and return it
        (the last assistant message, after any tool rounds)."""
        reply: dict[str, Any] = {}
        for event in self.stream(content, continue_final_message=continue_final_message):
            if isinstance(event, TurnDone):
                reply = event.message
        return reply

    def stream(
        self, content: str | None = None, *, continue_final_message: bool = False
    ) -> Iterator[ResponseEvent | ToolResult | TurnDone]:
        """Like :meth:`send`, yielding events as they come: reasoning and content deltas, tool
        call events (``chatplate.responses``), then :class:`ToolResult` for each tool run and
        :class:`TurnDone` for each assistant message appended."""
        if content is not None:
            self.messages.append({"role": "user", "content": content})
        for _ in range(self.max_tool_rounds + 1):
            message = yield from self._generate(continue_final_message)
            continue_final_message = False
            yield TurnDone(message)
            calls = message.get("tool_calls") or []
            if not (self.run_tools and calls and all(c["function"]["name"] in self.functions for c in calls)):
                return
            for call in calls:
                result = self._run_tool(call)
                self.messages.append(result)
                yield ToolResult(result)

    def _generate(self, continue_final_message: bool) -> Iterator[ResponseEvent]:
        options = self.render_options(continue_final_message=continue_final_message)
        if self.template.has_tokenizer:
            encoding = self.template.encode(self.messages, **options)
            ids: list[int] | None = encoding.input_ids
            text = encoding.text
        else:
            ids, text = None, self.template.render(self.messages, **options)
        self.last_prompt_ids = ids
        parser = self.template.response_parser(prefix=text, tools=self.tools, **self.variables)
        stop_ids, stops = self._stops()
        added: list[str] = []  # the answer's text as generated (the parse strips it)
        for chunk in self.backend.generate(ids, text, stop_ids=stop_ids, stop=stops, sampling=self.sampling):
            for event in parser.feed(chunk):
                if isinstance(event, ContentDelta):
                    added.append(event.text)
                yield event
        yield from parser.close()
        message = dict(parser.finish())
        if continue_final_message:
            # The continuation joins the text it continues as generated: " world" after "Hello".
            last = self.messages[-1]
            message = {**last, "content": (last.get("content") or "") + "".join(added).rstrip()}
            self.messages[-1] = message
        else:
            self.messages.append(message)
        return message

    def _stops(self) -> tuple[list[int], list[str]]:
        """The template's end-of-turn markers, and their ids where each is one token."""
        stops = list(self.template.detect_response_format(**self.variables).stops)
        ids: list[int] = []
        if self.template.has_tokenizer:
            tokenizer = self.template.tokenizer
            for marker in stops:
                token = tokenizer.token_id(marker)
                if token is not None:
                    ids.append(token)
            if tokenizer.eos_id is not None and tokenizer.eos_id not in ids:
                ids.append(tokenizer.eos_id)
        return ids, stops

    def _run_tool(self, call: Mapping[str, Any]) -> dict[str, Any]:
        function = self.functions[call["function"]["name"]]
        arguments = call["function"]["arguments"]
        try:
            if not isinstance(arguments, dict):
                raise InputError(f"arguments are not an object: {arguments!r}")
            result: Any = function(**arguments)
        except Exception as exc:  # noqa: BLE001 - the model sees the error, as tool users expect
            result = f"error: {type(exc).__name__}: {exc}"
        text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
        message: dict[str, Any] = {"role": "tool", "name": call["function"]["name"], "content": text}
        if call.get("id") is not None:
            message["tool_call_id"] = call["id"]
        return message

    # ---------------------------------------------------------------------- editing

    def set_system(self, text: str | None) -> None:
        """Set (or with ``None`` remove) the system message."""
        if self.messages and self.messages[0].get("role") == "system":
            self.messages.pop(0)
        if text:
            self.messages.insert(0, {"role": "system", "content": text})

    def undo(self) -> list[dict[str, Any]]:
        """Remove the last exchange (the last user message and everything after it)."""
        index = self._last_user()
        if index is None:
            return []
        removed, self.messages = self.messages[index:], self.messages[:index]
        return removed

    def rewind(self) -> None:
        """Drop the replies after the last user message (to generate them again)."""
        index = self._last_user()
        if index is None:
            raise InputError("nothing to regenerate: the conversation has no user message")
        del self.messages[index + 1:]

    def regenerate(self) -> dict[str, Any]:
        """Drop the replies after the last user message and generate them again."""
        self.rewind()
        return self.send()

    def _last_user(self) -> int | None:
        return next((i for i in range(len(self.messages) - 1, -1, -1) if self.messages[i].get("role") == "user"), None)

    def clear(self) -> None:
        """Forget the conversation, keeping the system message."""
        self.messages = [m for m in self.messages[:1] if m.get("role") == "system"]

    # ---------------------------------------------------------------------- files

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Append the conversation as one JSONL record in the OpenAI messages format
        (``{"messages": [...], "tools": [...]}``), which ``chatplate prepare`` reads."""
        record: dict[str, Any] = {"messages": self.messages}
        schemas = self._tool_schemas()
        if schemas:
            record["tools"] = schemas
        target = Path(path)
        with target.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        return target

    def load(self, path: str | os.PathLike[str]) -> None:
        """Continue the last conversation saved in a JSONL file (or a JSON list of messages)."""
        text = Path(path).read_text(encoding="utf-8").strip()
        if not text:
            raise InputError(f"{path}: empty file")
        lines = text.splitlines()
        try:
            record = json.loads(text) if text.startswith("[") else json.loads(lines[-1])
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}); expected JSONL of "
                             "{\"messages\": [...]} records") from exc
        messages = record.get("messages") if isinstance(record, dict) else record
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise InputError(f"{path}: expected {{\"messages\": [...]}} (a list of message objects)")
        self.messages = [dict(m) for m in messages]

    def _tool_schemas(self) -> list[dict[str, Any]] | None:
        if not self.tools:
            return None
        from ..tools import get_json_schema

        return [get_json_schema(tool) if callable(tool) else dict(tool) for tool in self.tools]

    # ---------------------------------------------------------------------- settings

    def set(self, name: str, value: Any) -> None:
        """Change a sampling option (``temperature``, ``top_p``, ``max_new_tokens``, ``seed``)
        or, for any other name, a template variable (``enable_thinking``)."""
        names = {f.name for f in fields(Sampling)} - {"extra"}
        if name in names:
            setattr(self.sampling, name, value)
        else:
            self.variables[name] = value

    @property
    def functions(self) -> dict[str, Callable[..., Any]]:
        """The tools that are Python functions, by name: what ``run_tools`` can run."""
        return {fn.__name__: fn for fn in self.tools or () if callable(fn)}

    def render_options(self, *, continue_final_message: bool = False) -> dict[str, Any]:
        """The keyword arguments the next turn renders with (tools, variables, prompt)."""
        return {"tools": self.tools, **self.variables,
                ("continue_final_message" if continue_final_message else "add_generation_prompt"): True}

    def prompt(self, *, continue_final_message: bool = False) -> str:
        """The exact prompt the next turn would send."""
        return self.template.render(self.messages, **self.render_options(continue_final_message=continue_final_message))
