"""Rolling per-stage timings and rates for telemetry."""
import collections
import threading
import time

import numpy as np


class StageTimings:
    """Keeps the last `window` durations of each stage; reports p50/p90/p99 in milliseconds."""

    def __init__(self, stages, window=500):
        self._lock = threading.Lock()
        self._samples = collections.OrderedDict((stage, collections.deque(maxlen=window)) for stage in stages)

    def add(self, stage, seconds):
        with self._lock:
            self._samples[stage].append(seconds)

    def percentiles(self):
        with self._lock:
            snapshot = [(stage, list(values)) for stage, values in self._samples.items()]
        report = {}
        for stage, values in snapshot:
            if values:
                p50, p90, p99 = np.percentile(np.asarray(values) * 1000.0, [50, 90, 99])
                report[stage] = {"p50": round(float(p50), 2), "p90": round(float(p90), 2),
                                 "p99": round(float(p99), 2), "n": len(values)}
        return report


class RateMeter:
    """Events per second over the last `window` seconds; for slower streams, from the last two events
    (decaying while none comes), so one frame every 3 s reads 0.33, not 0."""

    def __init__(self, window=5.0, clock=time.monotonic):
        self._window = window
        self._clock = clock
        self._events = collections.deque()
        self._last_two = collections.deque(maxlen=2)
        self._lock = threading.Lock()

    def tick(self):
        now = self._clock()
        with self._lock:
            self._events.append(now)
            self._last_two.append(now)
            self._trim(now)

    def rate(self):
        """1 / the mean interval between the events in the window (or the last two events), or the time
        since the last event when that is longer: a stream that stops decays to 0."""
        now = self._clock()
        with self._lock:
            self._trim(now)
            points = list(self._events) if len(self._events) >= 2 else list(self._last_two)
        if len(points) < 2:
            return 0.0
        interval = max((points[-1] - points[0]) / (len(points) - 1), now - points[-1], 1e-6)
        return round(1.0 / interval, 2)

    def _trim(self, now):
        while self._events and now - self._events[0] > self._window:
            self._events.popleft()
