"""The build itself, in a child process: `python -m appliance.engine.build_child` with the job as JSON on stdin.

Progress goes to stdout as JSON lines ({"event": "phase", "phase": ..., "progress": 0..1}); the last
line is {"event": "done"} or {"event": "error", "message": ...}. A crash (OOM kill, a TensorRT abort)
ends the child without either; the parent notices and decides what next. The child dies with its
parent (Linux PR_SET_PDEATHSIG), so a killed daemon leaves no build running.

FACEWATCH_BUILD_FAULT injects faults for the tests: "sigkill" kills the child at its first phase;
"sigkill:workspace>=N" only when the job's workspace_mb is at least N; "hang" makes the build sleep
without a word until it is stopped; "silent:N" makes it work N seconds (CPU) without a word, as
TensorRT before 10.x does, then finish.
"""
import ctypes
import json
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1


def emit(event, **fields):
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent still kills the build's process group
        pass


def injected_fault(job):
    fault = os.environ.get("FACEWATCH_BUILD_FAULT", "")
    if fault == "hang":
        while True:
            time.sleep(60)
    if fault.startswith("silent:"):
        deadline = time.monotonic() + float(fault.split(":", 1)[1])
        while time.monotonic() < deadline:
            sum(i * i for i in range(10000))
        os.environ["FACEWATCH_BUILD_FAULT"] = ""
        return False
    if not fault.startswith("sigkill"):
        return False
    _, _, condition = fault.partition(":")
    if condition.startswith("workspace>="):
        return job["workspace_mb"] >= int(condition[len("workspace>="):])
    return True


def main():
    die_with_parent()
    job = json.loads(sys.stdin.read())
    from appliance.backends import load_backend
    backend = load_backend(job["backend"])

    def progress(phase, fraction):
        emit("phase", phase=phase, progress=round(float(fraction), 3))
        if injected_fault(job):
            os.kill(os.getpid(), signal.SIGKILL)

    try:
        backend.build_engine(job, progress)
    except Exception as exc:  # reported to the parent, which falls back; the child's job is to say why
        emit("error", message="{}: {}".format(type(exc).__name__, exc))
        return 1
    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
