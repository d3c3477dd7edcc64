"""The budget of one render: what a template has consumed, checked against its ``Limits``.

A :class:`Budget` is the thread's current one (``state.budget``) for the length of one render. The guarded code the
code generator emits (``guards.py``), the sandbox's call hook and the bounded filters charge it:
loop iterations and macro calls as work, the size of every string or list an operation builds,
the nesting of macro calls, and the characters written out. Crossing a limit raises
:class:`LimitExceeded`, which the render's choke point turns into a ``TemplateResourceError``
that names the template line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

from ..limits import Limits
from ..messages import InputSize

if TYPE_CHECKING:
    from .recording import Log

__all__ = ["Budget", "LimitExceeded", "current", "folding", "state"]

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


class Budget(InputSize):
    """Counters of one call and the limits they run against (unbounded limits are
    ``sys.maxsize``): the input's size as :class:`InputSize` counts it, then the render's work,
    nesting and output. It also carries the render's clock (``now``) for ``strftime_now``."""

    __slots__ = (
        "limits", "max_chars", "work", "depth", "checkpoint", "started", "pieces", "counted", "output", "buffers",
        "buffered", "now",
    )

    def __init__(self, limits: Limits, now: Any = None) -> None:
        self.limits = limits
        self.max_chars, max_work, self.max_depth, self.max_size = limits.bounds
        self.size = self.work = self.depth = self.counted = self.output = self.buffered = 0
        self.checkpoint = _CHECK_EVERY if _CHECK_EVERY <= max_work else max_work + 1
        # Set at the first checkpoint: renders too small to reach one never read the clock.
        self.started = 0.0
        self.now = now
        # The top-level output, filled by the renderer while the template runs, and the output
        # buffers of macros and blocks still being written ([buffer, pieces counted, characters
        # counted] each): counted at checkpoints, so a runaway loop stops long before a join.
        self.pieces: list[str] | None = None
        self.buffers: list[list[Any]] | None = None

    def charge(self, units: int) -> None:
        """Add ``units`` of work; at every checkpoint also look at the clock and the output."""
        work = self.work = self.work + units
        if work >= self.checkpoint:
            max_work = self.limits.bounds[1]
            if work > max_work:
                raise LimitExceeded("max_work", work, max_work)
            self.checkpoint = min(work + _CHECK_EVERY, max_work + 1)
            self.check()

    def check(self) -> None:
        seconds = self.limits.max_seconds
        if seconds is not None:
            now = time.monotonic()
            if not self.started:
                self.started = now
            elif now - self.started > seconds:
                raise LimitExceeded("max_seconds", now - self.started, seconds)
        pieces = self.pieces
        if pieces is not None:
            end = len(pieces)
            if end > self.counted:
                self.output += sum(map(len, pieces[self.counted : end]))
                self.counted = end
        for entry in self.buffers or ():
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

    def watch(self, buffer: list[str]) -> None:
        """Count ``buffer`` (a macro's or block's output) at checkpoints until it is joined."""
        if self.buffers is None:
            self.buffers = []
        elif any(entry[0] is buffer for entry in self.buffers):
            return
        self.buffers.append([buffer, 0, 0])

    def joined(self, buffer: list[str]) -> None:
        """``buffer`` is being joined into one string: it no longer holds output of its own."""
        buffers = self.buffers or []
        for position in range(len(buffers) - 1, -1, -1):  # buffers close in the order they opened
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

    def deeper(self) -> None:
        """One level deeper (a macro call or a recursive loop's): charged, and refused past
        ``max_depth``. The caller undoes ``depth`` when the call returns."""
        self.charge(CALL_UNITS)
        if self.depth >= self.max_depth:
            raise LimitExceeded("max_depth", self.depth + 1, self.max_depth, "macro calls or recursive loops")
        self.depth += 1

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


class _RenderState(threading.local):
    """The budget of the render running in this thread (renders never yield to another task
    midway, so a thread-local is enough, and cheaper to set than a context variable)."""

    budget: Budget | None = None
    log: Log | None = None  # what a recorded render notes (recording.py)


state = _RenderState()

# Outside a render (jinja2 folding constants while compiling) nothing large is built: anything
# over this is left for render time, where the call's own limits apply.
_FOLDING = Limits(max_output_chars=1 << 16, max_work=1 << 16, max_seconds=None)


def folding() -> Budget:
    """A small budget for what runs with no render in progress (compile-time folding)."""
    return Budget(_FOLDING)


def current() -> Budget:
    """The budget of the render in progress, or a small one for compile-time constant folding."""
    return state.budget or folding()
