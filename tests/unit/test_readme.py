"""The README runs as written: its blocks, in order, in one empty directory, as a reader would.

Shell blocks run with ``bash -euo pipefail`` (``chatplate`` from this environment on the PATH); a
``text`` block right after a shell block is that block's expected output; Python blocks run in
one namespace, as a script (``__name__ == "__main__"``). A block after a
``<!-- skip: reason -->`` comment is not run: only installs, downloads and benchmarks may be
skipped. The one download, a model directory, is stood in for by a local model directory of
the same shape (ChatML with tools, a byte-level BPE).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import tokenizer_fixtures

README = Path(__file__).resolve().parents[2] / "README.md"
# What a skipped block may do: install, download, or benchmark.
SKIPPABLE = ("python -m pip install", "hf download", "python benchmarks/")


@dataclass
class Block:
    language: str
    code: str
    line: int
    skip: str | None


def blocks(text: str) -> list[Block]:
    found = []
    pattern = re.compile(r"(?:<!-- skip: (?P<skip>[^>]+) -->\n)?^```(?P<language>\w*)\n(?P<code>.*?)^```$", re.M | re.S)
    for match in pattern.finditer(text):
        line = text.count("\n", 0, match.start("code"))
        found.append(Block(match.group("language"), match.group("code"), line, match.group("skip")))
    return found


def test_every_block_is_runnable_or_skipped_for_a_reason() -> None:
    found = blocks(README.read_text(encoding="utf-8"))
    assert len([b for b in found if b.language == "python"]) >= 4
    for block in found:
        assert block.language in ("bash", "python", "text"), f"README line {block.line}: label the block"
        if block.skip is not None:
            commands = [line for line in block.code.splitlines() if line.strip()]
            assert all(line.startswith(SKIPPABLE) for line in commands), f"README line {block.line}: {commands}"


def test_readme_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("typer")
    pytest.importorskip("datasets")
    found = blocks(README.read_text(encoding="utf-8"))
    shutil.copytree(tokenizer_fixtures.chatml_bpe_dir(), tmp_path / "models" / "qwen2.5")
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    namespace: dict[str, object] = {"__name__": "__main__"}
    previous: Block | None = None
    output = ""
    ran = compared = 0
    for block in found:
        where = f"README line {block.line}"
        if block.skip is not None:
            previous = None
            continue
        if block.language == "bash":
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], env=env, capture_output=True,
                                  text=True, timeout=600)
            assert done.returncode == 0, f"{where}: {done.stderr}"
            assert "Traceback" not in done.stderr, f"{where}: {done.stderr}"
            output = done.stdout
            ran += 1
        elif block.language == "python":
            exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)  # noqa: S102 - the README's own code
            ran += 1
        elif block.language == "text" and previous is not None and previous.language == "bash":
            assert output.rstrip("\n") == block.code.rstrip("\n"), where
            compared += 1
        previous = block
    assert ran >= 10 and compared >= 3, (ran, compared)
