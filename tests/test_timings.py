import tracemalloc

import numpy as np

from appliance.timings import RateMeter, StageTimings


def meter_at(times, now):
    clock = [0.0]
    meter = RateMeter(window=5.0, clock=lambda: clock[0])
    for when in times:
        clock[0] = when
        meter.tick()
    clock[0] = now
    return meter.rate()


def test_a_steady_rate_is_read_over_the_window():
    assert abs(meter_at([i * 0.1 for i in range(100)], 9.9) - 10.0) < 0.3


def test_a_stream_slower_than_the_window_is_not_read_as_zero():
    assert meter_at([0.0, 3.0, 6.0, 9.0], 9.5) == 0.33


def test_a_stream_that_stopped_decays_towards_zero():
    assert meter_at([0.0, 3.0], 60.0) <= 0.02
    assert meter_at([], 1.0) == 0.0 and meter_at([1.0], 2.0) == 0.0


def test_percentiles_per_stage_in_milliseconds():
    timings = StageTimings(("inference",))
    for ms in range(1, 101):
        timings.add("inference", ms / 1000.0)
    report = timings.percentiles()["inference"]
    assert report["n"] == 100 and 49 <= report["p50"] <= 51 and 97 <= report["p99"] <= 100


def test_percentiles_are_within_two_percent_without_keeping_the_samples():
    timings = StageTimings(("inference",), clock=lambda: 0.0)   # one slice of the window throughout
    values = [0.5 + (i % 997) * 0.0371 for i in range(100000)]   # 0.5 .. 37.5 ms
    seconds = [ms / 1000.0 for ms in values]
    timings.add("inference", seconds[0])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for value in seconds[1:]:
            timings.add("inference", value)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 64 << 10, "{} bytes kept for 100,000 samples".format(kept)   # as floats: 800,000 at least
    report = timings.percentiles()["inference"]
    expected = np.percentile(values, [50, 95, 99])
    for key, value in zip(("p50", "p95", "p99"), expected):
        assert abs(report[key] - value) <= 0.02 * value + 0.01, (key, report[key], value)
    assert report["n"] == 100000 and report["max"] == round(max(values), 2)


def test_the_window_forgets_what_is_older_than_it():
    clock = [0.0]
    timings = StageTimings(("inference",), window=60.0, slices=6, clock=lambda: clock[0])
    for _ in range(100):
        timings.add("inference", 0.100)
    clock[0] = 30.0
    for _ in range(100):
        timings.add("inference", 0.010)
    assert timings.percentiles()["inference"]["n"] == 200
    clock[0] = 65.0
    report = timings.percentiles()["inference"]
    assert report["n"] == 100 and abs(report["p99"] - 10.0) < 0.2
    clock[0] = 200.0
    assert "inference" not in timings.percentiles()
