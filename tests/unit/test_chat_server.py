"""The OpenAI-compatible backend against a real server on 127.0.0.1: ``transformers serve`` with
the tiny model, started and stopped by the test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

for module in ("torch", "transformers", "fastapi", "uvicorn", "accelerate", "openai"):
    pytest.importorskip(module, reason="transformers serve needs transformers[serving] (.ci/run installs it)")

import chatplate  # noqa: E402
from chatplate.chat import Chat, OpenAIBackend, Sampling  # noqa: E402
from tests.tiny_model import tiny_llama_dir  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = _free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"chatplate-serve-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "transformers.cli.transformers", "serve", str(tiny_llama_dir()), "--host", "127.0.0.1",
             "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not come up:\n{log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_chat_through_a_server(server: str) -> None:
    t = chatplate.load(tiny_llama_dir())
    backend = OpenAIBackend(server, model=str(tiny_llama_dir()))
    chat = Chat(template=t, backend=backend, system="Be brief.", sampling=Sampling(temperature=0, max_new_tokens=4))
    reply = chat.send("Hello")
    assert reply["role"] == "assistant" and chat.messages[-1] is not None and len(chat.messages) == 3
    # transformers serve takes text only: the backend fell back to chatplate's rendered prompt,
    # and the server's count of prompt tokens is chatplate's encoding of it.
    assert backend.accepts_ids is False
    prompt = t.encode(chat.messages[:-1], add_generation_prompt=True).input_ids
    assert backend.last_usage is not None and backend.last_usage["prompt_tokens"] == len(prompt)
    assert 0 < backend.last_usage["completion_tokens"] <= 4


def test_unreachable_server_is_a_clear_error() -> None:
    chat = Chat(template=chatplate.load(tiny_llama_dir()), backend=OpenAIBackend(f"http://127.0.0.1:{_free_port()}"))
    with pytest.raises(chatplate.InputError, match="cannot connect"):
        chat.send("Hi")


def test_a_url_needs_a_template() -> None:
    with pytest.raises(chatplate.InputError, match="template="):
        Chat("http://127.0.0.1:1")
