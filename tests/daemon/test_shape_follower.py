"""The shape follower on a simulated clock: which engine serves while the camera's frame size moves."""
import logging

from appliance.daemon.shape_follower import BUILD_HOLD_S, HOLD_S, CALM_S, ShapeFollower
from appliance.engine.shapes import network_size

VGA, HD, FULL_HD = (640, 480), (1280, 720), (1920, 1080)
FPS = 10.0
SWITCH_S = 0.3   # how long a switch to a cached engine takes


def shape(frame_size):
    return network_size(frame_size[0], frame_size[1], 640, 32)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Engines:
    """What a Rebuilder tells the follower; a switch takes `switch_s` simulated seconds (or fails)."""

    def __init__(self, clock, serving=VGA, cached=(VGA, HD), switch_s=SWITCH_S, failing=()):
        self.clock = clock
        self.engine_for = serving
        self.cached_sizes = set(cached)
        self.switch_s = switch_s
        self.failing = set(failing)
        self.refused = {}
        self.running = None
        self.started = []       # (time, frame size) of each switch started
        self.builds = 0

    def serving(self):
        return self.engine_for, shape(self.engine_for)

    def busy(self):
        return self.running is not None

    def switching(self):
        return self.running[1] if self.running else None

    def refusal(self, engine_shape):
        return self.refused.get(engine_shape)

    def cached(self, frame_size):
        return frame_size in self.cached_sizes

    def switch(self, frame_size):
        if self.running:
            return False
        if frame_size not in self.cached_sizes:
            self.builds += 1
        self.running = (self.clock.now + self.switch_s, frame_size)
        self.started.append((self.clock.now, frame_size))
        return True

    def tick(self):
        """The running switch ends when its time has come."""
        if self.running and self.clock.now >= self.running[0]:
            size = self.running[1]
            self.running = None
            if size in self.failing:
                self.refused[shape(size)] = "out of memory"
            else:
                self.engine_for = size
                self.cached_sizes.add(size)


def make(serving=VGA, **kwargs):
    clock = Clock()
    engines = Engines(clock, serving, **kwargs)
    return ShapeFollower(shape, engines, clock=clock), engines, clock


def feed(follower, engines, clock, size, seconds, fps=FPS):
    """Frames of `size` for `seconds` at `fps`, as the pipeline takes them."""
    end = clock.now + seconds
    while clock.now < end - 1e-9:
        engines.tick()
        follower.seen(size)
        clock.now += 1.0 / fps
    engines.tick()


def test_a_size_flapping_every_second_for_a_minute_switches_at_most_once():
    follower, engines, clock = make()
    for second in range(60):
        feed(follower, engines, clock, HD if second % 2 == 0 else VGA, 1.0)
    assert len(engines.started) <= 1
    stats = follower.stats()
    assert stats["switches"] == len(engines.started) and stats["held_back"] >= 29


def test_a_size_flapping_slower_than_the_hold_switches_at_most_once_per_hold_window():
    follower, engines, clock = make()
    for period in range(20):
        feed(follower, engines, clock, HD if period % 2 == 0 else VGA, 3.0)
    times = [when for when, _ in engines.started]
    assert times and all(later - earlier >= HOLD_S for earlier, later in zip(times, times[1:]))


def test_a_camera_changing_size_every_5_s_for_ten_minutes_waits_longer_after_each_switch():
    """Each switch doubles the hold until the camera is calm: 2 s, 4 s, then 8 s, which 5 s never reach."""
    follower, engines, clock = make()
    feed(follower, engines, clock, VGA, 5.0)
    for period in range(121):
        feed(follower, engines, clock, HD if period % 2 == 0 else VGA, 5.0)
    assert [size for _, size in engines.started] == [HD, VGA]
    assert follower.stats()["reason"].endswith("until that size has held 8 s")


def test_a_size_that_held_a_minute_brings_the_hold_back_to_its_start():
    follower, engines, clock = make()
    feed(follower, engines, clock, VGA, 5.0)
    feed(follower, engines, clock, HD, 3.0)
    feed(follower, engines, clock, VGA, 5.0)
    feed(follower, engines, clock, HD, CALM_S + 1.0)     # switched after 8 s (the third switch), and held
    changed = clock.now
    feed(follower, engines, clock, VGA, 10.0)
    assert [size for _, size in engines.started] == [HD, VGA, HD, VGA]
    assert HOLD_S <= engines.started[-1][0] - changed < HOLD_S + 0.2


def test_a_50_ms_burst_of_other_frames_switches_nothing_and_the_engine_fits_the_frames():
    follower, engines, clock = make()
    feed(follower, engines, clock, VGA, 5.0, fps=30)
    feed(follower, engines, clock, HD, 0.05, fps=30)
    feed(follower, engines, clock, VGA, 10.0, fps=30)
    assert engines.started == []
    stats = follower.stats()
    assert (stats["frames"], stats["engine_for"], stats["pending"]) == ([640, 480], [640, 480], None)
    assert stats["held_back"] == 1 and stats["reason"] == "the 640x480 engine serves 640x480 frames"


def test_a_real_change_switches_once_after_the_hold_and_logs_one_line(caplog):
    follower, engines, clock = make()
    feed(follower, engines, clock, VGA, 5.0)
    changed = clock.now
    with caplog.at_level(logging.INFO, logger="appliance.daemon.shape_follower"):
        feed(follower, engines, clock, HD, HOLD_S - 0.2)
        assert engines.started == []
        assert "until that size has held 2 s" in follower.stats()["reason"]
        feed(follower, engines, clock, HD, 30.0)
    assert len(engines.started) == 1
    when, size = engines.started[0]
    assert size == HD and HOLD_S <= when - changed < HOLD_S + 0.2
    stats = follower.stats()
    assert (stats["frames"], stats["engine_for"], stats["pending"], stats["switches"]) == ([1280, 720], [1280, 720],
                                                                                          None, 1)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["camera: frames are now 1280x720; switching to the engine for that size (the size held 2.0 s)"]


def test_frames_that_need_no_other_shape_switch_nothing():
    follower, engines, clock = make(serving=HD)
    feed(follower, engines, clock, FULL_HD, 60.0)   # 16:9 as well: the same network shape
    assert engines.started == []
    assert follower.stats()["reason"] == "the 1280x720 engine serves 1920x1080 frames"


def test_a_change_during_a_running_switch_ends_on_the_newest_size():
    follower, engines, clock = make(switch_s=5.0)
    feed(follower, engines, clock, VGA, 3.0)
    feed(follower, engines, clock, HD, HOLD_S + 0.5)           # the switch to HD starts, and takes 5 s
    assert engines.switching() == HD
    stats = follower.stats()
    assert stats["pending"] == [1280, 720] and stats["reason"].startswith("switching to the 1280x720 engine")
    feed(follower, engines, clock, VGA, 0.5)                   # back while it runs
    feed(follower, engines, clock, FULL_HD, 0.5)
    feed(follower, engines, clock, VGA, 20.0)                  # and stays: the last size wins
    assert [size for _, size in engines.started] == [HD, VGA]
    assert engines.engine_for == VGA and follower.stats()["pending"] is None


def test_a_size_whose_engine_must_be_built_holds_for_the_build_hold_first():
    follower, engines, clock = make(cached=(VGA,))
    feed(follower, engines, clock, VGA, 5.0)
    feed(follower, engines, clock, HD, BUILD_HOLD_S - 1.0)
    assert engines.started == []
    assert follower.stats()["reason"] == ("serving the 640x480 engine for 1280x720 frames (letterboxed) until that "
                                          "size has held 30 s: its engine must be built first")
    feed(follower, engines, clock, HD, 2.0)
    assert [size for _, size in engines.started] == [HD] and engines.builds == 1


def test_a_camera_flapping_for_ten_minutes_between_a_cached_and_an_uncached_size_builds_nothing():
    follower, engines, clock = make(cached=(VGA,))
    feed(follower, engines, clock, VGA, 5.0)
    for period in range(60):
        feed(follower, engines, clock, HD if period % 2 == 0 else VGA, 10.0)
    assert engines.builds == 0 and engines.started == []


def test_the_first_frames_get_their_engine_after_the_short_hold_even_if_it_must_be_built():
    """The serving engine was built for the configured size before the camera said: nothing to flap back to."""
    follower, engines, clock = make(cached=(VGA,))
    feed(follower, engines, clock, HD, HOLD_S + 0.5)
    assert [size for _, size in engines.started] == [HD] and engines.builds == 1


def test_only_the_first_switch_of_a_camera_that_never_fitted_the_engine_skips_the_build_hold():
    follower, engines, clock = make(cached=(VGA,), switch_s=5.0)
    feed(follower, engines, clock, HD, HOLD_S + 0.5)               # built for the default size: the short hold
    feed(follower, engines, clock, (480, 640), BUILD_HOLD_S - 1.0)  # arrived during that build, never fitted
    assert [size for _, size in engines.started] == [HD] and engines.builds == 1


def test_a_size_whose_build_failed_is_not_tried_again_and_telemetry_says_why():
    follower, engines, clock = make(failing=(HD,))
    feed(follower, engines, clock, VGA, 3.0)
    feed(follower, engines, clock, HD, 5.0)
    feed(follower, engines, clock, VGA, 3.0)
    feed(follower, engines, clock, HD, 60.0)
    assert [size for _, size in engines.started] == [HD]
    assert follower.stats()["reason"] == ("serving the 640x480 engine for 1280x720 frames (letterboxed): the 1280x720 "
                                          "engine could not be built (out of memory); not tried again")
