"""How fast an engine runs here: the median of timed inferences on the golden input at its size.

Candidates are timed in turns (A, B, A, B, ...) so that a change in the machine's load during the
measurement falls on all of them alike.
"""
import time

WARM_UP_RUNS = 3
TIMED_RUNS = 15


def latencies_ms(detectors, frame, runs=TIMED_RUNS):
    """{name: median inference milliseconds} for {name: Detector}, timed in turns on `frame`."""
    tensors = {}
    for name, detector in detectors.items():
        tensors[name], _ = detector.preprocess(frame)  # each detector's own buffer (or its device input)
        for _ in range(WARM_UP_RUNS):
            detector.infer(tensors[name])
    samples = {name: [] for name in detectors}
    for _ in range(runs):
        for name, detector in detectors.items():
            started = time.perf_counter()
            detector.infer(tensors[name])
            samples[name].append(time.perf_counter() - started)
    return {name: round(1000.0 * median(values), 3) for name, values in samples.items()}


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0


def fastest(latencies):
    """(name, reason) of the lowest latency in {name: ms}."""
    winner = min(sorted(latencies), key=lambda name: latencies[name])
    figures = ", ".join("{} {:.2f} ms".format(name.upper(), ms) for name, ms in
                        sorted(latencies.items(), key=lambda item: item[1]))
    return winner, figures
