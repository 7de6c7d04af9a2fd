"""The daemon against a real mosquitto: what subscribers see on the broker."""
import json
import re
import signal
import time

import pytest

from brokers import Mosquitto, Recorder, wait_until
from conftest import build_fault_env
from appliance.engine.evaluation import match_counts

PREFIX = "facewatch/testcam"


def telemetry_state(recorder):
    reports = recorder.json_on("telemetry")
    return reports[-1]["camera"]["state"] if reports else None


@pytest.mark.parametrize("workers", [1, 2])
def test_detections_on_a_clip_match_its_ground_truth_in_frame_order(mosquitto, daemon_factory, clip, workers):
    """Every frame handed over (realtime = false) and QoS 1: what arrives does not depend on the host's load,
    nor on which inference thread finished first."""
    path, truth = clip
    reference = {frame["frame"]: frame["faces"] for frame in truth["frames"]}
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = daemon_factory(mosquitto.port, {"source": path, "realtime": False}, detections={"qos": 1},
                            engine={"workers": workers})
    wait_until(lambda: len(recorder.on("detections")) >= len(reference), 120, message="a message per frame")
    wait_until(lambda: telemetry_state(recorder) == "ended", 30, message="the clip to end")
    messages = recorder.json_on("detections")
    assert [m["frame"] for m in messages] == sorted(reference), daemon.output()
    engine = recorder.json_on("telemetry")[-1]["engine"]
    assert (engine["workers"], engine["workers_reason"]) == (workers, "engine.workers = {}".format(workers))
    assert "inference: {} thread{} on onnxruntime".format(workers, "s" if workers > 1 else "") in daemon.output()
    scores = match_counts([([face["box"] for face in m["faces"]], reference[m["frame"]]) for m in messages])
    assert scores.recall >= 0.95 and scores.precision >= 0.95, scores
    first = messages[0]
    assert set(first) >= {"v", "ts", "seq", "frame", "camera", "width", "height", "faces", "latency_ms"}
    assert (first["width"], first["height"]) == (640, 480)
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    face = next(f for m in messages for f in m["faces"])
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and 0 < face["score"] <= 1


def test_engine_and_telemetry_are_published(mosquitto, daemon_factory, clip):
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True}, telemetry={"interval": 0.5,
                                                                                         "log_interval": 1.0})
    wait_until(lambda: len(recorder.on("telemetry")) >= 2, 30, message="telemetry")
    engine = recorder.json_on("engine")[-1]
    assert engine["state"] == "ready" and engine["backend"] == "onnxruntime"
    late = Recorder(mosquitto.port, PREFIX + "/engine")
    wait_until(lambda: late.on("engine"), 5, message="the retained engine state")
    assert late.on("engine")[-1][1] is True
    report = recorder.json_on("telemetry")[-1]
    assert report["fps"]["inference"] > 0 and report["fps"]["publish"] > 0 and report["processed"] > 0
    inference = report["latency_ms"]["inference"]
    assert 0 < inference["p50"] <= inference["p95"] <= inference["p99"] <= inference["max"] and inference["n"] > 0
    assert report["camera"]["state"] == "streaming" and report["engine"]["preprocessing"] == "cpu"
    assert report["camera"]["error"] is None   # null as every other absent error, not ""
    assert report["mqtt"]["connected"] is True
    assert "ram" in report["host"] and "temperatures" in report["host"]
    wait_until(lambda: "perf: " in daemon.output(), 10, message="the summary line in the log")
    line = [l for l in daemon.output().splitlines() if "perf: " in l][0]
    assert re.search(r"perf: \d+\.\d fps \(capture \d+\.\d\), capture->publish p50 [\d.]+ ms p99 [\d.]+ ms, \d+ "
                     r"faces, camera streaming, broker connected \(queue \d+\), dropped \d+", line), line


def test_status_goes_online_then_stopped_on_sigterm(mosquitto, daemon_factory, clip):
    recorder = Recorder(mosquitto.port, PREFIX + "/status")
    daemon = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True})
    wait_until(lambda: recorder.last("status") == "online", 30, message="online")
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=10) == 0, daemon.output()
    assert time.monotonic() - started < 5.0
    wait_until(lambda: recorder.last("status") == "stopped", 5, message="stopped")
    late = Recorder(mosquitto.port, PREFIX + "/status")
    wait_until(lambda: late.on("status"), 5, message="the retained status")
    assert late.on("status")[-1] == ("stopped", True)


def test_sigkill_leaves_offline_retained(mosquitto, daemon_factory, clip):
    recorder = Recorder(mosquitto.port, PREFIX + "/status")
    daemon = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True})
    wait_until(lambda: recorder.last("status") == "online", 30, message="online")
    daemon.process.kill()
    wait_until(lambda: recorder.last("status") == "offline", 15, message="the last will")
    late = Recorder(mosquitto.port, PREFIX + "/status")
    wait_until(lambda: late.on("status"), 5, message="the retained status")
    assert late.on("status")[-1] == ("offline", True)


def test_a_broker_restart_is_survived(tmp_path, mosquitto, daemon_factory, clip):
    daemon = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True})
    before = Recorder(mosquitto.port, PREFIX + "/#")
    wait_until(lambda: before.on("detections"), 30, message="detections before the restart")
    mosquitto.stop()
    wait_until(lambda: "connection to 127.0.0.1:{} lost".format(mosquitto.port) in daemon.output(), 30,
               message="the daemon to notice the broker is gone")
    restarted = Mosquitto(tmp_path / "..")
    restarted.port, restarted.config = mosquitto.port, mosquitto.config
    restarted.start()
    try:
        after = Recorder(mosquitto.port, PREFIX + "/#")
        wait_until(lambda: len(after.on("detections")) >= 5, 30, message="detections after the restart")
        assert after.last("status") == "online"
        wait_until(lambda: after.json_on("telemetry") and after.json_on("telemetry")[-1]["mqtt"]["reconnects"] >= 1,
                   10, message="a counted reconnect")
        assert daemon.process.poll() is None
    finally:
        restarted.stop()


def test_sigterm_during_a_silent_first_boot_build_stops_cleanly(mosquitto, daemon_factory, clip):
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True},
                            env=build_fault_env("hang"))
    wait_until(lambda: [e for e in recorder.json_on("engine") if e["state"] == "building" and e["phase"] != "starting"],
               60, message="the build to be under way")
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=10) == 0, daemon.output()
    assert time.monotonic() - started < 5.0
    wait_until(lambda: recorder.last("status") == "stopped", 5, message="stopped")
    assert "the build was stopped: facewatch is stopping" in daemon.output()


def test_a_start_that_fails_says_why_on_the_engine_topic(tmp_path, mosquitto, daemon_factory, clip):
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True},
                            engine={"cache_dir": "/proc/facewatch-engines"})
    assert daemon.process.wait(timeout=60) == 1
    assert "cannot create the engine cache /proc/facewatch-engines" in daemon.output()
    wait_until(lambda: recorder.json_on("engine"), 10, message="the engine topic")
    engine = recorder.json_on("engine")[-1]
    assert engine["state"] == "failed" and "cannot create the engine cache" in engine["error"]
    assert recorder.last("status") == "offline"


def test_a_stop_during_the_first_build_leaves_no_build_in_progress_retained(mosquitto, daemon_factory, clip):
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True}, env=build_fault_env("hang"))
    wait_until(lambda: [e for e in recorder.json_on("engine") if e["state"] == "building"], 60, message="building")
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=10) == 0
    late = Recorder(mosquitto.port, PREFIX + "/engine")
    wait_until(lambda: late.on("engine"), 10, message="the retained engine state")
    assert json.loads(late.on("engine")[-1][0])["state"] == "failed"


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR1])
def test_hangup_stops_cleanly_and_user_signals_are_ignored(mosquitto, daemon_factory, clip, signum):
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True})
    wait_until(lambda: recorder.on("detections"), 60, message="detections")
    daemon.process.send_signal(signum)
    if signum == signal.SIGHUP:
        assert daemon.process.wait(timeout=10) == 0
        wait_until(lambda: recorder.last("status") == "stopped", 10, message="stopped")
    else:
        wait_until(lambda: "SIGUSR1 ignored" in daemon.output(), 10, message="the signal ignored")
        seen = len(recorder.on("detections"))
        wait_until(lambda: len(recorder.on("detections")) > seen + 3, 30, message="detection going on")
        assert daemon.process.poll() is None


def write_wide_clip(path, source, frames=30):
    """The demo clip's first 30 frames (each has two faces; 30-39 have none), scaled to 1280x720 (written
    aside, then renamed into place)."""
    import os
    import cv2
    capture = cv2.VideoCapture(source)
    aside = str(path) + ".part.avi"
    writer = cv2.VideoWriter(aside, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (1280, 720))
    for _ in range(frames):
        ok, image = capture.read()
        if not ok:
            break
        writer.write(cv2.resize(image, (1280, 720)))
    writer.release()
    capture.release()
    os.rename(aside, str(path))


def test_a_camera_down_at_boot_does_not_hold_ready_and_its_frames_get_their_engine(tmp_path, mosquitto,
                                                                                   daemon_factory, clip):
    late = tmp_path / "late.avi"
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = daemon_factory(mosquitto.port, {"source": str(late), "realtime": False, "loop": True,
                                             "open_timeout": 0.5, "reconnect_min": 0.1, "reconnect_max": 0.3})
    wait_until(lambda: recorder.last("status") == "online", 60, message="online")
    wait_until(lambda: any(e["state"] == "ready" for e in recorder.json_on("engine")), 60, message="an engine")
    first = [e for e in recorder.json_on("engine") if e["state"] == "ready"][0]
    assert first["input_shape"] == [1, 3, 480, 640], daemon.output()  # no frame yet: the default 640x480
    write_wide_clip(late, clip[0])
    wait_until(lambda: any(e["state"] == "ready" and e["input_shape"] == [1, 3, 384, 640]
                           for e in recorder.json_on("engine")), 60, message="the engine for 1280x720 frames")
    assert recorder.last("status") == "online"
    served = len(recorder.on("detections"))
    wait_until(lambda: len(recorder.on("detections")) > served + 5, 30, message="detections on the new engine")
    wide = [m for m in recorder.json_on("detections") if m["width"] == 1280][-5:]
    assert all(m["height"] == 720 and m["faces"] for m in wide)
    assert all(0 <= face["box"][2] <= 1280 and 0 <= face["box"][3] <= 720 for m in wide for face in m["faces"])
    assert "frames are now 1280x720; switching to the engine for that size" in daemon.output()


def test_frames_with_faces_leave_a_retained_annotated_snapshot(mosquitto, daemon_factory, clip):
    import cv2
    import numpy as np
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon_factory(mosquitto.port, {"source": clip[0], "loop": True},
                   snapshot={"interval": 0.5, "max_width": 320, "quality": 70})
    wait_until(lambda: len(recorder.raw_on("snapshot")) >= 2, 60, message="two snapshots")
    late = Recorder(mosquitto.port, PREFIX + "/snapshot")
    jpeg, retained = wait_until(lambda: late.raw_on("snapshot"), 10, message="the retained snapshot")[0]
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert retained and image.shape == (240, 320, 3)
    wait_until(lambda: [t for t in recorder.json_on("telemetry") if t["snapshot"]["sent"] >= 2 and t["faces"] > 0],
               30, message="telemetry counting the snapshots sent and the faces of the latest frame")


def test_a_camera_flapping_between_two_sizes_switches_once_it_settles_and_says_so(tmp_path, mosquitto, daemon_factory,
                                                                                   clip):
    """An HTTP MJPEG camera switching 640x480 / 1280x720 every second, then settling on 1280x720 (whose engine
    is in the cache): no switch while it flaps, one once the size has held, and telemetry says why."""
    from conftest import run_cli
    from mjpeg_server import MjpegCamera, load_jpegs, resized
    built = run_cli("engines", "build", "--precision", "fp32", "--frame-size", "1280x720",
                    "--cache-dir", tmp_path / "engines")
    assert built.returncode == 0, built.stderr
    vga = load_jpegs(clip[0], limit=20)
    wide = resized(vga, 1280, 720)
    camera = MjpegCamera(vga).start()
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = daemon_factory(mosquitto.port, {"source": camera.url, "stall_timeout": 0.5, "read_timeout": 1.0,
                                             "open_timeout": 5.0, "reconnect_min": 0.05, "reconnect_max": 0.2},
                            engine={"precision": "fp32"})

    def ready(since=1):
        """The input shapes of the engines served after the first."""
        return [e["input_shape"] for e in recorder.json_on("engine") if e["state"] == "ready"][since:]
    try:
        wait_until(lambda: recorder.on("detections"), 60, message="detections")
        assert ready(0) == [[1, 3, 480, 640]]
        for change in range(8):
            camera.show(wide if change % 2 == 0 else vga)
            time.sleep(1.0)
        camera.show(wide)
        wait_until(lambda: [1, 3, 384, 640] in ready(), 20, message="the engine for 1280x720 frames")
        assert ready() == [[1, 3, 384, 640]], daemon.output()
        settled = wait_until(lambda: [t for t in recorder.json_on("telemetry")
                                      if t["engine"]["shape"]["engine_for"] == [1280, 720]], 10,
                             message="telemetry saying that the engine fits the frames")[-1]
    finally:
        camera.kill()
    shape = settled["engine"]["shape"]
    assert (shape["frames"], shape["pending"], shape["switches"]) == ([1280, 720], None, 1)
    assert shape["held_back"] >= 3 and shape["reason"] == "the 1280x720 engine serves 1280x720 frames"
    assert settled["engine"]["input_shape"] == [1, 3, 384, 640] and ready() == [[1, 3, 384, 640]]
    switches = [line for line in daemon.output().splitlines() if "switching to the engine" in line]
    assert len(switches) == 1 and "frames are now 1280x720; switching to the engine for that size" in switches[0]
