"""The soak's judgement: does a process's memory grow (a leak), or did it step once and stay (a high-water mark)?

A healthy facewatch does not hold its RSS at one value: glibc keeps the memory of the most frames ever queued
at once (the ordered hand-over holds up to 12 results, each with its 0.9 MB VGA frame) and hands little of it
back, so a burst of backlog on a loaded host is a one-time step of up to ~10 MB that then stays flat
(docs/reliability.md says what was measured). A leak grows all the time. So the judgement is not max - min,
which one step crosses, but a growth rate that one, two or three steps cannot fake:

- `sample` reads RSS ten times a second and keeps the lowest reading of each second (what stays, not a frame
  passing through), with the descriptors and threads at the end of the second;
- `judge` drops the first WARM_UP of the window, cuts the rest into PARTS consecutive parts, fits a
  least-squares slope to each, and takes the second-lowest: RSS grew at least that fast in four parts of
  five. A step lands in one part (a few in a few); a leak raises every part. That rate, extrapolated over
  an hour, must stay within BOUND_MB_PER_H; and the whole rise over the settled window within RISE_CAP_MB,
  so that a leak in bursts cannot pass as steps.

The same `judge` passes the healthy soak and catches the daemon that tests/fault_runner.py makes leak
(tests/daemon/test_reliability.py), and is checked on synthetic series (tests/test_soak_judgement.py).
"""
import collections
import os
import time

WARM_UP = 0.2          # of the window: sessions, decoder and first frames settling
PARTS = 5
# 120 MB/h = 33 KB/s: a leak of 1 KB per frame at 33 frames/s, or 64 KB per frame at half a frame per second.
# Measured on healthy daemons on a loaded 2-core host (default glibc), every 30 s and 90 s window of runs of
# up to 300 s: at most 43 MB/h and 21 MB/h, a publish thread stalled 2 s every 15 s included. A 64 KB/frame
# leak: 1,470 MB/h at 8 frames/s, 10,800-13,700 at 57-59.
BOUND_MB_PER_H = 120.0
# Twice what a healthy daemon can hold at once beyond its steady state on the VGA demo clip: 16 frames (12
# in the ordered hand-over, one per inference thread, the camera's newest, the snapshot's) of 0.9 MB and two
# 3.7 MB input tensors, ~22 MB.
RISE_CAP_MB = 48.0

Sample = collections.namedtuple("Sample", "t rss fds threads")


class Verdict(collections.namedtuple("Verdict", "growth_mb_per_h rise_mb largest_step_mb settled_s parts_mb_per_h "
                                                "bound_mb_per_h rise_cap_mb")):
    """growth_mb_per_h: the second-lowest part's slope; rise_mb: last - lowest-before-it over the settled
    window (how far RSS climbed); largest_step_mb: the largest rise from one second to the next."""

    @property
    def flat(self):
        return self.growth_mb_per_h <= self.bound_mb_per_h and self.rise_mb <= self.rise_cap_mb

    def __str__(self):
        return ("RSS growth {:.1f} MB/h over {:.0f} s (bound {:.0f}; parts {}), rise {:.2f} MB (cap {:.0f}), "
                "largest step {:.2f} MB".format(self.growth_mb_per_h, self.settled_s, self.bound_mb_per_h,
                                                 [round(p, 1) for p in self.parts_mb_per_h], self.rise_mb,
                                                 self.rise_cap_mb, self.largest_step_mb))


def process_figures(pid):
    """(RSS in MiB, open file descriptors, threads) of a running process, from /proc."""
    with open("/proc/{}/status".format(pid)) as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    rss = int(status["VmRSS"].split()[0]) / 1024.0
    return rss, len(os.listdir("/proc/{}/fd".format(pid))), int(status["Threads"])


def sample(pid, seconds, period=1.0, readings=10, clock=time.monotonic):
    """One Sample per `period` for `seconds`: the lowest RSS of `readings` readings spread over the period,
    the descriptors and threads of its last reading; t from the start, as measured (a loaded host oversleeps)."""
    started = clock()
    samples = []
    while clock() - started < seconds:
        lowest = None
        for _ in range(readings):
            rss, fds, threads = process_figures(pid)
            lowest = rss if lowest is None else min(lowest, rss)
            time.sleep(period / readings)  # a sampling period, not a synchronisation
        samples.append(Sample(clock() - started, lowest, fds, threads))
    return samples


def slope(points):
    """Least-squares slope of [(t, y)]."""
    n = float(len(points))
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / spread if spread else 0.0


def judge(samples, bound_mb_per_h=BOUND_MB_PER_H, rise_cap_mb=RISE_CAP_MB, warm_up=WARM_UP, parts=PARTS):
    """The Verdict on [(t seconds, rss MB, ...)] taken about once a second."""
    settled = [(s[0], s[1]) for s in samples[int(len(samples) * warm_up):]]
    if len(settled) < 3 * parts:
        raise ValueError("{} settled samples: at least {} are needed ({} parts of 3)".format(
            len(settled), 3 * parts, parts))
    bounds = [len(settled) * index // parts for index in range(parts + 1)]
    rates = [slope(settled[lo:hi]) * 3600.0 for lo, hi in zip(bounds, bounds[1:])]
    rss = [y for _, y in settled]
    lowest_before = [min(rss[:index + 1]) for index in range(len(rss))]
    rise = max(y - low for y, low in zip(rss, lowest_before))
    step = max([b - a for a, b in zip(rss, rss[1:])] + [0.0])
    return Verdict(sorted(rates)[1], rise, step, settled[-1][0] - settled[0][0], rates, bound_mb_per_h, rise_cap_mb)
