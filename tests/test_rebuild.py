import threading

import pytest

from appliance.errors import Cancelled
from appliance.rebuild import BUILDER_OVERHEAD, choose_mode, warm_detectors

MIB = 1 << 20


def test_auto_builds_hot_when_memory_holds_both_engines_the_workspace_and_the_builder():
    needed = 2 * 30 * MIB + 256 * MIB + BUILDER_OVERHEAD
    assert choose_mode("auto", 30 * MIB, 256, needed)[0] == "hot"
    mode, why = choose_mode("auto", 30 * MIB, 256, needed - 1)
    assert mode == "paused" and "about 1.1 GiB needed" in why


def test_a_4_gb_nano_with_its_desktop_pauses_and_without_it_builds_hot():
    """A Nano's MemAvailable is about 1.0-1.5 GB with the desktop, 2.5-3 GB without (one engine ~ 10 MB)."""
    assert choose_mode("auto", 10 * MIB, 256, 1000 * MIB)[0] == "paused"
    assert choose_mode("auto", 10 * MIB, 256, 2500 * MIB)[0] == "hot"


def test_a_forced_mode_is_kept_and_said():
    assert choose_mode("paused", 1, 16, 1 << 40) == ("paused", "engine.rebuild_mode = paused")


class Opened:
    def __init__(self, fail_warm_up=False):
        self.fail_warm_up = fail_warm_up
        self.warmed = self.closed = False

    def warm_up(self):
        if self.fail_warm_up:
            raise RuntimeError("out of memory")
        self.warmed = True

    def close(self):
        self.closed = True


class Manager:
    def __init__(self, *detectors):
        self.detectors = list(detectors)

    def open_detector(self, engine):
        return self.detectors.pop(0)


def test_one_warm_detector_per_inference_thread():
    first, second = Opened(), Opened()
    assert warm_detectors(Manager(second), "engine", first, 2, threading.Event()) == [first, second]
    assert first.warmed and second.warmed and not (first.closed or second.closed)


def test_a_detector_that_fails_to_warm_up_closes_them_all():
    first, second = Opened(), Opened(fail_warm_up=True)
    with pytest.raises(RuntimeError, match="out of memory"):
        warm_detectors(Manager(second), "engine", first, 2, threading.Event())
    assert first.closed and second.closed


def test_stopping_facewatch_while_detectors_are_opened_closes_them_and_says_so():
    stopping = threading.Event()
    stopping.set()
    first = Opened()
    with pytest.raises(Cancelled):
        warm_detectors(Manager(Opened()), "engine", first, 2, stopping)
    assert first.closed and not first.warmed
