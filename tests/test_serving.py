"""A serving process freezes its startup heap, so full collections stop walking it, and
collects its youngest generation less often."""

from __future__ import annotations

import gc
import weakref

from gateway.serving import YOUNG_GENERATION_THRESHOLD, prepare_heap_for_serving


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_freezing_collects_garbage_first_then_freezes_what_lives() -> None:
    kept = _Node()
    garbage = _Node()
    garbage_ref = weakref.ref(garbage)
    del garbage
    thresholds = gc.get_threshold()
    try:
        frozen = prepare_heap_for_serving()
        # The cycle left over from startup was collected, not frozen for good...
        assert garbage_ref() is None
        # ...and what lives is out of the collector's sight. (Not compared with a later
        # get_freeze_count: a frozen object freed by its count leaves the frozen set.)
        assert frozen > 0
        assert all(o is not kept for o in gc.get_objects())
    finally:
        gc.unfreeze()  # this test process builds many apps: it must collect them
        gc.set_threshold(*thresholds)


def test_the_youngest_generation_is_collected_less_often_and_the_older_as_before() -> None:
    before = gc.get_threshold()
    try:
        prepare_heap_for_serving()
        assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *before[1:])
        assert before[0] < YOUNG_GENERATION_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
