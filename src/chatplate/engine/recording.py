"""Renders of a conversation's prefixes told from one recorded render, where the template
allows it to be known.

Derived training masks compare, for each trained turn, renders of the conversation up to it.
For most templates such a render is the whole render cut where the template's loop took the
next message, joined to what the template writes once that loop is done. A recorded render
gives the template a ``messages`` list that notes every way it is looked at, and when (each
message taken by a loop, each index read, each look at their number), and notes reads and
writes of namespaces and reads of ``add_generation_prompt``. :meth:`Recording.cut` answers for
a prefix of ``k`` messages only when the record proves the template could not have told it from
the whole conversation up to that point:

- message ``k`` was first taken by a ``for`` loop, right after message ``k - 1``, at the top of an
  iteration (the loop's body does not read ``loop.last``, ``loop.length`` and the like, which
  look ahead) and in a loop that writes straight to the output (not into a macro's or a block's
  buffer); the code generator tells the loop both;
- before that, no message from ``k`` on was looked at, nor how many there are (their number, a
  negative index, a whole pass over them, printing them);
- that loop ran out (it did not break off), and after it the template looked at none of those
  either and read no namespace attribute that iterations from ``k`` on had written.

Then rendering the first ``k`` messages runs the same code with the same values up to the moment
the loop asks for message ``k``, finds none, and runs the same code after the loop as the whole
render, with the same values: the output up to that moment, then the output after the loop.

A prefix with a generation prompt, where the whole render had none, is the same output up to
that moment (:meth:`Recording.head`: ``add_generation_prompt`` was not read before it), joined
to what the template writes after the loop with a generation prompt, learnt from a recorded
render of a shorter prefix (:meth:`Recording.tail`). Anything else is rendered on its own.
"""

from __future__ import annotations

import bisect
import sys
from itertools import accumulate
from typing import Any

__all__ = ["Log", "Recording", "RecordedMessages"]

# An observation of how many messages there are: it tells every prefix from the whole.
_ALL = sys.maxsize


class Log:
    """What a template did with the messages (and its namespaces) during one render, in order."""

    __slots__ = (
        "pieces", "clock", "highest", "times", "seen", "first", "ends", "writes", "reads", "flags", "clock_read",
    )

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces  # the top-level output as it grows
        self.clock = 0  # counts events: observations of messages, reads and writes of namespaces and flags
        self.highest = -1  # the highest message index observed so far (_ALL: their number)
        self.times: list[int] = []  # when each observation was made
        self.seen: list[int] = []  # the highest message index it observed
        # The first time each message was taken by a loop:
        # (time, output pieces before it, taker, highest index observed before)
        self.first: dict[int, tuple[int, int, _Taker, int]] = {}
        self.ends: dict[int, tuple[int, int]] = {}  # id(taker) -> (time, output pieces) when it ran out
        # A namespace attribute is (namespace, name); the namespace itself, not its id, so that it
        # stays alive while the log holds it and no later one can take its id.
        self.writes: dict[Any, list[int]] = {}  # namespace attribute -> times written
        self.reads: list[tuple[int, Any]] = []  # (time, namespace attribute)
        self.flags: list[int] = []  # when add_generation_prompt was read
        self.clock_read = False  # strftime_now was called

    def observe(self, index: int) -> None:
        self.clock += 1
        self.times.append(self.clock)
        self.seen.append(index)
        if index > self.highest:
            self.highest = index

    def flag_read(self) -> None:
        self.clock += 1
        self.flags.append(self.clock)


class RecordedMessages(list):  # type: ignore[type-arg]
    """The messages as a template sees them in a recorded render: a list, which notes every way
    the template looks at it. ``messages[a:]`` is a view that notes into the same log."""

    __slots__ = ("_log", "_offset")

    def __init__(self, items: Any, log: Log, offset: int = 0) -> None:
        super().__init__(items)
        self._log, self._offset = log, offset

    def loop(self, in_step: bool, statement: int) -> _Taker:
        """The iterator a ``for`` loop takes these messages from; ``in_step``: the loop takes
        each at the top of an iteration (it does not look ahead) and writes to the output;
        ``statement``: the loop's place in the template."""
        return _Taker(self, in_step, statement)

    def __iter__(self) -> _Taker:
        # Anything but a template's own loop (a filter, list(), JSON): never in step.
        return _Taker(self, False, -1)

    def __getitem__(self, key: Any) -> Any:
        if type(key) is int and key >= 0:
            self._log.observe(self._offset + key)
        elif type(key) is slice and key.step is None and (key.start or 0) >= 0:
            start = key.start or 0
            if key.stop is None:
                return RecordedMessages(list.__getitem__(self, key), self._log, self._offset + start)
            self._log.observe(self._offset + key.stop - 1 if key.stop >= 0 else _ALL)
        else:
            self._log.observe(_ALL)
        return list.__getitem__(self, key)

    def _whole(self) -> list[Any]:
        self._log.observe(_ALL)
        return list(list.__iter__(self))

    # Everything else reads all of it, or how many there are.
    def __len__(self) -> int:
        self._log.observe(_ALL)
        return list.__len__(self)

    def __bool__(self) -> bool:
        # Whether there are any: whether the first exists, the same for every prefix that has it.
        self._log.observe(self._offset)
        return list.__len__(self) > 0

    def __contains__(self, item: Any) -> bool:
        return item in self._whole()

    def __reversed__(self) -> Any:
        return reversed(self._whole())

    def __eq__(self, other: Any) -> bool:
        return self._whole() == other

    def __ne__(self, other: Any) -> bool:
        return self._whole() != other

    def __lt__(self, other: Any) -> bool:
        return self._whole() < other

    def __le__(self, other: Any) -> bool:
        return self._whole() <= other

    def __gt__(self, other: Any) -> bool:
        return self._whole() > other

    def __ge__(self, other: Any) -> bool:
        return self._whole() >= other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._whole())

    def __str__(self) -> str:
        return str(self._whole())

    def __format__(self, spec: str) -> str:
        return format(self._whole(), spec)

    def __add__(self, other: Any) -> Any:
        return self._whole() + other

    def __radd__(self, other: Any) -> Any:
        return other + self._whole()

    def __mul__(self, other: Any) -> Any:
        return self._whole() * other

    __rmul__ = __mul__

    def index(self, *args: Any) -> int:
        return self._whole().index(*args)

    def count(self, item: Any) -> int:
        return self._whole().count(item)

    def copy(self) -> list[Any]:
        return self._whole()


class _Taker:
    """Takes messages one at a time and notes each: which, when, and how much output preceded
    the first taking of each."""

    __slots__ = ("items", "position", "in_step", "statement", "log", "started")

    def __init__(self, items: RecordedMessages, in_step: bool, statement: int) -> None:
        self.items, self.position, self.in_step, self.statement, self.log = items, 0, in_step, statement, items._log
        self.started = 0  # when it took its first message

    def __iter__(self) -> _Taker:
        return self

    def __next__(self) -> Any:
        log, position = self.log, self.position
        if position >= list.__len__(self.items):
            log.observe(_ALL)
            log.ends[id(self)] = (log.clock, len(log.pieces))
            raise StopIteration
        self.position = position + 1
        index = self.items._offset + position
        highest = log.highest
        log.observe(index)
        if not position:
            self.started = log.clock
        if index not in log.first:
            log.first[index] = (log.clock, len(log.pieces), self, highest)
        return list.__getitem__(self.items, position)


class Recording:
    """A recorded render: its ``text``, and what it tells of the renders of prefixes of its
    conversation (:meth:`cut`, :meth:`head`, :meth:`tail`)."""

    def __init__(self, text: str, log: Log, free_tails: frozenset[int] = frozenset()) -> None:
        self.text = text
        self._log = log
        # The loops after which the template reads only its variables (the code generator's).
        self._free_tails = free_tails
        self._positions: list[int] | None = None
        self._highest_after: dict[int, int] = {}

    def cut(self, count: int) -> tuple[int, int] | None:
        """Where the render of the first ``count`` messages (with the same settings) leaves this
        one and where it joins it again (``text[:a] + text[b:]`` is that render), or ``None`` if
        that is not known."""
        taken = self._taken(count)
        if taken is None:
            return None
        time, pieces, taker = taken
        end = self._log.ends.get(id(taker))
        if end is None:  # the loop broke off
            return None
        ended, pieces_after = end
        # Nothing at or after message `count` was looked at after the loop either...
        if self._highest_since(ended) >= count:
            return None
        # ...and what the code after the loop read from a namespace was not written by iterations
        # the prefix does not have.
        log = self._log
        for read, key in log.reads:
            if read > ended:
                writes = log.writes.get(key, ())
                last = bisect.bisect_left(writes, read) - 1
                if last >= 0 and time < writes[last] < ended:
                    return None
        return self._position(pieces), self._position(pieces_after)

    def head(self, count: int, loop: int) -> int | None:
        """How much of this text the render of the first ``count`` messages starts with, when
        that render has the other ``add_generation_prompt``, which this one never read before it
        took message ``count``, in the loop at place ``loop`` in the template (the loop whose
        :meth:`tail` another recording gives); ``None`` if that is not known."""
        taken = self._taken(count)
        if taken is None:
            return None
        time, pieces, taker = taken
        if taker.statement != loop or (self._log.flags and self._log.flags[0] < time):
            return None
        return self._position(pieces)

    def tail(self) -> tuple[int, int, bool] | None:
        """What the output after the loop that took the last message is, if the renders of
        longer conversations (with the same settings and the same first messages) end with the
        same output once that loop is done: the template looked at no message past the last
        (the loop running out aside) and read no namespace after the loop. Then: where that
        output starts, the loop's place in the template, and whether that output is the same
        for every conversation: the code after the loop reads only the template's variables (the
        code generator tells), or no message was looked at before or after the loop and the clock
        was not read."""
        log = self._log
        last = max(log.first, default=None)
        if last is None:
            return None
        taker = log.first[last][2]
        end = log.ends.get(id(taker))
        if end is None or not taker.in_step or any(read > end[0] for read, _ in log.reads):
            return None
        ended, pieces_after = end
        # (A second run of that loop, over the messages again, ends with another look at their
        # number, which this refuses too: the loop ran once.)
        if max((index for time, index in zip(log.times, log.seen) if time != ended), default=-1) > last:
            return None
        shared = taker.statement in self._free_tails or not (
            log.clock_read or any(time < taker.started or time > ended for time in log.times)
        )
        return self._position(pieces_after), taker.statement, shared

    def _taken(self, count: int) -> tuple[int, int, _Taker] | None:
        # Message `count` taken first at the top of an iteration of a loop that had taken message
        # count - 1 just before, with nothing at or after it looked at before.
        first = self._log.first.get(count)
        if first is None:
            return None
        time, pieces, taker, highest_before = first
        if not taker.in_step or count - taker.items._offset < 1 or highest_before >= count:
            return None
        return time, pieces, taker

    def _position(self, pieces: int) -> int:
        if self._positions is None:
            self._positions = [0, *accumulate(map(len, self._log.pieces))]
        return self._positions[pieces]

    def _highest_since(self, time: int) -> int:
        highest = self._highest_after.get(time)
        if highest is None:
            after = self._log.seen[bisect.bisect_right(self._log.times, time) :]
            highest = self._highest_after[time] = max(after, default=-1)
        return highest
