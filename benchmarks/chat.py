"""Per-turn overhead of a chat loop, the model call excluded: chatplate (encode the conversation
with the generation prompt, then parse the reply's token ids into the assistant message) against
transformers (``apply_chat_template(..., add_generation_prompt=True, tokenize=True)``, then
``decode`` of the reply, which is all its chat pipeline does without a response template), on a
conversation grown to ``--turns`` exchanges, one run.

    python benchmarks/chat.py [--turns 50] [--repeats 5] [--template qwen2.5]

The tokenizer is the Qwen2-shaped byte-level BPE of the test fixtures, with a built-in template
(``--template``; its tool-call format is what chatplate parses). Each turn appends a user
message and a reply of about 60 words; every turn of the conversation is timed, interleaved, best
of ``--repeats``; the table shows turns 1, 10, 25 and the last, and the totals. Both sides are
checked to give the same prompt ids at every turn first.
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

WORDS = ("the model answers with a few sentences about the weather in Paris and the trains to Rome "
         "tomorrow morning, with numbers like 12 and 3.5 and a list of things to pack").split()


def conversation(turns: int) -> list[list[dict[str, Any]]]:
    """The conversation before each turn's generation, and each turn's reply."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful assistant."}]
    states = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Question {turn}: " + " ".join(WORDS[turn % 7:turn % 7 + 12])})
        states.append([dict(m) for m in messages])
        reply = " ".join(WORDS[(turn + i) % len(WORDS)] for i in range(60))
        messages.append({"role": "assistant", "content": reply})
    return states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--template", default="qwen2.5")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from transformers import AutoTokenizer

    directory = tokenizer_fixtures.chatml_bpe_dir()
    ours = chatplate.load(directory)
    builtin = chatplate.load(args.template)
    ours = chatplate.ChatTemplate(builtin.source, builtin.bos_token, builtin.eos_token, tokenizer=ours.tokenizer)
    theirs = AutoTokenizer.from_pretrained(str(directory))
    theirs.chat_template = builtin.source
    states = conversation(args.turns)
    replies = [theirs.encode(" ".join(WORDS[(t + i) % len(WORDS)] for i in range(60)) + "<|im_end|>",
                             add_special_tokens=False) for t in range(args.turns)]
    for messages in states:
        assert ours.encode(messages, add_generation_prompt=True).input_ids == theirs.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False), "prompt ids differ"
    ours.response_format  # detection happens once per template, on first use: not a turn's cost

    def chatplate_turn(messages: list[dict[str, Any]], reply: list[int]) -> Any:
        prompt = ours.encode(messages, add_generation_prompt=True)
        return ours.parse_response(reply, prefix=prompt.text)

    def transformers_turn(messages: list[dict[str, Any]], reply: list[int]) -> Any:
        theirs.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        return theirs.decode(reply, skip_special_tokens=True)

    sides = {"chatplate": chatplate_turn, "transformers": transformers_turn}
    best = {name: [float("inf")] * len(states) for name in sides}
    gc.freeze()
    for _ in range(args.repeats):
        for index, (messages, reply) in enumerate(zip(states, replies)):
            for name, run in sides.items():
                calls = 0
                start = time.perf_counter()
                while True:  # repeat short calls to about 5 ms for a stable figure
                    run(messages, reply)
                    calls += 1
                    elapsed = time.perf_counter() - start
                    if elapsed > 0.005:
                        break
                best[name][index] = min(best[name][index], elapsed / calls)
    print(f"chatplate {chatplate.__version__}; template {args.template}; {args.turns} turns, best of {args.repeats}")
    print(f"{'turn':>5} {'tokens':>7} {'chatplate us':>13} {'transformers us':>16} {'ratio':>7}")
    for turn in sorted({1, 10, 25, len(states)} & set(range(1, len(states) + 1))):
        i = turn - 1
        tokens = len(ours.encode(states[i], add_generation_prompt=True).input_ids)
        ratio = best["transformers"][i] / best["chatplate"][i]
        print(f"{turn:>5} {tokens:>7} {best['chatplate'][i] * 1e6:>13.0f} {best['transformers'][i] * 1e6:>16.0f} {ratio:>6.2f}x")
    total_ours, total_theirs = sum(best["chatplate"]), sum(best["transformers"])
    print(f"{'all':>5} {'':>7} {total_ours * 1e6:>13.0f} {total_theirs * 1e6:>16.0f} {total_theirs / total_ours:>6.2f}x")


if __name__ == "__main__":
    main()
