import threading
import time

import pytest

from appliance.errors import Cancelled
from appliance.daemon.rebuild import BUILDER_OVERHEAD, choose_mode, warm_detectors

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


# --- switches the camera's frame size orders ------------------------------------------------------------

VGA, HD, PORTRAIT = (640, 480), (1280, 720), (480, 640)
WAIT = 30


def shape(frame_size):
    from appliance.engine.shapes import network_size
    return network_size(frame_size[0], frame_size[1], 640, 32)


class Session:
    """A detector on a fake engine; counts how many are open at once."""

    def __init__(self, opened, size):
        self.opened, self.size = opened, size
        self.closed = False
        opened.append(self)
        self.preprocessing = "cpu"

    def warm_up(self):
        pass

    def close(self):
        if not self.closed:
            self.closed = True
            self.opened.remove(self)


class FakeManager:
    def __init__(self, loads, opened, engine_path, frame_size, report):
        self.loads, self.opened, self.engine_path = loads, opened, engine_path
        self.size = shape(frame_size)
        self.report = report

    def load(self, precision, force=False):
        from appliance.engine.manager import Engine
        self.loads.append(self.size)
        engine = Engine("engine-{}x{}".format(*self.size), self.engine_path, "fp32", precision, None, {}, False,
                        self.size, 1.0, "test")
        self.announce(engine)
        return engine, self.open_detector(engine)

    def open_detector(self, engine):
        return Session(self.opened, engine.size)

    def announce(self, engine):
        self.report(state="ready", input_shape=[1, 3, engine.size[1], engine.size[0]])
        return engine

    def cached(self, precision):
        return True


class Switcher:
    """A Rebuilder on a real (unstarted) two-thread pipeline, with fake managers and a fake engine file."""

    def __init__(self, tmp_path, mode="hot"):
        import types
        from appliance.daemon.pipeline import Pipeline
        from appliance.daemon.rebuild import Rebuilder
        from appliance.daemon.supervisor import Supervisor
        path = tmp_path / "engine"
        path.write_bytes(b"x" * 1000)
        self.loads, self.opened, self.reports = [], [], []
        self.most_open = 0
        first = FakeManager(self.loads, self.opened, str(path), VGA, lambda **f: self.reports.append(f))
        self.engine, detector = first.load("fp32")
        self.pipeline = Pipeline(None, [detector, first.open_detector(self.engine)], None, threading.Event())
        stop = threading.Event()
        settings = types.SimpleNamespace(rebuild_mode=mode, workspace_mb=16, precision="fp32")

        def make_manager(report, frame_size):
            self.most_open = max(self.most_open, len(self.opened))
            return FakeManager(self.loads, self.opened, str(path), frame_size, lambda **f: self.reports.append(f))

        def served(engine, error):
            assert error is None, error
            self.engine = engine
        self.rebuilder = Rebuilder(make_manager, self.pipeline, lambda: self.engine, served, settings,
                                   Supervisor(stop), stop, lambda: VGA)

    def switch(self, frame_size):
        """What the follower orders once frame_size has held: a camera order, run to its end."""
        from appliance.daemon.rebuild import CameraOrder
        self.rebuilder.start(CameraOrder(frame_size), "fp32", False)
        deadline = time.monotonic() + WAIT
        while self.rebuilder.running is not None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        self.most_open = max(self.most_open, len(self.opened))
        assert self.engine.size == shape(frame_size)


def test_switching_back_reuses_the_engine_kept_open_and_reports_it(tmp_path):
    switcher = Switcher(tmp_path)
    for size in (HD, VGA, HD, VGA):
        switcher.switch(size)
    assert switcher.loads == [shape(VGA), shape(HD)]        # at start, then once for 720p frames
    assert [r["input_shape"] for r in switcher.reports] == [[1, 3, 480, 640], [1, 3, 384, 640], [1, 3, 480, 640],
                                                            [1, 3, 384, 640], [1, 3, 480, 640]]


def test_no_more_than_two_engines_are_open_whatever_the_sizes(tmp_path):
    switcher = Switcher(tmp_path)
    for size in (HD, PORTRAIT, VGA, HD, PORTRAIT, VGA):
        switcher.switch(size)
    assert switcher.most_open <= 2 * switcher.pipeline.workers
    assert len(switcher.opened) == 2 * switcher.pipeline.workers   # the serving one, and the one before for a
    # quick switch back
    switcher.pipeline.close_detectors()
    assert switcher.opened == []


def test_where_memory_holds_one_engine_only_the_one_replaced_is_closed(tmp_path):
    switcher = Switcher(tmp_path, mode="paused")
    for size in (HD, VGA, HD):
        switcher.switch(size)
    assert len(switcher.opened) == switcher.pipeline.workers
    assert switcher.loads == [shape(VGA), shape(HD), shape(VGA), shape(HD)]


def test_a_rebuild_by_command_closes_the_engine_kept_for_a_switch_back(tmp_path):
    class Command:
        id = "c1"
        frame_size = VGA

        def reply(self, state, ok=True, **fields):
            pass
    switcher = Switcher(tmp_path)
    switcher.switch(HD)
    switcher.switch(VGA)
    switcher.rebuilder.start(Command(), "fp32", True)
    while switcher.rebuilder.running is not None:
        time.sleep(0.005)
    assert len(switcher.opened) == switcher.pipeline.workers
    switcher.switch(HD)
    assert switcher.loads[-1] == shape(HD)


class Camera:
    """Frames of `size` (changed by the test) as fast as two inference threads take them."""

    def __init__(self, size):
        self.size = size
        self.index = 0

    def latest(self, timeout):
        import numpy as np
        from appliance.camera.capture import Frame
        time.sleep(0.02)
        self.index += 1
        width, height = self.size
        return Frame(np.zeros((height, width, 3), np.uint8), self.index, time.monotonic(), time.time())

    def finished(self):
        return False


@pytest.mark.slow
def test_switching_between_three_frame_sizes_again_and_again_does_not_grow_the_memory(tmp_path):
    """Every switch loads an engine (two ONNX Runtime sessions) while two inference threads detect; the
    sessions closed must give their memory back (was: +140 MB in 40 switches)."""
    import types
    import psutil
    from appliance.config import schema as configuration
    from appliance.engine.setup import manager_for
    from appliance.daemon.pipeline import Pipeline
    from appliance.daemon.rebuild import CameraOrder, Rebuilder
    from appliance.daemon.supervisor import Supervisor
    config = configuration.defaults()
    stop = threading.Event()
    supervisor = Supervisor(stop)

    def make_manager(report, frame_size):
        return manager_for(config, backend="onnxruntime", cache_dir=str(tmp_path), report=report,
                           frame_size=frame_size, threads=1)
    manager = make_manager(None, VGA)
    engine, detector = manager.load("fp32")
    serving = {"engine": engine}
    camera = Camera(VGA)
    pipeline = Pipeline(camera, warm_detectors(manager, engine, detector, 2, stop), lambda result: None, stop)
    settings = types.SimpleNamespace(rebuild_mode="hot", workspace_mb=16, precision="fp32")
    rebuilder = Rebuilder(make_manager, pipeline, lambda: serving["engine"], lambda e, error: serving.update(engine=e),
                          settings, supervisor, stop, lambda: camera.size)
    pipeline.start(supervisor)

    def switch(size):
        camera.size = size
        rebuilder.start(CameraOrder(size), "fp32", False)
        deadline = time.monotonic() + WAIT
        while rebuilder.running is not None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert serving["engine"].size == shape(size)
        time.sleep(0.1)
    try:
        for size in (HD, PORTRAIT, VGA):     # each engine built once
            switch(size)
        after_cycle = [psutil.Process().memory_info().rss]
        for turn in range(8):
            for size in (HD, PORTRAIT, VGA):
                switch(size)
            after_cycle.append(psutil.Process().memory_info().rss)
    finally:
        stop.set()
        assert supervisor.join(pipeline.threads, 10) == []
        pipeline.close_detectors()
    # A leak grows every cycle of three switches (the old code: about 26 MB each); a one-time step (an
    # allocator arena taken under load, seen in CI as +69 MB in one run) lands in one. So the judgement is
    # the median growth per cycle after the first few, not first-to-last.
    growth = sorted(b - a for a, b in zip(after_cycle[3:], after_cycle[4:]))
    median = growth[len(growth) // 2]
    assert median < 8 * MIB, "RSS grew {:.1f} MB per cycle of three switches (each cycle: {})".format(
        median / MIB, ", ".join("{:+.1f}".format(g / MIB) for g in growth))
