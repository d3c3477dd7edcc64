"""Trajectories over every corpus template and built-in, with the real tokenizer fixtures.

Agent rollouts are simulated: the "sampled" ids of an assistant turn are the tokenization of
what the template renders for the turn, through its end-of-turn marker (or other tokenizations
of the same text, or a different stop, or a truncation). The oracle is independent of the
trajectory's own reasoning: ``t.encode`` of the whole conversation so far, the very re-render
and re-tokenization a trajectory avoids. While the trajectory equals it, every extension must
be clean; where they first part, the extension must say so, at that token, and say whether the
texts differ (fork) or only the tokens (realign). The prefix invariant holds throughout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import chatplate
from tests.conftest import corpus_dir
from tests.tokenizer_fixtures import all_model_dirs

pytestmark = pytest.mark.filterwarnings("ignore::chatplate.ChatplateWarning")

NOW = datetime(2024, 7, 26, 12)
TOOLS = [{"type": "function", "function": {"name": "read_file", "description": "Read a file.", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}]


def _call(index: int) -> dict[str, Any]:
    return {"id": f"c4ll0000{index}", "type": "function",
            "function": {"name": "read_file", "arguments": {"path": f"src/mod{index}.py"}}}


def _sources() -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    root = corpus_dir()
    if root is not None:
        out += [(p.stem, p) for p in sorted((root / "public").glob("*.json")) if not p.name.startswith("_")]
    registry = Path(chatplate.__file__).parent / "sources" / "registry"
    out += [(f"builtin:{p.stem}", p.stem) for p in sorted(registry.glob("*.jinja"))]
    return out


_TOKENIZERS: dict[str, chatplate.ChatTokenizer] = {}


def _template(source: Any) -> chatplate.ChatTemplate:
    """The template with the tokenizer fixture whose added tokens it writes most."""
    if not _TOKENIZERS:
        for name, directory in all_model_dirs().items():
            _TOKENIZERS[name] = chatplate.load(directory).tokenizer
    if isinstance(source, Path):
        doc = json.loads(source.read_text(encoding="utf-8"))
        text, bos, eos = doc["template"], doc["bos_token"], doc["eos_token"]
    else:
        builtin = chatplate.load(source)
        text, bos, eos = builtin.renderer.templates["default"], builtin.bos_token, builtin.eos_token
    # Ties go to the byte-level BPEs: decoding gives back any text, where SentencePiece decodes
    # a literal "▁" (DeepSeek's markers are full of them) as a space.
    tokenizer = max(_TOKENIZERS.items(), key=lambda item: (
        sum(text.count(token) for token in item[1].added_tokens), item[0] != "mistral_v1"))[1]
    return chatplate.ChatTemplate(text, bos, eos, tokenizer=tokenizer)


class Rollout:
    """Drives a trajectory beside the oracle and checks both after every step."""

    def __init__(self, t: chatplate.ChatTemplate, start: list[dict[str, Any]], tools: Any, variables: dict[str, Any]):
        self.t, self.tools, self.variables = t, tools, variables
        self.traj = t.trajectory(start, tools=tools, now=NOW, **variables)
        self.reference = self._encode(start, True)
        assert self.traj.prompt_ids == self.reference  # the first prompt is plain encode
        self.diverged = False
        self.sampled: list[tuple[int, list[int]]] = []
        self.kinds: list[str] = []

    def _encode(self, messages: list[dict[str, Any]], prompt: bool) -> list[int]:
        return self.t.encode(messages, tools=self.tools, now=NOW, add_generation_prompt=prompt, **self.variables).input_ids

    def turn_ids(self, message: dict[str, Any]) -> list[int]:
        """The ids the template renders for ``message`` after the current prompt, through its
        end-of-turn marker: what a model trained on this template samples. Where the template's
        generation prompt says more than its rendering of the turn (an opened or empty think
        block it drops from history), the turn is what the rendering has from where they part."""
        history = self.traj.messages
        prompt = self.t.render(history, tools=self.tools, now=NOW, add_generation_prompt=True, **self.variables)
        closed = self.t.render(history + [message], tools=self.tools, now=NOW, **self.variables)
        same = next((i for i, (a, b) in enumerate(zip(prompt, closed)) if a != b), min(len(prompt), len(closed)))
        turn = closed[same:]
        stops = [s for s in self.t.detect_response_format(**self.variables).stops if s in turn]
        if stops:
            turn = turn[: min(turn.index(s) + len(s) for s in stops)]
        backend = self.t.tokenizer.backend
        full = backend.encode(prompt + turn, add_special_tokens=False).ids
        head = backend.encode(prompt, add_special_tokens=False).ids
        if full[: len(head)] == head:
            return full[len(head):]
        return backend.encode(turn, add_special_tokens=False).ids

    def complete(self, ids: list[int], message: dict[str, Any] | None) -> None:
        before = self.traj.input_ids
        logprobs = [-(len(before) + i) / 1000 for i in range(len(ids))]
        self.traj.add_completion(ids, logprobs=logprobs, message=message)
        after = self.traj.input_ids
        assert after[: len(before)] == before and after[len(before):] == ids
        self.sampled.append((len(before), ids))
        self._check_alignment()

    def extend(self, new: list[dict[str, Any]]) -> None:
        before = self.traj.input_ids
        returned = self.traj.extend(new)
        after = self.traj.input_ids
        assert returned == after and after[: len(before)] == before  # the prefix invariant
        extension = self.traj.extensions[-1]
        self.kinds.append(extension.kind)
        self._check_alignment()
        # The new tokens belong to the completed turn (its close), then each new message in
        # order, then the generation prompt (-1, last; some templates write none: [INST] ones).
        owners = self.traj.message_index[len(before):]
        completed = len(self.traj.messages) - len(new) - 1
        numbered = [o for o in owners if o != -1]
        assert owners[len(numbered):] == [-1] * (len(owners) - len(numbered))
        assert numbered == sorted(numbered) and set(numbered) <= set(range(completed, completed + len(new) + 1))
        if self.diverged:
            return
        reference = self._encode(self.traj.messages, True)
        if after == reference:
            assert extension.kind == "clean", extension
            return
        self.diverged = True
        first = next((i for i, (a, b) in enumerate(zip(after, reference)) if a != b), min(len(after), len(reference)))
        assert extension.kind in ("realign", "fork") and extension.position == first, (extension, first)
        same_text = self.t.decode(after) == self.t.decode(reference)
        assert (extension.kind == "realign") == same_text, extension
        assert list(extension.kept_ids) == after[first:] and list(extension.rendered_ids) == reference[first:]

    def _check_alignment(self) -> None:
        ids, mask, logprobs = self.traj.input_ids, self.traj.sampled_mask, self.traj.logprobs
        assert len(ids) == len(mask) == len(logprobs) == len(self.traj.message_index)
        expected = [0] * len(ids)
        for start, sampled in self.sampled:
            for i in range(start, start + len(sampled)):
                expected[i] = 1
                assert logprobs[i] == -i / 1000  # each logprob stays with its token
        assert mask == expected
        assert all(p is None for p, m in zip(logprobs, mask) if not m)
        assert [t for t, m in zip(ids, mask) if m] == [t for _, s in self.sampled for t in s]


def _assistant(kind: str, index: int) -> dict[str, Any]:
    if kind == "call":
        return {"role": "assistant", "reasoning_content": f"I should read module {index}.", "content": "",
                "tool_calls": [_call(index)]}
    if kind == "reasoning":
        return {"role": "assistant", "reasoning_content": f"Think about step {index}.", "content": f"Step {index} done."}
    return {"role": "assistant", "content": f"Answer number {index}, with some words."}


SCENARIOS: dict[str, tuple[list[dict[str, Any]], Any, list[tuple[str, list[dict[str, Any]]]]]] = {
    # (start, tools, [(assistant kind, messages that follow it)])
    "agent": (
        [{"role": "system", "content": "You are a coding agent."}, {"role": "user", "content": "Fix the failing test."}],
        TOOLS,
        [("call", [{"role": "tool", "content": "def f(x):\n    return x\n", "tool_call_id": "c4ll00000"}]),
         ("call", [{"role": "tool", "content": "def g(y):\n    return 2 * y\n", "tool_call_id": "c4ll00001"}]),
         ("reasoning", [{"role": "user", "content": "Thanks. Now explain it."}]),
         ("plain", [{"role": "user", "content": "And again, shorter?"}])],
    ),
    "chat": (
        [{"role": "user", "content": "Hello there, who are you?"}],
        None,
        [("plain", [{"role": "user", "content": "What can you do?"}]),
         ("plain", [{"role": "user", "content": "Tell me more."}]),
         ("plain", [{"role": "user", "content": "Bye!"}])],
    ),
}

Sampler = Callable[[Rollout, list[int]], tuple[list[int], bool]]


def _canonical(rollout: Rollout, ids: list[int]) -> tuple[list[int], bool]:
    return ids, True


def _split(rollout: Rollout, ids: list[int]) -> tuple[list[int], bool]:
    """The same text, other tokens: the first multi-character ordinary token, one token per byte."""
    backend = rollout.t.tokenizer.backend
    for i, token in enumerate(ids):
        text = rollout.t.decode([token])
        if len(text) > 1 and text.isalpha() and rollout.t.decode(ids[:i + 1]).endswith(text):
            pieces = [backend.encode(ch, add_special_tokens=False).ids for ch in text]
            if all(len(p) == 1 for p in pieces) and rollout.t.decode([p[0] for p in pieces]) == text:
                return ids[:i] + [p[0] for p in pieces] + ids[i + 1:], True
    return ids, True


def _truncated(rollout: Rollout, ids: list[int]) -> tuple[list[int], bool]:
    return ids[: max(1, len(ids) // 2)], False  # no stop; the parser reads what there is


def _foreign_stop(rollout: Rollout, ids: list[int]) -> tuple[list[int], bool]:
    """The model stops with another special token (the tokenizer's EOS, or any special token)
    than the template's end-of-turn marker."""
    tok = rollout.t.tokenizer
    stops = {tok.token_id(s) for s in rollout.t.detect_response_format(**rollout.variables).stops}
    if not ids or ids[-1] not in stops:
        return ids, True
    other = next((tok.token_id(s) for s in sorted(tok.special_tokens) if tok.token_id(s) not in stops), None)
    return (ids[:-1] + [other], True) if other is not None else (ids, True)


SAMPLERS: dict[str, Sampler] = {"canonical": _canonical, "split": _split, "truncated": _truncated,
                                "foreign-stop": _foreign_stop}


def _run(t: chatplate.ChatTemplate, scenario: str, sampler: Sampler) -> Rollout | None:
    start, tools, steps = SCENARIOS[scenario]
    try:
        rollout = Rollout(t, start, tools, {})
    except chatplate.ChatplateError:
        return None  # the template refuses this conversation; the other scenario covers it
    for index, (kind, follow) in enumerate(steps):
        message = _renderable(t, rollout, _assistant(kind, index), follow)
        if message is None:
            break  # the template refuses the conversation from here on (roles, tools)
        ids, give_message = sampler(rollout, rollout.turn_ids(message))
        if not ids:
            break
        rollout.complete(ids, message if give_message else None)
        try:
            rollout.extend(follow)
        except chatplate.TemplateError:
            if give_message:
                raise
            break  # a truncated tool call the parser left as text that the template cannot render
    return rollout


def _renderable(t: chatplate.ChatTemplate, rollout: Rollout, message: dict[str, Any], follow: list[dict[str, Any]]):
    """``message``, with its tool-call arguments as a JSON string if the template wants them so."""
    variants = [message]
    if message.get("tool_calls"):
        variants.append({**message, "tool_calls": [
            {**c, "function": {**c["function"], "arguments": json.dumps(c["function"]["arguments"])}}
            for c in message["tool_calls"]]})
    for variant in variants:
        try:
            t.encode(rollout.traj.messages + [variant] + follow, tools=rollout.tools, now=NOW, add_generation_prompt=True)
            return variant
        except chatplate.ChatplateError:
            continue
    return None


SOURCES = _sources()


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize(("name", "source"), SOURCES, ids=[name for name, _ in SOURCES])
def test_trajectory_matches_reencoding(name: str, source: Any, sampler: str) -> None:
    t = _template(source)
    ran = [_run(t, scenario, SAMPLERS[sampler]) for scenario in SCENARIOS]
    ran = [r for r in ran if r is not None and r.kinds]
    if not ran:
        pytest.skip(f"{name} renders neither scenario")
    if sampler == "canonical":
        # A template whose re-encoding keeps every earlier prompt and turn as a prefix gets
        # clean extensions only, and the very ids of encoding the whole conversation.
        for rollout in ran:
            if not rollout.diverged:
                assert set(rollout.kinds) == {"clean"}
                assert rollout.traj.input_ids == rollout._encode(rollout.traj.messages, True)


def test_corpus_is_exercised() -> None:
    # Nearly every template runs the chat scenario to its end, and the corpus shows every kind
    # of extension: the skips above are the exception, and each classification is exercised.
    ran, kinds = 0, set()
    for _, source in SOURCES:
        rollout = _run(_template(source), "chat", _canonical)
        if rollout is not None and len(rollout.kinds) == len(SCENARIOS["chat"][2]):
            ran += 1
            kinds.update(rollout.kinds)
    assert ran >= 0.9 * len(SOURCES), ran
    assert kinds == {"clean", "realign", "fork"}


@pytest.mark.parametrize(("name", "source"), SOURCES, ids=[name for name, _ in SOURCES])
def test_prefix_stability_report(name: str, source: Any) -> None:
    # Each witness is checked by rendering its conversation again, and its fix by rendering with
    # it; a template reported stable never forks in the canonical rollouts.
    t = _template(source)
    report = t.prefix_stability()
    for witness in report.witnesses:
        appended = witness.appended_messages
        if not appended:
            if witness.appended == "nothing":  # the closed turn does not show the reasoning it was given
                closed = t.render(witness.conversation, tools=witness.tools)
                assert witness.conversation[-1]["reasoning_content"] not in closed
            else:
                assert witness.field == "date" and witness.fix is not None
            continue

        def holds(**variables: Any) -> bool:
            render = lambda messages, prompt: t.render(  # noqa: E731
                messages, tools=witness.tools, add_generation_prompt=prompt, **variables)
            conversation = witness.conversation
            prompt, closed = render(conversation[:-1], True), render(conversation, False)
            return closed.startswith(prompt) and render(conversation + appended, True).startswith(closed)

        assert not holds()
        assert witness.before != witness.after
        if witness.fix is not None:
            assert holds(**witness.fix)
    if report.stable:
        for scenario in SCENARIOS:
            rollout = _run(t, scenario, _canonical)
            assert rollout is None or "fork" not in rollout.kinds, (scenario, rollout.kinds)
