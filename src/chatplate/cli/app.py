"""The typer application: one function per command, sharing the render options."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Annotated, Optional

import typer

from ..sources.registry import DEFAULT_BUILTIN, list_builtins
from ..template import ChatTemplate
from .inputs import Request, load_template, parse_now, parse_variables, read_request

FileArg = Annotated[str, typer.Argument(help="Conversation JSON file, or - for stdin.", show_default=True)]
TemplateOpt = Annotated[
    str,
    typer.Option(
        "--template",
        "-t",
        help="Built-in name, .jinja file, model directory, tokenizer_config.json, .gguf file or hub id.",
    ),
]
NameOpt = Annotated[Optional[str], typer.Option("--name", help="Pick one of a model's named templates (e.g. tool_use).")]
RevisionOpt = Annotated[Optional[str], typer.Option("--revision", help="Hub revision (branch, tag or commit).")]
GenOpt = Annotated[bool, typer.Option("--add-generation-prompt", help="End with the prompt for a new assistant turn.")]
ContinueOpt = Annotated[
    bool, typer.Option("--continue-final-message", help="Leave the final message open for the model to continue.")
]
ContinueFieldOpt = Annotated[
    Optional[str],
    typer.Option("--continue-field", help="Continue this field of the final message (e.g. reasoning_content)."),
]
ToolsOpt = Annotated[Optional[str], typer.Option("--tools", help="JSON file with a list of tool schemas.")]
DocumentsOpt = Annotated[Optional[str], typer.Option("--documents", help="JSON file with a list of documents.")]
VarOpt = Annotated[
    Optional[list[str]], typer.Option("--var", help="Template variable as KEY=JSON (repeatable), e.g. enable_thinking=false.")
]
NowOpt = Annotated[Optional[str], typer.Option("--now", help="Time strftime_now reports, ISO 8601 (default: now).")]


def _gather(
    file: str,
    source: str,
    name: str | None,
    revision: str | None,
    tools: str | None,
    documents: str | None,
    var: list[str] | None,
    now: str | None,
) -> tuple[datetime | None, Request, ChatTemplate]:
    """The clock, the request and the template a command works on."""
    # Options first: a usage mistake should not wait for (or consume) stdin.
    when = parse_now(now)
    variables = parse_variables(var or [])
    request = read_request(file, tools, documents, variables)
    return when, request, load_template(source, name, revision)


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
        seconds = max(time.perf_counter() - self.started, 1e-9)
        rate = f"{rows / seconds:,.0f} rows/s, {tokens / seconds / 1e6:.2f} M tokens/s"
        self.bar.update(self.task, rows=rows, tokens=tokens, rate=rate)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="chatplate",
        help="Render chat conversations exactly as a model's chat template does.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    def _prompt(
        file: str,
        template: str,
        name: str | None,
        revision: str | None,
        add_generation_prompt: bool,
        continue_final_message: bool,
        continue_field: str | None,
        tools: str | None,
        documents: str | None,
        var: list[str] | None,
        now: str | None,
    ) -> tuple[str, ChatTemplate, Request]:
        when, request, chat_template = _gather(file, template, name, revision, tools, documents, var, now)
        continuation: bool | str = continue_field or continue_final_message
        text = chat_template.render(
            request.messages,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continuation,
            now=when,
            **request.arguments(),
        )
        return text, chat_template, request

    @app.command()
    def render(
        file: FileArg = "-",
        template: TemplateOpt = DEFAULT_BUILTIN,
        name: NameOpt = None,
        revision: RevisionOpt = None,
        add_generation_prompt: GenOpt = False,
        continue_final_message: ContinueOpt = False,
        continue_field: ContinueFieldOpt = None,
        tools: ToolsOpt = None,
        documents: DocumentsOpt = None,
        var: VarOpt = None,
        now: NowOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help='Print {"text": ...} instead of the raw prompt.')] = False,
    ) -> None:
        """Print the prompt exactly as the template renders it (no added newline)."""
        text, _, _ = _prompt(
            file, template, name, revision, add_generation_prompt, continue_final_message, continue_field,
            tools, documents, var, now,
        )
        sys.stdout.write(json.dumps({"text": text}, ensure_ascii=False) + "\n" if as_json else text)
        sys.stdout.flush()

    @app.command()
    def show(
        file: FileArg = "-",
        template: TemplateOpt = DEFAULT_BUILTIN,
        name: NameOpt = None,
        revision: RevisionOpt = None,
        add_generation_prompt: GenOpt = False,
        continue_final_message: ContinueOpt = False,
        continue_field: ContinueFieldOpt = None,
        tools: ToolsOpt = None,
        documents: DocumentsOpt = None,
        var: VarOpt = None,
        now: NowOpt = None,
    ) -> None:
        """Show the prompt for a person: roles in colour, control tokens marked, whitespace visible."""
        from rich.console import Console

        from .view import prompt_view

        text, chat_template, request = _prompt(
            file, template, name, revision, add_generation_prompt, continue_final_message, continue_field,
            tools, documents, var, now,
        )
        Console(highlight=False).print(prompt_view(text, request.messages, chat_template))

    @app.command()
    def encode(
        file: FileArg = "-",
        model: Annotated[
            str, typer.Option("--model", "-m", help="Model directory (tokenizer.json + template) or hub id.")
        ] = ...,  # type: ignore[assignment]
        name: NameOpt = None,
        revision: RevisionOpt = None,
        add_generation_prompt: GenOpt = False,
        continue_final_message: ContinueOpt = False,
        tools: ToolsOpt = None,
        documents: DocumentsOpt = None,
        var: VarOpt = None,
        now: NowOpt = None,
        unsafe: Annotated[
            bool, typer.Option("--no-sanitize", help="Let control tokens in the data encode as control tokens.")
        ] = False,
        masks: Annotated[
            bool, typer.Option("--mask", help="Mark the tokens a model is trained on (and print labels with --json).")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help='Print {"input_ids": [...]} instead of the table.')] = False,
    ) -> None:
        """Show the token ids of the prompt: id and text per token, coloured by role."""
        when, request, chat_template = _gather(file, model, name, revision, tools, documents, var, now)
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

    @app.command()
    def prepare(
        input: Annotated[str, typer.Argument(help="Dataset: .jsonl, .json, .parquet or a save_to_disk directory.")],
        output: Annotated[str, typer.Option("--output", "-o", help="Where to write: .parquet, .jsonl or a directory (HF dataset).")],
        model: Annotated[
            str, typer.Option("--model", "-m", help="Model directory (tokenizer.json + template) or hub id.")
        ],
        record_format: Annotated[
            Optional[str],
            typer.Option("--format", help="Record format: openai, sharegpt, pairs, alpaca, prompt_completion (default: detect per record)."),
        ] = None,
        max_length: Annotated[Optional[int], typer.Option("--max-length", help="Longest row in tokens.")] = None,
        truncation: Annotated[
            str, typer.Option("--truncation", help="Rows over --max-length: drop (reject), tokens (cut) or turns (drop oldest turns).")
        ] = "drop",
        workers: Annotated[Optional[int], typer.Option("--workers", help="Processes (default: all cores).")] = None,
        engine: Annotated[str, typer.Option("--engine", help="local (processes) or ray.")] = "local",
        ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="An existing Ray cluster.")] = None,
        errors: Annotated[Optional[str], typer.Option("--errors", help="Errors file (default: OUTPUT.errors.jsonl).")] = None,
        on_error: Annotated[str, typer.Option("--on-error", help="skip (write to the errors file) or fail (stop at the first).")] = "skip",
        train_roles: Annotated[
            Optional[list[str]], typer.Option("--train-role", help="Role whose turns are trained (repeatable; default assistant).")
        ] = None,
        no_end_of_turn: Annotated[bool, typer.Option("--no-train-end-of-turn", help="Do not train the end-of-turn marker.")] = False,
        last_turn_only: Annotated[bool, typer.Option("--last-turn-only", help="Train only the last trained turn.")] = False,
        name: NameOpt = None,
        revision: RevisionOpt = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Turn a dataset of conversations into input_ids, attention_mask and labels, on all cores."""
        from rich.console import Console

        from ..training.pipeline import prepare as run

        chat_template = load_template(model, name, revision)
        console = Console(stderr=True, highlight=False)
        with _progress(console, quiet) as report:
            summary = run(
                input, output, chat_template, format=record_format, max_length=max_length, truncation=truncation,
                workers=workers, engine=engine, ray_address=ray_address, errors=errors, on_error=on_error,
                train_roles=train_roles, train_end_of_turn=not no_end_of_turn, train_last_turn_only=last_turn_only,
                progress=report,
            )
        console.print(str(summary), markup=False, soft_wrap=True)

    @app.command("list")
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

        table = Table(title="built-in chat templates", title_justify="left")
        table.add_column("name", style="bold cyan", no_wrap=True)
        table.add_column("bos")
        table.add_column("eos")
        table.add_column("description")
        for b in builtins:
            default = " (default)" if b.name == DEFAULT_BUILTIN else ""
            # Text, not markup: tokens such as "[/INST]" would read as rich closing tags.
            table.add_row(*(Text(cell) for cell in (b.name + default, b.bos_token or "", b.eos_token or "", b.description)))
        Console(highlight=False).print(table)

    return app
