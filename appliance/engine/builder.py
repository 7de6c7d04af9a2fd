"""Runs one build in a child process and follows it; the parent survives whatever happens to the child.

The job goes to the child on stdin (nothing is left on disk if either side is killed); the child runs in
its own process group and dies with its parent. Its stdout carries JSON events, read on a helper thread
so the parent keeps its own clock: it honours `timeout`, stops the build when `cancel` is set, and calls
`heartbeat(elapsed_seconds)` at least every second while the child lives, even if TensorRT says nothing.
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


def run_build(job, on_progress, timeout=3600.0, cancel=None, heartbeat=None):
    """Build `job` in a child; on_progress(phase, progress, eta_seconds).

    Returns the build's seconds; raises BuildFailed, BuildCrashed, or Cancelled when `cancel` was set.
    """
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "appliance.engine.worker"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, universal_newlines=True, start_new_session=True)
    events = queue.Queue()
    threading.Thread(target=_read_events, args=(child.stdout, events), name="build-output", daemon=True).start()
    outcome = {"error": None, "done": False}
    try:
        _send_job(child, job)
        _follow(child, events, outcome, started, timeout, cancel, on_progress, heartbeat or (lambda elapsed: None))
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


def _follow(child, events, outcome, started, timeout, cancel, on_progress, heartbeat):
    last_beat = started
    while True:
        now = time.monotonic()
        if cancel is not None and cancel.is_set():
            raise Cancelled("the build was stopped: facewatch is stopping")
        if now - started > timeout:
            raise BuildFailed("the build ran past its {:.0f} s limit and was stopped".format(timeout))
        if now - last_beat >= 1.0:
            heartbeat(now - started)
            last_beat = now
        try:
            event = events.get(timeout=TICK)
        except queue.Empty:
            continue
        if event is END_OF_OUTPUT:
            return
        _handle(event, outcome, started, on_progress)


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
