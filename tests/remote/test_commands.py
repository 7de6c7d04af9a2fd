"""Remote commands against a daemon on a real mosquitto: what an operator (or an attacker) sees."""
import json
import signal
import time
import uuid

import paho.mqtt.client as paho
import pytest

from appliance.remote.envelope import sign
from brokers import Recorder, paho_client, wait_until
from conftest import COMMAND_KEY as KEY
from conftest import build_fault_env, run_cli
from figures import record

PREFIX = "facewatch/testcam"


def envelope(command="status", device="testcam", key=KEY, ts=None, **args):
    document = {"v": 1, "id": uuid.uuid4().hex, "command": command, "device": device,
                "ts": int(time.time()) if ts is None else ts, "args": args}
    return sign(document, key) if key else document


def client(port, protocol=paho.MQTTv311):
    return paho_client(port, protocol, name="test-sender")


def send(sender, document, command=None, device="testcam", raw=None):
    topic = "facewatch/{}/cmd/{}".format(device, command or document["command"])
    sender.publish(topic, raw if raw is not None else json.dumps(document), qos=1).wait_for_publish(10)
    return document["id"] if document else None


def replies_to(recorder, command_id):
    return [r for r in recorder.json_on("reply") if r["id"] == command_id]


def final(recorder, command_id, timeout=120):
    return wait_until(lambda: [r for r in replies_to(recorder, command_id) if r["state"] in
                               ("done", "failed", "rejected")], timeout, message="the outcome of " + command_id)[0]


def start(daemon_factory, port, clip, key_file, env=None, **sections):
    commands = dict({"key_file": key_file}, **sections.pop("commands", {}))
    return daemon_factory(port, {"source": clip[0], "loop": True}, env=env, commands=commands, **sections)


def test_a_signed_rebuild_goes_accepted_progress_done_while_detection_goes_on(mosquitto, daemon_factory, clip,
                                                                             key_file):
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    start(daemon_factory, mosquitto.port, clip, key_file)
    wait_until(lambda: len(recorder.on("detections")) >= 10, 60, message="detections")
    first_key = recorder.json_on("engine")[-1]["key"]
    sender = client(mosquitto.port)
    command_id = send(sender, envelope("rebuild", precision="fp32", force=True))
    outcome = final(recorder, command_id)
    states = [r["state"] for r in replies_to(recorder, command_id)]
    assert states[0] == "accepted" and "progress" in states and outcome["state"] == "done", states
    assert replies_to(recorder, command_id)[0]["mode"] == "hot"
    assert outcome["precision"] == "fp32" and outcome["built"] is True
    engine_states = [e["state"] for e in recorder.json_on("engine")]
    assert engine_states[-1] == "ready" and "building" in engine_states[engine_states.index("ready"):]
    assert recorder.json_on("engine")[-1]["key"] == outcome["key"]
    # detections went on during the build: no gap over a second between messages from its acceptance to a
    # second after it (10 frames/s); not before it, where frame 0 waited for the engine at start-up
    times = [d["ts"] for d in recorder.json_on("detections")]
    accepted_at = replies_to(recorder, command_id)[0]["ts"]
    wait_until(lambda: recorder.json_on("detections")[-1]["ts"] > outcome["ts"] + 1, 30, message="detections after")
    around = [t for t in (d["ts"] for d in recorder.json_on("detections")) if accepted_at - 1 <= t <= outcome["ts"] + 1]
    gap = max(b - a for a, b in zip(around, around[1:]))
    record("hot rebuild", largest_detection_gap_s=round(gap, 2), old_key=first_key, new_key=outcome["key"])
    assert gap < 1.0, gap
    assert len(times) > 10


@pytest.mark.parametrize("case, reason", [
    ("unsigned", "missing signature"),
    ("wrong key", "bad signature"),
    ("stale", "behind this device's clock"),
    ("other device", "is for device 'cam9', not 'testcam'"),
    ("oversized", "at most 4096"),
    ("malformed", "payload is not JSON"),
    ("wrong type", "force must be bool"),
    ("unknown command", "unknown command 'reboot'"),
    ("unknown arg", "unknown arg(s) for rebuild: colour"),
    ("wrong topic", "for 'status' but was sent to the 'rebuild' topic"),
])
def test_every_bad_command_is_rejected_with_a_reply_and_never_run(mosquitto, daemon_factory, clip, key_file, case,
                                                                 reason):
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = start(daemon_factory, mosquitto.port, clip, key_file)
    wait_until(lambda: recorder.on("detections"), 60, message="detections")
    sender = client(mosquitto.port)
    engine_messages = len(recorder.on("engine"))
    document = {"unsigned": envelope(key=None), "wrong key": envelope(key=b"guess"),
                "stale": envelope(ts=int(time.time()) - 3600), "other device": envelope(device="cam9"),
                "wrong type": envelope("rebuild", force="yes"), "unknown command": envelope("reboot"),
                "unknown arg": envelope("rebuild", colour="blue"), "wrong topic": envelope()}.get(case)
    raw = {"oversized": json.dumps(dict(envelope(), pad="x" * 5000)), "malformed": b"{\"id\": \"m1\", "}.get(case)
    command = "rebuild" if case == "wrong topic" else None
    send(sender, document, command=command or ("status" if document is None else None), raw=raw)
    rejected = wait_until(lambda: [r for r in recorder.json_on("reply") if r["state"] == "rejected"], 30,
                          message="the rejection")[0]
    assert reason in rejected["error"] and rejected["ok"] is False
    if document:
        assert rejected["id"] == document["id"]
    assert not [e for e in recorder.json_on("engine")[engine_messages:] if e["state"] == "building"]
    assert daemon.process.poll() is None
    seen = len(recorder.on("detections"))
    wait_until(lambda: len(recorder.on("detections")) > seen + 5, 30, message="detections after the rejection")
    telemetry = wait_until(lambda: [t for t in recorder.json_on("telemetry") if t["commands"]["rejected"] >= 1], 10,
                           message="the rejection counted")[-1]
    assert reason in telemetry["commands"]["last_rejection"]


def test_a_replay_is_rejected_also_after_a_restart(mosquitto, daemon_factory, clip, key_file):
    recorder = Recorder(mosquitto.port, PREFIX + "/reply")
    daemon = start(daemon_factory, mosquitto.port, clip, key_file)
    sender = client(mosquitto.port)
    document = envelope()
    wait_until(lambda: "detecting" in daemon.output(), 60, message="the daemon to be ready")
    send(sender, document)
    assert final(recorder, document["id"])["state"] == "done"
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(30) == 0
    restarted = start(daemon_factory, mosquitto.port, clip, key_file, name="restarted")
    wait_until(lambda: "detecting" in restarted.output(), 60, message="the restarted daemon")
    send(sender, document)
    replayed = wait_until(lambda: [r for r in replies_to(recorder, document["id"]) if r["state"] == "rejected"], 30,
                          message="the replay's rejection")[0]
    assert "replayed id" in replayed["error"]


def test_a_second_rebuild_while_one_runs_is_rejected_naming_it_and_sigterm_stops_cleanly(tmp_path, mosquitto,
                                                                                        daemon_factory, clip, key_file):
    cache = str(tmp_path / "engines")
    assert run_cli("engines", "build", "--cache-dir", cache).returncode == 0  # first boot reuses it: no build
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = start(daemon_factory, mosquitto.port, clip, key_file, env=build_fault_env("hang"),
                   engine={"cache_dir": cache})
    wait_until(lambda: len(recorder.on("detections")) >= 5, 60, message="detections")
    sender = client(mosquitto.port)
    first = send(sender, envelope("rebuild", force=True))
    wait_until(lambda: [r for r in replies_to(recorder, first) if r["state"] == "progress"], 60, message="progress")
    second = send(sender, envelope("rebuild", force=True))
    rejected = final(recorder, second)
    assert rejected["state"] == "rejected" and "a rebuild is already running (id {})".format(first) in rejected["error"]
    seen = len(recorder.on("detections"))
    wait_until(lambda: len(recorder.on("detections")) > seen + 5, 30, message="detections during the build")
    stopped_at = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(30) == 0, daemon.output()
    assert time.monotonic() - stopped_at < 5
    assert final(recorder, first)["error"] == "stopped: facewatch is stopping"
    wait_until(lambda: recorder.last("status") == "stopped", 10, message="stopped")


def test_a_flood_of_signed_rebuilds_leaves_detection_running_and_one_build(tmp_path, mosquitto, daemon_factory, clip,
                                                                          key_file):
    cache = str(tmp_path / "engines")
    assert run_cli("engines", "build", "--cache-dir", cache).returncode == 0
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = start(daemon_factory, mosquitto.port, clip, key_file, env=build_fault_env("hang"),
                   engine={"cache_dir": cache})
    wait_until(lambda: len(recorder.on("detections")) >= 5, 60, message="detections")
    sender = client(mosquitto.port)
    started = time.monotonic()
    for _ in range(1000):
        sender.publish("facewatch/testcam/cmd/rebuild", json.dumps(envelope("rebuild", force=True)), qos=0)
    flood_seconds = time.monotonic() - started
    seen = len(recorder.on("detections"))
    wait_until(lambda: len(recorder.on("detections")) > seen + 10, 30, message="detections after the flood")
    telemetry = wait_until(lambda: [t for t in recorder.json_on("telemetry") if t["commands"]["rate_limited"]], 10,
                           message="the flood counted")[-1]["commands"]
    accepted = [r for r in recorder.json_on("reply") if r["state"] == "accepted"]
    record("1000 signed rebuilds in {:.2f} s".format(flood_seconds), builds_accepted=len(accepted),
           rejected=telemetry["rejected"], rate_limited=telemetry["rate_limited"])
    assert len(accepted) == 1 and daemon.process.poll() is None
    assert telemetry["rate_limited"] >= 900


def test_a_failed_rebuild_leaves_the_old_engine_serving_and_says_why(tmp_path, mosquitto, daemon_factory, clip,
                                                                    key_file):
    cache = str(tmp_path / "engines")
    assert run_cli("engines", "build", "--cache-dir", cache).returncode == 0
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    start(daemon_factory, mosquitto.port, clip, key_file, env=build_fault_env("sigkill"),
          engine={"cache_dir": cache})
    wait_until(lambda: len(recorder.on("detections")) >= 5, 60, message="detections")
    serving = recorder.json_on("engine")[-1]["key"]
    command_id = send(client(mosquitto.port), envelope("rebuild", precision="fp32", force=True))
    outcome = final(recorder, command_id)
    assert outcome["state"] == "failed" and "killed by SIGKILL" in outcome["error"]
    assert "the serving engine stays" in outcome["error"]
    engine = recorder.json_on("engine")[-1]
    assert engine["state"] == "ready" and engine["key"] == serving and "failed" in engine["error"]
    seen = len(recorder.on("detections"))
    wait_until(lambda: len(recorder.on("detections")) > seen + 5, 30, message="detections with the old engine")


def test_a_paused_rebuild_says_so_and_detection_resumes(mosquitto, daemon_factory, clip, key_file):
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    start(daemon_factory, mosquitto.port, clip, key_file, engine={"rebuild_mode": "paused"})
    wait_until(lambda: len(recorder.on("detections")) >= 5, 60, message="detections")
    command_id = send(client(mosquitto.port), envelope("rebuild", precision="fp32", force=True))
    accepted = wait_until(lambda: replies_to(recorder, command_id), 30, message="accepted")[0]
    assert accepted["mode"] == "paused" and accepted["inference"] == "paused during the build"
    outcome = final(recorder, command_id)
    assert outcome["state"] == "done"
    seen = len(recorder.on("detections"))
    wait_until(lambda: len(recorder.on("detections")) > seen + 5, 30, message="detections after the build")


def test_mqtt5_response_topic_and_correlation_data_are_honoured_for_signed_commands(mosquitto, daemon_factory, clip,
                                                                                   key_file):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    daemon = start(daemon_factory, mosquitto.port, clip, key_file)
    default = Recorder(mosquitto.port, PREFIX + "/reply")
    wait_until(lambda: "detecting" in daemon.output(), 60, message="the daemon")
    sender = client(mosquitto.port, paho.MQTTv5)
    received = []
    sender.on_message = lambda c, u, message: received.append(message)
    sender.subscribe("operators/me", qos=1)
    for document in (envelope(), envelope(key=b"wrong")):
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = "operators/me"
        properties.CorrelationData = document["id"].encode()
        sender.publish("facewatch/testcam/cmd/status", json.dumps(document), qos=1,
                       properties=properties).wait_for_publish(10)
    wait_until(lambda: received, 30, message="the reply on the response topic")
    wait_until(lambda: default.on("reply"), 30, message="the rejection on the default topic")
    assert len(received) == 1
    reply = json.loads(received[0].payload)
    assert reply["state"] == "done" and received[0].properties.CorrelationData == reply["id"].encode()
    assert json.loads(default.on("reply")[0][0])["state"] == "rejected"


def test_status_answers_during_the_first_boot_build_and_a_rebuild_waits(mosquitto, daemon_factory, clip, key_file):
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    start(daemon_factory, mosquitto.port, clip, key_file, env=build_fault_env("hang"))
    wait_until(lambda: [e for e in recorder.json_on("engine") if e["state"] == "building"], 60, message="the build")
    sender = client(mosquitto.port)
    status = final(recorder, send(sender, envelope()), timeout=30)
    assert status["state"] == "done" and status["status"]["phase"].startswith("building")
    rebuild = final(recorder, send(sender, envelope("rebuild")), timeout=30)
    assert rebuild["state"] == "rejected" and "facewatch is still starting (building" in rebuild["error"]


def test_ctl_against_two_daemons_with_all(mosquitto, daemon_factory, clip, key_file):
    for device in ("cam1", "cam2"):
        start(daemon_factory, mosquitto.port, clip, key_file, device=device)
    watcher = Recorder(mosquitto.port, "facewatch/+/detections")
    wait_until(lambda: {t.split("/")[1] for t, _, _ in watcher.messages} == {"cam1", "cam2"}, 60,
               message="both detecting")
    broker = ["--host", "127.0.0.1", "--port", str(mosquitto.port), "--key-file", key_file]
    status = run_cli("ctl", *broker + ["status", "all"], timeout=60)
    assert status.returncode == 0, status.stderr
    lines = sorted(status.stdout.splitlines())
    assert len(lines) == 2 and lines[0].startswith("cam1: engine ready") and lines[1].startswith("cam2: engine ready")
    rebuild = run_cli("ctl", *broker + ["rebuild", "all", "--precision", "fp32", "--force"], timeout=180)
    assert rebuild.returncode == 0, rebuild.stderr
    assert sum("rebuild done: FP32" in line for line in rebuild.stdout.splitlines()) == 2
    unsigned = run_cli("ctl", "--host", "127.0.0.1", "--port", str(mosquitto.port), "status", "cam1", timeout=60)
    assert unsigned.returncode == 2 and "cam1: status rejected: missing signature" in unsigned.stdout
    silent = run_cli("ctl", *broker + ["--timeout", "2", "status", "cam9"], timeout=60)
    assert silent.returncode == 1 and "no reply from cam9 within 2 s" in silent.stderr


def test_ctl_speaks_mqtt_3_1_1_too_and_shows_a_rebuilds_progress(mosquitto, daemon_factory, clip, key_file):
    start(daemon_factory, mosquitto.port, clip, key_file, mqtt={"protocol": "3.1.1"})
    watcher = Recorder(mosquitto.port, PREFIX + "/detections")
    wait_until(lambda: watcher.on("detections"), 60, message="detecting")
    result = run_cli("ctl", "--host", "127.0.0.1", "--port", str(mosquitto.port), "--protocol", "3.1.1",
                     "--key-file", key_file, "rebuild", "testcam", "--precision", "fp32", "--force", timeout=180)
    assert result.returncode == 0, result.stderr
    assert "rebuild accepted: FP32 hot" in result.stdout and "rebuild done: FP32 engine" in result.stdout
    assert "acceptance" in result.stderr  # the progress, phase by phase


def test_ten_thousand_malformed_payloads_through_the_broker_crash_nothing(mosquitto, daemon_factory, clip, key_file):
    import random
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = start(daemon_factory, mosquitto.port, clip, key_file)
    wait_until(lambda: len(recorder.on("detections")) >= 5, 60, message="detections")
    sender = client(mosquitto.port)
    randomness = random.Random(7)
    for index in range(10000):
        data = bytes(randomness.getrandbits(8) for _ in range(randomness.randrange(0, 200)))
        sender.publish("facewatch/{}/cmd/{}".format(randomness.choice(["testcam", "all"]),
                                                     randomness.choice(["rebuild", "status", "x"])), data, qos=0)
    seen = len(recorder.on("detections"))
    wait_until(lambda: len(recorder.on("detections")) > seen + 10, 30, message="detections after the flood")
    counted = wait_until(lambda: [t["commands"] for t in recorder.json_on("telemetry")
                                  if t["commands"]["rejected"] + t["commands"]["rate_limited"] >= 10000], 60,
                         message="every payload counted")[-1]
    running = daemon.process.poll() is None
    record("malformed commands x10000 through the broker", crashes=daemon.output().count(" thread died: "),
           rejected=counted["rejected"], rate_limited=counted["rate_limited"], daemon_running=running)
    assert running and counted["accepted"] == 0 and " thread died: " not in daemon.output()


def test_ctl_watch_follows_the_fleet_until_interrupted(mosquitto, daemon_factory, clip, key_file):
    import subprocess
    import sys
    start(daemon_factory, mosquitto.port, clip, key_file, telemetry={"interval": 0.5})
    watch = subprocess.Popen([sys.executable, "-m", "appliance", "ctl", "--host", "127.0.0.1", "--port",
                              str(mosquitto.port), "watch", "all"], stdout=subprocess.PIPE, universal_newlines=True)
    try:
        lines = []
        while not any(" telemetry " not in line and "testcam engine ready" in line for line in lines) or \
                not any("testcam engine" in line and "inference" in line for line in lines):
            lines.append(watch.stdout.readline())
            assert len(lines) < 500, lines[-5:]
        assert any("testcam status online" in line for line in lines)
    finally:
        watch.send_signal(signal.SIGINT)
        assert watch.wait(10) == 0


def test_the_snapshot_command_publishes_the_latest_frame_annotated(mosquitto, daemon_factory, clip, key_file):
    import cv2
    import numpy as np
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    start(daemon_factory, mosquitto.port, clip, key_file, snapshot={"enabled": False})
    wait_until(lambda: len(recorder.on("detections")) >= 3, 60, message="detections")
    assert [jpeg for jpeg, _ in recorder.raw_on("snapshot") if jpeg] == []   # enabled = false: none by itself
    assert recorder.raw_on("snapshot")[0] == (b"", False)   # and the retained one of an earlier run cleared
    command_id = send(client(mosquitto.port), envelope("snapshot"))
    outcome = final(recorder, command_id)
    assert outcome["state"] == "done" and outcome["topic"] == PREFIX + "/snapshot"
    jpeg, _ = wait_until(lambda: [m for m in recorder.raw_on("snapshot") if m[0]], 10, message="the snapshot")[-1]
    assert len(jpeg) == outcome["bytes"]
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[1] == 640
