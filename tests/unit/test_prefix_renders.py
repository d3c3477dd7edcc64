"""Prefixes of a conversation cut from one recorded render (``engine/recording.py``) are exactly
what rendering each prefix on its own gives: on every corpus template and case, on generated
conversations over the built-in templates, and on hand-written templates that break each rule
the recording relies on (where the prefix must then be rendered, and still come out right)."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from chatplate.errors import ChatplateError
from chatplate.rendering import Prepared, PrefixRenders, Renderer
from chatplate.sources.registry import get_builtin, list_builtins
from tests import strategies
from tests.conftest import require_corpus


def _real(renderer: Renderer, prepared: Prepared, count: int, generation_prompt: bool) -> str | None:
    try:
        return renderer.render(prepared, prepared.chat[:count], generation_prompt, False).text
    except ChatplateError:
        return None


def _known(renders: PrefixRenders, count: int, generation_prompt: bool) -> bool:
    """Whether that prefix comes from a recording (white box: the rules below must fire)."""
    recording = renders._recording
    if recording is None:
        return False
    if generation_prompt == renders.prepared.add_generation_prompt:
        return recording.cut(count) is not None
    tail = renders._tail
    return tail is not None and count >= tail[2] and recording.head(count, tail[1]) is not None


def check(renderer: Renderer, messages: list[dict[str, Any]], **options: Any) -> dict[bool, set[int]]:
    """Assert every prefix, with and without a generation prompt, equals its own render; return
    which were known from recordings, by ``add_generation_prompt``."""
    prepared = renderer.prepare(messages, **options)
    renders = renderer.prefixes(prepared)
    assert renders.text == renderer.render(prepared).text
    known: dict[bool, set[int]] = {False: set(), True: set()}
    for count in range(1, len(prepared.chat)):
        for generation_prompt in (True, False):
            got = renders.render(count, generation_prompt)
            assert got == _real(renderer, prepared, count, generation_prompt), (count, generation_prompt)
            if _known(renders, count, generation_prompt):
                known[generation_prompt].add(count)
    return known


CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello"},
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": "Sunny"},
    {"role": "user", "content": "Thanks"},
    {"role": "assistant", "content": "Welcome"},
]
LOOP = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>{% endfor %}"
PROMPT = "{% if add_generation_prompt %}<assistant>{% endif %}"


def renderer(source: str) -> Renderer:
    return Renderer({"default": source}, "<s>", "</s>")


def test_a_plain_loop_is_known_for_every_prefix() -> None:
    r = renderer("{{ bos_token }}" + LOOP + PROMPT)
    known = check(r, CHAT)
    assert known[False] == set(range(1, len(CHAT)))
    # The first prompted prefix is rendered, recorded, to learn what follows the loop; the rest are cut.
    assert known[True] == set(range(1, len(CHAT)))
    # That depends on the template's variables only: kept for the next conversation.
    assert [tail for tail, _ in r.tails.values()] == ["<assistant>"]


@pytest.mark.parametrize(
    "source, what",
    [
        ("{% for m in messages %}<{{ m.content }}>{% if not loop.last %},{% endif %}{% endfor %}" + PROMPT, "loop.last"),
        ("{% for m in messages %}<{{ m.content }}>{{ loop.length }}{% endfor %}" + PROMPT, "loop.length"),
        ("{% for m in messages %}<{{ m.content }}>{{ loop.revindex }}{% endfor %}" + PROMPT, "loop.revindex"),
        ("{% for m in messages %}{% set l = loop %}<{{ m.content }}>{{ l.last }}{% endfor %}" + PROMPT, "loop handed on"),
        ("{{ messages | length }}" + LOOP + PROMPT, "the count, before the loop"),
        (LOOP + "{% if messages[-1].role == 'user' %}" + PROMPT + "{% endif %}", "the last message, after the loop"),
        ("{% for m in messages %}{{ m.content }}{% endfor %}" + LOOP + PROMPT, "a whole first pass"),
        ("{% macro all() %}" + LOOP + "{% endmacro %}{{ all() }}" + PROMPT, "a loop in a macro"),
        ("{% set out %}" + LOOP + "{% endset %}{{ out }}" + PROMPT, "a loop in a set block"),
        ("{% filter upper %}" + LOOP + "{% endfilter %}" + PROMPT, "a loop in a filter block"),
        ("{{ messages }}" + PROMPT, "messages printed"),
        ("{{ messages | tojson }}" + PROMPT, "messages as JSON"),
    ],
)
def test_what_tells_a_prefix_from_the_whole_makes_it_rendered(source: str, what: str) -> None:
    known = check(renderer(source), CHAT)
    assert not known[False] and not known[True], what


def test_a_loop_that_breaks_off_leaves_what_it_took_first_unknown() -> None:
    # The first loop takes messages 0 and 1 and breaks off: a prefix of one message would have
    # ended it there, not the second loop.
    source = "{% for m in messages %}{% if m.role == 'user' %}{% break %}{% endif %}{{ m.content }}{% endfor %}" + LOOP
    assert check(renderer(source), CHAT)[False] == set(range(2, len(CHAT)))


def test_looking_ahead_by_index_unknowns_only_the_prefixes_it_sees_past() -> None:
    # Iteration i looks at message i + 1 (when it is a user's): prefixes ending before it differ.
    source = (
        "{% for m in messages %}<{{ m.content }}>"
        "{% if loop.index0 + 1 < 3 %}{{ messages[loop.index0 + 1].role }}{% endif %}{% endfor %}" + PROMPT
    )
    known = check(renderer(source), CHAT)
    assert 1 not in known[False] and 2 not in known[False]
    assert {3, 4, 5, 6} <= known[False]


def test_a_view_after_the_system_message_is_known() -> None:
    source = (
        "{% if messages[0].role == 'system' %}[{{ messages[0].content }}]{% set rest = messages[1:] %}"
        "{% else %}{% set rest = messages %}{% endif %}"
        "{% for m in rest %}<{{ m.role }}>{{ m.content }}{% endfor %}" + PROMPT + "{{ messages[0].role }}"
    )
    r = renderer(source)
    known = check(r, CHAT)
    # Message 1 is the view's first: a prefix of one message runs the loop not at all, and the
    # tail is learnt from the prefix of two.
    assert known[False] == set(range(2, len(CHAT)))
    assert known[True] == set(range(2, len(CHAT)))
    # What follows the loop reads a message: right for this conversation, not for others.
    assert not r.tails


def test_asking_whether_there_are_messages_is_asking_for_the_first() -> None:
    source = "{% if messages %}{{ bos_token }}{% endif %}" + LOOP + PROMPT
    known = check(renderer(source), CHAT)
    assert known[False] == known[True] == set(range(1, len(CHAT)))


def test_a_tail_that_reads_only_variables_is_kept_even_after_a_look_at_the_first_message() -> None:
    # Reading messages[0] before the loop makes the rest of the render conversation-specific,
    # but the code after the loop reads only add_generation_prompt and eos_token.
    source = "{% if messages[0].role == 'system' %}[S]{% endif %}" + LOOP + "{% if add_generation_prompt %}<a>{{ eos_token }}{% endif %}"
    r = renderer(source)
    assert check(r, CHAT)[True] == set(range(1, len(CHAT)))
    assert [tail for tail, _ in r.tails.values()] == ["<a></s>"]
    second = r.prefixes(r.prepare(CHAT[1:]))
    assert second.render(3, True) == _real(r, second.prepared, 3, True)
    assert second._tail is not None and second._tail[2] == 1  # from the kept tail, not a new recording


def test_a_tail_that_reads_what_came_before_the_loop_is_not_kept() -> None:
    source = (
        "{% set first = messages[0].content %}" + LOOP + "{% if add_generation_prompt %}<a>{{ first }}{% endif %}"
    )
    r = renderer(source)
    assert check(r, CHAT)[True] == set(range(1, len(CHAT)))
    assert not r.tails
    assert check(r, CHAT[1:])[True] == set(range(1, len(CHAT) - 1))


def test_a_filtered_loop_is_known() -> None:
    source = "{% for m in messages if m.role != 'system' %}<{{ m.content }}>{% endfor %}" + PROMPT
    assert check(renderer(source), CHAT)[False] == set(range(1, len(CHAT)))


def test_namespaces_after_the_loop() -> None:
    written_in_loop = (
        "{% set ns = namespace(tool=false) %}{% for m in messages %}{% set ns.tool = m.role == 'tool' %}"
        "<{{ m.content }}>{% endfor %}{% if ns.tool %}</tools>{% endif %}" + PROMPT
    )
    chat = CHAT[:3] + [{"role": "tool", "content": "42"}] + CHAT[3:]
    assert not check(renderer(written_in_loop), chat)[False]
    written_before = (
        "{% set ns = namespace(tag='x') %}{% for m in messages %}<{{ ns.tag }}{{ m.content }}>{% endfor %}"
        "{{ ns.tag }}" + PROMPT
    )
    known = check(renderer(written_before), chat)
    assert known[False] == set(range(1, len(chat)))
    # With a generation prompt, what follows the loop is not taken from a shorter prefix when it
    # reads a namespace: the loop's longer run could have written it.
    assert not known[True]


def test_the_generation_prompt_read_inside_the_loop_makes_prompted_prefixes_rendered() -> None:
    source = "{% for m in messages %}<{{ m.content }}>{% if add_generation_prompt %}+{% endif %}{% endfor %}" + PROMPT
    known = check(renderer(source), CHAT)
    assert known[False] == set(range(1, len(CHAT)))
    assert not known[True]


def test_a_clock_after_the_loop_is_learnt_per_conversation() -> None:
    r = renderer(LOOP + "{% if add_generation_prompt %}{{ strftime_now('%Y') }}{% endif %}")
    assert check(r, CHAT, now=datetime(2024, 7, 26))[True] == set(range(1, len(CHAT)))
    assert not r.tails


def test_a_variable_named_namespace_is_not_recorded() -> None:
    known = check(renderer(LOOP + PROMPT), CHAT, variables={"namespace": "x"})
    assert not known[False] and not known[True]


def test_with_the_generation_prompt_rendered_whole() -> None:
    known = check(renderer(LOOP + PROMPT), CHAT, add_generation_prompt=True)
    assert known[True] == set(range(1, len(CHAT)))


@functools.cache
def _corpus() -> list[dict[str, Any]]:
    root = require_corpus()
    files = sorted(p for p in (root / "public").glob("*.json") if not p.name.startswith("_"))
    return [json.loads(p.read_text(encoding="utf-8")) for p in files]


def test_corpus_prefixes_equal_their_own_renders() -> None:
    with_known = 0
    for data in _corpus():
        r = Renderer({"default": data["template"]}, data["bos_token"], data["eos_token"])
        now = datetime.fromisoformat(data["now"])
        found = False
        for case in data["cases"]:
            if "expected" not in case or case["continue_final_message"]:
                continue
            messages = [{k: v for k, v in m.items() if v is not None} for m in case["messages"]]
            for generation_prompt in (False, True):
                known = check(
                    r, messages, tools=case["tools"], documents=case["documents"], now=now,
                    add_generation_prompt=generation_prompt, variables=case.get("extra_kwargs") or {},
                )
                found = found or any(known.values())
        with_known += found
    # The rules leave most real templates their cuts (47 of 108 when this was written).
    assert with_known >= 40


@pytest.mark.parametrize("name", [b.name for b in list_builtins()])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=strategies.conversations())
def test_builtin_prefixes_equal_their_own_renders(name: str, messages: list[dict[str, Any]]) -> None:
    builtin = get_builtin(name)
    r = Renderer({"default": builtin.template}, builtin.bos_token, builtin.eos_token)
    try:
        r.render(r.prepare(messages))
    except ChatplateError:
        return  # a conversation the template refuses whole
    check(r, messages)
