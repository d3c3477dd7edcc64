"""``chatplate parse``: generated text back into the assistant message, for people and as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import chatplate
from tests.unit.test_cli import run, write

pytest.importorskip("typer")

GOOD_CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
BAD_CALL = '<tool_call>{"name": "f", "arguments": {x}}</tool_call>'
RESPONSE = f"Let me check.{GOOD_CALL}{BAD_CALL}<|im_end|>\nafter"
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
]
# ChatML with reasoning in <think>, whose generation prompt opens reasoning (as Qwen3's and
# DeepSeek-R1's do) when ``thinking`` is not false.
THINKING_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n"
    "{% if message.role == 'assistant' %}<think>\n{{ message.reasoning_content or '' }}\n</think>\n\n{% endif %}"
    "{{ message.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% if thinking is not defined or thinking %}<think>\n{% endif %}{% endif %}"
)


def parse_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[dict, str]:
    code, out, err = run(capsys, "parse", *argv, "--json")
    assert code == 0, err
    assert out.endswith("\n") and out.count("\n") == 1  # one object, one line
    return json.loads(out), err


def test_json_message_and_call_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, err = parse_json(capsys, write(tmp_path, "r.txt", RESPONSE), "--model", "qwen2.5")
    report = data.pop("_parse")
    expected = chatplate.load("qwen2.5").parse_response(RESPONSE)
    assert data == dict(expected)
    assert data["role"] == "assistant" and data["content"] == "Let me check."
    assert data["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert report["format"] == "hermes" and report["format_reason"]
    assert report["stop"] == "<|im_end|>" and report["trailing"] == "\nafter"
    assert report["reasoning_closed"] is True
    assert [(c["name"], c["status"]) for c in report["calls"]] == [("get_weather", "ok"), ("f", "invalid_json")]
    assert report["calls"][0]["error"] is None
    assert report["calls"][1]["error"] and report["calls"][1]["raw"] == '{"name": "f", "arguments": {x}}'
    # Exit 0, and the call that did not read is named in one warning line.
    assert err.startswith("chatplate: warning: ") and err.count("\n") == 1
    assert "1 of 2" in err and "#2 f (invalid_json)" in err


def test_text_view(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "parse", write(tmp_path, "r.txt", RESPONSE), "-m", "qwen2.5")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "format hermes"
    assert "content" in lines and "  Let me check." in lines
    assert "tool calls (2)" in lines
    assert "  1. get_weather  ok" in lines
    assert '     {"city": "Paris"}' in lines
    second = next(line for line in lines if line.startswith("  2. f  "))
    assert second.startswith("  2. f  invalid_json: not valid JSON")
    assert '     {"name": "f", "arguments": {x}}' in lines
    assert "stop <|im_end|>" in lines
    assert lines[-1] == "  after"  # the text after the stop, shown apart from the message
    assert "invalid_json" in err and err.count("\n") == 1


def test_text_view_styles_status_and_reasoning() -> None:
    from rich.console import Console

    from chatplate.cli.view import NOT_OK_STYLE, OK_STYLE, REASONING_STYLE, response_view

    template = chatplate.load("qwen2.5")
    message = template.parse_response(f"{GOOD_CALL}{BAD_CALL}<|im_end|>")
    message["reasoning_content"] = "Thinking it over."
    view = response_view(message)
    console = Console()

    def style_at(fragment: str) -> str:
        return str(view.get_style_at_offset(console, view.plain.index(fragment)))

    assert style_at("Thinking it over.") == REASONING_STYLE
    assert style_at("ok") == OK_STYLE
    assert style_at("invalid_json") == NOT_OK_STYLE


def test_all_calls_ok_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "parse", write(tmp_path, "r.txt", f"{GOOD_CALL}<|im_end|>"), "-m", "qwen2.5", "--json")
    assert (code, err) == (0, "")
    assert [c["status"] for c in json.loads(out)["_parse"]["calls"]] == ["ok"]


def test_plain_text_has_no_calls_and_no_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, err = parse_json(capsys, write(tmp_path, "r.txt", "Hello there."), "-m", "qwen2.5")
    assert err == ""
    assert data["content"] == "Hello there." and "tool_calls" not in data
    assert data["_parse"]["stop"] is None and data["_parse"]["calls"] == []
    code, out, _ = run(capsys, "parse", write(tmp_path, "r.txt", "Hello there."), "-m", "qwen2.5")
    assert code == 0 and "stop (none: the text ended)" in out.splitlines() and "tool calls (" not in out


def test_stdin() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chatplate", "parse", "-", "-m", "qwen2.5", "--json"],
        input=RESPONSE, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["content"] == "Let me check."
    assert [c["status"] for c in data["_parse"]["calls"]] == ["ok", "invalid_json"]
    assert "invalid_json" in result.stderr


def test_stdin_is_the_default_and_read_verbatim(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    # Bytes, decoded as UTF-8 whatever the locale; \r\n is not turned into \n.
    raw = "Grüße\r\nzwei<|im_end|>\r\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw.encode("utf-8")), encoding="latin-1"))
    data, _ = parse_json(capsys, "-m", "qwen2.5")
    assert data["content"] == "Grüße\r\nzwei"
    assert data["_parse"]["trailing"] == "\r\n"


def test_file_is_read_verbatim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.txt"
    path.write_bytes("a\r\nb<|im_end|>".encode())
    data, _ = parse_json(capsys, str(path), "-m", "qwen2.5")
    assert data["content"] == "a\r\nb"


@pytest.mark.parametrize("as_json", [True, False])
def test_prefix_that_opens_reasoning(tmp_path: Path, capsys: pytest.CaptureFixture[str], as_json: bool) -> None:
    template_path = write(tmp_path, "think.jinja", THINKING_TEMPLATE)
    prompt = chatplate.load(template_path).render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n")
    prefix = write(tmp_path, "prompt.txt", prompt)
    response = write(tmp_path, "r.txt", "reasoning</think>answer<|im_end|>")
    if as_json:
        data, _ = parse_json(capsys, response, "-m", template_path, "--prefix", prefix)
        assert data["reasoning_content"] == "reasoning" and data["content"] == "answer"
        assert data["_parse"]["stop"] == "<|im_end|>" and data["_parse"]["reasoning_closed"] is True
        data, _ = parse_json(capsys, response, "-m", template_path, "--prefix", prefix, "--reasoning-field", "thinking")
        assert data["thinking"] == "reasoning" and "reasoning_content" not in data
    else:
        code, out, _ = run(capsys, "parse", response, "-m", template_path, "--prefix", prefix)
        lines = out.splitlines()
        assert code == 0
        assert lines[lines.index("reasoning") + 1] == "  reasoning"
        assert lines[lines.index("content") + 1] == "  answer"


@pytest.mark.parametrize(("prompt_end", "field"), [("<think>\n", "reasoning_content"), ("", "content")])
def test_prefix_from_stdin(tmp_path: Path, prompt_end: str, field: str) -> None:
    """Text with no reasoning marker is reasoning only when the prefix left reasoning open."""
    template_path = write(tmp_path, "think.jinja", THINKING_TEMPLATE)
    response = write(tmp_path, "r.txt", "still thinking")
    result = subprocess.run(
        [sys.executable, "-m", "chatplate", "parse", response, "-m", template_path, "--prefix", "-", "--json"],
        input="<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n" + prompt_end, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data[field] == "still thinking"
    assert data["_parse"]["reasoning_closed"] is (field == "content")


def test_tools_flag_unknown_tool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tools = write(tmp_path, "tools.json", TOOLS)
    text = f'{GOOD_CALL}<tool_call>{{"name": "search", "arguments": {{"q": "x"}}}}</tool_call><|im_end|>'
    data, err = parse_json(capsys, write(tmp_path, "r.txt", text), "-m", "qwen2.5", "--tools", tools)
    calls = data["_parse"]["calls"]
    assert [(c["name"], c["status"]) for c in calls] == [("get_weather", "ok"), ("search", "unknown_tool")]
    assert "search" in calls[1]["error"]
    assert "#2 search (unknown_tool)" in err
    code, out, _ = run(capsys, "parse", write(tmp_path, "r.txt", text), "-m", "qwen2.5", "--tools", tools)
    assert code == 0 and any(line.startswith("  2. search  unknown_tool") for line in out.splitlines())


@pytest.mark.parametrize(("variables", "field"), [([], "reasoning_content"), (["--var", "thinking=false"], "content")])
def test_var_reaches_the_generation_prompt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], variables: list[str], field: str
) -> None:
    """Without --prefix the template's generation prompt is the prefix, rendered with --var."""
    template_path = write(tmp_path, "think.jinja", THINKING_TEMPLATE)
    data, _ = parse_json(capsys, write(tmp_path, "r.txt", "hm<|im_end|>"), "-m", template_path, *variables)
    assert data[field] == "hm"
    assert data["_parse"]["format"] == chatplate.load(template_path).response_format.name


def test_undecodable_file_is_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.bin"
    path.write_bytes(b"\xff\xfe bad")
    code, out, err = run(capsys, "parse", str(path), "-m", "qwen2.5")
    assert (code, out) == (1, "")
    assert err.startswith("chatplate: error: cannot read response file") and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["parse", "r.txt"],  # no --model
        ["parse", "r.txt", "-m", "qwen2.5", "--bogus"],
        ["parse", "r.txt", "-m", "qwen2.5", "--reasoning-field", "thoughts"],
        ["parse", "r.txt", "-m", "qwen2.5", "--var", "noequals"],
        ["parse", "r.txt", "-m", "qwen2.5", "--var", "prefix=\"x\""],
        ["parse", "-", "-m", "qwen2.5", "--prefix", "-"],
        ["parse", "-m", "qwen2.5", "--tools", "-"],
        ["parse", "a.txt", "b.txt", "-m", "qwen2.5"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2, err
    assert out == "" and "Traceback" not in err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "parse" in out
    code, out, _ = run(capsys, "parse", "--help")
    assert code == 0
    assert "[OPTIONS] [FILE|-]" in out and "<bool>" not in out
    flat = " ".join(out.replace("│", " ").split())
    assert '"_parse"' in flat and "unknown_tool" in flat and "exit status is 0" in flat
