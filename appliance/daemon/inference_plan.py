"""How many inference threads the pipeline runs, and how many threads each backend session gets.

On ONNX Runtime the default is two inference threads, each with its own session, taking frames in turn:
while one runs the engine, the other's frame is decoded, pre- and postprocessed, so the engine never
waits for the rest of the pipeline (bench/run.py's `workers` rows, docs/performance.md). The CPUs are
shared out between them. A backend that serves from one thread only (TensorRT: one CUDA context, one
execution context) gets one, and a larger `engine.workers` is reported with the reason, not obeyed.
"""
import os
from typing import NamedTuple

AUTO_WORKERS = 2

Plan = NamedTuple("Plan", [
    ("workers", int),   # inference threads, each with its own detector
    ("threads", int),   # backend threads per session (0: the backend's own choice)
    ("reason", str),
])


def available_cpus():
    """CPUs this process may run on (its affinity, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def plan_inference(workers, threads, backend_limit, cpus):
    """Plan for engine.workers = `workers` and engine.threads = `threads` (0: auto) on `cpus` CPUs.

    backend_limit: (most workers, why) of the chosen backend, or (0, "") when it has no limit.
    """
    most, why = backend_limit
    if most and (workers or AUTO_WORKERS) > most:
        if workers:
            reason = "engine.workers = {} asked, {} used: {}".format(workers, most, why)
        else:
            reason = "{} inference thread{}: {}".format(most, "" if most == 1 else "s", why)
        return Plan(most, threads_for(threads, most, cpus), reason)
    if workers:
        return Plan(workers, threads_for(threads, workers, cpus), "engine.workers = {}".format(workers))
    chosen = min(AUTO_WORKERS, cpus)
    if chosen == 1:
        return Plan(1, threads, "auto: one CPU, one inference thread")
    return Plan(chosen, threads_for(threads, chosen, cpus),
                "auto: {} inference threads on {} CPUs, each with its own session, so that one runs the engine "
                "while the other's frame is prepared".format(chosen, cpus))


def threads_for(threads, workers, cpus):
    """The configured backend threads per session, else the CPUs shared out (one worker: the backend's own
    choice, as engine.threads = 0 has always meant)."""
    if threads or workers == 1:
        return threads
    return max(1, cpus // workers)
