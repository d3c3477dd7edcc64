"""The cycle collector's pause: nested, across threads, and undone in a forked child."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
from collections.abc import Iterator

import pytest

from chatplate.tokens import collector


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_pauses_nest_and_the_last_one_resumes() -> None:
    with collector.paused():
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


@contextlib.contextmanager
def held_on_another_thread() -> Iterator[None]:
    """A pause held by another thread while the block runs."""
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with collector.paused():
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    entered.wait(10)
    try:
        yield
    finally:
        leave.set()
        thread.join()


def test_a_pause_on_another_thread_keeps_it_paused_until_it_ends() -> None:
    with held_on_another_thread():
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the other thread's pause still holds
    assert gc.isenabled()


def test_a_collector_the_program_turned_off_stays_off() -> None:
    gc.disable()
    with collector.paused():
        pass
    assert not gc.isenabled()


def test_the_decorator_form_pauses_the_call() -> None:
    @collector.paused()
    def inside() -> bool:
        return gc.isenabled()

    assert inside() is False
    assert gc.isenabled()


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_a_child_forked_during_another_threads_pause_collects_again() -> None:
    with held_on_another_thread():
        pid = os.fork()
        if pid == 0:  # the child: the holding thread is gone
            ok = gc.isenabled()
            with collector.paused():
                ok = ok and not gc.isenabled()
            ok = ok and gc.isenabled()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not gc.isenabled()  # the parent's pause is untouched
    assert gc.isenabled()


def test_cycles_made_during_pauses_are_collected_not_kept() -> None:
    """A pause's end moves what it made to the oldest generation, where Python alone would
    collect only after its own count of promoted objects: garbage cycles made during pauses
    must still be collected once they pile up (they grew a prepare worker by 8 MB a chunk)."""

    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    rounds, per_round = 150, 2_000
    for _ in range(rounds):
        with collector.paused():
            for _ in range(per_round):
                Node()
    left = sum(type(o) is Node for o in gc.get_objects())
    assert left < rounds * per_round // 2, left
