"""chatplate against transformers on generated conversations, for every public corpus template."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import chatplate
from tests.conftest import corpus_dir
from tests.reference import reference_render
from tests.strategies import conversations, render_options

# The corpus and the generated cases pass every template the same extra keywords (as transformers'
# callers do); that most templates ignore some of them is expected here, and tested in
# test_unused_variables.
pytestmark = pytest.mark.filterwarnings("ignore::chatplate.UnusedVariableWarning")

NOW = datetime(2024, 7, 26, 12, 0, 0)
# Examples per template; raise it for a deeper hunt (CHATPLATE_EXAMPLES=300 pytest ...).
EXAMPLES = int(os.environ.get("CHATPLATE_EXAMPLES", "12"))


def _templates() -> list[Path]:
    root = corpus_dir()
    return [] if root is None else sorted(p for p in (root / "public").glob("*.json") if not p.name.startswith("_"))


def outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception as exc:  # noqa: BLE001 - any raise counts as "raised", like check.py
        return "raised", type(exc).__name__


def assert_same(template: str, bos: str | None, eos: str | None, messages: list, options: dict) -> None:
    spans = "continue_final_message" not in options
    ours = outcome(
        lambda: chatplate.ChatTemplate(template, bos_token=bos, eos_token=eos).render_spans(
            messages, now=NOW, **options
        )
        if spans
        else chatplate.ChatTemplate(template, bos_token=bos, eos_token=eos).render(messages, now=NOW, **options)
    )
    theirs = outcome(
        lambda: reference_render(
            template, messages, now=NOW, with_spans=spans, bos_token=bos, eos_token=eos, **options
        )
    )
    assert ours[0] == theirs[0], f"chatplate {ours}, transformers {theirs}"
    if ours[0] == "ok":
        if spans:
            assert ours[1].text == theirs[1][0]
            assert ours[1].generation_spans == [tuple(s) for s in theirs[1][1]]
        else:
            assert ours[1] == theirs[1][0]


@pytest.mark.parametrize("path", _templates(), ids=lambda p: p.stem)
def test_public_template_matches_transformers(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(messages=conversations(), options=render_options())
    def check(messages: list, options: dict) -> None:
        assert_same(doc["template"], doc["bos_token"], doc["eos_token"], messages, options)

    check()


@pytest.mark.parametrize(
    "body",
    [
        "{{ m.content }}",
        "{{ kwargs }}{{ m.content }}",
        "{{ varargs }}{{ m.content }}",
        "{{ caller is defined }}{{ m.content }}",
        "{% autoescape true %}{{ '<b>' }}{% endautoescape %}{{ m.content }}",
    ],
)
@pytest.mark.parametrize("escaped", [False, True])
def test_generation_block_bodies_match_transformers(body: str, escaped: bool) -> None:
    # A block's body is called directly unless it takes arguments (it names caller, kwargs or
    # varargs) or is escaped: both ways must render and place spans as transformers does.
    template = "{% for m in messages %}<{{ m.role }}>{% generation %}" + body + "{% endgeneration %}{% endfor %}"
    if escaped:
        template = "{% autoescape true %}" + template + "{% endautoescape %}"
    messages = [{"role": "user", "content": "a<b"}, {"role": "assistant", "content": "c&d"}]
    assert_same(template, None, None, messages, {})
