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
    assert report["n"] == 100 and 49 <= report["p50"] <= 51 and report["p99"] >= 99
