"""The command line: exact output, input shapes, one-line errors and exit codes."""

from __future__ import annotations

import json
import os
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
    long = "word " * 40 + "end"
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": long}]
    code, out, _ = run(capsys, "show", write(tmp_path, "c.json", chat), "-t", "chatml")
    assert code == 0
    assert "<|im_start|>user↵\nHi<|im_end|>↵\n" in out
    # Not a terminal: no key, and no line broken at 80 columns.
    assert "legend" not in out
    assert f"\n{long}<|im_end|>↵\n" in out


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
        ({}, ["parse", "missing.txt", "-m", "qwen2.5"], "response file not found: missing.txt"),
        ({"r.txt": "hi"}, ["parse", "r.txt", "-m", "qwen2.5", "--prefix", "nope.txt"], "prefix file not found: nope.txt"),
        ({"r.txt": "hi"}, ["parse", "r.txt", "-m", "qwen2.5", "--tools", "nope.json"], "tools file not found: nope.json"),
        ({"r.txt": "hi", "t.json": "[{"}, ["parse", "r.txt", "-m", "qwen2.5", "--tools", "t.json"], "invalid JSON at line 1"),
        ({"r.txt": "hi", "t.json": {"name": "f"}}, ["parse", "r.txt", "-m", "qwen2.5", "--tools", "t.json"], "expected a list of tool schemas"),
        ({"r.txt": "hi"}, ["parse", "r.txt", "-m", "qwen2.6"], "qwen2.5"),
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


def test_the_program_exits_with_main_s_status_and_all_its_output(tmp_path: Path) -> None:
    """``python -m chatplate`` leaves without tearing the interpreter down: its exit status is
    main()'s and what it wrote to a pipe arrives whole."""
    long_chat = [{"role": "user", "content": "word " * 50_000}, {"role": "assistant", "content": "ok"}]
    conversation = write(tmp_path, "long.json", long_chat)
    expected = chatplate.load("chatml").render(long_chat)
    cases = [
        (["render", conversation, "-t", "chatml"], 0, expected, ""),
        (["render", str(tmp_path / "missing.json"), "-t", "chatml"], 1, "", "chatplate: error:"),
        (["frobnicate"], 2, "", "No such command"),
    ]
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a pipe is by default
    for argv, status, out, err in cases:
        result = subprocess.run([sys.executable, "-m", "chatplate", *argv], capture_output=True, text=True, env=buffered)
        assert result.returncode == status, result.stderr
        assert result.stdout == out and err in result.stderr


def test_stdin(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chatplate", "render", "-", "-t", "chatml"], input=json.dumps(CHAT), capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (0, CHATML_TWO_TURNS)


def test_prompt_view_styles() -> None:
    from rich.console import Console

    from chatplate.cli.view import (
        CONTROL_STYLE,
        ROLE_STYLES,
        TEMPLATE_STYLE,
        WHITESPACE_STYLE,
        prompt_from_template,
        prompt_view,
    )

    template = chatplate.load("chatml")
    messages = [{"role": "user", "content": "Hi  there"}, {"role": "assistant", "content": " Hello!"}]
    view = prompt_view(prompt_from_template(template, messages), messages)
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


# -- what show marks as control tokens ----------------------------------------------------------

FORGED = "use <|eot_id|> and <|foo|> and [INST] and <s>"


def control_texts(prompt: object) -> list[str]:
    return [prompt.text[start:end] for start, end in prompt.control]  # type: ignore[attr-defined]


@pytest.mark.parametrize("with_tokenizer", [True, False])
def test_show_never_marks_message_text_as_control_tokens(with_tokenizer: bool) -> None:
    from chatplate.cli.view import prompt_from_template
    from tests import tokenizer_fixtures

    template = chatplate.load(str(tokenizer_fixtures.llama3_bpe_dir())) if with_tokenizer else chatplate.load("llama-3")
    assert template.has_tokenizer == with_tokenizer
    messages = [{"role": "user", "content": FORGED}, {"role": "assistant", "content": "ok"}]
    prompt = prompt_from_template(template, messages)
    header = ["<|start_header_id|>", "<|end_header_id|>"]
    assert control_texts(prompt) == ["<|begin_of_text|>", *header, "<|eot_id|>", *header, "<|eot_id|>"]
    data_start = prompt.text.index(FORGED)
    assert all(end <= data_start or start >= data_start + len(FORGED) for start, end in prompt.control)
    if with_tokenizer:
        # The same tokens encode makes: its control ids sit exactly at these spans.
        from chatplate.cli.view import control_ids

        enc = template.encode(messages, return_offsets=True)
        ids = control_ids(template.tokenizer)
        assert [span for token, span in zip(enc.input_ids, enc.offsets) if token in ids] == prompt.control


def test_show_marks_spaces_at_both_edges_of_message_text() -> None:
    from chatplate.cli.view import prompt_from_template, prompt_view

    messages = [{"role": "user", "content": "  Hi\tthere!"}, {"role": "assistant", "content": "Two lines.  "}]
    shown = prompt_view(prompt_from_template(chatplate.load("chatml"), messages), messages, legend=False).plain
    assert "↵\n··Hi⇥there!<|im_end|>" in shown
    assert "Two lines.··<|im_end|>" in shown


def test_token_table_shows_a_token_that_shares_its_characters_as_itself() -> None:
    from rich.console import Console

    from chatplate.cli.view import token_table
    from chatplate.tokens import ChatTokenizer, Encoding
    from tests import tokenizer_fixtures

    pytest.importorskip("mistral_common")
    tokenizer = ChatTokenizer.from_model_dir(tokenizer_fixtures.mistral_v1_dir())
    space, newline = tokenizer.backend.token_to_id("▁"), tokenizer.backend.token_to_id("<0x0A>")
    # SentencePiece can give a "▁" token the offsets of the newline byte token after it.
    enc = Encoding("a\nb", [tokenizer.backend.token_to_id("▁a"), space, newline, tokenizer.backend.token_to_id("b")],
                   [1] * 4, offsets=[(0, 1), (1, 2), (1, 2), (2, 3)])
    console = Console(width=200, record=True)
    console.print(token_table(enc, [], tokenizer))
    rows = {line.split()[1]: line.split()[2] for line in console.export_text().splitlines()[1:] if line.strip()}
    assert rows[str(space)] == "▁" and rows[str(newline)] == "↵"


# -- warnings, advice and options ------------------------------------------------------------------


def test_missing_bos_is_one_warning_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests import tokenizer_fixtures

    # The directory, not only tokenizer.json: its config names the BOS the tokenizer adds.
    tokenizer = str(tokenizer_fixtures.llama3_bpe_dir())
    code, out, err = run(capsys, "encode", write(tmp_path, "c.json", CHAT), "-m", "chatml", "--tokenizer", tokenizer)
    assert code == 0
    assert [line for line in err.splitlines() if line] == [
        line for line in err.splitlines() if line.startswith("chatplate: warning: ") and "BOS" in line
    ]
    assert err.count("BOS") == 1 and "BOS" not in out and "warnings.warn" not in err


def test_errors_give_command_line_advice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tests import tokenizer_fixtures

    conversation = write(tmp_path, "c.json", CHAT)
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "tokenizer_config.json").write_text("{}", encoding="utf-8")
    loop = write(tmp_path, "loop.jinja", "{% for i in range(99999) %}{% for j in range(50) %}{% endfor %}{% endfor %}")
    odd_role = write(tmp_path, "odd.json", [{"role": "im_start", "content": "x"}])
    tokenizer = str(tokenizer_fixtures.chatml_bpe_dir() / "tokenizer.json")
    cases = [
        (["encode", conversation, "-m", "chatml"], "--tokenizer"),
        (["render", conversation, "-t", str(tmp_path / "bare")], "--fallback chatml"),
        (["render", conversation, "-t", loop], "--limit max_work=N"),
        (["encode", odd_role, "-m", "chatml", "--tokenizer", tokenizer], "--role im_start"),
    ]
    for argv, advice in cases:
        code, _, err = run(capsys, *argv)
        assert code == 1 and advice in err, (argv, err)
        for python in ("name=", "fallback=", "limits=", "roles=", "ChatTemplate(", "chatplate.load"):
            assert python not in err, (argv, err)
    # The advice works.
    assert run(capsys, "render", conversation, "-t", str(tmp_path / "bare"), "--fallback", "chatml")[1] == CHATML_TWO_TURNS
    capsys.readouterr()
    assert run(capsys, "render", conversation, "-t", loop, "--limit", "max_work=none")[0] == 0
    code, out, _ = run(capsys, "encode", odd_role, "-m", "chatml", "--tokenizer", tokenizer, "--role", "im_start", "--json")
    assert code == 0 and json.loads(out)["input_ids"]


def test_fallback_warning_is_one_cli_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "tokenizer_config.json").write_text("{}", encoding="utf-8")
    code, out, err = run(capsys, "render", write(tmp_path, "c.json", CHAT), "-t", str(tmp_path / "bare"), "--fallback", "chatml")
    assert (code, out) == (0, CHATML_TWO_TURNS)
    assert err.startswith("chatplate: warning: ") and err.count("\n") == 1 and "chatml" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["prepare", "in.jsonl", "-o", "o.parquet", "-m", "chatml", "--format", "foo"], "'foo' is not one of"),
        (["prepare", "in.jsonl", "-o", "o.parquet", "-m", "chatml", "--truncation", "chop"], "'chop' is not one of"),
        (["prepare", "in.jsonl", "-o", "o.parquet", "-m", "chatml", "--truncation", "turns"], "--max-length"),
        (["prepare", "in.jsonl", "-o", "o.parquet", "-m", "chatml", "--engine", "spark"], "'spark' is not one of"),
        (["render", "--limit", "max_wrok=5"], "the limits are"),
        (["render", "--limit", "max_work=lots"], "max_work=N"),
        (["render", "--var", "enable_thinking=False"], "enable_thinking=false"),
    ],
)
def test_bad_option_values_are_usage_errors(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert expected in " ".join(err.replace("│", " ").split())


def test_help_shows_no_value_for_flags_and_file_or_dash(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("render", "show", "encode", "prepare", "list"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0
        assert "<bool>" not in out and "{input}" not in out
    code, out, _ = run(capsys, "render", "--help")
    assert "[OPTIONS] [FILE|-]" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, f"chatplate {chatplate.__version__}\n")


def test_list_when_piped_prints_whole_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    from chatplate.sources.registry import list_builtins

    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    for builtin in list_builtins():
        assert any(line.startswith(builtin.name) and line.endswith(builtin.description) for line in lines), builtin.name


def test_render_says_it_reads_a_terminal(tmp_path: Path) -> None:
    import os
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "chatplate", "render", "-t", "chatml"], stdin=follower, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    os.close(follower)
    os.write(leader, json.dumps(CHAT).encode() + b"\n\x04")
    out, err = process.communicate(timeout=60)
    os.close(leader)
    assert process.returncode == 0 and out == CHATML_TWO_TURNS
    assert "reading the conversation from standard input" in err and "Ctrl-D" in err


def test_quiet_prepare_prints_only_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("datasets")
    from tests import tokenizer_fixtures

    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"messages": CHAT}) + "\n", encoding="utf-8")
    model = str(tokenizer_fixtures.chatml_bpe_dir())
    result = subprocess.run(
        [sys.executable, "-m", "chatplate", "prepare", str(source), "-o", str(tmp_path / "out"), "-m", model, "-q",
         "--workers", "1"], capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("rows read 1, written 1") and lines[-1].startswith("output: ") and len(lines) == 4, lines
    assert "0.00" not in result.stderr and "tokens/s" in lines[2]


DROPS_REASONING = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.reasoning_content and (keep or loop.last) %}"
    "<think>{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_stability(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "stability", "--template", "chatml")
    assert (code, err) == (0, "") and out.startswith("prefix-stable (content + user turn")
    template = write(tmp_path, "drops.jinja", DROPS_REASONING)
    code, out, err = run(capsys, "stability", "--template", template)
    assert code == 0 and out.startswith("not prefix-stable:")
    assert "appending a user turn: past reasoning rewritten" in out and "'<think>First I check" in out
    assert "fixed by keep=True" in out
    code, out, _ = run(capsys, "stability", "--template", template, "--var", "keep=true")
    assert out.startswith("prefix-stable")
    code, out, _ = run(capsys, "stability", "--template", template, "--json")
    report = json.loads(out)
    assert report["stable"] is False and {w["field"] for w in report["witnesses"]} == {"past reasoning"}
    assert all(w["fix"] == {"keep": True} and w["conversation"][-1]["role"] == "assistant" for w in report["witnesses"])
