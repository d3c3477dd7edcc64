"""Python's cycle collector, paused while chatplate builds many objects that form no cycles.

Encoding a batch allocates millions of objects (lists of ids, offsets, encodings) and loading a
fast tokenizer parses its whole vocabulary into Python objects; refcounting frees all of them.
The collector, run again and again as they pile up, took a fifth of ``encode_batch`` with masks,
and half a second of loading Llama 3's 128k vocabulary (measured). Pauses nest, across
threads too (the fast tokenizer loads on a thread while the caller encodes): the collector
resumes when the last one ends, if it was running when the first began.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Iterator

__all__ = ["paused"]

_lock = threading.Lock()
_depth = 0
_resume = False
# Tracked objects after the last full collection run here, and objects promoted since (see _promote).
_after_full = 0
_promoted = 0


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """The collector off inside (usable as a decorator too).

    On resuming, what was built meanwhile is moved to the oldest generation (``gc.freeze`` then
    ``gc.unfreeze``, two list splices) instead of being traversed by the young collection the
    next allocation would start: that traversal walked every id of every list, 0.13 s of the
    0.8 s ``encode_batch`` with masks took on 3,000 chats. A pause that made fewer than
    ``_PROMOTE_AT_LEAST`` objects, and a program that froze objects itself (a server before it
    forks, which keeps them frozen), leave them to the young collection as usual.

    >>> with paused():
    ...     gc.isenabled()
    False
    """
    global _depth, _resume
    with _lock:
        if not _depth:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            if _depth:  # (a fork in between may have reset it)
                _depth -= 1
                if not _depth and _resume:
                    # Few objects: the young collection takes them as usual. Many: move them,
                    # unless the program froze objects itself (counting those walks them all,
                    # 4 ms with transformers frozen: too much for every small encode).
                    if gc.get_count()[0] > _PROMOTE_AT_LEAST and not gc.get_freeze_count():
                        _promote()
                    gc.enable()


def _promote() -> None:
    """Move every tracked object to the oldest generation, and collect that generation once what
    was moved there has grown by a quarter of what it held after the last such collection.

    Garbage cycles made meanwhile (a render's, another thread's) go there too, where Python
    collects only after its own count of objects promoted, which this move bypasses: without a
    collection of its own, they piled up (a worker of ``prepare`` grew by 8 MB per 256 chats).
    A quarter is Python's own rule for that generation, so the collections cost about what
    Python's would. (Counting the objects moved: the young generation's count, which the
    collector keeps anyway; counting the oldest generation walks it, 6 ms in a test process.)
    """
    global _after_full, _promoted
    _promoted += gc.get_count()[0]
    gc.freeze()
    gc.unfreeze()
    if _promoted > max(_after_full // 4, _FULL_AFTER_AT_LEAST):
        gc.collect()
        _promoted = 0
        gc.freeze()  # to count what is left, once per full collection
        _after_full = gc.get_freeze_count()
        gc.unfreeze()


# Fewer objects made during a pause are left to Python's young collection.
_PROMOTE_AT_LEAST = 20_000
# A floor for the growth that starts a full collection: small heaps are collected by Python's
# young collections anyway.
_FULL_AFTER_AT_LEAST = 10_000


def _after_fork_in_child() -> None:
    # A child has only the thread that forked: pauses other threads held (a background load)
    # end nowhere, so the collector runs again, and the lock, which one of them may have held,
    # is new.
    global _lock, _depth
    _lock = threading.Lock()
    if _depth:
        _depth = 0
        if _resume:
            gc.enable()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
