"""Per-call render time: chatplate ``ChatTemplate.render`` against transformers
``apply_chat_template(tokenize=False)``, same templates, same conversations, one run.

    python benchmarks/render.py [--corpus ../shared/corpus] [--repeats 7] [-k GLOB]

For every corpus template, every case the reference renders is first checked to give identical
output on both sides; then each side renders all of that template's cases, interleaved, and the
fastest of ``--repeats`` rounds counts (the minimum is the least noisy estimate on a busy box).
Prints per-template microseconds per call and the ratio, then the totals.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import chatplate

NOW = datetime(2024, 7, 26, 12, 0, 0)


def _hf_tokenizer(template: str, bos: str | None, eos: str | None) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # The template is all that matters for tokenize=False; a minimal tokenizer carries it.
    backend = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos)
    tokenizer.chat_template = template
    return tokenizer


def _kwargs(case: dict[str, Any]) -> dict[str, Any]:
    kwargs = {
        "tools": case.get("tools"),
        "documents": case.get("documents"),
        "add_generation_prompt": case.get("add_generation_prompt", False),
        "continue_final_message": case.get("continue_final_message", False),
    }
    kwargs.update(case.get("extra_kwargs") or {})
    return kwargs


def _time(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpus")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("-k", "--filter", action="append", help="only templates matching GLOB")
    args = parser.parse_args(argv)

    import transformers.utils.chat_template_utils as ctu

    class _Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:
            return NOW

    ctu.datetime = _Frozen  # both sides see the same clock, so outputs can be compared
    warnings.filterwarnings("ignore")

    files = sorted(p for p in (args.corpus / "public").glob("*.json") if not p.name.startswith("_"))
    total_hf = total_cp = 0.0
    calls = 0
    ratios = []
    print(f"{'template':42s} {'cases':>5s} {'transformers':>13s} {'chatplate':>11s} {'speed-up':>8s}")
    for path in files:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if args.filter and not any(fnmatch.fnmatchcase(doc["template_name"], g) for g in args.filter):
            continue
        cases = [c for c in doc["cases"] if "expected" in c]
        hf = _hf_tokenizer(doc["template"], doc["bos_token"], doc["eos_token"])
        ct = chatplate.ChatTemplate(doc["template"], bos_token=doc["bos_token"], eos_token=doc["eos_token"])
        prepared = [(c["messages"], _kwargs(c)) for c in cases]
        for messages, kwargs in prepared:
            ours = ct.render(messages, now=NOW, **kwargs)
            theirs = hf.apply_chat_template(messages, tokenize=False, **kwargs)
            if ours != theirs:
                print(f"OUTPUT DIFFERS: {doc['template_name']}", file=sys.stderr)
                return 1

        def run_hf() -> None:
            for messages, kwargs in prepared:
                hf.apply_chat_template(messages, tokenize=False, **kwargs)

        def run_cp() -> None:
            for messages, kwargs in prepared:
                ct.render(messages, now=NOW, **kwargs)

        best_hf = best_cp = float("inf")
        for _ in range(args.repeats):
            best_hf = min(best_hf, _time(run_hf))
            best_cp = min(best_cp, _time(run_cp))
        n = len(prepared)
        total_hf += best_hf
        total_cp += best_cp
        calls += n
        ratios.append(best_hf / best_cp)
        print(f"{doc['template_name']:42s} {n:5d} {best_hf / n * 1e6:11.1f}us {best_cp / n * 1e6:9.1f}us {best_hf / best_cp:7.2f}x")

    if not calls:
        print("no templates matched", file=sys.stderr)
        return 1
    print()
    print(f"templates: {len(ratios)}, calls per side per round: {calls}, identical output: yes")
    print(f"mean per call: transformers {total_hf / calls * 1e6:.1f}us, chatplate {total_cp / calls * 1e6:.1f}us")
    print(f"speed-up, total time: {total_hf / total_cp:.2f}x; geometric mean over templates: "
          f"{statistics.geometric_mean(ratios):.2f}x; slowest template: {min(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
