"""The fast tokenizer path on real vocabularies: llama.cpp's ``ggml-vocab-*.gguf`` files from the
llama-cpp-python sdist, converted by transformers (see ``tests/vocabularies.py``). One run, same
machine, same cores.

    CHATPLATE_LLAMA_CPP_SDIST=llama_cpp_python-0.3.36.tar.gz \\
        python benchmarks/vocabularies.py [--conversations 2000] [--repeats 3] [-k GLOB]

Per vocabulary: its size with added tokens; its kind (model, pre-tokenizer, normalizer); whether
``fastokens`` is used, and why not when it is not; ``ChatTokenizer.from_model_dir`` time; the
``FastEncoder`` build time (``ChatTokenizer.fast`` on a fresh tokenizer with
``engine_choice="fastokens"``: loading ``fastokens`` and the self-check); and M tokens/s of
``FastEncoder.encode(texts, False)`` against ``tokenizers``' ``encode_batch_fast`` on the same
texts (the synthetic chats of ``benchmarks/encode.py``, joined ChatML-style), the best of
``--repeats`` interleaved rounds, after checking both give the same ids.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encode import best_times, synthetic_conversations  # noqa: E402

from chatplate.tokens import ChatTokenizer  # noqa: E402
from tests import vocabularies  # noqa: E402


def chatml(conversation: list[dict[str, Any]]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conversation)


def kind(tokenizer: ChatTokenizer) -> str:
    """``model / pre-tokenizer steps / normalizer``, as the loaded pipeline has them."""
    spec = json.loads(tokenizer.backend.to_str())

    def steps(part: dict[str, Any] | None, key: str) -> str:
        if not part:
            return "-"
        inner = part.get(key)
        return "+".join(step["type"] for step in inner) if part.get("type") == "Sequence" and inner else part["type"]

    return f"{spec['model']['type']} / {steps(spec.get('pre_tokenizer'), 'pretokenizers')} / {steps(spec.get('normalizer'), 'normalizers')}"


def measure(name: str, directory: Path, texts: list[str], repeats: int) -> dict[str, Any]:
    start = time.perf_counter()
    tokenizer = ChatTokenizer.from_model_dir(directory)
    row: dict[str, Any] = {
        "vocab": name,
        "size": tokenizer.backend.get_vocab_size(with_added_tokens=True),
        "kind": kind(tokenizer),
        "load": time.perf_counter() - start,
    }
    tokenizer.engine_choice = "fastokens"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        fast = tokenizer.fast
        row["build"] = time.perf_counter() - start
    row["why_not"] = "; ".join(str(w.message).split("not fastokens: ", 1)[-1] for w in caught)
    backend = tokenizer.backend
    expected = [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    row["tokens"] = sum(len(ids) for ids in expected)
    runs = {"tokenizers": lambda: backend.encode_batch_fast(texts, add_special_tokens=False)}
    if fast is not None:
        try:
            same = [result[0].tolist() for result in fast.encode(texts, False)] == expected
        except Exception as exc:  # noqa: BLE001 - a crash on these texts is a result too
            row["why_not"] = f"fastokens raises {type(exc).__name__}: {exc}"
        else:
            if same:
                runs["fastokens"] = lambda: fast.encode(texts, False)
            else:
                row["why_not"] = "IDS DIFFER on the benchmark texts"
    times = best_times(repeats, runs)
    row.update({engine: row["tokens"] / seconds / 1e6 for engine, seconds in times.items()})
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("-k", default="*", help="only vocabularies matching this glob")
    args = parser.parse_args(argv)

    if vocabularies.sdist_path() is None:
        print(f"set {vocabularies.SDIST_ENV} to the llama-cpp-python sdist (see tests/vocabularies.py)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    directories = vocabularies.real_vocab_dirs()
    print(f"{len(directories)} vocabularies ready in {time.perf_counter() - start:.1f} s (converted once, then cached)")
    for name, why in vocabularies.skipped_vocabs().items():
        print(f"  not converted: {name}: {why}")
    texts = [chatml(c) for c in synthetic_conversations(args.conversations)]
    print(f"{len(texts)} chats, {sum(map(len, texts)) / 1e6:.1f} M characters; best of {args.repeats}\n")

    header = f"{'vocab':15s} {'size':>7s}  {'kind':40s} {'load s':>6s} {'fast s':>6s} {'tokens':>8s} {'tok M/s':>7s} {'fast M/s':>8s} {'x':>5s}  fastokens"
    print(header)
    print("-" * len(header))
    for name in sorted(directories):
        if not fnmatch.fnmatch(name, args.k):
            continue
        row = measure(name, directories[name], texts, args.repeats)
        fast = row.get("fastokens")
        speed, ratio = (f"{fast:.2f}", f"{fast / row['tokenizers']:.1f}") if fast else ("-", "-")
        used = "used" if fast else "not used: " + row["why_not"]
        print(
            f"{name:15s} {row['size']:7d}  {row['kind'][:40]:40s} {row['load']:6.2f} {row['build']:6.2f} {row['tokens']:8d} "
            f"{row['tokenizers']:7.2f} {speed:>8s} {ratio:>5s}  {used}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
