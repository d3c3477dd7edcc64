"""Hostile templates and inputs: time and memory to the typed error, each case in a fresh process.

    python benchmarks/hostile.py [-k GLOB] [--reference]

Runs every case of ``tests/hostile.py`` (compile-time folding, growth, work, nesting, output and
input size) with the default ``chatplate.Limits`` in its own Python process, and prints the
error it ended in, the seconds from ``ChatTemplate(...)`` to the error, and how much the
process's peak resident memory grew over what it held before the case started. The target:
every case within 2 s and 256 MiB.

``--reference`` runs the same cases through transformers' renderer instead (each capped at 20 s
and 4 GiB of address space), to show what an unbounded renderer does with them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile import CASES  # noqa: E402

# Runs in the child: memory before, the case, peak memory after.
CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
import chatplate
from tests.hostile import CASES, run
case = next(c for c in CASES if c.name == {name!r})
def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024
before = rss_kib()
if {reference!r}:
    from transformers.utils.chat_template_utils import render_jinja_template
    start = time.perf_counter()
    try:
        render_jinja_template(conversations=[case.messages], chat_template=case.template, **case.variables)
        result = {{"outcome": "rendered"}}
    except BaseException as exc:
        result = {{"outcome": type(exc).__name__, "limit": type(exc).__name__, "message": str(exc)[:200]}}
    result["seconds"] = time.perf_counter() - start
else:
    result = run(case)
result["grew_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(result))
"""


def measure(name: str, reference: bool) -> dict:
    code = CHILD.format(root=str(ROOT), name=name, reference=reference)
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60 if not reference else 20)
    except subprocess.TimeoutExpired:
        return {"outcome": "still running (killed)", "seconds": float("nan"), "grew_mib": float("nan")}
    if done.returncode != 0 or not done.stdout.strip():
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"outcome": f"process died: {last[:60]}", "seconds": float("nan"), "grew_mib": float("nan")}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", "--filter", action="append", help="only cases matching GLOB")
    parser.add_argument("--reference", action="store_true", help="run transformers' renderer instead")
    args = parser.parse_args(argv)

    cases = [c for c in CASES if not args.filter or any(fnmatch.fnmatchcase(c.name, g) for g in args.filter)]
    print(f"{'case':28s} {'kind':9s} {'ended in':36s} {'seconds':>8s} {'memory':>10s}")
    worst_time = worst_memory = 0.0
    failures = 0
    for case in cases:
        result = measure(case.name, args.reference)
        ended = result["outcome"] if result["outcome"] != "TemplateResourceError" else f"TemplateResourceError({result['limit']})"
        seconds, grew = result["seconds"], result["grew_mib"]
        print(f"{case.name:28s} {case.kind:9s} {ended:36s} {seconds:8.3f} {grew:7.1f} MiB")
        if not args.reference:
            expected = result.get("limit") in case.limits
            # The clock is the bound that stops a backstop case: its time is the clock's setting.
            fast = seconds <= 2.0 or case.kind == "backstop"
            failures += not (expected and fast and grew < 256)
            worst_time = max(worst_time, seconds if case.kind != "backstop" else 0.0)
            worst_memory = max(worst_memory, grew)
    if not args.reference:
        print(f"\ncases: {len(cases)}; slowest (clock backstop aside): {worst_time:.3f} s; most memory: {worst_memory:.1f} MiB; "
              f"outside 2 s / 256 MiB or the wrong error: {failures}")
    return 0 if args.reference or failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
