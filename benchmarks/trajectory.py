"""A 100-turn agent rollout: the time to get each turn's next prompt ids by extending a
trajectory, against re-rendering and re-tokenizing the whole conversation every turn (chatplate's
``encode`` and transformers' ``apply_chat_template``), in one run.

    python benchmarks/trajectory.py [--turns 100] [--repeats 5] [--template qwen2.5]

Each turn the model "samples" an assistant message with a tool call (its ids are the
tokenization of what the template renders for the turn, through ``<|im_end|>``) and a tool
answers with a few lines of code. A trajectory turn is ``add_completion(ids, message=...)`` plus
``extend([tool message])``; a re-encoding turn encodes the conversation so far with the
generation prompt. Every turn is timed, best of ``--repeats``; the table shows the curve over the
turns and the totals. The trajectory's final ids are checked to equal the re-encoding first.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import chatplate  # noqa: E402
from tests import tokenizer_fixtures  # noqa: E402

SHOWN = (1, 10, 25, 50, 75, 100)


def rollout(turns: int) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """The first prompt's messages, then each turn's assistant message and tool answer."""
    start = [{"role": "system", "content": "You are a coding agent. Use the tools to inspect the repository."},
             {"role": "user", "content": "The test suite fails in the parser module; find out why and fix it."}]
    steps = []
    for turn in range(turns):
        call = {"id": f"call{turn:05d}", "type": "function",
                "function": {"name": "read_file", "arguments": {"path": f"src/parser/part{turn}.py", "lines": [1, 40]}}}
        assistant = {"role": "assistant", "content": f"Step {turn}: I will read part {turn} of the parser next.",
                     "tool_calls": [call]}
        code = "\n".join(f"def rule_{turn}_{i}(tokens):\n    return tokens[{i}:] + [{turn}]" for i in range(4))
        steps.append((assistant, {"role": "tool", "tool_call_id": call["id"], "content": code}))
    return start, steps


def sampled_ids(t: chatplate.ChatTemplate, history: list[dict[str, Any]], message: dict[str, Any]) -> list[int]:
    """What a model trained on the template samples for ``message``: the closed turn's ids after
    the prompt, through the end-of-turn token."""
    prompt = t.encode(history, add_generation_prompt=True).input_ids
    closed = t.encode(history + [message]).input_ids
    assert closed[: len(prompt)] == prompt, "the template is not prefix-stable for this rollout"
    turn = closed[len(prompt):]
    end = t.tokenizer.token_id("<|im_end|>")
    return turn[: turn.index(end) + 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--template", default="qwen2.5")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from transformers import AutoTokenizer

    directory = tokenizer_fixtures.chatml_bpe_dir()
    builtin = chatplate.load(args.template)
    t = chatplate.ChatTemplate(builtin.source, builtin.bos_token, builtin.eos_token,
                               tokenizer=chatplate.load(directory).tokenizer)
    theirs = AutoTokenizer.from_pretrained(str(directory))
    theirs.chat_template = builtin.source

    start, steps = rollout(args.turns)
    histories, samples = [], []
    messages = list(start)
    for assistant, tool in steps:
        samples.append(sampled_ids(t, messages, assistant))
        messages += [assistant, tool]
        histories.append(list(messages))

    # Correctness first: the trajectory ends with the very ids of re-encoding, every extension clean.
    traj = t.trajectory(start)
    for (assistant, tool), ids in zip(steps, samples):
        traj.add_completion(ids, message=assistant)
        traj.extend([tool])
    full = t.encode(histories[-1], add_generation_prompt=True).input_ids
    assert traj.input_ids == full and {e.kind for e in traj.extensions} == {"clean"}
    assert full == theirs.apply_chat_template(histories[-1], add_generation_prompt=True, tokenize=True, return_dict=False)

    best = {name: [float("inf")] * args.turns for name in ("extend", "encode", "transformers")}
    gc.freeze()
    for _ in range(args.repeats):
        traj = t.trajectory(start)
        for index, ((assistant, tool), ids) in enumerate(zip(steps, samples)):
            began = time.perf_counter()
            traj.add_completion(ids, message=assistant)
            traj.extend([tool])
            best["extend"][index] = min(best["extend"][index], time.perf_counter() - began)
        for index, history in enumerate(histories):
            began = time.perf_counter()
            t.encode(history, add_generation_prompt=True)
            best["encode"][index] = min(best["encode"][index], time.perf_counter() - began)
            began = time.perf_counter()
            theirs.apply_chat_template(history, add_generation_prompt=True, tokenize=True, return_dict=False)
            best["transformers"][index] = min(best["transformers"][index], time.perf_counter() - began)

    print(f"chatplate {chatplate.__version__}; template {args.template}; {args.turns} turns, best of {args.repeats}")
    print(f"{'turn':>5} {'tokens':>7} {'extend us':>10} {'encode us':>10} {'transformers us':>16} "
          f"{'vs encode':>10} {'vs transformers':>16}")
    for turn in [s for s in SHOWN if s <= args.turns]:
        i = turn - 1
        tokens = len(t.encode(histories[i], add_generation_prompt=True).input_ids)
        ext, enc, tf = best["extend"][i], best["encode"][i], best["transformers"][i]
        print(f"{turn:>5} {tokens:>7} {ext * 1e6:>10.0f} {enc * 1e6:>10.0f} {tf * 1e6:>16.0f} "
              f"{enc / ext:>9.1f}x {tf / ext:>15.1f}x")
    ext, enc, tf = (sum(best[name]) for name in ("extend", "encode", "transformers"))
    print(f"{'all':>5} {'':>7} {ext * 1e6:>10.0f} {enc * 1e6:>10.0f} {tf * 1e6:>16.0f} {enc / ext:>9.1f}x {tf / ext:>15.1f}x")
    if args.turns >= 100:
        flat = best["extend"][99] / best["extend"][9]
        grown = best["encode"][99] / best["encode"][9]
        print(f"turn 100 / turn 10: extend {flat:.2f}x, encode {grown:.2f}x, "
              f"transformers {best['transformers'][99] / best['transformers'][9]:.2f}x")


if __name__ == "__main__":
    main()
