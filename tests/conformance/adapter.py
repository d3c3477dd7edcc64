"""check.py adapter through the public contract only.

    python ../shared/corpus/check.py ../shared/corpus/public tests/conformance/adapter.py:render \
        --spans tests/conformance/adapter.py:spans --now-type datetime
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import chatplate


def _as_datetime(now: str | datetime | None) -> datetime | None:
    return datetime.fromisoformat(now) if isinstance(now, str) else now


def render(template: str, messages: Any, *, bos_token: Any, eos_token: Any, now: Any, **kwargs: Any) -> str:
    t = chatplate.ChatTemplate(template, bos_token=bos_token, eos_token=eos_token)
    return t.render(messages, now=_as_datetime(now), **kwargs)


def spans(template: str, messages: Any, *, bos_token: Any, eos_token: Any, now: Any, **kwargs: Any) -> list:
    t = chatplate.ChatTemplate(template, bos_token=bos_token, eos_token=eos_token)
    return t.render_spans(messages, now=_as_datetime(now), **kwargs).generation_spans
