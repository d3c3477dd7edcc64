"""The engine's sandbox fast paths decide exactly what jinja2's own sandbox decides."""

from __future__ import annotations

import jinja2
import jinja2.ext
import pytest
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from chatplate.engine.environment import ENVIRONMENT, GenerationExtension



class _StrictStock(ImmutableSandboxedEnvironment):
    """jinja2's stock sandbox, except that an attribute it refuses raises at once, as
    chatplate's does (a deliberate departure: jinja2 returns an undefined that prints as nothing)."""

    def unsafe_undefined(self, obj: object, attribute: str) -> object:
        raise SecurityError(f"refused {attribute!r}")


# The stock sandbox with the same options, globals and filters: our reference for safety decisions.
STOCK = _StrictStock(
    trim_blocks=True, lstrip_blocks=True, extensions=[GenerationExtension, jinja2.ext.loopcontrols]
)
STOCK.filters.update(ENVIRONMENT.filters)
STOCK.globals.update({k: v for k, v in ENVIRONMENT.globals.items() if k != "range"})

EXPRESSIONS = [
    "{{ m.content }}",
    "{{ m['content'] }}",
    "{{ m.missing is defined }}",
    "{{ m['missing'] is defined }}",
    "{{ m.items }}",
    "{{ m.items() | list }}",
    "{{ m.get('content') }}",
    "{{ m.update({'x': 1}) }}",
    "{{ m.pop('content') }}",
    "{{ m.clear }}",
    "{{ m.keys | string }}",
    "{{ d.items }}",
    "{{ d['items'] }}",
    "{{ s.upper() }}",
    "{{ s['upper'] }}",
    "{{ s['nope'] is defined }}",
    "{{ s['nope'] }}",
    "{{ s.nope is defined }}",
    "{{ s[0] }}{{ s[1:] }}{{ s[-1] }}",
    "{{ s.format(1) }}",
    "{{ s.format_map({}) }}",
    "{{ '{0.__class__}'.format(s) }}",
    "{{ s.__class__ }}",
    "{{ s.__class__.__mro__ }}",
    "{{ s._private }}",
    "{{ l.append(1) }}",
    "{{ l.index(2) }}",
    "{{ l.count }}",
    "{{ l[5] is defined }}",
    "{{ l['x'] is defined }}",
    "{{ l.sort() }}",
    "{{ t.index(1) }}",
    "{{ n.real }}{{ n.bit_length() }}",
    "{{ f.is_integer() }}",
    "{{ b.real }}",
    "{{ none.x is defined }}",
    "{% for x in l %}{{ loop.index }}{{ loop.last }}{{ loop.cycle('a', 'b') }}{{ loop._iterator is defined }}{% endfor %}",
    "{% for x in l %}{{ loop.__class__ }}{% endfor %}",
    "{% set ns = namespace(a=1) %}{% set ns.a = ns.a + 1 %}{{ ns.a }}{{ ns.b is defined }}",
    "{% set ns = namespace(f=s.format) %}{{ ns.f('{0.__class__}', s) }}",
    "{% set ns = namespace(a=1) %}{{ ns.__class__ }}",
    "{% macro hi(x) %}<{{ x }}>{% endmacro %}{{ hi(1) }}{{ hi(x=2) }}",
    "{% macro outer() %}[{{ caller() }}]{% endmacro %}{% call outer() %}in{% endcall %}",
    "{{ dict(a=1) }}{{ dict.fromkeys(['a']) }}",
    "{{ namespace(_x=1) }}",
    "{{ raise_exception('boom') }}",
    "{{ range(3) | list }}",
    "{{ s.split(',') | map('trim') | join('|') }}",
    "{{ m | tojson }}",
    "{{ (s ~ '').__len__() }}",
    "{{ cycler(1,2).next() }}",
]

DATA = {
    "m": {"role": "user", "content": "hi", "keys": "shadow"},
    "d": {"items": "a-key-named-items"},
    "s": "a, b ,c",
    "l": [1, 2, 3],
    "t": (1, 2),
    "n": 7,
    "f": 2.0,
    "b": True,
    "none": None,
}


def outcome(env: jinja2.Environment, source: str) -> tuple[str, str]:
    try:
        return "ok", env.from_string(source).render(DATA)
    except SecurityError:
        return "refused", ""  # the decision is compared, not the wording
    except Exception as exc:  # noqa: BLE001 - comparing whatever each side raises
        return type(exc).__name__, str(exc)


def test_refused_attribute_raises_instead_of_printing_nothing() -> None:
    stock = ImmutableSandboxedEnvironment()
    assert stock.from_string("a{{ s.__class__ }}b").render(DATA) == "ab"  # jinja2's behaviour
    with pytest.raises(SecurityError, match="__class__"):
        ENVIRONMENT.from_string("a{{ s.__class__ }}b").render(DATA)


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_same_decision_as_stock_sandbox(source: str) -> None:
    assert outcome(ENVIRONMENT, source) == outcome(STOCK, source)


FILTER_AND_TEST_EXPRESSIONS = [
    "{{ l | select('odd') | list }}",
    "{{ l | reject('equalto', 2) | list }}",
    "{{ s | select('equalto', 'a') | list }}",
    "{{ [m, d] | selectattr('role', 'equalto', 'user') | list }}",
    "{{ [m, d] | selectattr('role') | list }}",
    "{{ [m, d] | rejectattr('items', 'defined') | list }}",
    "{{ s.split(',') | map('trim') | list }}",
    "{{ l | map('string') | join('-') }}",
    "{{ [s] | map('replace', 'a', 'b') | list }}",
    "{{ l | map('tojson') | list }}",
    "{{ l | select('nosuchtest') | list }}",
    "{{ l | map('nosuchfilter') | list }}",
    "{{ l | select('in', [1, 3]) | list }}",
    "{{ [s, 1] | select('string') | list }}",
    "{{ [m] | map(attribute='content') | map('upper') | list }}",
]


@pytest.mark.parametrize("source", FILTER_AND_TEST_EXPRESSIONS)
def test_filter_and_test_dispatch_matches_stock(source: str) -> None:
    assert outcome(ENVIRONMENT, source) == outcome(STOCK, source)


def test_verdict_cache_is_bounded_against_data_driven_names() -> None:
    from chatplate.engine import environment

    keys = [f"key{i}" for i in range(environment._MAX_VERDICTS + 1000)]
    template = ENVIRONMENT.from_string("{% for k in keys %}{{ s[k] is defined }}{% endfor %}")
    assert template.render(keys=keys, s="text") == "False" * len(keys)
    assert len(ENVIRONMENT._verdicts) <= environment._MAX_VERDICTS
