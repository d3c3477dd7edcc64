"""A battery of hostile templates and inputs: each must end quickly in a typed error.

Each case is plain data (a template and what to render it with), so the unit tests and
``benchmarks/hostile.py`` (time and memory to the error, each in a fresh process) share it.
``limit`` is the ``TemplateResourceError.limit`` the case must hit, or the error class name for
bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

USER = [{"role": "user", "content": "hi"}]


@dataclass(frozen=True)
class Hostile:
    name: str
    kind: str  # compile | growth | work | nesting | size | input | backstop
    template: str
    limit: str | tuple[str, ...]
    messages: Any = field(default_factory=lambda: USER)
    variables: dict[str, Any] = field(default_factory=dict)

    @property
    def limits(self) -> tuple[str, ...]:
        return self.limit if isinstance(self.limit, tuple) else (self.limit,)


def _nested_ifs(depth: int) -> str:
    return "{% if messages %}" * depth + "x" + "{% endif %}" * depth


def deep_data(depth: int) -> dict[str, Any]:
    """``{"child": {"child": ...}}``, ``depth`` levels deep."""
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node["child"] = {}
        node = node["child"]
    return root


def _cycle() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


CASES: list[Hostile] = [
    # -- compile time: jinja2 folds constants while compiling unless the operator is intercepted
    # (jinja2's ** is left-associative: 10 ** 10 ** 7 is (10 ** 10) ** 7, a small number)
    Hostile("fold-power", "compile", "{{ 10 ** (10 ** 7) }}", "int_digits"),
    Hostile("fold-repeat", "compile", "{{ 'a' * 10 ** 10 }}", "max_output_chars"),
    Hostile("fold-repeat-literal", "compile", "{{ 'a' * 9999999999 }}", "max_output_chars"),
    Hostile("fold-filter-center", "compile", "{{ 'a' | center(9999999999) }}", "max_output_chars"),
    Hostile("fold-printf-width", "compile", "{{ '%09999999999d' % 1 }}", "max_output_chars"),
    Hostile("fold-concat", "compile", "{{ 'x' ~ 'y' * 9999999999 }}", "max_output_chars"),
    # -- growth at run time
    Hostile("power-from-data", "growth", "{{ (messages | length + 9) ** 99999999 }}", "int_digits"),
    Hostile("int-product-loop", "growth",
            "{% set ns = namespace(n=3) %}{% for i in range(64) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n > 0 }}",
            "int_digits"),
    Hostile("string-repeat", "growth", "{{ messages[0].content * 10 ** 10 }}", "max_output_chars"),
    Hostile("list-repeat", "growth", "{{ ([messages] * 10 ** 9) | length }}", "max_output_chars"),
    Hostile("printf-width", "growth", "{{ '%0*d' % (10 ** 10, 1) }}", "max_output_chars"),
    Hostile("format-filter-width", "growth", "{{ '%-9999999999s' | format(messages[0].role) }}", "max_output_chars"),
    Hostile("str-format-width", "growth", "{{ '{:>9999999999}'.format(messages[0].role) }}", "max_output_chars"),
    Hostile("str-format-nested-width", "growth", "{{ '{:>{}}'.format('x', 10 ** 10) }}", "max_output_chars"),
    Hostile("center", "growth", "{{ messages[0].content | center(10 ** 10) }}", "max_output_chars"),
    Hostile("indent", "growth", "{{ ((messages[0].content ~ '\n') * 100000) | indent(100000) }}", "max_output_chars"),
    Hostile("indent-width", "growth", "{{ messages[0].content | indent(10 ** 10, true) }}", "max_output_chars"),
    Hostile("wordwrap", "growth", "{{ ('ab ' * 1000000) | wordwrap(1, wrapstring='-' * 1000) }}", ("max_output_chars", "max_work")),
    Hostile("ljust", "growth", "{{ messages[0].content.ljust(10 ** 10) }}", "max_output_chars"),
    Hostile("zfill", "growth", "{{ messages[0].content.zfill(10 ** 10) }}", "max_output_chars"),
    Hostile("expandtabs", "growth", "{{ ('\t' * 1000000).expandtabs(100000) }}", "max_output_chars"),
    Hostile("replace-growth", "growth", "{{ ('a' * 1000000) | replace('a', 'b' * 100000) }}", "max_output_chars"),
    Hostile("replace-empty", "growth", "{{ ('a' * 1000000).replace('', 'x' * 1000) }}", "max_output_chars"),
    Hostile("concat-doubling", "growth",
            "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            "max_output_chars"),
    Hostile("plus-doubling", "growth",
            "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
            "max_output_chars"),
    Hostile("plus-doubling-unrolled", "growth", "{% set s = 'ab' %}" + "{% set s = s + s %}" * 64 + "{{ s }}", "max_output_chars"),
    Hostile("list-doubling", "growth",
            "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}",
            ("max_output_chars", "max_work")),
    Hostile("shared-list-printed", "growth",
            "{% set ns = namespace(l=['x']) %}{% for i in range(64) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
            "max_output_chars"),
    Hostile("shared-list-json", "growth",
            "{% set ns = namespace(l=['x']) %}{% for i in range(64) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l | tojson }}",
            "max_output_chars"),
    Hostile("shared-string-join", "growth", "{{ ([messages[0].content * 100000] * 100000) | join }}", "max_output_chars"),
    Hostile("shared-string-json", "growth", "{{ ([messages[0].content * 1000000] * 100000) | tojson }}", "max_output_chars"),
    Hostile("fromkeys", "growth", "{{ dict.fromkeys(range(100000), 'x' * 1000000) | tojson }}", "max_output_chars"),
    Hostile("tojson-indent", "growth", "{{ messages | tojson(indent=10 ** 9) }}", "max_output_chars"),
    Hostile("tojson-indent-deep", "growth",
            "{% set ns = namespace(x=[0] * 1000000) %}{% for i in range(90) %}{% set ns.x = [ns.x] %}{% endfor %}"
            "{{ ns.x | tojson(indent=16) | length }}", ("max_output_chars", "max_work")),
    Hostile("tojson-ascii", "growth", "{{ ([messages[0].content * 1000] * 1000) | tojson(ensure_ascii=true) }}",
            "max_output_chars", messages=[{"role": "user", "content": "🙂"}]),
    Hostile("sum-of-lists", "growth", "{{ ([[1] * 1000] * 100000) | sum(start=[]) | length }}", ("max_output_chars", "max_work")),
    Hostile("batch-fill", "growth", "{{ messages | batch(10 ** 10, 'x') | list }}", "max_output_chars"),
    Hostile("slice-fill", "growth", "{{ messages | slice(10 ** 9) | list }}", "max_output_chars"),
    Hostile("lipsum-paragraphs", "growth", "{{ lipsum(10 ** 9) }}", "max_output_chars"),
    Hostile("lipsum-words", "growth", "{{ lipsum(1, false, 10 ** 8, 10 ** 9) }}", "max_output_chars"),
    Hostile("map-center", "growth", "{{ range(100000) | map('center', 10 ** 7) | list | length }}", ("max_work", "max_output_chars")),
    # -- work: loops and calls whose product, not each, is the problem
    Hostile("nested-ranges", "work",
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "max_work"),
    Hostile("nested-ranges-output", "work",
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}",
            ("max_work", "max_output_chars")),
    Hostile("lazy-nested", "work",
            "{% for i in range(100000) | map('string') %}{% for j in range(100000) | select %}{% endfor %}{% endfor %}",
            "max_work"),
    Hostile("exponential-macro", "work",
            "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}", "max_work"),
    Hostile("infinite-macro", "nesting", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "max_depth"),
    Hostile("caller-recursion", "nesting",
            "{% macro f() %}{{ caller() }}{% endmacro %}{% macro g() %}{% call f() %}{{ g() }}{% endcall %}{% endmacro %}"
            "{{ g() }}", "max_depth"),
    Hostile("recursive-loop", "nesting", "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}", "max_depth"),
    Hostile("recursive-loop-wide", "work",
            "{% for m in range(30) recursive %}{{ loop(range(30)) if loop.depth < 8 }}{% endfor %}", "max_work"),
    Hostile("self-block", "nesting", "{% block a %}{{ self.a() }}{% endblock %}", "max_depth"),
    Hostile("deep-data-json", "nesting",
            "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x | tojson }}",
            "max_depth"),
    Hostile("deep-data-repr", "nesting",
            "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = ns.x + [ns.x] %}{% endfor %}{{ ns.x }}",
            ("max_depth", "max_output_chars")),
    Hostile("deep-if-chain", "nesting", _nested_ifs(5000), "nesting"),
    Hostile("deep-for-chain", "nesting", "{% for a in messages %}" * 200 + "{% endfor %}" * 200, "nesting"),
    Hostile("deep-parentheses", "nesting", "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "nesting"),
    # Work the budget does not count (comparing long strings): the clock stops it.
    Hostile("uncounted-compares", "backstop",
            "{% set a = 'x' * 4000000 %}{% set b = 'x' * 4000000 %}{% for i in range(100000) %}{% for j in range(100000) %}"
            "{% if a == b %}{% endif %}{% endfor %}{% endfor %}",
            ("max_work", "max_seconds")),
    # -- size of what is written
    Hostile("output-loop", "size", "{% for i in range(100000) %}{{ messages[0].content }}{% endfor %}", "max_output_chars",
            messages=[{"role": "user", "content": "x" * 1000}]),
    Hostile("output-constant", "size", "{% for i in range(100000) %}" + "x" * 1000 + "{% endfor %}", "max_output_chars"),
    Hostile("output-in-macro", "size",
            "{% macro m() %}{% for i in range(100000) %}" + "y" * 1000 + "{% endfor %}{% endmacro %}{{ m() }}", "max_output_chars"),
    Hostile("output-in-macro-fresh-pieces", "size",
            "{% macro m() %}{% for i in range(1000) %}{% for j in range(1000) %}{{ i ~ '-' ~ j ~ '-' * 40 }}"
            "{% endfor %}{% endfor %}{% endmacro %}{{ m() }}", ("max_output_chars", "max_work")),
    Hostile("output-set-block", "size",
            "{% set s %}{% for i in range(100000) %}" + "z" * 1000 + "{% endfor %}{% endset %}{{ s | length }}", "max_output_chars"),
    # -- input: what the caller passes
    Hostile("input-chars", "input", "{{ messages | length }}", "max_input_chars",
            messages=[{"role": "user", "content": "x" * 20_000_000}]),
    Hostile("input-messages", "input", "{{ messages | length }}", "max_messages", messages=USER * 200_001),
    Hostile("input-deep", "input", "{{ messages | length }}", "ConversationError",
            messages=[{"role": "user", "content": "x", "meta": deep_data(100_000)}]),
    Hostile("input-cycle", "input", "{{ messages | length }}", "ConversationError",
            messages=[{"role": "user", "content": "x", "meta": _cycle()}]),
    Hostile("input-shared", "input", "{{ messages | length }}", "max_input_chars",
            messages=[{"role": "user", "content": "x", "meta": [[["x" * 1000] * 1000] * 1000] * 1000}]),
    Hostile("input-bytes", "input", "{{ messages[0].content }}", "ConversationError",
            messages=[{"role": "user", "content": b"\x89PNG"}]),
    Hostile("input-object", "input", "{{ messages[0].content }}", "ConversationError",
            messages=[{"role": "user", "content": object()}]),
    Hostile("input-surrogate", "input", "{{ messages[0].content }}", "ConversationError",
            messages=[{"role": "user", "content": "bad \udcff byte"}]),
    Hostile("input-no-role", "input", "{{ messages[0].content }}", "ConversationError", messages=[{"content": "x"}]),
    Hostile("input-role-type", "input", "{{ messages[0].content }}", "ConversationError",
            messages=[{"role": ["user"], "content": "x"}]),
]


def run(case: Hostile, limits: Any = None) -> dict[str, Any]:
    """Compile and render one case; what happened, and how long it took."""
    import time

    import chatplate

    start = time.perf_counter()
    result: dict[str, Any] = {"name": case.name}
    try:
        template = chatplate.ChatTemplate(case.template, limits=limits)
        result["compiled_in"] = time.perf_counter() - start
        template.render(case.messages, **case.variables)
        result["outcome"] = "rendered"
    except chatplate.TemplateResourceError as exc:
        result.update(outcome="TemplateResourceError", limit=exc.limit, message=str(exc))
    except chatplate.ChatplateError as exc:
        result.update(outcome=type(exc).__name__, limit=type(exc).__name__, message=str(exc))
    except BaseException as exc:  # noqa: BLE001 - anything untyped is the failure being looked for
        result.update(outcome="untyped", limit=type(exc).__name__, message=str(exc)[:300])
    result["seconds"] = time.perf_counter() - start
    return result


def main(argv: list[str]) -> None:
    """``python -m tests.hostile [--max-seconds S] [NAME...]``: run cases with the default limits,
    one JSON line each; ``--max-seconds`` lowers the clock for the backstop cases only."""
    import json

    import chatplate

    backstop = None
    if argv[:1] == ["--max-seconds"]:
        backstop = chatplate.Limits(max_seconds=float(argv[1]))
        argv = argv[2:]
    for case in CASES:
        if not argv or case.name in argv:
            print(json.dumps(run(case, backstop if case.kind == "backstop" else None)), flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
