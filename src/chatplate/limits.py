"""``Limits``: how much a render may consume, so a hostile template or input ends in an error.

Templates and messages come from strangers (a model repo, a GGUF file, a dataset row, a chat
user). Jinja is a full language: without bounds a template can loop for hours or build a string
larger than memory before it writes a byte. Every render runs under a :class:`Limits`; the
defaults are far above anything a real template does, and exceeding one raises
:class:`chatplate.TemplateResourceError` naming the limit.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

from .errors import Fix, InputError

__all__ = ["Limits", "DEFAULT_LIMITS", "LIMIT_NAMES"]


@dataclass(frozen=True)
class Limits:
    """Bounds on one render. Pass one to ``ChatTemplate(..., limits=...)``, ``chatplate.load``
    or to a single call (``t.render(messages, limits=...)``); ``Limits.unbounded()`` turns every
    bound off for templates you trust completely.

    - ``max_output_chars``: characters of the rendered prompt, and of any string or list the
      template builds on the way (``'a' * n``, ``~`` in a loop, ``center``, ``format`` widths...).
    - ``max_work``: loop iterations plus macro calls (four units each), plus one unit per 64
      characters that an operation builds (nested ``range`` loops, exponential macros).
    - ``max_depth``: nesting of macro calls and recursive loops while rendering, and of the data
      passed in (messages, tools, documents, variables).
    - ``max_input_chars``: characters of all strings in the messages, tools, documents and
      variables, plus one per list item or mapping entry.
    - ``max_messages``: messages in one conversation.
    - ``max_seconds``: wall-clock backstop for one render, for work the other bounds do not
      count (comparing huge strings in a loop). ``None`` turns it off.

    >>> Limits(max_output_chars=1_000).max_output_chars
    1000
    >>> Limits().replace(max_work=10).max_work
    10
    """

    max_output_chars: int | None = 8_000_000
    max_work: int | None = 1_000_000
    max_depth: int | None = 100
    max_input_chars: int | None = 8_000_000
    max_messages: int | None = 100_000
    max_seconds: float | None = 10.0
    # (max_output_chars, max_work, max_depth, max_input_chars), unbounded ones as sys.maxsize.
    bounds: tuple[int, int, int, int] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for field in _fields():
            value = getattr(self, field.name)
            if value is None:
                continue
            whole = field.name != "max_seconds"
            if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or value <= 0:
                kind = "a positive int" if whole else "a positive number of seconds"
                raise InputError(f"Limits.{field.name}: expected {kind} or None (no bound), got {value!r}")
        # The integer bounds with "none" as the largest int, read on every render.
        bounds = tuple(
            getattr(self, name) or sys.maxsize for name in ("max_output_chars", "max_work", "max_depth", "max_input_chars")
        )
        object.__setattr__(self, "bounds", bounds)

    def replace(self, **changes: int | float | None) -> Limits:
        """A copy with some limits changed: ``limits.replace(max_work=10_000_000)``."""
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            names = ", ".join(f.name for f in _fields())
            raise InputError(f"Limits: {exc}; the limits are {names}") from None

    @classmethod
    def unbounded(cls) -> Limits:
        """No bounds at all: only for templates and data you trust completely."""
        return cls(**{field.name: None for field in _fields()})


def _fields() -> list[dataclasses.Field[object]]:
    """The limits themselves (not the derived ``bounds``)."""
    return [field for field in dataclasses.fields(Limits) if field.init]


def raise_limit(name: str) -> Fix:
    """The advice that raises limit ``name``, for errors that report it."""
    return Fix(f"limits=chatplate.Limits({name}=...)", f"--limit {name}=N")


DEFAULT_LIMITS = Limits()
LIMIT_NAMES = frozenset(field.name for field in _fields())
