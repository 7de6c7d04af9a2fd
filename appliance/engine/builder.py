"""Runs one build in a child process and follows its progress; the parent survives whatever happens."""
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time

log = logging.getLogger(__name__)


class BuildFailed(Exception):
    """The builder said no (unsupported precision, a parser error...): retrying will not help."""


class BuildCrashed(Exception):
    """The child died without a word: killed (OOM?) or aborted. Worth one retry with less memory."""


def describe_exit(returncode):
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return "the build process was killed by {}{}".format(name, hint)
    return "the build process exited with status {}".format(returncode)


def run_build(job, on_progress, timeout=3600.0):
    """Build `job` in a child; on_progress(phase, progress, eta_seconds). Raises BuildFailed/BuildCrashed."""
    fd, job_path = tempfile.mkstemp(prefix="facewatch-build-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(job, f)
    started = time.monotonic()
    error = None
    done = False
    try:
        with subprocess.Popen([sys.executable, "-m", "appliance.engine.worker", job_path],
                              stdout=subprocess.PIPE, universal_newlines=True) as child:
            for line in child.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event["event"] == "phase":
                    elapsed = time.monotonic() - started
                    fraction = event["progress"]
                    eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
                    on_progress(event["phase"], fraction, eta)
                elif event["event"] == "error":
                    error = event["message"]
                elif event["event"] == "done":
                    done = True
            returncode = child.wait(timeout=timeout)
    finally:
        os.unlink(job_path)
    if done and returncode == 0:
        return time.monotonic() - started
    if error:
        raise BuildFailed(error)
    raise BuildCrashed(describe_exit(returncode))
