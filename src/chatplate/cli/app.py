"""The typer application: one function per command, sharing the render and template options."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Annotated, Any, Literal, Optional

import typer
from typer.core import TyperCommand

from ..sources.registry import DEFAULT_BUILTIN, list_builtins
from .inputs import (
    Request,
    load_template,
    parse_limits,
    parse_now,
    parse_variables,
    read_request,
    read_text,
    read_tools,
)

FileArg = Annotated[
    str,
    typer.Argument(metavar="FILE|-", help="Conversation JSON file; - or nothing reads standard input.", show_default=False),
]
TemplateOpt = Annotated[
    str,
    typer.Option(
        "--template",
        "-t",
        help="Built-in name, .jinja file, model directory, tokenizer_config.json, .gguf file or hub id.",
    ),
]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", "-m",
        help="Model directory or hub id (template and tokenizer), or any --template source with --tokenizer.",
    ),
]
NameOpt = Annotated[Optional[str], typer.Option("--name", help="Pick one of a model's named templates (e.g. tool_use).")]
RevisionOpt = Annotated[Optional[str], typer.Option("--revision", help="Hub revision (branch, tag or commit).")]
FallbackOpt = Annotated[
    Optional[str], typer.Option("--fallback", help="Built-in template to use if the source has none (e.g. chatml).")
]
TokenizerOpt = Annotated[
    Optional[str], typer.Option("--tokenizer", help="tokenizer.json or model directory to encode with.")
]
LimitOpt = Annotated[
    Optional[list[str]],
    typer.Option("--limit", metavar="NAME=N", help="Raise or set a render limit (repeatable), e.g. max_work=5000000."),
]
RoleOpt = Annotated[
    Optional[list[str]], typer.Option("--role", metavar="NAME", help="Accept a role beyond the standard ones (repeatable).")
]
GenOpt = Annotated[bool, typer.Option("--add-generation-prompt", help="End with the prompt for a new assistant turn.")]
ContinueOpt = Annotated[
    bool, typer.Option("--continue-final-message", help="Leave the final message open for the model to continue.")
]
ContinueFieldOpt = Annotated[
    Optional[str],
    typer.Option("--continue-field", help="Continue this field of the final message (e.g. reasoning_content)."),
]
ToolsOpt = Annotated[Optional[str], typer.Option("--tools", metavar="FILE", help="JSON file with a list of tool schemas.")]
DocumentsOpt = Annotated[Optional[str], typer.Option("--documents", metavar="FILE", help="JSON file with a list of documents.")]
VarOpt = Annotated[
    Optional[list[str]],
    typer.Option("--var", metavar="KEY=JSON", help="Template variable (repeatable), e.g. enable_thinking=false."),
]
ResponseArg = Annotated[
    str,
    typer.Argument(
        metavar="FILE|-", help="The generated text (UTF-8, read verbatim); - or nothing reads standard input.", show_default=False
    ),
]
SourceOpt = Annotated[
    str,
    typer.Option(
        "--model", "-m",
        help="The template the text was generated with: built-in name, .jinja file, model directory, "
        "tokenizer_config.json, .gguf file or hub id.",
    ),
]
PrefixOpt = Annotated[
    Optional[str],
    typer.Option(
        "--prefix", metavar="FILE",
        help="The prompt the text continues, verbatim (default: the template's generation prompt, with --var).",
    ),
]
ReasoningFieldOpt = Annotated[
    Literal["reasoning_content", "reasoning", "thinking"],
    typer.Option(
        "--reasoning-field", metavar="FIELD", help="The message key the reasoning goes in: reasoning_content, reasoning or thinking."
    ),
]
NowOpt = Annotated[Optional[str], typer.Option("--now", metavar="TIME", help="Time strftime_now reports, ISO 8601 (default: now).")]


class _Command(TyperCommand):
    """Flags take no value, so their help shows none (typer would show ``<bool>``)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _progress:
    """A rich progress line (rows, tokens, rates) while ``prepare`` runs; silent with ``quiet``."""

    def __init__(self, console: object, quiet: bool) -> None:
        self.console, self.quiet, self.bar, self.task = console, quiet, None, None

    def __enter__(self) -> object:
        if self.quiet:
            return None
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            SpinnerColumn(), TextColumn("{task.fields[rows]:,} rows · {task.fields[tokens]:,} tokens"),
            TextColumn("· {task.fields[rate]}"), TimeElapsedColumn(), console=self.console, transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("prepare", rows=0, tokens=0, rate="")
        self.started = time.perf_counter()
        return self.update

    def update(self, rows: int, tokens: int) -> None:
        from ..training.pipeline import rate

        seconds = time.perf_counter() - self.started
        self.bar.update(self.task, rows=rows, tokens=tokens,
                        rate=f"{rate(rows, seconds, 'rows')}, {rate(tokens, seconds, 'tokens')}")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"chatplate {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="chatplate",
        help="Render chat conversations exactly as a model's chat template does.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    command = app.command

    @app.callback()
    def root(
        version: Annotated[
            bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
        ] = False,
    ) -> None:
        """Render chat conversations exactly as a model's chat template does."""

    def _request(
        file: str, tools: str | None, documents: str | None, var: list[str] | None, now: str | None, limit: list[str] | None
    ) -> tuple[datetime | None, Request, dict[str, Any]]:
        """The clock, the conversation and the ``--limit`` changes a command works with."""
        # Options first: a usage mistake should not wait for (or consume) stdin.
        when = parse_now(now)
        variables = parse_variables(var or [])
        limits = parse_limits(limit or [])
        return when, read_request(file, tools, documents, variables), limits

    @command(cls=_Command)
    def render(
        file: FileArg = "-",
        template: TemplateOpt = DEFAULT_BUILTIN,
        name: NameOpt = None,
        revision: RevisionOpt = None,
        fallback: FallbackOpt = None,
        add_generation_prompt: GenOpt = False,
        continue_final_message: ContinueOpt = False,
        continue_field: ContinueFieldOpt = None,
        tools: ToolsOpt = None,
        documents: DocumentsOpt = None,
        var: VarOpt = None,
        now: NowOpt = None,
        limit: LimitOpt = None,
        role: RoleOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help='Print {"text": ...} instead of the raw prompt.')] = False,
    ) -> None:
        """Print the prompt exactly as the template renders it (no added newline)."""
        when, request, limits = _request(file, tools, documents, var, now, limit)
        chat_template = load_template(template, name=name, revision=revision, fallback=fallback, limits=limits, roles=role)
        text = chat_template.render(
            request.messages,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_field or continue_final_message,
            now=when,
            **request.arguments(),
        )
        sys.stdout.write(json.dumps({"text": text}, ensure_ascii=False) + "\n" if as_json else text)
        sys.stdout.flush()

    @command(cls=_Command)
    def show(
        file: FileArg = "-",
        template: TemplateOpt = DEFAULT_BUILTIN,
        name: NameOpt = None,
        revision: RevisionOpt = None,
        fallback: FallbackOpt = None,
        tokenizer: TokenizerOpt = None,
        add_generation_prompt: GenOpt = False,
        continue_final_message: ContinueOpt = False,
        continue_field: ContinueFieldOpt = None,
        tools: ToolsOpt = None,
        documents: DocumentsOpt = None,
        var: VarOpt = None,
        now: NowOpt = None,
        limit: LimitOpt = None,
        role: RoleOpt = None,
    ) -> None:
        """Show the prompt for a person: roles in colour, control tokens marked, whitespace visible.

        With a tokenizer (a model directory, or --tokenizer) control tokens are the ones encode
        makes; without one, token-shaped text the template wrote (never the messages' own text).
        """
        from rich.console import Console

        from .view import prompt_from_template, prompt_view

        when, request, limits = _request(file, tools, documents, var, now, limit)
        chat_template = load_template(
            template, name=name, revision=revision, fallback=fallback, tokenizer=tokenizer, limits=limits, roles=role
        )
        prompt = prompt_from_template(
            chat_template,
            request.messages,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_field or continue_final_message,
            now=when,
            **request.arguments(),
        )
        console = Console(highlight=False)
        # Piped output is for reading back or diffing: no key and no wrapping at 80 columns.
        console.print(prompt_view(prompt, request.messages, legend=console.is_terminal), soft_wrap=not console.is_terminal)

    @command(cls=_Command)
    def encode(
        file: FileArg = "-",
        model: ModelOpt = ...,  # type: ignore[assignment]
        name: NameOpt = None,
        revision: RevisionOpt = None,
        fallback: FallbackOpt = None,
        tokenizer: TokenizerOpt = None,
        add_generation_prompt: GenOpt = False,
        continue_final_message: ContinueOpt = False,
        tools: ToolsOpt = None,
        documents: DocumentsOpt = None,
        var: VarOpt = None,
        now: NowOpt = None,
        limit: LimitOpt = None,
        role: RoleOpt = None,
        unsafe: Annotated[
            bool, typer.Option("--no-sanitize", help="Let control tokens in the data encode as control tokens.")
        ] = False,
        masks: Annotated[
            bool, typer.Option("--mask", help="Mark the tokens a model is trained on (and print labels with --json).")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help='Print {"input_ids": [...]} instead of the table.')] = False,
    ) -> None:
        """Show the token ids of the prompt: id and text per token, coloured by role."""
        when, request, limits = _request(file, tools, documents, var, now, limit)
        chat_template = load_template(
            model, name=name, revision=revision, fallback=fallback, tokenizer=tokenizer, limits=limits, roles=role
        )
        enc = chat_template.encode(
            request.messages,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            now=when,
            sanitize_control_tokens=not unsafe,
            return_offsets=True,
            return_assistant_mask=masks,
            **request.arguments(),
        )
        if as_json:
            out = {"input_ids": enc.input_ids, **({"labels": enc.labels} if masks else {})}
            sys.stdout.write(json.dumps(out) + "\n")
            return
        from rich.console import Console

        from .view import token_table

        Console(highlight=False).print(token_table(enc, request.messages, chat_template.tokenizer))

    @command(cls=_Command)
    def parse(
        file: ResponseArg = "-",
        model: SourceOpt = ...,  # type: ignore[assignment]
        name: NameOpt = None,
        revision: RevisionOpt = None,
        fallback: FallbackOpt = None,
        prefix: PrefixOpt = None,
        tools: ToolsOpt = None,
        reasoning_field: ReasoningFieldOpt = "reasoning_content",
        var: VarOpt = None,
        limit: LimitOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the message as one JSON object (see above).")] = False,
    ) -> None:
        """Parse generated text back into the assistant message: reasoning, content, tool calls.

        The format (how the template writes reasoning and tool calls) is detected from the template. Without --json, a view for people: the format, the reasoning (dim), the content, each tool call with its arguments and status, and the stop marker.

        --json prints the message a template takes (role, content, the reasoning field, tool_calls) plus one key "_parse": {"format": NAME, "format_reason": TEXT, "stop": MARKER or null, "trailing": TEXT after the stop, "reasoning_closed": BOOL, "calls": [{"name", "status", "error", "raw"}, ...]}, calls in the order of tool_calls.

        A call's status is ok, invalid_json, invalid_syntax, malformed, unclosed, missing_name or unknown_tool (a name not in --tools). The exit status is 0 whenever the text was parsed, even when some calls are not ok: those are listed in one warning line on standard error.
        """
        # Options first: a usage mistake should not wait for (or consume) stdin.
        variables = parse_variables(var or [])
        for key, option in (("prefix", "--prefix"), ("tools", "--tools"), ("reasoning_field", "--reasoning-field")):
            if key in variables:
                raise typer.BadParameter(f"{key!r} is not a template variable here: use {option}", param_hint="--var")
        if [file, prefix, tools].count("-") > 1:
            raise typer.BadParameter("only one of FILE, --prefix and --tools can be - (standard input)")
        limits = parse_limits(limit or [])
        text = read_text(file, "response")
        prefix_text = read_text(prefix, "prefix") if prefix is not None else None
        schemas = read_tools(tools) if tools is not None else None
        chat_template = load_template(model, name=name, revision=revision, fallback=fallback, limits=limits)
        message: Any = chat_template.parse_response(
            text, prefix=prefix_text, tools=schemas, reasoning_field=reasoning_field, **variables
        )
        calls = message.calls
        if as_json:
            report = {
                "format": message.format.name, "format_reason": message.format.reason,
                "stop": message.stop, "trailing": message.trailing, "reasoning_closed": message.reasoning_closed,
                "calls": [{"name": c.name, "status": c.status, "error": c.error, "raw": c.raw} for c in calls],
            }
            sys.stdout.write(json.dumps({**message, "_parse": report}, ensure_ascii=False) + "\n")
        else:
            from rich.console import Console

            from .view import response_view

            console = Console(highlight=False)
            view = response_view(message, reasoning_field=reasoning_field)
            # Piped output is for reading back or diffing: no wrapping at 80 columns.
            console.print(view, soft_wrap=not console.is_terminal)
        sys.stdout.flush()
        failed = [f"#{n} {c.name or '(no name)'} ({c.status})" for n, c in enumerate(calls, 1) if not c.ok]
        if failed:
            print(
                f"chatplate: warning: {len(failed)} of {len(calls)} tool calls did not read cleanly: " + ", ".join(failed),
                file=sys.stderr,
            )

    @command(cls=_Command)
    def chat(
        model: Annotated[
            str,
            typer.Argument(metavar="MODEL|GGUF|URL", help="A model directory with weights (transformers), a .gguf file "
                           "(llama.cpp) or the URL of an OpenAI-compatible server.", show_default=False),
        ],
        template: Annotated[
            Optional[str],
            typer.Option("--template", "-t", help="Where the chat template and tokenizer come from when MODEL has none "
                         "(a URL): a model directory, tokenizer_config.json, .jinja file, built-in or hub id."),
        ] = None,
        system: Annotated[Optional[str], typer.Option("--system", help="The system message.")] = None,
        tools_py: Annotated[
            Optional[str], typer.Option("--tools", metavar="FILE.py", help="Python functions the model may call (run when called).")
        ] = None,
        var: VarOpt = None,
        temperature: Annotated[float, typer.Option("--temperature", help="0 is greedy.")] = 0.7,
        top_p: Annotated[float, typer.Option("--top-p")] = 1.0,
        max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 512,
        seed: Annotated[Optional[int], typer.Option("--seed")] = None,
    ) -> None:
        """Chat with a model in the terminal: chatplate renders each turn exactly, the model
        generates, the reply is parsed (reasoning shown dimmed, tool calls run). /help lists the
        commands (/system, /set, /regen, /undo, /edit, /continue, /clear, /save, /load, /prompt,
        /tools, /exit)."""
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
        from rich.console import Console

        from ..chat import Chat, Sampling
        from .repl import Repl, load_functions

        functions = load_functions(tools_py) if tools_py else None
        conversation = Chat(
            model, template=template, system=system, tools=functions, run_tools=bool(functions),
            sampling=Sampling(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed),
            variables=parse_variables(var or []),
        )
        Repl(conversation, Console(highlight=False)).run()

    @command(cls=_Command)
    def prepare(
        input: Annotated[
            str, typer.Argument(metavar="INPUT", help="Dataset: .jsonl, .json, .parquet or a save_to_disk directory.")
        ],
        output: Annotated[
            str, typer.Option("--output", "-o", help="Where to write: .parquet, .jsonl or a directory (HF dataset).")
        ],
        model: ModelOpt,
        record_format: Annotated[
            Optional[Literal["openai", "sharegpt", "pairs", "alpaca", "prompt_completion"]],
            typer.Option("--format", help="Record format (default: detected per record)."),
        ] = None,
        max_length: Annotated[Optional[int], typer.Option("--max-length", min=1, help="Longest row in tokens.")] = None,
        truncation: Annotated[
            Literal["drop", "tokens", "turns"],
            typer.Option("--truncation", help="Rows over --max-length: drop (reject), tokens (cut) or turns (drop oldest turns)."),
        ] = "drop",
        workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Processes (default: all cores when the input is large enough to pay for starting them, else this one).")] = None,
        engine: Annotated[Literal["local", "ray"], typer.Option("--engine", help="local (processes) or ray.")] = "local",
        ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="An existing Ray cluster.")] = None,
        errors: Annotated[
            Optional[str], typer.Option("--errors", metavar="FILE", help="Errors file (default: OUTPUT.errors.jsonl).")
        ] = None,
        on_error: Annotated[
            Literal["skip", "fail"],
            typer.Option("--on-error", help="skip (write to the errors file) or fail (stop at the first)."),
        ] = "skip",
        train_roles: Annotated[
            Optional[list[str]],
            typer.Option("--train-role", metavar="ROLE", help="Role whose turns are trained (repeatable; default assistant)."),
        ] = None,
        no_end_of_turn: Annotated[bool, typer.Option("--no-train-end-of-turn", help="Do not train the end-of-turn marker.")] = False,
        last_turn_only: Annotated[bool, typer.Option("--last-turn-only", help="Train only the last trained turn.")] = False,
        unsafe: Annotated[
            bool, typer.Option("--no-sanitize", help="Let control tokens in the data encode as control tokens.")
        ] = False,
        name: NameOpt = None,
        revision: RevisionOpt = None,
        fallback: FallbackOpt = None,
        tokenizer: TokenizerOpt = None,
        limit: LimitOpt = None,
        role: RoleOpt = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary: no progress bars or logs.")] = False,
    ) -> None:
        """Turn a dataset of conversations into input_ids, attention_mask and labels, on all cores."""
        from rich.console import Console

        from ..training.pipeline import prepare as run

        if truncation == "turns" and max_length is None:
            raise typer.BadParameter("--truncation turns needs --max-length", param_hint="--truncation")
        chat_template = load_template(
            model, name=name, revision=revision, fallback=fallback, tokenizer=tokenizer,
            limits=parse_limits(limit or []), roles=role,
        )
        console = Console(stderr=True, highlight=False)
        with _progress(console, quiet) as report:
            summary = run(
                input, output, chat_template, format=record_format, max_length=max_length, truncation=truncation,
                workers=workers, engine=engine, ray_address=ray_address, errors=errors, on_error=on_error,
                train_roles=train_roles, train_end_of_turn=not no_end_of_turn, train_last_turn_only=last_turn_only,
                sanitize_control_tokens=not unsafe, progress=report, quiet=quiet,
            )
        console.print(str(summary), markup=False, soft_wrap=True)

    @command(cls=_Command)
    def stability(
        template: TemplateOpt = DEFAULT_BUILTIN,
        name: NameOpt = None,
        revision: RevisionOpt = None,
        fallback: FallbackOpt = None,
        tools: ToolsOpt = None,
        var: VarOpt = None,
        now: NowOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        """Whether appending tool results and user turns keeps what the model saw as a prefix of
        later prompts (what token-in, token-out RL needs); where not, what is rewritten and the
        variable that fixes it."""
        when, variables = parse_now(now), parse_variables(var or [])
        chat_template = load_template(template, name=name, revision=revision, fallback=fallback)
        report = chat_template.prefix_stability(tools=read_tools(tools) if tools is not None else None, now=when, **variables)
        if as_json:
            rows = [
                {key: value for key, value in witness.__dict__.items() if key != "tools"} for witness in report.witnesses
            ]
            data = {"stable": report.stable, "probed": report.probed, "witnesses": rows}
            sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
        else:
            sys.stdout.write(f"{report}\n")

    @command("list", cls=_Command)
    def list_command(
        as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
    ) -> None:
        """List the built-in templates."""
        builtins = list_builtins()
        if as_json:
            rows = [
                {"name": b.name, "description": b.description, "bos_token": b.bos_token, "eos_token": b.eos_token}
                for b in builtins
            ]
            sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
            return
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        cells = [
            (b.name + (" (default)" if b.name == DEFAULT_BUILTIN else ""), b.bos_token or "", b.eos_token or "", b.description)
            for b in builtins
        ]
        console = Console(highlight=False)
        if not console.is_terminal:
            # One line per template, never cut or wrapped: for grep and for reading in a pager.
            widths = [max(len(row[column]) for row in cells) for column in range(3)]
            for row in cells:
                sys.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3] + "\n")
            return
        table = Table(title="built-in chat templates", title_justify="left")
        table.add_column("name", style="bold cyan", no_wrap=True)
        table.add_column("bos", no_wrap=True)
        table.add_column("eos", no_wrap=True)
        table.add_column("description", overflow="fold")
        for row in cells:
            # Text, not markup: tokens such as "[/INST]" would read as rich closing tags.
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)

    return app
