"""``chatplate chat``: a conversation in the terminal, streamed, with slash commands."""

from __future__ import annotations

import importlib.util
import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from ..chat import Chat, ToolResult, TurnDone
from ..errors import ChatplateError, InputError
from ..responses import ContentDelta, ContentRetracted, ReasoningDelta, ToolCallDone, ToolCallStarted

HELP = """\
/system TEXT      set the system message (/system alone removes it)
/set NAME=VALUE   temperature, top_p, max_new_tokens, seed, or a template variable (enable_thinking=false);
                  the value is JSON
/regen            generate the last reply again
/undo             remove the last exchange
/edit TEXT        replace your last message with TEXT and generate again
/continue         continue the last reply where it stopped
/clear            forget the conversation (the system message stays)
/save FILE        append the conversation to FILE as JSONL (what chatplate prepare reads)
/load FILE        continue the last conversation saved in FILE
/prompt           the exact prompt the next turn sends, as chatplate show draws it, with its token count
/tools FILE.py    the Python functions in FILE.py become tools, run when the model calls them
/help             this list
/exit             leave (Ctrl-D too); Ctrl-C stops a generation and keeps the conversation"""

REASONING = "dim italic"
NOTE = "dim"


class Repl:
    """Read a line, run it (a message or a command), show what comes back."""

    def __init__(self, chat: Chat, console: Console, read: Callable[[str], str] = input) -> None:
        self.chat = chat
        self.console = console
        self.read = read

    def run(self) -> None:
        self.console.print(f"chatplate chat: {self.chat.template.origin or 'template'}; /help for commands", style=NOTE)
        while True:
            try:
                line = self.read("> ")
            except EOFError:
                self.console.print()
                return
            except KeyboardInterrupt:
                self.console.print()
                continue
            if not line.strip():
                continue
            try:
                if line.startswith("/"):
                    if self.command(line) is False:
                        return
                else:
                    self.turn(lambda: self.chat.stream(line))
            except ChatplateError as exc:
                self.console.print(f"error: {exc}", style="bold red", markup=False)

    # ---------------------------------------------------------------------- commands

    def command(self, line: str) -> bool | None:
        name, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        chat = self.chat
        if name in ("exit", "quit"):
            return False
        if name == "help":
            self.console.print(HELP, markup=False, highlight=False)
        elif name == "system":
            chat.set_system(arg or None)
            self.note("system message " + ("set" if arg else "removed"))
        elif name == "set":
            key, sep, raw = arg.partition("=")
            if not sep or not key.strip():
                raise InputError("usage: /set NAME=VALUE (JSON value: /set temperature=0.2, /set enable_thinking=false)")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw  # a bare word is a string
            chat.set(key.strip(), value)
            self.note(f"{key.strip()} = {value!r}")
        elif name == "regen":
            chat.rewind()
            self.turn(lambda: chat.stream())
        elif name == "undo":
            removed = chat.undo()
            self.note(f"removed {len(removed)} message(s)")
        elif name == "edit":
            if not arg:
                raise InputError("usage: /edit TEXT (replaces your last message)")
            chat.undo()
            self.turn(lambda: chat.stream(arg))
        elif name == "continue":
            if not chat.messages or chat.messages[-1].get("role") != "assistant":
                raise InputError("/continue: the last message is not the model's")
            self.turn(lambda: chat.stream(continue_final_message=True))
        elif name == "clear":
            chat.clear()
            self.note("conversation cleared")
        elif name == "save":
            if not arg:
                raise InputError("usage: /save FILE")
            self.note(f"saved {len(chat.messages)} messages to {chat.save(arg)}")
        elif name == "load":
            if not arg:
                raise InputError("usage: /load FILE")
            chat.load(arg)
            self.note(f"loaded {len(chat.messages)} messages from {arg}")
        elif name == "prompt":
            self.show_prompt()
        elif name == "tools":
            functions = load_functions(arg)
            chat.tools = [*(chat.tools or []), *functions]
            chat.run_tools = True
            self.note("tools: " + ", ".join(f"{fn.__name__}{inspect.signature(fn)}" for fn in functions))
        else:
            raise InputError(f"unknown command /{name}; /help lists them")
        return None

    def show_prompt(self) -> None:
        from .view import prompt_from_template, prompt_view

        chat = self.chat
        options = chat.render_options()
        prompt = prompt_from_template(chat.template, chat.messages, **options)
        self.console.print(prompt_view(prompt, chat.messages, legend=False))
        count = (f"{len(chat.template.encode(chat.messages, **options).input_ids)} tokens"
                 if chat.template.has_tokenizer else f"{len(prompt.text)} characters (no tokenizer)")
        self.note(count)

    def note(self, text: str) -> None:
        self.console.print(text, style=NOTE, markup=False, highlight=False)

    # -------------------------------------------------------------------------- a turn

    def turn(self, start: Callable[[], Iterator[Any]]) -> None:
        """Stream one turn; Ctrl-C stops it and leaves the conversation as it was before."""
        before = [dict(m) for m in self.chat.messages]
        events = start()
        where = None  # what is being printed: "reasoning", "content" or None
        try:
            for event in events:
                where = self.show(event, where)
        except KeyboardInterrupt:
            events.close()
            self.chat.messages = before
            self.console.print()
            self.note("[stopped: the conversation is as it was before this turn]")
            return
        if where is not None:
            self.console.print()

    def show(self, event: Any, where: str | None) -> str | None:
        out = self.console
        if isinstance(event, ReasoningDelta):
            out.print(event.text, style=REASONING, end="", markup=False, highlight=False)
            return "reasoning"
        if isinstance(event, ContentDelta):
            if where == "reasoning":
                out.print()
            out.print(event.text, end="", markup=False, highlight=False)
            return "content"
        if isinstance(event, ContentRetracted):
            out.print()
            self.note("(the text above was reasoning)")
            return None
        if isinstance(event, ToolCallStarted):
            if where is not None:
                out.print()
            self.note(f"→ calling {event.name or '?'}")
            return None
        if isinstance(event, ToolCallDone):
            call = event.call  # a ToolCall, or a response_template's call dict
            function = call.get("function", call) if isinstance(call, dict) else None
            name = function.get("name") if function is not None else call.name
            arguments = function.get("arguments") if function is not None else call.arguments
            args = json.dumps(arguments, ensure_ascii=False) if isinstance(arguments, dict) else arguments
            status = "" if function is not None or call.ok else f" [{call.status}: {call.error}]"
            self.note(f"  {name}({args}){status}")
            return None
        if isinstance(event, ToolResult):
            self.note(f"← {event.message.get('name')}: {event.message.get('content')}")
            return None
        if isinstance(event, TurnDone):
            if where is not None:
                out.print()
            return None
        return where


def load_functions(path: str) -> list[Callable[..., Any]]:
    """The public functions defined in a Python file, for /tools and --tools-py."""
    if not path:
        raise InputError("usage: /tools FILE.py")
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{path}: no such file")
    spec = importlib.util.spec_from_file_location(f"chatplate_tools_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise InputError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file: say what broke
        raise InputError(f"{path}: {type(exc).__name__}: {exc}") from exc
    functions = [obj for name, obj in vars(module).items()
                 if inspect.isfunction(obj) and obj.__module__ == module.__name__ and not name.startswith("_")]
    if not functions:
        raise InputError(f"{path}: defines no public function")
    return functions
