"""Bounded rendering: hostile templates and inputs end in typed errors; real ones are untouched."""

from __future__ import annotations

import json
import pickle
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import chatplate
from chatplate import ChatTemplate, Limits, TemplateResourceError
from tests.hostile import CASES, Hostile

ROOT = Path(__file__).resolve().parents[2]
USER = [{"role": "user", "content": "hi"}]


def _cap_memory() -> None:
    # A guard that stopped working must fail this test, not take the machine down.
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict[str, Any]]:
    """Every hostile case, run in one capped child process (the clock lowered to 1 s where it is
    the bound that must stop the case)."""
    run = subprocess.run(
        [sys.executable, "-m", "tests.hostile", "--max-seconds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, preexec_fn=_cap_memory, check=False,
    )
    results = {}
    for line in run.stdout.splitlines():
        result = json.loads(line)
        results[result["name"]] = result
    assert results, f"the hostile battery printed nothing; stderr:\n{run.stderr[-3000:]}"
    return results


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_case_ends_in_a_typed_error(case: Hostile, outcomes: dict[str, dict[str, Any]]) -> None:
    result = outcomes.get(case.name)
    assert result is not None, "the child process died before this case (see the fixture's stderr)"
    assert result["outcome"] != "untyped", result
    assert result["outcome"] != "rendered", result
    assert result["limit"] in case.limits, result


def test_compile_time_constants_are_not_folded() -> None:
    # jinja2 would compute these inside ChatTemplate(...); now they wait for a render and its limits.
    for source in ("{{ 10 ** (10 ** 7) }}", "{{ 'a' * 10 ** 10 }}", "{{ 'a' | center(9999999999) }}"):
        template = ChatTemplate(source)
        with pytest.raises(TemplateResourceError):
            template.render(USER)


def test_jinja_power_is_left_associative_and_renders_as_jinja2_does() -> None:
    assert ChatTemplate("{{ 10 ** 10 ** 7 }}").render(USER) == str((10**10) ** 7)


def test_error_names_limit_value_and_how_to_raise_it() -> None:
    template = ChatTemplate("line one\n{% for i in range(10) %}{% for j in range(10) %}{% endfor %}{% endfor %}",
                            limits=Limits(max_work=50))
    with pytest.raises(TemplateResourceError) as info:
        template.render(USER)
    error = info.value
    assert (error.limit, error.maximum) == ("max_work", 50)
    assert error.value > 50
    assert error.lineno == 2
    assert "max_work=50" in str(error) and "Limits(max_work=" in str(error)
    assert isinstance(error, chatplate.TemplateError)
    clone = pickle.loads(pickle.dumps(error))
    assert (type(clone), clone.limit, clone.value, str(clone)) == (TemplateResourceError, "max_work", error.value, str(error))


def test_limits_per_template_and_per_call() -> None:
    source = "{% for i in range(100) %}x{% endfor %}"
    strict = ChatTemplate(source, limits=Limits(max_work=10))
    with pytest.raises(TemplateResourceError, match="max_work"):
        strict.render(USER)
    assert strict.render(USER, limits=Limits()) == "x" * 100
    relaxed = ChatTemplate(source)
    assert relaxed.render(USER) == "x" * 100
    with pytest.raises(TemplateResourceError, match="max_work"):
        relaxed.render(USER, limits=Limits(max_work=10))
    # Limits travel with the template to worker processes.
    assert pickle.loads(pickle.dumps(strict)).limits == Limits(max_work=10)


def test_output_limit_is_exact() -> None:
    template = ChatTemplate("{% for i in range(10) %}{{ messages[0].content }}{% endfor %}",
                            limits=Limits(max_output_chars=20))
    assert template.render(USER) == "hi" * 10
    with pytest.raises(TemplateResourceError) as info:
        template.render([{"role": "user", "content": "hi!"}])
    assert (info.value.limit, info.value.value) == ("max_output_chars", 30)


def test_spans_render_has_the_same_output_limit() -> None:
    template = ChatTemplate("{% for i in range(1000) %}{% generation %}{{ 'x' * 100 }}{% endgeneration %}{% endfor %}",
                            limits=Limits(max_output_chars=10_000))
    with pytest.raises(TemplateResourceError, match="max_output_chars"):
        template.render_spans(USER)


def test_depth_limit_counts_macro_nesting() -> None:
    source = "{% macro f(n) %}{% if n %}({{ f(n - 1) }}){% endif %}{% endmacro %}{{ f(depth) }}"
    template = ChatTemplate(source, limits=Limits(max_depth=10))
    assert template.render(USER, depth=9) == "(" * 9 + ")" * 9
    with pytest.raises(TemplateResourceError) as info:
        template.render(USER, depth=10)
    assert info.value.limit == "max_depth"


def test_unbounded_limits_turn_every_bound_off() -> None:
    template = ChatTemplate("{{ 'a' * n }}", limits=Limits.unbounded())
    assert len(template.render(USER, n=9_000_000)) == 9_000_000
    with pytest.raises(TemplateResourceError):
        ChatTemplate("{{ 'a' * n }}").render(USER, n=9_000_000)


@pytest.mark.parametrize(
    "bad", [{"max_work": 0}, {"max_work": -1}, {"max_depth": 1.5}, {"max_output_chars": True}, {"max_seconds": "1"}]
)
def test_bad_limits_are_input_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(chatplate.InputError, match=next(iter(bad))):
        Limits(**bad)


def test_limits_replace_and_unknown_names() -> None:
    assert Limits().replace(max_work=5).max_work == 5
    with pytest.raises(chatplate.InputError, match="max_work"):
        Limits().replace(max_wrok=5)
    with pytest.raises(chatplate.InputError, match="chatplate.Limits"):
        ChatTemplate("x", limits={"max_work": 5})  # type: ignore[arg-type]


# Operations the guards wrap, with ordinary sizes: the guarded environment must compute exactly
# what jinja2's own sandbox computes with jinja2's own filters.
SAME_AS_JINJA = [
    "{{ 'ab' * 3 }}{{ 3 * 'ab' }}{{ [1] * 2 }}{{ (1, 2) * 2 }}{{ 2 * 3 }}{{ 2.5 * 2 }}{{ true * 'x' }}{{ 'x' * -1 }}",
    "{{ 2 ** 10 }}{{ 2 ** -1 }}{{ 2.0 ** 0.5 }}{{ (-2) ** 3 }}{{ 10 ** 10 ** 2 }}",
    "{{ '%5.2f|%-4s|%03d' % (3.14159, 'a', 7) }}{{ '%(a)s' % {'a': 1} }}{{ '%s' % [1, 'x'] }}{{ 7 % 3 }}",
    "{{ 'a' ~ 1 ~ none ~ [1] ~ {'k': 'v'} }}{{ 1 + 2 }}{{ 'a' + 'b' }}{{ [1] + [2] }}{{ (1,) + (2,) }}{{ 1.5 + 1 }}",
    "{{ 'x' | center(9) }}{{ 'a\nb\n\nc' | indent(2) }}{{ 'a\nb' | indent('> ', true, true) }}",
    "{{ 'the quick brown fox' | wordwrap(7) }}{{ 'aaa' | replace('a', 'bb', 2) }}{{ 'aXa' | replace('X', '') }}",
    "{{ '%s-%s' | format('a', 1) }}{{ [1, 2, 3] | batch(2, 0) | list }}{{ [1, 2, 3] | slice(2, 'f') | list }}",
    "{{ [[1], [2]] | sum(start=[]) }}{{ [1, 2] | sum }}{{ [m, m] | join(', ', attribute='role') }}{{ [1, 'a'] | join('|') }}",
    "{{ m | tojson }}{{ [m] | tojson(indent=2) }}{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}{{ 'é' | tojson }}",
    "{{ 'é🙂' | tojson(ensure_ascii=true) }}{{ [m, {'x': [1, 2.5, none, true]}] | tojson(indent='\t', separators=(',', ': ')) }}"
    "{{ m | tojson(indent=0) }}{{ 'x' | tojson(indent=2) }}",
    "{{ '{:>5}|{:.2f}|{name}'.format('x', 3.14159, name='n') }}{{ '{0[role]}'.format(m) }}{{ 'a{}'.format([1]) }}",
    "{{ 'a\tb'.expandtabs(4) }}{{ 'x'.ljust(3, '.') }}{{ 'x'.rjust(3) }}{{ 'x'.center(4, '*') }}{{ '7'.zfill(3) }}",
    "{{ '-'.join(['a', 'b']) }}{{ 'abc'.replace('b', 'BB') }}{{ 'abc'.translate({98: 'XY'}) }}",
    "{{ dict.fromkeys(['a', 'b'], 1) }}{{ dict(a=[1], b=m) }}{{ [m, m] | list }}{{ m.items() | list | sort }}",
    "{% for c in 'abc' %}{{ loop.index }}{{ c }}{{ loop.length }}{{ loop.last }}{% endfor %}",
    "{% for x in range(100) %}{{ x if loop.revindex < 3 }}{% endfor %}{% for k, v in m | dictsort %}{{ k }}={{ v }}{% endfor %}",
    "{% for x in [1, 2, 3] | select('odd') %}{{ x }}{{ loop.length }}{% else %}none{% endfor %}{% for x in [] %}{% else %}E{% endfor %}",
    "{% for x in [[1, [2]], [3]] recursive %}[{% if x is iterable %}{{ loop(x) }}{% else %}{{ x }}{% endif %}]{% endfor %}",
    "{% macro f(n) %}{% if n %}({{ f(n - 1) }}){% endif %}{% endmacro %}{{ f(5) }}",
    "{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}in{% endcall %}{% set s %}x{{ m.role }}y{% endset %}{{ s }}",
    "{% filter upper %}abc{{ m.content }}{% endfilter %}{% set ns = namespace(s='') %}{% for i in range(3) %}"
    "{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.s }}{{ ns }}",
    "{% autoescape true %}{{ '<b>' ~ m.content }}{{ '<i>' }}{% endautoescape %}{{ ['<a>'] | join }}{{ '<x>' | e }}",
    "{{ m }}{{ [m, [1, (2, 3)]] }}{{ [m] | string }}{{ [m] | pprint }}{{ m.content[0] }}{{ m['role'] }}{{ m.items }}",
]


@pytest.mark.parametrize("source", SAME_AS_JINJA)
def test_guarded_operations_compute_what_jinja2_computes(source: str) -> None:
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from chatplate.engine.environment import ENVIRONMENT, GenerationExtension

    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                          extensions=[GenerationExtension, jinja2.ext.loopcontrols])
    plain.filters["tojson"] = lambda value, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    plain.globals["dict"] = dict
    from chatplate.engine import Budget, render

    data = {"m": {"role": "user", "content": "hi"}}
    ours = render(ENVIRONMENT.from_string(source), dict(data), Budget(Limits()))  # with a budget running
    assert ours == plain.from_string(source).render(data)
