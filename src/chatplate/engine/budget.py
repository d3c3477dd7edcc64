"""The budget of one render: what a template has consumed, checked against its ``Limits``.

A :class:`Budget` lives in a context variable for the length of one render. The guarded code the
code generator emits (``guards.py``), the sandbox's call hook and the bounded filters charge it:
loop iterations and macro calls as work, the size of every string or list an operation builds,
the nesting of macro calls, and the characters written out. Crossing a limit raises
:class:`LimitExceeded`, which the render's choke point turns into a ``TemplateResourceError``
that names the template line.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from itertools import islice
from typing import Any

from ..limits import Limits

__all__ = ["Budget", "LimitExceeded", "current", "active"]

# How often (in work units) the clock and the output written so far are looked at.
_CHECK_EVERY = 128
# Items of a long loop charged at once.
_CHUNK = 64
# Built values (chars or items) count one unit of work per 64: building them is a copy, and
# the total that can be built in one render bounds the memory it can hold.
_CHARS_PER_UNIT_SHIFT = 6
# A macro call (or a recursive loop's call) costs about as much as this many loop iterations.
CALL_UNITS = 4

# What each limit counts, for messages.
_WHAT = {
    "max_output_chars": "characters",
    "max_work": "units of work (loop iterations and macro calls)",
    "max_depth": "levels of nesting",
    "max_seconds": "seconds",
    "max_input_chars": "characters of input",
    "max_messages": "messages",
}


class LimitExceeded(Exception):  # noqa: N818 - internal signal, translated at the choke point
    """Raised inside a render when a limit is crossed; carries what the final error reports."""

    def __init__(self, limit: str, value: int | float, maximum: int | float | None, detail: str = "") -> None:
        super().__init__(limit, value, maximum, detail)
        self.limit, self.value, self.maximum, self.detail = limit, value, maximum, detail

    def describe(self) -> str:
        what = _WHAT.get(self.limit, "")
        reached = f"{self.value:,.1f}" if isinstance(self.value, float) else f"{self.value:,}"
        bound = f"{self.maximum:,}" if self.maximum is not None else "?"
        detail = f" ({self.detail})" if self.detail else ""
        return f"exceeded {self.limit}={bound}: reached {reached} {what}{detail}".replace("  ", " ")


class Budget:
    """Counters of one render and the limits they run against (``None`` limits never fire)."""

    __slots__ = (
        "limits", "max_chars", "max_work", "max_depth", "work", "depth", "checkpoint", "started",
        "pieces", "counted", "output", "buffers", "buffered",
    )

    def __init__(self, limits: Limits, pieces: list[str] | None = None) -> None:
        self.limits = limits
        self.max_chars, self.max_work, self.max_depth, _ = limits.bounds
        self.work = self.depth = self.counted = self.output = self.buffered = 0
        self.checkpoint = _CHECK_EVERY if _CHECK_EVERY <= self.max_work else self.max_work + 1
        self.started = time.monotonic()
        # The top-level output, filled by the caller while the template runs; counted at
        # checkpoints so a runaway loop is stopped long before the join.
        self.pieces = pieces
        # The output buffers of macros and blocks still being written, counted the same way:
        # [buffer, pieces counted, characters counted] each.
        self.buffers: list[list[Any]] = []

    def charge(self, units: int) -> None:
        """Add ``units`` of work; at every checkpoint also look at the clock and the output."""
        work = self.work = self.work + units
        if work >= self.checkpoint:
            if work > self.max_work:
                raise LimitExceeded("max_work", work, self.max_work)
            self.checkpoint = min(work + _CHECK_EVERY, self.max_work + 1)
            self.check()

    def check(self) -> None:
        seconds = self.limits.max_seconds
        if seconds is not None:
            elapsed = time.monotonic() - self.started
            if elapsed > seconds:
                raise LimitExceeded("max_seconds", elapsed, seconds)
        pieces = self.pieces
        if pieces is not None:
            end = len(pieces)
            if end > self.counted:
                self.output += sum(map(len, pieces[self.counted : end]))
                self.counted = end
        for entry in self.buffers:
            buffer, counted, _ = entry
            end = len(buffer)
            if end > counted:
                chars = sum(map(len, buffer[counted:end]))
                entry[1] = end
                entry[2] += chars
                self.buffered += chars
        if self.output + self.buffered > self.max_chars:
            raise LimitExceeded(
                "max_output_chars", self.output + self.buffered, self.max_chars, "the output written so far"
            )

    def buffer(self) -> list[str]:
        """A new output buffer for a macro or block, watched until it is joined."""
        buffer: list[str] = []
        self.buffers.append([buffer, 0, 0])
        return buffer

    def joined(self, buffer: list[str]) -> None:
        """``buffer`` is being joined into one string: it no longer holds output of its own."""
        buffers = self.buffers
        for position in range(len(buffers) - 1, -1, -1):
            if buffers[position][0] is buffer:
                self.buffered -= buffers[position][2]
                del buffers[position]
                return

    def sized(self, size: int, what: str = "a string or list the template builds") -> None:
        """A value of ``size`` characters (or items) is about to be built, or was just built:
        refused over the output limit, and charged as work (building is copying)."""
        if size > self.max_chars:
            raise LimitExceeded("max_output_chars", size, self.max_chars, what)
        if size >> _CHARS_PER_UNIT_SHIFT:
            self.charge(size >> _CHARS_PER_UNIT_SHIFT)

    def nested(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """``call(*args, **kwargs)`` one level deeper (a macro call or a recursive loop's)."""
        self.charge(CALL_UNITS)
        if self.depth >= self.max_depth:
            raise LimitExceeded("max_depth", self.depth + 1, self.max_depth, "macro calls or recursive loops")
        self.depth += 1
        try:
            return call(*args, **kwargs)
        finally:
            self.depth -= 1

    def written(self, total: int) -> None:
        """The whole output is ``total`` characters."""
        if total > self.max_chars:
            raise LimitExceeded("max_output_chars", total, self.max_chars, "the rendered prompt")

    def counted_items(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """``iterable``, charging one unit of work per item as the loop takes it."""
        for item in iterable:
            work = self.work = self.work + 1
            if work >= self.checkpoint:
                self.charge(0)
            yield item

    def counted_chunks(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """The items of a materialised ``iterable`` (a list, a string...), charged a chunk at a
        time: the per-item cost stays in C, and the clock is still read while a long loop runs."""
        items = iter(iterable)
        while chunk := tuple(islice(items, _CHUNK)):
            self.charge(len(chunk))
            yield chunk


_budget: ContextVar[Budget | None] = ContextVar("chatplate_budget", default=None)

# Outside a render (jinja2 folding constants while compiling) nothing large is built: anything
# over this is left for render time, where the call's own limits apply.
_FOLDING = Limits(max_output_chars=1 << 16, max_work=1 << 16, max_seconds=None)


def current() -> Budget:
    """The budget of the render in progress, or a small one for compile-time constant folding."""
    budget = _budget.get()
    return budget if budget is not None else Budget(_FOLDING)


def active(budget: Budget) -> Any:
    """Make ``budget`` the current one; returns the token to reset it with."""
    return _budget.set(budget)


def release(token: Any) -> None:
    _budget.reset(token)


# The budget of the render in progress, if any (the context variable's own getter: no frame).
running = _budget.get
