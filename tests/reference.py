"""The reference: transformers' own renderer, called the way ``apply_chat_template(tokenize=False)``
calls it, with a frozen clock. Test-only (transformers is a test dependency)."""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Iterator
from typing import Any

import pytest

chat_template_utils = pytest.importorskip("transformers.utils.chat_template_utils")


@contextlib.contextmanager
def frozen_clock(now: _dt.datetime | None) -> Iterator[None]:
    if now is None:
        yield
        return

    class _Frozen(_dt.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> _dt.datetime:  # noqa: ARG003 - same signature as datetime.now
            return now

    saved = chat_template_utils.datetime
    chat_template_utils.datetime = _Frozen
    try:
        yield
    finally:
        chat_template_utils.datetime = saved


def reference_render(
    template: str,
    messages: list[dict[str, Any]],
    *,
    tools: Any = None,
    documents: Any = None,
    add_generation_prompt: bool = False,
    continue_final_message: bool | str = False,
    now: _dt.datetime | None = None,
    with_spans: bool = False,
    **variables: Any,
) -> tuple[str, list[tuple[int, int]]]:
    """Render like transformers 5.23 ``apply_chat_template``; raises where it raises."""
    if isinstance(messages, (list, tuple)) and len(messages) == 0:
        raise ValueError("empty conversation")
    conversation = [{k: v for k, v in m.items() if v is not None} for m in messages]
    if continue_final_message and add_generation_prompt:
        raise ValueError("continue_final_message with add_generation_prompt")
    with frozen_clock(now):
        rendered, spans = chat_template_utils.render_jinja_template(
            conversations=[conversation],
            tools=tools,
            documents=documents,
            chat_template=template,
            return_assistant_tokens_mask=with_spans,
            continue_final_message=continue_final_message,
            add_generation_prompt=add_generation_prompt,
            **variables,
        )
    return rendered[0], (spans[0] if spans else [])
