"""Dataset preparation with training masks: ``chatplate prepare`` to Parquet against
transformers, one run, same machine, same cores.

    python benchmarks/prepare.py [--conversations 20000] [--workers 2] [--memory-rows 200000]
                                 [--vocab mistral|llama3|llama3-real] [--no-generation-blocks] [--cli] [--repeats 3]

Measured on the same synthetic SFT conversations (multi-turn, 100-1500 words each) and the same
tokenizer: ``mistral`` is Mistral-7B-Instruct-v0.1's real SentencePiece model (from
mistral-common, converted by transformers) with its template; ``llama3`` a byte-level BPE with
Llama 3's pre-tokenizer and special tokens, with the Llama 3 template; ``llama3-real`` Llama 3's
real 128k vocabulary (llama.cpp's test GGUF, converted; set ``CHATPLATE_LLAMA_CPP_SDIST``), with
the same template. By default the template
marks the assistant's turns with ``{% generation %}`` (transformers produces masks only then);
with ``--no-generation-blocks`` it does not, chatplate derives the masks, and transformers'
paths below make none (so they do less work than chatplate):

(a) transformers ``apply_chat_template(..., tokenize=True, return_assistant_tokens_mask=True)``,
    one conversation at a time;
(b) the same, batched, through ``datasets.Dataset.map(num_proc=WORKERS)``;
(c) the limit: ``tokenizers`` ``encode_batch_fast`` on the texts already rendered, on its own
    threads;
and chatplate: ``prepare`` from JSONL to Parquet, end to end (reading, validating, rendering,
masks, tokenizing, writing). Masks are checked equal to transformers' on a sample first. With
``--cli``, also the command line as a user runs it, ``chatplate prepare`` in a new process with
its default workers, process start, imports and template loading included.
With ``--memory-rows``, the peak memory of ``prepare`` on the conversations and on that many rows
is measured in fresh processes. Each path but (a) runs ``--repeats`` times, interleaved; the best
time of each counts ((a), the slowest, runs once).
"""

from __future__ import annotations

import argparse
import compileall
import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import chatplate  # noqa: E402
from encode import best_times, synthetic_conversations  # noqa: E402
from tests import tokenizer_fixtures  # noqa: E402

# Mistral-7B-Instruct-v0.1's template (the fixture's), with the assistant's output in a generation block.
_ASSISTANT_OUTPUT = "{{- ' ' + message['content'] + eos_token }}"
assert _ASSISTANT_OUTPUT in tokenizer_fixtures.MISTRAL_V1_TEMPLATE
TRAINING_TEMPLATE = tokenizer_fixtures.MISTRAL_V1_TEMPLATE.replace(
    _ASSISTANT_OUTPUT, "{%- generation %}" + _ASSISTANT_OUTPUT + "{%- endgeneration %}"
)


# Llama 3's template (the fixture's), with the assistant's output in a generation block.
LLAMA3_TRAINING_TEMPLATE = """{{- bos_token }}
{%- for message in messages %}
    {%- if message['role'] == 'assistant' %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
        {%- generation %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endgeneration %}
    {%- else %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

def _real_llama3_dir() -> Path:
    """Llama 3's real 128k vocabulary (llama.cpp's ggml-vocab-llama-bpe.gguf, converted; needs
    ``CHATPLATE_LLAMA_CPP_SDIST``, see ``tests/vocabularies.py``)."""
    from tests import vocabularies

    found = vocabularies.real_vocab_dirs().get("llama-bpe")
    if found is None:
        raise SystemExit(f"--vocab llama3-real needs {vocabularies.SDIST_ENV} (the llama-cpp-python sdist)")
    return found


VOCABS = {
    "mistral": (tokenizer_fixtures.mistral_v1_dir, TRAINING_TEMPLATE, tokenizer_fixtures.MISTRAL_V1_TEMPLATE),
    "llama3": (tokenizer_fixtures.llama3_bpe_dir, LLAMA3_TRAINING_TEMPLATE, tokenizer_fixtures.LLAMA3_TEMPLATE),
    "llama3-real": (_real_llama3_dir, LLAMA3_TRAINING_TEMPLATE, tokenizer_fixtures.LLAMA3_TEMPLATE),
}


def model_dir(root: Path, vocab: str = "mistral", generation: bool = True) -> Path:
    source, with_blocks, plain = VOCABS[vocab]
    target = root / f"{vocab}-training"
    shutil.copytree(source(), target)
    (target / "chat_template.jinja").write_text(with_blocks if generation else plain, encoding="utf-8")
    return target


def write_jsonl(path: Path, conversations: list[Any], repeat_to: int | None = None) -> Path:
    rows = repeat_to or len(conversations)
    with path.open("w", encoding="utf-8") as handle:
        for index in range(rows):
            handle.write(json.dumps({"messages": conversations[index % len(conversations)]}) + "\n")
    return path


def timed(fn: Any) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def peak_memory(directory: Path, source: Path, workers: int) -> tuple[int, int]:
    """Peak RSS (MiB) of the driver and of the largest worker, for one prepare run."""
    code = (
        "import resource, sys, chatplate\n"
        f"chatplate.prepare({str(source)!r}, {str(source.with_suffix('.parquet'))!r}, "
        f"chatplate.load({str(directory)!r}), workers={workers})\n"
        # The driver's own high-water mark (VmHWM): ru_maxrss survives exec, so it would report
        # this benchmark's process, which forked it.
        "hwm = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
        "print(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return int(out[-2]) // 1024, int(out[-1]) // 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-rows", type=int, default=0, help="also compare peak memory with this many rows")
    parser.add_argument("--check", type=int, default=300, help="conversations whose masks are compared first")
    parser.add_argument("--vocab", choices=sorted(VOCABS), default="mistral")
    parser.add_argument("--no-generation-blocks", dest="generation", action="store_false",
                        help="a template without {% generation %}: chatplate derives masks, transformers makes none")
    parser.add_argument("--cli", action="store_true", help="also time the chatplate prepare command, process start included")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best of each path counts")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    import datasets
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    root = Path(tempfile.mkdtemp(prefix="chatplate-bench-"))
    try:
        directory = model_dir(root, args.vocab, args.generation)
        conversations = synthetic_conversations(args.conversations)
        source = write_jsonl(root / "train.jsonl", conversations)
        hf = AutoTokenizer.from_pretrained(str(directory))
        template = chatplate.load(str(directory))

        def reference(conversation: Any) -> Any:
            return hf.apply_chat_template(conversation, tokenize=True, return_dict=True,
                                          return_assistant_tokens_mask=args.generation)

        for conversation in conversations[: args.check]:
            ours = template.encode(conversation, return_assistant_mask=True)
            theirs = reference(conversation)
            if ours.input_ids != theirs["input_ids"] or (args.generation and ours.assistant_mask != theirs["assistant_masks"]):
                print("IDS OR MASKS DIFFER", file=sys.stderr)
                return 1

        summary = chatplate.prepare(source, root / "train.parquet", template, workers=args.workers)
        command = [sys.executable, "-m", "chatplate", "prepare", str(source), "-o", str(root / "cli.parquet"),
                   "--model", str(directory), "-q"]
        if args.cli:
            # As installed: pip compiles a package's bytecode, so a command never compiles its
            # modules at start. A source checkout run with PYTHONDONTWRITEBYTECODE set would
            # (a tenth of a second on every run): compile it once here.
            compileall.compile_dir(str(Path(chatplate.__file__).parent), quiet=1)
        tokens = summary.tokens
        texts = [template.render(c) for c in conversations]
        backend = template.tokenizer.backend

        def batched(batch: dict[str, list[Any]]) -> dict[str, Any]:
            out = hf.apply_chat_template(batch["messages"], tokenize=True, return_dict=True,
                                         return_assistant_tokens_mask=args.generation)
            return {"input_ids": out["input_ids"], **({"assistant_masks": out["assistant_masks"]} if args.generation else {})}

        dataset = datasets.Dataset.from_list([{"messages": c} for c in conversations])
        runs = {
            "ours": lambda: chatplate.prepare(source, root / "train.parquet", template, workers=args.workers),
            **({"cli": lambda: subprocess.run(command, check=True, capture_output=True)} if args.cli else {}),
            "limit": lambda: backend.encode_batch_fast(texts, add_special_tokens=False),
            "map": lambda: dataset.map(batched, batched=True, num_proc=args.workers, remove_columns=["messages"],
                                       load_from_cache_file=False),
        }
        # The best of interleaved rounds: this machine's speed drifts by a third within minutes.
        best = best_times(args.repeats, runs)
        t_ours, t_cli, t_limit, t_map = best["ours"], best.get("cli"), best["limit"], best["map"]
        t_row, _ = timed(lambda: [reference(c) for c in conversations])  # the slowest path: timed once

        checked = "ids and masks" if args.generation else "ids (transformers makes no masks here)"
        print(f"{len(conversations):,} conversations, {tokens:,} tokens ({summary.trained_tokens:,} trained), "
              f"{args.workers} workers, {args.vocab} vocabulary ({template.tokenizer.engine}), "
              f"{'with' if args.generation else 'without'} generation blocks; {checked} equal to transformers' "
              f"on {args.check} conversations")
        rows = (
            ("chatplate prepare, JSONL -> Parquet with masks", t_ours),
            *((("the command line, in a new process, default workers", t_cli),) if t_cli is not None else ()),
            (f"(a) transformers apply_chat_template{' + masks' if args.generation else ''}, per row", t_row),
            (f"(b) the same via datasets.map(num_proc={args.workers}), batched", t_map),
            ("(c) limit: encode_batch_fast on pre-rendered text", t_limit),
        )
        for label, seconds in rows:
            print(f"  {label:58s} {seconds:7.2f} s  {tokens / seconds / 1e6:6.2f} M tokens/s")
        reference_best = min(t_row, t_map)
        print(f"chatplate vs best of (a)/(b): {reference_best / t_ours:.2f}x; vs the limit (c): {t_limit / t_ours:.0%}; "
              f"the most any implementation can reach: {reference_best / t_limit:.2f}x the best of (a)/(b)")
        if t_cli is not None:
            print(f"the command line vs best of (a)/(b): {reference_best / t_cli:.2f}x")
        if args.memory_rows:
            big = write_jsonl(root / "big.jsonl", conversations, repeat_to=args.memory_rows)
            small = peak_memory(directory, source, args.workers)
            large = peak_memory(directory, big, args.workers)
            print(f"peak memory, driver / largest worker: {len(conversations):,} rows {small[0]} / {small[1]} MiB; "
                  f"{args.memory_rows:,} rows {large[0]} / {large[1]} MiB")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
