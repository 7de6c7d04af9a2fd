"""Runs one build in a child process and follows it; the parent survives whatever happens to the child.

The job goes to the child on stdin (nothing is left on disk if either side is killed); the child runs in
its own process group and dies with its parent. Its stdout carries JSON events, read on a helper thread
so the parent keeps its own clock: it honours `timeout`, stops the build when `cancel` is set, and calls
`heartbeat(elapsed_seconds, cpu_seconds)` every second while the child lives and works, even if TensorRT
(before 10.x) says nothing for many minutes. A child that neither reports nor uses CPU time for
`stall_timeout` is taken as hung: it is stopped and the build fails, saying so.
"""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from appliance.errors import Cancelled

TICK = 0.25
STALL_TIMEOUT = 600.0
CPU_PROGRESS = 0.05   # seconds of CPU time that count as working
END_OF_OUTPUT = object()


class BuildFailed(Exception):
    """The builder said no (unsupported precision, a parser error, no space...): retrying will not help."""


class BuildCrashed(Exception):
    """The child died without a word: killed (OOM?) or aborted. Worth one retry with less memory."""


def describe_exit(returncode):
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "signal {}".format(-returncode)
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return "the build process was killed by {}{}".format(name, hint)
    return "the build process exited with status {}".format(returncode)


def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc (0.0 where it cannot be read)."""
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, IndexError, ValueError):
        return 0.0


def run_build(job, on_progress, timeout=3600.0, cancel=None, heartbeat=None, stall_timeout=STALL_TIMEOUT):
    """Build `job` in a child; on_progress(phase, progress, eta_seconds).

    Returns the build's seconds; raises BuildFailed, BuildCrashed, or Cancelled when `cancel` was set.
    """
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "appliance.engine.build_child"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, universal_newlines=True, start_new_session=True)
    events = queue.Queue()
    threading.Thread(target=_read_events, args=(child.stdout, events), name="build-output", daemon=True).start()
    outcome = {"error": None, "done": False}
    try:
        _send_job(child, job)
        _follow(child, events, outcome, Clock(started, timeout, stall_timeout), cancel, on_progress,
                heartbeat or (lambda elapsed, cpu: None))
        returncode = child.wait()
    finally:
        _end(child)
    if outcome["done"] and returncode == 0:
        return time.monotonic() - started
    if outcome["error"]:
        raise BuildFailed(outcome["error"])
    raise BuildCrashed(describe_exit(returncode))


def _send_job(child, job):
    try:
        child.stdin.write(json.dumps(job))
        child.stdin.close()
    except OSError:  # the child died before reading its job; its exit status says how
        pass


def _read_events(stream, events):
    with stream:
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.put(event)
    events.put(END_OF_OUTPUT)


class Clock:
    """A build's time limits: the whole build, and the longest silence with no CPU time used."""

    def __init__(self, started, timeout, stall_timeout):
        self.started, self.timeout, self.stall_timeout = started, timeout, stall_timeout
        self.last_activity = self.last_beat = started
        self.cpu = 0.0

    def check(self, now, pid):
        """BuildFailed past a limit; else True when a heartbeat is due (every second)."""
        if now - self.started > self.timeout:
            raise BuildFailed("the build ran past its {:.0f} s limit and was stopped".format(self.timeout))
        if now - self.last_beat < 1.0:
            return False
        self.last_beat = now
        cpu = cpu_seconds(pid)
        if cpu - self.cpu >= CPU_PROGRESS:
            self.cpu, self.last_activity = cpu, now
        if now - self.last_activity > self.stall_timeout:
            raise BuildFailed("the build made no progress for {:.0f} s (no output, no CPU time used) and was "
                              "stopped".format(now - self.last_activity))
        return True


def _follow(child, events, outcome, clock, cancel, on_progress, heartbeat):
    while True:
        now = time.monotonic()
        if cancel is not None and cancel.is_set():
            raise Cancelled("the build was stopped: facewatch is stopping")
        if clock.check(now, child.pid):
            heartbeat(now - clock.started, clock.cpu)
        try:
            event = events.get(timeout=TICK)
        except queue.Empty:
            continue
        if event is END_OF_OUTPUT:
            return
        clock.last_activity = time.monotonic()
        _handle(event, outcome, clock.started, on_progress)


def _handle(event, outcome, started, on_progress):
    kind = event.get("event")
    if kind == "phase":
        elapsed = time.monotonic() - started
        fraction = float(event.get("progress") or 0.0)
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        on_progress(str(event.get("phase")), fraction, eta)
    elif kind == "error":
        outcome["error"] = str(event.get("message"))
    elif kind == "done":
        outcome["done"] = True


def _end(child):
    """Whatever happened, no build process outlives this call."""
    if child.poll() is None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except OSError:
            pass
        child.wait()
