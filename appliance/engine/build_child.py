"""The build itself, in a child process: `python -m appliance.engine.build_child` with the job as JSON on stdin.

Progress goes to stdout as JSON lines ({"event": "phase", "phase": ..., "progress": 0..1}); the last
line is {"event": "done"} or {"event": "error", "message": ...}. A crash (OOM kill, a TensorRT abort)
ends the child without either; the parent notices and decides what next. The child dies with its
parent (Linux PR_SET_PDEATHSIG), so a killed daemon leaves no build running.
"""
import ctypes
import json
import signal
import sys

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


def main():
    die_with_parent()
    job = json.loads(sys.stdin.read())
    from appliance.backends import load_backend
    backend = load_backend(job["backend"])

    def progress(phase, fraction):
        emit("phase", phase=phase, progress=round(float(fraction), 3))

    try:
        backend.build_engine(job, progress)
    except Exception as exc:  # reported to the parent, which falls back; the child's job is to say why
        emit("error", message="{}: {}".format(type(exc).__name__, exc))
        return 1
    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
