"""Chat with a real (tiny, random-weight) transformers model built here from a tokenizer fixture.

Nothing about the model is mocked: transformers generates with it. Where a test needs a given
reply, a logits processor allows only the wanted tokens (what a grammar would do).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import chatplate  # noqa: E402
from chatplate.chat import Chat, Sampling, ToolResult, TurnDone  # noqa: E402
from chatplate.responses import ContentDelta, ToolCallDone  # noqa: E402
from tests import tokenizer_fixtures  # noqa: E402
from tests.tiny_model import tiny_llama_dir  # noqa: E402


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return tiny_llama_dir()


class Force(transformers.LogitsProcessor):
    """Allow only the next wanted token: one sequence per generate call, in order. Records the
    prompt each call received."""

    def __init__(self, replies: list[list[int]]) -> None:
        self.replies = replies
        self.prompts: list[list[int]] = []
        self._start = self._last = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        length = input_ids.shape[1]
        if not self.prompts or length != self._last + 1:  # a new generate call
            self.prompts.append(input_ids[0].tolist())
            self._start = length
        self._last = length
        step = length - self._start
        wanted = self.replies[len(self.prompts) - 1]
        if step < len(wanted):
            allowed = torch.full_like(scores, float("-inf"))
            allowed[:, wanted[step]] = 0
            return scores + allowed
        return scores


def ids(t: chatplate.ChatTemplate, text: str) -> list[int]:
    """The ids of ``text``, a trailing ``<|im_end|>`` as its control token."""
    body, end, _ = text.partition("<|im_end|>")
    out = t.tokenizer.plain.encode(body, add_special_tokens=False).ids
    return out + [t.tokenizer.token_id(end)] if end else out


def forced_chat(model_dir: Path, replies: list[str], **options: Any) -> tuple[Chat, Force]:
    t = chatplate.load(model_dir)
    force = Force([ids(t, reply) for reply in replies])
    sampling = Sampling(temperature=0, max_new_tokens=64, extra={"logits_processor": [force]})
    return Chat(model_dir, sampling=sampling, **options), force


def test_prompt_ids_stop_and_render_back(model_dir: Path) -> None:
    chat, force = forced_chat(model_dir, ["Hello there, friend.<|im_end|>"], system="Be brief.")
    reply = chat.send("Hi!")
    assert reply == {"role": "assistant", "content": "Hello there, friend."}
    t = chat.template
    prompt = t.encode(chat.messages[:-1], add_generation_prompt=True).input_ids
    # The model received exactly chatplate's encoding.
    assert force.prompts == [prompt] and chat.last_prompt_ids == prompt
    # Generation stopped at the end-of-turn token; the appended message renders back to the
    # very ids the model produced.
    generated = ids(t, "Hello there, friend.<|im_end|>")
    full = t.encode(chat.messages).input_ids
    assert full[:len(prompt) + len(generated)] == prompt + generated
    assert chat.messages[-1]["role"] == "assistant" and len(chat.messages) == 3


def test_stream_events_and_unforced_generation_ends(model_dir: Path) -> None:
    chat, _ = forced_chat(model_dir, ["Streaming works.<|im_end|>"])
    events = list(chat.stream("Go"))
    text = "".join(e.text for e in events if isinstance(e, ContentDelta))
    assert text.strip() == "Streaming works."
    assert isinstance(events[-1], TurnDone) and events[-1].message["content"] == "Streaming works."
    # Random weights, nothing forced: generation still ends (max_new_tokens) with a message.
    free = Chat(model_dir, sampling=Sampling(temperature=1.0, max_new_tokens=5, seed=3))
    assert free.send("Hi")["role"] == "assistant"


def test_tool_call_runs_and_its_result_is_in_the_next_prompt(model_dir: Path) -> None:
    calls: list[dict] = []

    def get_weather(city: str) -> dict:
        """Get the weather.

        Args:
            city: The city.
        """
        calls.append({"city": city})
        return {"city": city, "sky": "sunny"}

    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
    chat, force = forced_chat(model_dir, [call, "It is sunny in Paris.<|im_end|>"], tools=[get_weather], run_tools=True)
    events = list(chat.stream("Weather in Paris?"))
    assert calls == [{"city": "Paris"}]
    assert [type(e).__name__ for e in events if isinstance(e, (ToolCallDone, ToolResult, TurnDone))] == [
        "ToolCallDone", "TurnDone", "ToolResult", "TurnDone"]
    assert [m["role"] for m in chat.messages] == ["user", "assistant", "tool", "assistant"]
    assert chat.messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert chat.messages[-1]["content"] == "It is sunny in Paris."
    # The second generation saw the tool's result, rendered by the template.
    second = chat.template.decode(force.prompts[1])
    assert '{"city": "Paris", "sky": "sunny"}' in second
    assert force.prompts[1] == chat.template.encode(chat.messages[:-1], add_generation_prompt=True,
                                                    tools=[get_weather]).input_ids


def test_continue_final_message(model_dir: Path) -> None:
    chat, force = forced_chat(model_dir, [" and more.<|im_end|>"])
    chat.messages = [{"role": "user", "content": "Say it"}, {"role": "assistant", "content": "Some text"}]
    chat.send(continue_final_message=True)
    assert chat.messages[-1] == {"role": "assistant", "content": "Some text and more."}
    assert force.prompts[0] == chat.template.encode(
        [{"role": "user", "content": "Say it"}, {"role": "assistant", "content": "Some text"}],
        continue_final_message=True).input_ids


def test_save_load_undo_regenerate(model_dir: Path, tmp_path: Path) -> None:
    chat, _ = forced_chat(model_dir, ["First.<|im_end|>", "Second.<|im_end|>"], system="S")
    chat.send("one")
    path = chat.save(tmp_path / "chat.jsonl")
    again = Chat(model_dir, sampling=Sampling(max_new_tokens=2))
    again.load(path)
    assert again.messages == chat.messages
    assert chat.regenerate()["content"] == "Second."
    assert [m["role"] for m in chat.messages] == ["system", "user", "assistant"]
    assert chat.undo()[0] == {"role": "user", "content": "one"}
    assert chat.messages == [{"role": "system", "content": "S"}]
    # prepare reads what /save writes.
    out = tmp_path / "rows.jsonl"
    summary = chatplate.prepare(path, out, chat.template, workers=1, quiet=True)
    row = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    saved = json.loads(path.read_text(encoding="utf-8"))["messages"]
    assert summary.rows_written == 1
    assert row["input_ids"] == chat.template.encode(saved).input_ids


def test_set_sampling_and_variables(model_dir: Path) -> None:
    chat = Chat(model_dir)
    chat.set("temperature", 0.0)
    chat.set("enable_thinking", False)
    assert chat.sampling.temperature == 0.0 and chat.variables == {"enable_thinking": False}


def test_no_model_is_a_clear_error() -> None:
    # A tokenizer and a template, but no weights.
    with pytest.raises(chatplate.InputError, match="no model to generate with"):
        Chat(tokenizer_fixtures.chatml_bpe_dir())
