"""Parsing generated text back into an assistant message: chatplate ``parse_response`` and its
streaming ``response_parser`` against a hand-written regular-expression parse of each format and
against transformers' ``response_template`` parser, on the same responses, one run.

    python benchmarks/parse.py [--corpus ../shared/corpus] [--repeats 9] [-k FORMAT] [--sizes 1,8,64] [--quick]

The responses are rendered by the corpus templates themselves: for a template, the prompt is
``render([user], add_generation_prompt=True, tools=TOOLS)``, the full turn
``render([user, assistant], tools=TOOLS)``, and the response is what the full turn adds to the
prompt, cut after the end-of-turn marker as a generation stops there. The assistant turn has
reasoning (lorem-like words, one part in three) and content (two parts in three) and two tool
calls; gpt-oss writes one call per message, so its response is two call messages and a final
message (rendered in two pieces). Formats: Qwen 3 (``<think>`` + hermes ``<tool_call>`` JSON),
Qwen 3.5 (``<think>`` opened by the prompt, XML parameters), GLM 4.5 (``<arg_key>``), gpt-oss
(harmony channels), Gemma 4 (``<|channel>thought``, ``call:NAME{...}``).

Whole response (a ``--whole-kb`` response, 2 KB reasoning + 4 KB content by default):
MB/s of chatplate ``ChatTemplate.parse_response(text, prefix=prompt, tools=TOOLS)``, of the
regular-expression parse, and of transformers' ``parse_response`` (``transformers.utils.chat_parsing``,
what ``PreTrainedTokenizerBase.parse_response`` calls) with the response template transformers
5.23 ships for that model type (``transformers.cli.serving.utils._RESPONSE_TEMPLATE_FALLBACKS``:
Qwen 2/3, Qwen 3.5, Gemma 4; the others have none).

Streaming, at each of ``--sizes`` KB: the response cut into token-sized chunks (a word piece of
up to 6 letters with its leading space, up to 3 digits, a run of spaces, up to 2 punctuation
characters: about 4 characters a chunk, markers split over several chunks as the worst case)
and fed one chunk at a time: chatplate ``response_parser(...).feed`` then ``finish``,
transformers ``ResponseParser.feed`` then ``finalize``, and the regular expression re-run on the
text accumulated so far after every chunk (what naive streaming parsers do). Reported in
microseconds per chunk: for chatplate and transformers, the time of the whole stream (make the
parser, feed every chunk, finish) less the time of making the parser (its setup: the prefix and
the tools taken in, shown in the whole-response table), over the chunks. The regular-expression
re-parse is timed on a uniform sample of at most ``--samples`` of the accumulated prefixes (every
prefix when there are fewer), its mean being the per-chunk mean. Last, for each parser, its
per-chunk cost at the largest size over that at the smallest (1.00x: flat).

A round repeats a short call until it lasts about 20 ms; the heap (torch, transformers) is frozen
after the imports so the collection before each round stays cheap.

Every parser's message (content, reasoning, tool call names and arguments) is checked against
chatplate's whole-response parse before timing, streamed and whole; a transformers parse that
differs is reported and left out of the ratios. The best of ``--repeats`` interleaved rounds
counts. Ratios are speed-ups: the other side's time over chatplate's (above 1: chatplate faster).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chatplate

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather and forecast for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                       "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                       "required": ["query"]}}},
]
CALLS = [
    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}},
    {"type": "function", "function": {"name": "search", "arguments": {"query": "paris events this weekend", "limit": 5}}},
]
USER = {"role": "user", "content": "What is the weather in Paris, and what is on this weekend?"}

_LOREM = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
    "dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip ex ea "
    "commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla pariatur "
    "excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est laborum "
    "weather forecast city 2024 temperature 18 degrees"
)
LOREM = _LOREM.split()

# Token-sized pieces: they cover the text exactly (checked).
TOKEN = re.compile(r" ?[A-Za-z]{1,6}| ?\d{1,3}|\s+|[^\sA-Za-z\d]{1,2}")


def lorem(chars: int, seed: int) -> str:
    """About ``chars`` characters of sentences and paragraphs."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < chars:
        sentence = " ".join(rng.choice(LOREM) for _ in range(rng.randint(6, 18)))
        sentence = sentence[0].upper() + sentence[1:] + rng.choice(".....,;:?!")
        sep = "\n\n" if out and rng.random() < 0.15 else " " if out else ""
        out.append(sep + sentence)
        size += len(sep) + len(sentence)
    return "".join(out)[:max(chars, 1)].rstrip() + "."


def tokens(text: str) -> list[str]:
    pieces = TOKEN.findall(text)
    assert "".join(pieces) == text
    return pieces


# ------------------------------------------------------------------------- regex baselines


def _cut(text: str, stops: tuple[str, ...]) -> str:
    for stop in stops:
        at = text.find(stop)
        if at >= 0:
            text = text[:at]
    return text


def _literal(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_OPEN_THINK = re.compile(r"(?:<think>)?(.*?)</think>", re.DOTALL)
_HERMES = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def regex_qwen3(text: str) -> dict[str, Any]:
    think = _THINK.search(text)
    rest = text[think.end():] if think else text
    calls = [json.loads(body) for body in _HERMES.findall(rest)]
    content = _cut(_HERMES.sub("", rest), ("<|im_end|>",))
    return _message(content, think.group(1) if think else "", [(c["name"], c["arguments"]) for c in calls])


_XML_CALL = re.compile(r"<tool_call>\s*<function=([^>\n]+)>(.*?)</function>\s*</tool_call>", re.DOTALL)
_XML_PARAM = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", re.DOTALL)


def regex_qwen3_5(text: str) -> dict[str, Any]:
    think = _OPEN_THINK.match(text)  # the prompt opened <think>
    rest = text[think.end():] if think else text
    calls = [(name, {k: _literal(v) for k, v in _XML_PARAM.findall(body)}) for name, body in _XML_CALL.findall(rest)]
    content = _cut(_XML_CALL.sub("", rest), ("<|im_end|>",))
    return _message(content, think.group(1) if think else "", calls)


_GLM_CALL = re.compile(r"<tool_call>([^\n<]+)(.*?)</tool_call>", re.DOTALL)
_GLM_ARG = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.DOTALL)


def regex_glm(text: str) -> dict[str, Any]:
    think = _THINK.search(text)
    rest = text[think.end():] if think else text
    calls = [(name.strip(), {k: _literal(v) for k, v in _GLM_ARG.findall(body)}) for name, body in _GLM_CALL.findall(rest)]
    content = _cut(_GLM_CALL.sub("", rest), ("<|user|>", "<|observation|>", "<|endoftext|>"))
    return _message(content, think.group(1) if think else "", calls)


_HARMONY_ANALYSIS = re.compile(r"<\|channel\|>analysis<\|message\|>(.*?)<\|end\|>", re.DOTALL)
_HARMONY_CALL = re.compile(r"to=functions\.([^\s<]+)<\|channel\|>commentary json<\|message\|>(.*?)<\|call\|>", re.DOTALL)
_HARMONY_FINAL = re.compile(r"<\|channel\|>final<\|message\|>(.*?)(?:<\|return\|>|<\|end\|>|$)", re.DOTALL)


def regex_harmony(text: str) -> dict[str, Any]:
    analysis = _HARMONY_ANALYSIS.search(text)
    final = _HARMONY_FINAL.search(text)
    calls = [(name, json.loads(body)) for name, body in _HARMONY_CALL.findall(text)]
    return _message(final.group(1) if final else "", analysis.group(1) if analysis else "", calls)


_GEMMA_THOUGHT = re.compile(r"<\|channel>thought(.*?)<channel\|>", re.DOTALL)
_GEMMA_CALL = re.compile(r"<\|tool_call>call:([\w.-]+)(\{.*?\})<tool_call\|>", re.DOTALL)
_GEMMA_KEY = re.compile(r"([{,]\s*)([A-Za-z_]\w*)(\s*:)")


def _gemma_json(text: str) -> Any:
    pieces = text.split('<|"|>')
    return json.loads("".join(json.dumps(p) if i % 2 else _GEMMA_KEY.sub(r'\1"\2"\3', p) for i, p in enumerate(pieces)))


def regex_gemma4(text: str) -> dict[str, Any]:
    thought = _GEMMA_THOUGHT.search(text)
    rest = text[thought.end():] if thought else text
    calls = [(name, _gemma_json(args)) for name, args in _GEMMA_CALL.findall(rest)]
    content = _cut(_GEMMA_CALL.sub("", rest), ("<turn|>", "<|tool_response>", "<eos>"))
    return _message(content, thought.group(1) if thought else "", calls)


def _message(content: str, reasoning: str, calls: list[tuple[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content.strip()}
    if reasoning.strip():
        message["reasoning_content"] = reasoning.strip()
    if calls:
        message["tool_calls"] = [{"type": "function", "function": {"name": n, "arguments": a}} for n, a in calls]
    return message


# --------------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class Format:
    name: str
    corpus: str  # file under corpus/public, without .json
    stops: tuple[str, ...]  # the response is cut after the first of these (generation ends there)
    regex: Callable[[str], dict[str, Any]]
    transformers: str | None  # model_type keying transformers' fallback response template
    one_call_per_message: bool = False


FORMATS = (
    Format("qwen3", "trl__qwen3", ("<|im_end|>",), regex_qwen3, "qwen3"),
    Format("qwen3.5", "trl__qwen3_5_think", ("<|im_end|>",), regex_qwen3_5, "qwen3_5"),
    Format("glm4.5", "trl__glm4moe", ("<|user|>", "<|observation|>"), regex_glm, None),
    Format("gpt-oss", "trl__gptoss", ("<|return|>",), regex_harmony, None, one_call_per_message=True),
    Format("gemma4", "trl__gemma4", ("<turn|>", "<|tool_response>"), regex_gemma4, "gemma4"),
)


def _after(prefix: str, full: str) -> str:
    common = len(os.path.commonprefix([prefix, full]))
    assert common == len(prefix), "the full turn does not continue the prompt"
    return full[common:]


def build(template: chatplate.ChatTemplate, fmt: Format, reasoning: str, content: str) -> tuple[str, str]:
    """(prompt, response) rendered by the template."""
    prompt = template.render([USER], add_generation_prompt=True, tools=TOOLS)
    if fmt.one_call_per_message:
        # Harmony: one call per message, reasoning before the first; the final answer after.
        calls = [{"role": "assistant", "thinking": reasoning, "tool_calls": CALLS[:1]}]
        calls += [{"role": "assistant", "tool_calls": [c]} for c in CALLS[1:]]
        response = _after(prompt, template.render([USER, *calls], tools=TOOLS))
        head = template.render([USER], tools=TOOLS)
        response += _after(head, template.render([USER, {"role": "assistant", "content": content}], tools=TOOLS))
    else:
        turn = {"role": "assistant", "reasoning_content": reasoning, "thinking": reasoning, "content": content,
                "tool_calls": CALLS}
        response = _after(prompt, template.render([USER, turn], tools=TOOLS))
    ends = [response.find(s) + len(s) for s in fmt.stops if s in response]
    return prompt, response[:min(ends)] if ends else response


def build_size(template: chatplate.ChatTemplate, fmt: Format, total: int, seed: int) -> tuple[str, str]:
    """A response of about ``total`` characters: markers and calls, then reasoning:content 1:2."""
    _, bare = build(template, fmt, "r", "c")
    text = max(total - len(bare), 60)
    return build(template, fmt, lorem(text // 3, seed), lorem(text - text // 3, seed + 1))


# ------------------------------------------------------------------------------- comparing


def normal(message: dict[str, Any]) -> tuple[Any, ...]:
    """What must agree: content, reasoning, calls (name, arguments)."""
    calls = []
    for call in message.get("tool_calls") or ():
        function = call.get("function", call)
        arguments = function.get("arguments")
        calls.append((function.get("name"), json.loads(arguments) if isinstance(arguments, str) else arguments))
    return (message.get("content") or "", message.get("reasoning_content") or "", calls)


def best(repeats: int, runs: dict[str, Callable[[], Any]], round_seconds: float = 0.02) -> dict[str, float]:
    """Best seconds per call of each run over ``repeats`` interleaved rounds; a round repeats a
    short call until it lasts about ``round_seconds`` (one call alone is too short to time on a
    busy machine)."""
    loops = {}
    for name, fn in runs.items():
        start = time.perf_counter()
        fn()
        loops[name] = max(1, int(round_seconds / max(time.perf_counter() - start, 1e-9)))
    out = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            count = range(loops[name])
            gc.collect()
            start = time.perf_counter()
            for _ in count:
                fn()
            out[name] = min(out[name], (time.perf_counter() - start) / loops[name])
    return out


@dataclass
class Case:
    fmt: Format
    template: chatplate.ChatTemplate
    hf_template: dict[str, Any] | None
    prompt: str
    response: str
    chunks: list[str]
    expected: tuple[Any, ...]
    hf_ok: bool

    # Whole-response parsers.
    def cp(self) -> dict[str, Any]:
        return self.template.parse_response(self.response, prefix=self.prompt, tools=TOOLS)

    def rx(self) -> dict[str, Any]:
        return self.fmt.regex(self.response)

    def hf(self) -> dict[str, Any]:
        from transformers.utils.chat_parsing import parse_response

        return parse_response(self.response, self.hf_template, prefix=self.prompt, tools=TOOLS)

    # Making a streaming parser (prefix and tools taken in); counted apart from the chunks.
    def cp_setup(self) -> Any:
        return self.template.response_parser(prefix=self.prompt, tools=TOOLS)

    def hf_setup(self) -> Any:
        from transformers.utils.chat_parsing import ResponseParser

        return ResponseParser(self.hf_template, prefix=self.prompt, tools=TOOLS)

    # Streaming parsers.
    def cp_stream(self) -> dict[str, Any]:
        parser = self.template.response_parser(prefix=self.prompt, tools=TOOLS)
        feed = parser.feed
        for chunk in self.chunks:
            feed(chunk)
        return parser.finish()

    def hf_stream(self) -> dict[str, Any]:
        from transformers.utils.chat_parsing import ResponseParser

        parser = ResponseParser(self.hf_template, prefix=self.prompt, tools=TOOLS)
        feed = parser.feed
        for chunk in self.chunks:
            feed(chunk)
        return parser.finalize()[0]


def make_case(fmt: Format, template: chatplate.ChatTemplate, hf_templates: dict[str, Any],
              prompt: str, response: str) -> Case:
    hf_template = hf_templates.get(fmt.transformers) if fmt.transformers else None
    case = Case(fmt, template, hf_template, prompt, response, tokens(response), (), False)
    case.expected = normal(case.cp())
    if normal(case.cp_stream()) != case.expected:
        raise SystemExit(f"{fmt.name}: chatplate streamed and whole parses differ")
    if normal(case.rx()) != case.expected:
        raise SystemExit(f"{fmt.name}: the regular-expression baseline differs from chatplate:\n"
                         f"  {normal(case.rx())}\n  {case.expected}")
    if hf_template is not None:
        case.hf_ok = normal(case.hf()) == case.expected and normal(case.hf_stream()) == case.expected
    return case


def regex_reparse(case: Case, samples: int, repeats: int) -> float:
    """Mean seconds per chunk of re-running the regex on the accumulated text."""
    ends = []
    position = 0
    for chunk in case.chunks:
        position += len(chunk)
        ends.append(position)
    stride = max(1, math.ceil(len(ends) / samples))
    # Offset the sample by half a stride so it is centred in its stretch of the stream.
    prefixes = [case.response[:end] for end in ends[stride // 2::stride]]
    parse = case.fmt.regex

    def run() -> None:
        for text in prefixes:
            parse(text)

    return best(repeats, {"rx": run})["rx"] / len(prefixes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpus")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved rounds; the best counts")
    parser.add_argument("-k", "--format", action="append", help="only these formats (" +
                        ", ".join(f.name for f in FORMATS) + ")")
    parser.add_argument("--sizes", default="1,8,64", help="streaming response sizes, KB (default 1,8,64)")
    parser.add_argument("--whole-kb", type=float, default=6, help="whole-response size, KB: 1/3 reasoning, 2/3 content")
    parser.add_argument("--samples", type=int, default=400, help="accumulated prefixes timed for the regex re-parse")
    parser.add_argument("--quick", action="store_true", help="3 rounds, 150 regex samples")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.samples = 3, 150
    sizes = [float(s) for s in args.sizes.split(",")]
    warnings.filterwarnings("ignore")
    started = time.perf_counter()

    import transformers
    from transformers.cli.serving.utils import _RESPONSE_TEMPLATE_FALLBACKS

    hf_templates = {kind: spec for kinds, spec in _RESPONSE_TEMPLATE_FALLBACKS.items() for kind in kinds}
    formats = [f for f in FORMATS if not args.format or f.name in args.format]
    if not formats:
        print("no formats matched", file=sys.stderr)
        return 1

    templates, detected = {}, {}
    for fmt in formats:
        doc = json.loads((args.corpus / "public" / f"{fmt.corpus}.json").read_text(encoding="utf-8"))
        templates[fmt.name] = template = chatplate.ChatTemplate(
            doc["template"], bos_token=doc["bos_token"], eos_token=doc["eos_token"])
        detected[fmt.name] = template.response_format.name  # detection (probe renders): once, not timed
    # The heap holds torch and transformers: freeze it so the collections between rounds stay cheap.
    gc.collect()
    gc.freeze()

    # -------------------------------------------------------------------- whole response
    whole_chars = int(args.whole_kb * 1024)
    print(f"chatplate {chatplate.__version__}, transformers {transformers.__version__}, python "
          f"{sys.version.split()[0]}; tools given to every parser; every message checked equal to chatplate's")
    print("vs X: X's time over chatplate's (above 1: chatplate faster); tf: transformers")
    print()
    print(f"WHOLE RESPONSE (~{args.whole_kb:g} KB: reasoning {whole_chars // 3 / 1024:.1f} KB, content "
          f"{(whole_chars - whole_chars // 3) / 1024:.1f} KB, 2 tool calls), MB/s, best of {args.repeats}; "
          f"setup: making the streaming parser (prefix, tools), us")
    print(f"{'format':8s} {'detected':24s} {'bytes':>6s} {'chatplate':>9s} {'regex':>7s} {'transformers':>12s} "
          f"{'vs regex':>8s} {'vs tf':>6s} {'setup cp':>8s} {'tf':>6s}")
    notes: list[str] = []
    for fmt in formats:
        template = templates[fmt.name]
        reasoning, content = lorem(whole_chars // 3, 1), lorem(whole_chars - whole_chars // 3, 2)
        case = make_case(fmt, template, hf_templates, *build(template, fmt, reasoning, content))
        size = len(case.response.encode())
        runs = {"cp": case.cp, "rx": case.rx, "cp_setup": case.cp_setup}
        if case.hf_ok:
            runs.update(hf=case.hf, hf_setup=case.hf_setup)
        times = best(args.repeats, runs)
        hf = hf_ratio = hf_setup = ""
        if "hf" in times:
            hf, hf_ratio = f"{size / times['hf'] / 1e6:.1f}", f"{times['hf'] / times['cp']:.2f}x"
            hf_setup = f"{times['hf_setup'] * 1e6:.0f}"
        elif case.hf_template is not None:
            hf = "differs"
            notes.append(f"{fmt.name}: transformers' message differs: {normal(case.hf())}")
        print(f"{fmt.name:8s} {detected[fmt.name]:24s} {size:6d} {size / times['cp'] / 1e6:9.1f} "
              f"{size / times['rx'] / 1e6:7.1f} {hf or '-':>12s} {times['rx'] / times['cp']:7.2f}x {hf_ratio:>6s} "
              f"{times['cp_setup'] * 1e6:8.0f} {hf_setup or '-':>6s}")

    # ------------------------------------------------------------------------ streaming
    print()
    print(f"STREAMING, token-sized chunks, us per chunk (feed, finish; setup apart), best of {args.repeats}; "
          f"MB/s: the whole stream, setup included; regex: re-run on the accumulated text after each chunk")
    print(f"{'format':8s} {'size':>6s} {'chunks':>6s} {'chars':>5s} {'chatplate':>9s} {'MB/s':>5s} "
          f"{'regex':>8s} {'transformers':>12s} {'vs regex':>8s} {'vs tf':>6s}")
    growth: dict[str, list[tuple[str, float]]] = {"chatplate": [], "regex": [], "transformers": []}
    for fmt in formats:
        template = templates[fmt.name]
        per_chunk: dict[str, list[float]] = {"chatplate": [], "regex": [], "transformers": []}
        for number, kb in enumerate(sizes):
            case = make_case(fmt, template, hf_templates, *build_size(template, fmt, int(kb * 1024), seed=10 + number))
            n = len(case.chunks)
            size = len(case.response.encode())
            runs = {"cp": case.cp_stream, "cp_setup": case.cp_setup}
            if case.hf_ok:
                runs.update(hf=case.hf_stream, hf_setup=case.hf_setup)
            times = best(args.repeats, runs)
            cp = max(times["cp"] - times["cp_setup"], 0.0) / n
            rx = regex_reparse(case, args.samples, args.repeats)
            per_chunk["chatplate"].append(cp)
            per_chunk["regex"].append(rx)
            hf_text = hf_ratio = ""
            if "hf" in times:
                hf = max(times["hf"] - times["hf_setup"], 0.0) / n
                per_chunk["transformers"].append(hf)
                hf_text, hf_ratio = f"{hf * 1e6:.2f}", f"{hf / cp:.2f}x"
            elif case.hf_template is not None:
                hf_text = "differs"
            print(f"{fmt.name if number == 0 else '':8s} {kb:4g}KB {n:6d} {len(case.response) / n:5.1f} {cp * 1e6:9.2f} "
                  f"{size / times['cp'] / 1e6:5.1f} {rx * 1e6:8.2f} {hf_text or '-':>12s} {rx / cp:7.1f}x {hf_ratio:>6s}")
        for name, values in per_chunk.items():
            if len(values) == len(sizes) and len(sizes) > 1:
                growth[name].append((fmt.name, values[-1] / values[0]))
    if len(sizes) > 1:
        print()
        print(f"per-chunk cost at {sizes[-1]:g} KB over {sizes[0]:g} KB (1.00x = flat):")
        for name, values in growth.items():
            if values:
                print(f"  {name:13s} " + "  ".join(f"{label} {v:.2f}x" for label, v in values))
    for note in notes:
        print(note)
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
