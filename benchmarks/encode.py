"""Tokens per second of ``ChatTemplate.encode_batch`` against transformers'
``apply_chat_template(tokenize=True)`` (batched) and against ``tokenizers``'
``encode_batch_fast`` on the same prompts already rendered (the limit of any renderer that
encodes with ``tokenizers``; chatplate's ``fastokens`` path goes past it). One run, same tokenizer, same cores.

    python benchmarks/encode.py [--conversations 4000] [--repeats 5] [--tokenizer mistral|llama3|chatml] [--masks]

The tokenizer is one the tests build offline (the Mistral-7B-Instruct-v0.1 SentencePiece model
shipped in mistral-common, converted by transformers, by default). Ids are checked identical
before timing; the best of ``--repeats`` interleaved rounds counts.

With ``--masks`` (mistral or llama3), the template marks the assistant's output with
``{% generation %}`` (as ``benchmarks/prepare.py`` does) and both sides return masks:
``return_assistant_mask=True`` against ``return_assistant_tokens_mask=True``; masks are checked
identical too.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import chatplate  # noqa: E402
from tests import tokenizer_fixtures  # noqa: E402

WORDS = (
    "the model answers questions about history science cooking travel code and music with care "
    "précis naïve 東京 данные 🙂 numbers 1234 5678 and punctuation, like this; (or that)!"
).split()


def synthetic_conversations(count: int, seed: int = 0) -> list[list[dict[str, Any]]]:
    """Multi-turn chats of 100-1500 words, like an SFT set."""
    rng = random.Random(seed)

    def text(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    conversations = []
    for _ in range(count):
        chat = []
        for _ in range(rng.randint(1, 4)):
            chat.append({"role": "user", "content": text(10, 120)})
            chat.append({"role": "assistant", "content": text(30, 300)})
        conversations.append(chat)
    return conversations


def best_times(repeats: int, runs: dict[str, Any]) -> dict[str, float]:
    """Best wall time of each run over ``repeats`` rounds, the runs interleaved within a round so
    that drift of the machine (other tenants, clock) spreads over all of them alike."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            gc.collect()
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokenizer", choices=["mistral", "llama3", "chatml"], default="mistral")
    parser.add_argument("--masks", action="store_true", help="training masks on both sides (generation blocks)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    from transformers import AutoTokenizer

    directory = {
        "mistral": tokenizer_fixtures.mistral_v1_dir,
        "llama3": tokenizer_fixtures.llama3_bpe_dir,
        "chatml": tokenizer_fixtures.chatml_bpe_dir,
    }[args.tokenizer]()
    hf = AutoTokenizer.from_pretrained(str(directory))
    template = chatplate.load(str(directory))
    masks = {}
    if args.masks:
        from prepare import LLAMA3_TRAINING_TEMPLATE, TRAINING_TEMPLATE

        source = {"mistral": TRAINING_TEMPLATE, "llama3": LLAMA3_TRAINING_TEMPLATE}[args.tokenizer]
        hf.chat_template = source
        template = chatplate.load(chatplate.ChatTemplate(source, template.bos_token, template.eos_token), tokenizer=template.tokenizer)
        masks = {"return_assistant_mask": True}
    conversations = synthetic_conversations(args.conversations)

    ours_batch = template.encode_batch(conversations, **masks)
    theirs_batch = hf.apply_chat_template(conversations, tokenize=True, return_dict=True,
                                          return_assistant_tokens_mask=args.masks)
    ours = ours_batch["input_ids"]
    if ours != theirs_batch["input_ids"] or (args.masks and ours_batch["assistant_masks"] != theirs_batch["assistant_masks"]):
        print("IDS OR MASKS DIFFER", file=sys.stderr)
        return 1
    tokens = sum(len(ids) for ids in ours)
    texts = [template.render(c) for c in conversations]
    backend = template.tokenizer.backend

    times = best_times(
        args.repeats,
        {
            "hf": lambda: hf.apply_chat_template(conversations, tokenize=True, return_dict=True,
                                                 return_assistant_tokens_mask=args.masks),
            "cp": lambda: template.encode_batch(conversations, **masks),
            "limit": lambda: backend.encode_batch_fast(texts, add_special_tokens=False),
            # The ids have to be read out of the Encoding objects to be used at all.
            "limit_ids": lambda: [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)],
        },
    )
    t_hf, t_cp, t_limit, t_limit_ids = times["hf"], times["cp"], times["limit"], times["limit_ids"]

    what = "ids and masks" if args.masks else "ids"
    print(f"tokenizer: {args.tokenizer} ({directory}), conversations: {len(conversations)}, tokens: {tokens}, {what} identical: yes")
    for label, seconds in (
        ("transformers apply_chat_template(tokenize=True" + (", masks" if args.masks else "") + "), batched", t_hf),
        ("chatplate encode_batch (render + encode" + (" + masks" if args.masks else "") + ", sanitized)", t_cp),
        ("tokenizers encode_batch_fast on pre-rendered text", t_limit),
        ("the same, ids read out as lists", t_limit_ids),
    ):
        print(f"  {label:60s} {tokens / seconds / 1e6:6.2f} M tokens/s")
    print(
        f"chatplate ({template.tokenizer.engine}) vs transformers: {t_hf / t_cp:.2f}x; vs tokenizers alone: "
        f"{t_limit / t_cp:.2f}x ({t_limit_ids / t_cp:.2f}x with ids read); a renderer encoding with tokenizers "
        f"reaches at most {t_hf / t_limit:.2f}x transformers"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
