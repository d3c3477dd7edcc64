"""Trajectories against the ``renderers`` package (PrimeIntellect), whose hand-written renderer
per model family renders prompts and bridges to the next turn from the sampled ids.

On the families it covers with the same Jinja template (Qwen3, 3.5, 3.6, 3.8), the prompt ids
and the next prompt after a tool result must be the very same: chatplate's generic rule against
hand-written code. The tokenizer is the fixtures' Qwen2-shaped BPE with the tokens those
renderers look up (``<think>``, ``<tool_response>``, the vision markers) added.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

renderers = pytest.importorskip("renderers", reason="the cross-check needs renderers (the test extra)")
pytest.importorskip("transformers")

import chatplate  # noqa: E402
from tests.conftest import require_corpus  # noqa: E402
from tests.tokenizer_fixtures import chatml_bpe_dir  # noqa: E402

FAMILIES = {"trl__qwen3": "Qwen3RendererConfig", "trl__qwen3_5_think": "Qwen35RendererConfig",
            "trl__qwen3_6": "Qwen36RendererConfig", "trl__qwen3_8": "Qwen38RendererConfig"}
TOOLS = [{"type": "function", "function": {"name": "read_file", "description": "Read a file.", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}]
START = [{"role": "system", "content": "You are a coding agent."}, {"role": "user", "content": "Fix the failing test."}]


def _call(turn: int) -> dict[str, Any]:
    return {"role": "assistant", "reasoning_content": f"Module {turn} may hold the bug.", "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "read_file", "arguments": {"path": f"m{turn}.py"}}}]}


def _model_dir(root: Path, name: str) -> Path:
    from tokenizers import AddedToken, Tokenizer

    directory = root / name
    shutil.copytree(chatml_bpe_dir(), directory)
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.add_tokens([AddedToken(t, normalized=False) for t in ("<think>", "</think>", "<tool_response>", "</tool_response>")])
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                  for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")])
    tokenizer.save(str(directory / "tokenizer.json"))
    config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.pop("added_tokens_decoder", None)  # the tokens are in tokenizer.json
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    template = json.loads((require_corpus() / "public" / f"{name}.json").read_text(encoding="utf-8"))["template"]
    (directory / "chat_template.jinja").write_text(template, encoding="utf-8")
    return directory


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    directory = _model_dir(tmp_path_factory.mktemp("renderers"), request.param)
    config = getattr(renderers.configs, FAMILIES[request.param])()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        renderer = renderers.create_renderer(AutoTokenizer.from_pretrained(str(directory)), config)
    return chatplate.load(directory), renderer


def _turn(t: chatplate.ChatTemplate, history: list[dict[str, Any]], message: dict[str, Any]) -> list[int]:
    """The ids the template renders for ``message`` after the prompt, through <|im_end|>."""
    prompt = t.encode(history, tools=TOOLS, add_generation_prompt=True).input_ids
    closed = t.encode(history + [message], tools=TOOLS).input_ids
    assert closed[: len(prompt)] == prompt
    turn = closed[len(prompt):]
    return turn[: turn.index(t.tokenizer.token_id("<|im_end|>")) + 1]


def test_prompts_are_the_same(family: tuple[Any, Any]) -> None:
    t, renderer = family
    history = list(START)
    for turn in range(3):
        assert t.encode(history, tools=TOOLS, add_generation_prompt=True).input_ids == renderer.render_ids(
            history, tools=TOOLS, add_generation_prompt=True)
        history += [_call(turn), {"role": "tool", "content": f"def f{turn}(): pass"}]


@pytest.mark.parametrize("ending", ["stop", "other stop", "truncated"])
def test_next_prompt_after_tool_results_is_the_same(family: tuple[Any, Any], ending: str) -> None:
    t, renderer = family
    traj = t.trajectory(START, tools=TOOLS)
    history = list(START)
    compared = 0
    for turn in range(3):
        message = _call(turn)
        sampled = _turn(t, history, message)
        if ending == "other stop":
            sampled = sampled[:-1] + [t.tokenizer.token_id("<|endoftext|>")]
        elif ending == "truncated":
            sampled = sampled[:-1]  # max_tokens hit just before the end of turn
        prompt = traj.prompt_ids
        traj.add_completion(sampled, message=message)
        tool = {"role": "tool", "content": f"def f{turn}(): pass"}
        ours = traj.extend([tool])
        bridged = renderer.bridge_to_next_turn(prompt, sampled, [tool], tools=TOOLS)
        assert bridged is not None
        assert list(bridged.token_ids) == ours, (turn, t.decode(ours[len(prompt):]), t.decode(bridged.token_ids[len(prompt):]))
        compared += 1
        history += [message, tool]
    assert compared == 3
