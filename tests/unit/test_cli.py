"""The command line: exact output, input shapes, one-line errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import chatplate
from chatplate.cli import main

pytest.importorskip("typer")

CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
# ChatML as its documentation lays it out.
CHATML_TWO_TURNS = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, data: object) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def test_render_prints_exact_prompt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "render", write(tmp_path, "c.json", CHAT), "--template", "chatml")
    assert (code, out, err) == (0, CHATML_TWO_TURNS, "")


def test_render_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "render", write(tmp_path, "c.json", CHAT), "-t", "chatml", "--json")
    assert code == 0
    assert json.loads(out) == {"text": CHATML_TWO_TURNS}


def test_render_generation_prompt_matches_library(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "render", write(tmp_path, "c.json", CHAT[:1]), "-t", "llama-3", "--add-generation-prompt")
    assert code == 0
    assert out == chatplate.load("llama-3").render(CHAT[:1], add_generation_prompt=True)
    assert out.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_render_pair_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = [["Hi", "Hello!"], ["How are you?", None]]
    code, out, _ = run(capsys, "render", write(tmp_path, "p.json", pairs), "-t", "chatml")
    assert code == 0
    assert out == CHATML_TWO_TURNS + "<|im_start|>user\nHow are you?<|im_end|>\n"


def test_render_object_input_with_tools_documents_vars_and_now(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = write(
        tmp_path,
        "t.jinja",
        "{{ tools[0].function.name }}|{{ documents[0].title }}|{{ flag }}|{{ strftime_now('%Y-%m-%d') }}|{{ messages[-1].content }}",
    )
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    data = {"messages": CHAT, "tools": tools, "documents": [{"title": "Doc", "text": "body"}]}
    code, out, _ = run(
        capsys, "render", write(tmp_path, "c.json", data), "-t", template, "--var", "flag=false", "--now", "2024-07-26T12:00:00"
    )
    assert (code, out) == (0, "get_weather|Doc|False|2024-07-26|Hello!")
    other_tools = write(tmp_path, "tools.json", [{"type": "function", "function": {"name": "search"}}])
    code, out, _ = run(capsys, "render", write(tmp_path, "c.json", data), "-t", template, "--tools", other_tools, "--var", "flag=1")
    assert code == 0 and out.startswith("search|Doc|1|")


def test_render_continue_final_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "render", write(tmp_path, "c.json", CHAT), "-t", "chatml", "--continue-final-message")
    assert (code, out) == (0, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!")


def test_show_makes_whitespace_visible(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", write(tmp_path, "c.json", CHAT), "-t", "chatml")
    assert code == 0
    assert "<|im_start|>user↵\nHi<|im_end|>↵\n" in out
    assert "legend" in out


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    names = {row["name"] for row in json.loads(out)}
    assert {"chatml", "llama-2", "llama-3", "mistral", "gemma", "phi-3", "zephyr", "vicuna", "alpaca",
            "blenderbot", "command-r", "qwen2.5", "deepseek"} <= names
    code, out, _ = run(capsys, "list")
    assert code == 0 and "chatml (default)" in out and "[/INST]" in out


@pytest.mark.parametrize(
    ("files", "argv", "expected"),
    [
        ({}, ["render", "missing.json"], "conversation file not found"),
        ({"c.json": "[{\"role\": "}, ["render", "c.json"], "invalid JSON at line 1, column 11"),
        ({"c.json": CHAT}, ["render", "c.json", "-t", "lama-3"], "did you mean 'llama-3'"),
        ({"c.json": "\"just text\""}, ["render", "c.json"], "expected a list of messages"),
        ({"c.json": [1]}, ["render", "c.json"], "messages[0]"),
        ({"c.json": CHAT, "t.jinja": "{{ foo( }}"}, ["render", "c.json", "-t", "t.jinja"], "template syntax error"),
        ({"c.json": CHAT, "t.jinja": "{{ raise_exception('Roles must alternate!') }}"}, ["render", "c.json", "-t", "t.jinja"], "Roles must alternate!"),
        ({"c.json": CHAT}, ["render", "c.json", "-t", "chatml", "--add-generation-prompt", "--continue-final-message"], "cannot be used together"),
    ],
)
def test_errors_are_one_line_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], files: dict, argv: list[str], expected: str
) -> None:
    for name, data in files.items():
        write(tmp_path, name, data)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert out == ""
    assert err.startswith("chatplate: error: ") and err.count("\n") == 1
    assert expected in err


@pytest.mark.parametrize(
    "argv",
    [["render", "--bogus"], ["render", "--var", "flag=tru"], ["render", "--var", "noequals"], ["render", "--now", "yesterday"], ["frobnicate"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "Traceback" not in err


def test_python_dash_m(tmp_path: Path) -> None:
    conversation = write(tmp_path, "c.json", CHAT)
    result = subprocess.run(
        [sys.executable, "-m", "chatplate", "render", conversation, "-t", "chatml"], capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (0, CHATML_TWO_TURNS)


def test_stdin(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chatplate", "render", "-", "-t", "chatml"], input=json.dumps(CHAT), capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (0, CHATML_TWO_TURNS)


def test_prompt_view_styles() -> None:
    from rich.console import Console

    from chatplate.cli.view import CONTROL_STYLE, ROLE_STYLES, TEMPLATE_STYLE, WHITESPACE_STYLE, prompt_view

    template = chatplate.load("chatml")
    messages = [{"role": "user", "content": "Hi  there"}, {"role": "assistant", "content": " Hello!"}]
    text = template.render(messages)
    view = prompt_view(text, messages, template)
    shown = view.plain.split("\n\nlegend")[0]
    assert shown == "<|im_start|>user↵\nHi  there<|im_end|>↵\n<|im_start|>assistant↵\n·Hello!<|im_end|>↵\n"
    console = Console()

    def style_at(fragment: str) -> str:
        return str(view.get_style_at_offset(console, shown.index(fragment)))

    assert style_at("<|im_start|>") == CONTROL_STYLE
    assert style_at("Hi") == ROLE_STYLES["user"]
    assert style_at("Hello") == ROLE_STYLES["assistant"]
    assert style_at("user↵") == TEMPLATE_STYLE
    assert style_at("↵") == WHITESPACE_STYLE
    assert style_at("·") == WHITESPACE_STYLE
    assert len(view.spans) < 30  # runs of one style are one span, not one per character
