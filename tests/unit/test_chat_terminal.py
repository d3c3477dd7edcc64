"""``chatplate chat`` used as a person uses it: typed into a terminal (tmux), read off the screen."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("typer")

from tests.tiny_model import tiny_llama_dir  # noqa: E402

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (Debian: apt install tmux)")


class Terminal:
    def __init__(self, name: str) -> None:
        self.name = name

    def screen(self) -> str:
        return subprocess.run([TMUX, "capture-pane", "-p", "-J", "-S", "-200", "-t", self.name],
                              capture_output=True, text=True, check=False).stdout

    def type(self, text: str) -> None:
        subprocess.run([TMUX, "send-keys", "-t", self.name, "-l", text], check=True)
        subprocess.run([TMUX, "send-keys", "-t", self.name, "Enter"], check=True)

    def key(self, key: str) -> None:
        subprocess.run([TMUX, "send-keys", "-t", self.name, key], check=True)

    def wait_for(self, text: str, *, count: int = 1, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if screen.count(text) >= count:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} (x{count}) never appeared; the screen:\n{self.screen()}")

    def wait_for_prompt(self, seen: int, timeout: float = 60) -> str:
        """Wait until more than ``seen`` input prompts are on the screen (the turn is over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if prompts(screen) > seen and screen.rstrip().endswith(">"):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"no new prompt; the screen:\n{self.screen()}")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    name = f"chatplate-{uuid.uuid4().hex[:8]}"
    command = (f"cd {tmp_path} && {sys.executable} -m chatplate chat {tiny_llama_dir()} --temperature 0 "
               f"--max-new-tokens 6 --system 'Be brief.'; echo EXITED $?; sleep 60")
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONWARNINGS": "ignore"}
    subprocess.run([TMUX, "new-session", "-d", "-s", name, "-x", "140", "-y", "50", command], check=True, env=env)
    term = Terminal(name)
    try:
        term.wait_for("/help for commands", timeout=120)
        yield term
    finally:
        subprocess.run([TMUX, "kill-session", "-t", name], capture_output=True, check=False)


def prompts(screen: str) -> int:
    return sum(1 for line in screen.splitlines() if line.startswith(">"))


def test_a_session(terminal: Terminal, tmp_path: Path) -> None:
    terminal.type("Hello there")
    terminal.wait_for_prompt(1)  # the reply came and the next prompt is up
    terminal.type("/prompt")
    screen = terminal.wait_for(" tokens")
    assert "Hello there" in screen and "Be brief." in screen and "<|im_start|>" in screen
    terminal.type("/set temperature=0.5")
    terminal.wait_for("temperature = 0.5")
    (tmp_path / "tools.py").write_text(
        'def get_weather(city: str) -> str:\n    """Weather.\n\n    Args:\n        city: The city.\n    """\n'
        '    return "sunny"\n', encoding="utf-8")
    terminal.type("/tools tools.py")
    terminal.wait_for("tools: get_weather(city: str) -> str")
    seen = prompts(terminal.screen())
    terminal.type("/edit Bonjour")
    terminal.wait_for_prompt(seen)
    seen = prompts(terminal.screen())
    terminal.type("/continue")
    terminal.wait_for_prompt(seen)
    terminal.type("/prompt")
    screen = terminal.wait_for(" tokens", count=2)
    last_prompt = screen.rsplit("/prompt", 1)[1]
    assert "Bonjour" in last_prompt and "Hello there" not in last_prompt and "get_weather" in last_prompt
    terminal.type("/save chat.jsonl")
    terminal.wait_for("saved 3 messages to chat.jsonl")
    terminal.type("/clear")
    terminal.wait_for("conversation cleared")
    terminal.type("/load chat.jsonl")
    terminal.wait_for("loaded 3 messages from chat.jsonl")
    terminal.type("/undo")
    terminal.wait_for("removed 2 message(s)")
    terminal.type("/nonsense")
    terminal.wait_for("unknown command /nonsense")
    terminal.type("/exit")
    terminal.wait_for("EXITED 0")

    record = json.loads((tmp_path / "chat.jsonl").read_text(encoding="utf-8"))
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
    assert record["messages"][1]["content"] == "Bonjour"  # as edited
    assert [tool["function"]["name"] for tool in record["tools"]] == ["get_weather"]
    # What /save wrote is a dataset chatplate prepare reads.
    out = tmp_path / "rows.jsonl"
    done = subprocess.run([sys.executable, "-m", "chatplate", "prepare", str(tmp_path / "chat.jsonl"), "--output", str(out),
                           "--model", str(tiny_llama_dir()), "--workers", "1", "--quiet"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1


def test_ctrl_c_stops_a_generation_and_keeps_the_conversation(terminal: Terminal) -> None:
    terminal.type("/set max_new_tokens=100000")
    terminal.wait_for("max_new_tokens = 100000")
    # Greedy (the session's --temperature 0): this random model never samples its end-of-turn
    # token here, so only Ctrl-C ends the turn.
    terminal.type("Write forever")
    time.sleep(1.5)
    terminal.key("C-c")
    terminal.wait_for("[stopped: the conversation is as it was before this turn]")
    terminal.type("/prompt")
    screen = terminal.wait_for(" tokens")
    assert "Write forever" not in screen.split("/prompt", 1)[1]
    terminal.type("/exit")
    terminal.wait_for("EXITED 0")
