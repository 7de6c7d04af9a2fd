#!/usr/bin/env python3
"""facewatch's speed and memory on this machine, in one command: a table on stdout, JSON beside it.

    python3 bench/run.py [--frames 10000] [--threads 0] [--workers 0] [--json bench/results/latest.json]

Every ratio compares figures measured in this run, on this machine, one after the other (nothing else of
ours runs meanwhile). Frames are the demo clip's (640x480) and the same frames scaled to 1280x720.
  backend   the raw engine (ONNX Runtime session.run on one preprocessed tensor), FP32 and INT8 (the
            shipped Q/DQ model), at each frame size's network shape; inference only
  stages    preprocessing and postprocessing per frame (p50/p99); capture: grab only vs grab + decode
  threads   the daemon's Pipeline (camera, one inference thread, publish) in this process with ONNX Runtime
            at 1 and 2 threads, spinning on and off: frames/s against the raw engine at the same setting
  workers   the Pipeline with one inference thread and a 2-thread session against two inference threads
            with 1-thread sessions taking frames in turn (the default on 2 CPUs), each beside the engine
            alone run the same way (sessions at once, nothing else running) and the raw 2-thread engine
  daemon    `facewatch run` with a real mosquitto, reading the clip as fast as it is consumed (looped), the
            shipped defaults: frames/s (from telemetry's `processed`) against the raw engine at the same
            shape, its stage latencies and capture->publish (`total`) p50/p99, and its RSS growth
            between frame 1,000 and the last
Targets (issue 12): daemon/raw >= 0.90, preprocessing <= 1 ms at VGA, postprocessing <= 0.5 ms, RSS growth
<= 2 MB over 10,000 frames. Exit 1 when one is missed.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))

import cv2  # noqa: E402

from appliance.backends.ort_backend import OrtSession  # noqa: E402
from appliance.engine.detector import Detector  # noqa: E402
from appliance.manifest import load_model  # noqa: E402
from appliance.engine.shapes import network_size  # noqa: E402

CLIP = os.path.join(REPO_ROOT, "examples", "demo", "clip.avi")
FRAME_SIZES = ((640, 480), (1280, 720))
RAW_RUNS = 200
TARGETS = {"daemon_vs_raw": 0.90, "preprocess_ms_vga": 1.0, "postprocess_ms": 0.5, "rss_growth_mb": 2.0}


def percentile_ms(seconds, q):
    return round(1000.0 * float(np.percentile(seconds, q)), 3)


def clip_at(size, directory):
    """The demo clip at `size` (its own file when 640x480, else its frames scaled, as MJPG)."""
    if size == (640, 480):
        return CLIP
    path = os.path.join(directory, "clip-{}x{}.avi".format(*size))
    capture = cv2.VideoCapture(CLIP)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), capture.get(cv2.CAP_PROP_FPS) or 25, size)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR))
    writer.release()
    capture.release()
    return path


def frames_of(path):
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def raw_fps(sessions, tensor, runs=RAW_RUNS):
    """{name: frames/s} of session.run alone, the sessions timed in turns on the same tensor."""
    samples = {name: [] for name in sessions}
    for session in sessions.values():
        for _ in range(5):
            session.infer(tensor)
    for _ in range(runs):
        for name, session in sessions.items():
            started = time.perf_counter()
            session.infer(tensor)
            samples[name].append(time.perf_counter() - started)
    return {name: round(1.0 / float(np.median(values)), 1) for name, values in samples.items()}


def bench_backend(model, frames_by_size, threads):
    rows = []
    for size, frames in frames_by_size.items():
        network = network_size(size[0], size[1], 640, 32)
        detector = Detector(OrtSession(model.onnx_path, threads), model, size=network)
        tensor, _ = detector.preprocess(frames[0])
        sessions = {"fp32": detector.session, "int8": OrtSession(model.qdq_path, threads)}
        fps = raw_fps(sessions, tensor.copy())
        rows.append({"frame": list(size), "network": list(network), "fp32_fps": fps["fp32"],
                     "int8_fps": fps["int8"], "int8_vs_fp32": round(fps["int8"] / fps["fp32"], 2)})
        sessions["int8"].close()
        detector.close()
    return rows


def bench_stages(model, frames_by_size, paths_by_size, threads):
    rows = []
    for size, frames in frames_by_size.items():
        network = network_size(size[0], size[1], 640, 32)
        with Detector(OrtSession(model.onnx_path, threads), model, size=network) as detector:
            pre, post = [], []
            for frame in frames * 3:
                started = time.perf_counter()
                tensor, letterbox = detector.preprocess(frame)
                pre.append(time.perf_counter() - started)
                outputs = detector.infer(tensor)
                started = time.perf_counter()
                detector.postprocess(outputs, letterbox)
                post.append(time.perf_counter() - started)
        grab, decode = capture_costs(paths_by_size[size])
        rows.append({"frame": list(size), "preprocess_p50_ms": percentile_ms(pre, 50),
                     "preprocess_p99_ms": percentile_ms(pre, 99), "postprocess_p50_ms": percentile_ms(post, 50),
                     "postprocess_p99_ms": percentile_ms(post, 99), "grab_ms": grab, "grab_and_decode_ms": decode})
    return rows


def capture_costs(path):
    """Median ms per frame of grab() alone and of grab() + retrieve(), over the whole clip."""
    costs = []
    for decode in (False, True):
        capture = cv2.VideoCapture(path)
        times = []
        while True:
            started = time.perf_counter()
            if not capture.grab() or (decode and capture.retrieve()[1] is None):
                break
            times.append(time.perf_counter() - started)
        capture.release()
        costs.append(percentile_ms(times, 50))
    return costs


def pipeline_fps(model, path, workers, threads, allow_spinning, frames):
    """Frames/s of the daemon's Pipeline in this process (camera reading the clip as fast as consumed,
    `workers` inference threads each with a session of `threads` threads, publish serialising the detections
    as the daemon does) over `frames` frames."""
    from appliance.camera.capture import Camera
    from appliance.config.schema import build
    from appliance.daemon.pipeline import Pipeline
    from appliance.daemon.supervisor import Supervisor
    stop = threading.Event()
    settings = build({"camera": {"source": path, "realtime": False, "loop": True}}, path=None).camera
    camera = Camera(settings, stop)
    network = network_size(640, 480, 640, 32)
    detectors = [Detector(OrtSession(model.onnx_path, threads, allow_spinning=allow_spinning), model, size=network)
                 for _ in range(workers)]
    for detector in detectors:
        detector.warm_up()
    done = threading.Event()
    marks = []

    def publish(result):
        json.dumps({"faces": result.detections.boxes.tolist(), "scores": result.detections.scores.tolist()})
        marks.append(time.monotonic())
        if len(marks) >= frames:
            done.set()
    supervisor = Supervisor(stop)
    supervisor.start("camera", camera.run)
    pipeline = Pipeline(camera, detectors, publish, stop).start(supervisor)
    done.wait(600)
    stop.set()
    supervisor.join(["camera"] + list(pipeline.threads))
    pipeline.close_detectors()
    measured = marks[len(marks) // 10:]   # the first tenth is warm-up
    return round((len(measured) - 1) / (measured[-1] - measured[0]), 1), pipeline.processed


def bench_threads(model, frames, frames_count):
    network = network_size(640, 480, 640, 32)
    rows = []
    for threads in (1, 2):
        for spinning in (True, False):
            with Detector(OrtSession(model.onnx_path, threads, allow_spinning=spinning), model,
                          size=network) as detector:
                tensor, _ = detector.preprocess(frames[0])
                raw = raw_fps({"raw": detector.session}, tensor)["raw"]
            fps, _ = pipeline_fps(model, CLIP, 1, threads, spinning, frames_count)
            rows.append({"ort_threads": threads, "spinning": spinning, "raw_fps": raw, "pipeline_fps": fps,
                         "pipeline_vs_raw": round(fps / raw, 2)})
    return rows


def raw_parallel_fps(model, tensor, sessions, threads, runs=RAW_RUNS):
    """Frames/s of `sessions` sessions of `threads` threads each running the same tensor at once, each on
    its own thread: the most the engine gives when nothing else runs."""
    opened = [OrtSession(model.onnx_path, threads) for _ in range(sessions)]
    for session in opened:
        for _ in range(5):
            session.infer(tensor)
    workers = [threading.Thread(target=lambda s=session: [s.infer(tensor) for _ in range(runs)]) for session in opened]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    for session in opened:
        session.close()
    return round(sessions * runs / elapsed, 1)


def bench_workers(model, frames, frames_count, raw_reference):
    """The pipeline with one inference thread and a 2-thread session against two inference threads with
    1-thread sessions (the shipped default on 2 CPUs), beside the engine alone run both ways."""
    network = network_size(640, 480, 640, 32)
    with Detector(OrtSession(model.onnx_path, 1), model, size=network) as detector:
        tensor = detector.preprocess(frames[0])[0].copy()
    rows = []
    for workers, threads in ((1, 2), (2, 1)):
        fps, _ = pipeline_fps(model, CLIP, workers, threads, False, frames_count)
        alone = raw_parallel_fps(model, tensor, workers, threads)
        rows.append({"workers": workers, "ort_threads": threads, "pipeline_fps": fps, "engine_alone_same_way": alone,
                     "vs_alone_same_way": round(fps / alone, 2), "raw_2_threads": raw_reference,
                     "vs_raw": round(fps / raw_reference, 2)})
    return rows


def rss_mb(pid):
    with open("/proc/{}/status".format(pid)) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def bench_daemon(model, size, path, frames, threads, workers, workdir, raw_fps_at_shape):
    """The real daemon on the clip, looped, until telemetry counts `frames` processed."""
    from brokers import Mosquitto, Recorder
    from tomli_w_lite import dumps
    broker = Mosquitto(tempfile.mkdtemp(dir=workdir)).start()
    config = os.path.join(workdir, "bench-{}x{}.toml".format(*size))
    with open(config, "w") as out:
        out.write(dumps({
            "camera": {"source": path, "realtime": False, "loop": True},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "device_id": "bench"},
            "telemetry": {"interval": 1.0},
            "engine": {"backend": "onnxruntime", "precision": "fp32", "threads": threads, "workers": workers,
                       "cache_dir": os.path.join(workdir, "engines")}}))
    recorder = Recorder(broker.port, "facewatch/bench/telemetry")
    log = open(os.path.join(workdir, "daemon-{}x{}.log".format(*size)), "w")
    daemon = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", config], stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        first = wait_for_processed(recorder, daemon, 1000)
        rss_first = rss_mb(daemon.pid)
        last = wait_for_processed(recorder, daemon, frames)
        rss_last = rss_mb(daemon.pid)
    finally:
        daemon.terminate()
        daemon.wait(30)
        log.close()
        recorder.close()
        broker.stop()
    fps = (last["processed"] - first["processed"]) / (last["ts"] - first["ts"])
    stages = {stage: {"p50": values["p50"], "p99": values["p99"]} for stage, values in last["latency_ms"].items()}
    return {"frame": list(size), "network": list(network_size(size[0], size[1], 640, 32)),
            "frames": last["processed"], "workers": last["engine"].get("workers"),
            "ort_threads": last["engine"].get("threads_per_worker"), "daemon_fps": round(fps, 1), "raw_fps": raw_fps_at_shape,
            "daemon_vs_raw": round(fps / raw_fps_at_shape, 2), "latency_ms": stages,
            "rss_at_1000_mb": round(rss_first, 1), "rss_at_end_mb": round(rss_last, 1),
            "rss_growth_mb": round(rss_last - rss_first, 2), "skipped_by_camera": last["camera"].get("skipped"),
            "dropped": last["dropped_frames"]}


def wait_for_processed(recorder, daemon, count, timeout=1800):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit("the daemon stopped (exit {}); see its log in the work folder".format(daemon.returncode))
        reports = recorder.json_on("telemetry")
        if reports and reports[-1].get("processed", 0) >= count:
            return reports[-1]
        time.sleep(0.2)
    raise SystemExit("the daemon did not reach {} frames in {} s".format(count, timeout))


def print_table(title, rows):
    if not rows:
        return
    columns = [key for key in rows[0] if not isinstance(rows[0][key], dict)]
    print("\n" + title)
    print("  ".join("{:>14}".format(c[:14]) for c in columns))
    for row in rows:
        print("  ".join("{:>14}".format(str(row[c])[:14]) for c in columns))


def verdicts(results):
    checks = []
    for row in results["daemon"]:
        checks.append(("daemon/raw at {}x{}".format(*row["frame"]), row["daemon_vs_raw"], ">=",
                       TARGETS["daemon_vs_raw"], row["daemon_vs_raw"] >= TARGETS["daemon_vs_raw"]))
    vga = [r for r in results["stages"] if r["frame"] == [640, 480]][0]
    checks.append(("preprocess p50 ms at VGA", vga["preprocess_p50_ms"], "<=", TARGETS["preprocess_ms_vga"],
                   vga["preprocess_p50_ms"] <= TARGETS["preprocess_ms_vga"]))
    for row in results["stages"]:
        checks.append(("postprocess p50 ms at {}x{}".format(*row["frame"]), row["postprocess_p50_ms"], "<=",
                       TARGETS["postprocess_ms"], row["postprocess_p50_ms"] <= TARGETS["postprocess_ms"]))
    long_run = max(results["daemon"], key=lambda r: r["frames"])
    checks.append(("RSS growth MB over {} frames".format(long_run["frames"]), long_run["rss_growth_mb"], "<=",
                   TARGETS["rss_growth_mb"], long_run["rss_growth_mb"] <= TARGETS["rss_growth_mb"]))
    return checks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10000, help="frames through the daemon at VGA")
    parser.add_argument("--threads", type=int, default=0,
                        help="engine.threads for the raw engine and the daemon (0: as shipped)")
    parser.add_argument("--workers", type=int, default=0, help="the daemon's engine.workers (0: as shipped)")
    parser.add_argument("--json", default=os.path.join(REPO_ROOT, "bench", "results", "latest.json"))
    arguments = parser.parse_args()
    if arguments.frames < 2000:
        parser.error("--frames: at least 2000 (the daemon is measured between frame 1,000 and the last)")
    model = load_model()
    workdir = tempfile.mkdtemp(prefix="facewatch-bench-")
    paths = {size: clip_at(size, workdir) for size in FRAME_SIZES}
    frames = {size: frames_of(path) for size, path in paths.items()}
    results = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                           "onnxruntime": __import__("onnxruntime").__version__, "opencv": cv2.__version__},
               "threads": arguments.threads}
    results["backend"] = bench_backend(model, frames, arguments.threads)
    print_table("backend: raw engine frames/s (inference only)", results["backend"])
    results["stages"] = bench_stages(model, frames, paths, arguments.threads)
    print_table("stages: per frame, ms", results["stages"])
    results["threads"] = bench_threads(model, frames[(640, 480)], max(1000, arguments.frames // 5))
    print_table("threads: the pipeline in-process at VGA, ONNX Runtime settings", results["threads"])
    raw_two = [r for r in results["threads"] if r["ort_threads"] == 2 and not r["spinning"]][0]["raw_fps"]
    results["workers"] = bench_workers(model, frames[(640, 480)], max(1000, arguments.frames // 5), raw_two)
    print_table("workers: inference threads with their own sessions, at VGA", results["workers"])
    results["daemon"] = []
    for size, count in (((640, 480), arguments.frames), ((1280, 720), max(2000, arguments.frames // 5))):
        raw = [r for r in results["backend"] if r["frame"] == list(size)][0]["fp32_fps"]
        results["daemon"].append(bench_daemon(model, size, paths[size], count, arguments.threads, arguments.workers,
                                              workdir, raw))
    print_table("daemon: facewatch run, FP32, clip looped as fast as consumed", results["daemon"])
    for row in results["daemon"]:
        print("  {}x{} latency ms: {}".format(row["frame"][0], row["frame"][1], ", ".join(
            "{} {}/{}".format(stage, v["p50"], v["p99"]) for stage, v in row["latency_ms"].items())))
    checks = verdicts(results)
    results["targets"] = [dict(zip(("what", "measured", "op", "target", "met"), check)) for check in checks]
    print("\ntargets")
    for what, measured, op, target, met in checks:
        print("  {:<40} {:>8} {} {:<6} {}".format(what, measured, op, target, "met" if met else "MISSED"))
    os.makedirs(os.path.dirname(os.path.abspath(arguments.json)), exist_ok=True)
    with open(arguments.json, "w") as out:
        json.dump(results, out, indent=2)
    print("\nwritten: {}".format(arguments.json))
    return 0 if all(check[-1] for check in checks) else 1


def cpu_name():
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
