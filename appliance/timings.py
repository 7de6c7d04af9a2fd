"""Rolling per-stage timings and rates for telemetry."""
import collections
import math
import threading
import time

import numpy as np


class LatencyHistogram:
    """Durations counted in log-spaced buckets, each 2 % wide, from 10 µs to 1000 s: any percentile within
    2 % from a fixed array of counts, however many samples were added."""

    LOWEST_MS = 0.01
    RATIO = 1.02
    BUCKETS = int(math.ceil(math.log(1e6 / LOWEST_MS) / math.log(RATIO))) + 1

    def __init__(self):
        self.counts = np.zeros(self.BUCKETS, np.int64)
        self.largest_ms = 0.0

    def add(self, milliseconds):
        if not math.isfinite(milliseconds):
            return
        index = int(math.log(max(milliseconds, self.LOWEST_MS) / self.LOWEST_MS) / math.log(self.RATIO))
        self.counts[min(index, self.BUCKETS - 1)] += 1
        self.largest_ms = max(self.largest_ms, milliseconds)

    def merged(self, others):
        total = LatencyHistogram()
        for other in [self] + list(others):
            total.counts += other.counts
            total.largest_ms = max(total.largest_ms, other.largest_ms)
        return total

    def percentile(self, q):
        """The q-th percentile (0..100) in ms: the middle of the bucket that holds it, never above the largest;
        None without samples."""
        count = int(self.counts.sum())
        if not count:
            return None
        rank = max(1, int(math.ceil(q / 100.0 * count)))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        middle = self.LOWEST_MS * self.RATIO ** (index + 0.5)
        return min(middle, self.largest_ms)


class StageTimings:
    """Per-stage latency over the last `window` seconds, kept as histograms of `slices` parts of it (the
    oldest part is dropped as time moves on): p50/p90/p95/p99 and the largest, in milliseconds."""

    def __init__(self, stages, window=60.0, slices=6, clock=time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._slice_seconds = window / slices
        self._slices = slices
        self._histograms = collections.OrderedDict((stage, collections.deque()) for stage in stages)

    def add(self, stage, seconds):
        now_slice = int(self._clock() // self._slice_seconds)
        with self._lock:
            parts = self._histograms[stage]
            if not parts or parts[-1][0] != now_slice:
                parts.append((now_slice, LatencyHistogram()))
            parts[-1][1].add(seconds * 1000.0)
            self._drop_old(parts, now_slice)

    def _drop_old(self, parts, now_slice):
        while parts and parts[0][0] <= now_slice - self._slices:
            parts.popleft()

    def percentiles(self):
        now_slice = int(self._clock() // self._slice_seconds)
        report = {}
        with self._lock:
            for stage, parts in self._histograms.items():
                self._drop_old(parts, now_slice)
                total = parts[0][1].merged(histogram for _, histogram in list(parts)[1:]) if parts else None
                if total is None or not total.counts.sum():
                    continue
                report[stage] = dict({"p{}".format(q): round(total.percentile(q), 2) for q in (50, 90, 95, 99)},
                                     max=round(total.largest_ms, 2), n=int(total.counts.sum()))
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
