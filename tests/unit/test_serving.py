"""The serving process's own settings (issue 25: CPU per request)."""

from __future__ import annotations

import gc

from data_service import server


def test_startup_objects_are_frozen_and_the_young_generation_collected_less_often():
    before = gc.get_threshold()
    try:
        server.settle_memory()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (server.GC_YOUNG, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
