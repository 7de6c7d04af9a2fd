"""`facewatch ctl` against devices it must not trust: a real mosquitto and fake devices (paho clients on
their own topics, as the per-device ACLs allow) that answer commands with hostile replies and publish
garbage on their status, engine and telemetry topics. What is checked is what an operator sees: the
lines ctl prints and its exit code."""
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from brokers import Recorder, paho_client, wait_until
from conftest import run_cli

PREFIX = "facewatch"


class FakeDevice:
    """A device NAME that answers every command it sees (on PREFIX/NAME/cmd/+ and PREFIX/all/cmd/+) with
    the messages answer(envelope, payload bytes) returns: [(payload bytes)] on PREFIX/NAME/reply, or
    [(topic, payload bytes)] anywhere. `received` keeps the raw commands."""

    def __init__(self, port, name, answer):
        self.name, self.answer, self.received = name, answer, []
        subscribed = threading.Event()
        self.client = paho_client(port)
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._on_message
        self.client.subscribe([("{}/{}/cmd/+".format(PREFIX, name), 1), ("{}/all/cmd/+".format(PREFIX), 1)])
        assert subscribed.wait(10)

    def _on_message(self, client, userdata, message):
        payload = bytes(message.payload)
        self.received.append(payload)
        for item in self.answer(json.loads(payload.decode("utf-8")), payload):
            topic, data = item if isinstance(item, tuple) else ("{}/{}/reply".format(PREFIX, self.name), item)
            client.publish(topic, data, qos=1)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def device_factory(mosquitto):
    made = []

    def make(name, answer):
        made.append(FakeDevice(mosquitto.port, name, answer))
        return made[-1]
    yield make
    for device in made:
        device.close()


def reply(envelope, sender, state="done", **fields):
    """A reply as device `sender` writes it (topics.reply_payload), with `fields` added or replaced."""
    document = {"v": 1, "ts": round(time.time(), 3), "device": sender, "id": envelope["id"],
                "command": envelope["command"], "state": state, "ok": state not in ("failed", "rejected"),
                "error": None}
    document.update(fields)
    return json.dumps(document).encode("utf-8")


STATUS = {"phase": "detecting on clip.avi", "uptime": 12.5,
          "engine": {"state": "ready", "backend": "onnxruntime", "precision": "fp32"},
          "camera": {"state": "running"}, "fps": {"capture": 10.0, "inference": 10.0},
          "latency_ms": {"inference": {"p50": 20.5}}, "mqtt": {"connected": True}}


def ctl(port, *args, **kwargs):
    timeout = kwargs.pop("wait", "5")
    return run_cli("ctl", "--host", "127.0.0.1", "--port", port, "--timeout", timeout, *args, timeout=120, **kwargs)


def assert_no_crash(result):
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result.stderr


# --- replies that make no sense ---------------------------------------------------------------------------

@pytest.mark.parametrize("action, target", [("status", "evil"), ("status", "all"), ("rebuild", "evil")])
def test_a_reply_nested_5000_deep_is_not_understood_and_fails(mosquitto, device_factory, action, target):
    nested = b'{"v":1,"id":"x","deep":' + b"[" * 5000 + b"]" * 5000 + b"}"
    device_factory("evil", lambda envelope, payload: [nested])
    result = ctl(mosquitto.port, action, target)
    assert_no_crash(result)
    assert "evil: reply not understood: reply nests 5001 levels deep; at most 32" in result.stdout
    assert result.returncode == 1


@pytest.mark.parametrize("fields, why", [
    ({"device": ["x"], "status": None}, "device must be a string, not an array"),
    ({"status": None}, "status must be a JSON object, not null"),
    ({"status": ["x"]}, "status must be a JSON object, not an array"),
    ({"status": dict(STATUS, fps={"capture": "fast"})}, "status.fps.capture must be a number, not a string"),
    ({"status": dict(STATUS, engine=[1])}, "status.engine must be an object, not an array"),
    ({"state": "exploded", "status": STATUS}, "state must be one of accepted, progress, done, failed, rejected"),
    ({"state": "failed", "ok": True, "error": "x"}, "ok is True in a failed reply"),
    ({"state": "failed", "error": 7}, "error must be a string, not a number"),
    ({"ts": "now", "status": STATUS}, "ts must be a number, not a string"),
    ({"v": 2, "status": STATUS}, "v must be 1, not 2"),
    ({"command": "rebuild", "status": STATUS}, "it answers 'rebuild', not status"),
])
def test_a_garbage_status_reply_is_not_understood_and_fails(mosquitto, device_factory, fields, why):
    device_factory("evil", lambda envelope, payload: [reply(envelope, "evil", **fields)])
    result = ctl(mosquitto.port, "status", "evil")
    assert_no_crash(result)
    assert result.stdout.startswith("evil: reply not understood: " + why), result.stdout
    assert "rebuild done" not in result.stdout
    assert result.returncode == 1


@pytest.mark.parametrize("fields, why", [
    ({}, "precision must be a string, not null"),
    ({"precision": "fp16", "key": 5, "built": True}, "key must be a string, not a number"),
    ({"precision": "fp16", "key": "k", "built": "yes"}, "built must be a boolean, not a string"),
])
def test_a_done_rebuild_without_its_fields_is_not_understood(mosquitto, device_factory, fields, why):
    device_factory("evil", lambda envelope, payload: [reply(envelope, "evil", **fields)])
    result = ctl(mosquitto.port, "rebuild", "evil")
    assert_no_crash(result)
    assert "evil: reply not understood: " + why in result.stdout
    assert result.returncode == 1


def test_a_reply_from_one_device_naming_another_is_counted_against_the_topics_device(mosquitto, device_factory):
    device_factory("cam1", lambda envelope, payload: [reply(envelope, "cam1", status=STATUS)])
    device_factory("evil", lambda envelope, payload: [reply(envelope, "cam1", state="failed",
                                                            error="engine melted; replace the device")])
    result = ctl(mosquitto.port, "status", "all")
    assert_no_crash(result)
    lines = sorted(result.stdout.splitlines())
    assert lines[0].startswith("cam1: engine ready onnxruntime FP32 | camera running 10.0 fps"), lines
    assert lines[1] == "evil: reply not understood: it says it is from device 'cam1' but came on evil's reply topic"
    assert "melted" not in result.stdout
    assert result.returncode == 1


def test_with_all_the_exit_code_is_the_worst_and_one_not_understood_stays_a_failure(mosquitto, device_factory):
    device_factory("cam1", lambda envelope, payload: [reply(envelope, "cam1", status=STATUS)])
    device_factory("evil", lambda envelope, payload: [b"[1]"] * 50 + [reply(envelope, "evil", status=STATUS)])
    result = ctl(mosquitto.port, "status", "all")
    assert_no_crash(result)
    assert [line for line in result.stdout.splitlines() if "not understood" in line] == [
        "evil: reply not understood: the reply must be a JSON object, not an array"]   # once, not 50 times
    assert result.returncode == 1


# --- text from a device -----------------------------------------------------------------------------------

ESCAPES = "\x1b]0;owned\x07\x1b[2J"


@pytest.mark.parametrize("fields", [{"state": "failed", "error": ESCAPES},
                                    {"status": dict(STATUS, engine={"state": ESCAPES})}])
def test_terminal_escapes_from_a_device_are_printed_escaped(mosquitto, device_factory, fields):
    device_factory("evil", lambda envelope, payload: [reply(envelope, "evil", **fields)])
    result = ctl(mosquitto.port, "status", "evil")
    assert_no_crash(result)
    assert "\\x1b]0;owned\\x07\\x1b[2J" in result.stdout
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout + result.stderr


def test_a_long_error_is_shown_cut_saying_how_much_was_left_out(mosquitto, device_factory):
    device_factory("evil", lambda envelope, payload: [reply(envelope, "evil", state="failed", error="A" * 200000)])
    result = ctl(mosquitto.port, "status", "evil")
    assert_no_crash(result)
    assert result.stdout.startswith("evil: status failed: AAAA")
    assert result.stdout.rstrip().endswith("... (199700 more characters)")
    assert len(result.stdout) < 500
    assert result.returncode == 1


def test_a_4_mb_reply_over_mqtt_3_1_1_is_not_understood_and_not_printed(mosquitto, device_factory):
    device_factory("evil", lambda envelope, payload: [reply(envelope, "evil", state="failed", error="A" * (4 << 20))])
    result = ctl(mosquitto.port, "--protocol", "3.1.1", "status", "evil")
    assert_no_crash(result)
    assert result.stdout.startswith("evil: reply not understood: reply of 4194")
    assert result.stdout.rstrip().endswith("bytes; at most 262144")
    assert len(result.stdout) < 200
    assert result.returncode == 1


def test_over_mqtt_5_the_broker_never_hands_ctl_a_4_mb_reply(mosquitto, device_factory):
    device_factory("evil", lambda envelope, payload: [reply(envelope, "evil", state="failed", error="A" * (4 << 20)),
                                                      reply(envelope, "evil", status=STATUS)])
    result = ctl(mosquitto.port, "--protocol", "5", "status", "evil")
    assert_no_crash(result)
    assert result.stdout.startswith("evil: engine ready")   # the small reply that came after it
    assert "AAAA" not in result.stdout and result.returncode == 0


# --- progress ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, why", [
    ({"fraction": 0.5, "eta_s": "soon"}, "eta_s must be a number, not a string"),
    ({"fraction": "NaN", "eta_s": 3}, "fraction must be a number, not a string"),
    ({"fraction": 1.5, "eta_s": None}, "fraction is 1.5; it must be within 0 to 1"),
    ({"fraction": 0.5, "eta_s": -4}, "eta_s is -4; it must be within 0 to"),
])
def test_a_progress_that_cannot_be_read_is_said_and_the_rebuild_goes_on(mosquitto, device_factory, fields, why):
    def answer(envelope, payload):
        return [reply(envelope, "evil", "accepted", precision="fp32", mode="hot", mode_reason="plenty of memory",
                      inference="continues during the build", force=True),
                reply(envelope, "evil", "progress", phase="building", **fields),
                reply(envelope, "evil", precision="fp32", key="k1", built=True, fallback_reason=None)]
    device_factory("evil", answer)
    result = ctl(mosquitto.port, "rebuild", "evil")
    assert_no_crash(result)
    assert "building: progress could not be read: " + why in result.stderr
    assert "evil: rebuild done: FP32 engine k1 (built)" in result.stdout
    assert result.returncode == 0


# --- rejections and clocks --------------------------------------------------------------------------------

def test_a_rejection_without_an_id_is_recognised_by_the_sha256_of_what_ctl_sent(mosquitto, device_factory):
    def answer(envelope, payload):
        rejection = {"id": None, "state": "rejected", "error": "payload of 49329 bytes; at most 4096"}
        return [reply(envelope, "evil", **dict(rejection, payload_sha256=hashlib.sha256(b"another").hexdigest())),
                reply(envelope, "evil", **dict(rejection, payload_sha256=hashlib.sha256(payload).hexdigest()))]
    device_factory("evil", answer)
    result = ctl(mosquitto.port, "status", "evil")
    assert_no_crash(result)
    assert result.stdout.splitlines() == ["evil: status rejected: payload of 49329 bytes; at most 4096"]
    assert "is it online" not in result.stderr
    assert result.returncode == 2


def test_ctl_sends_utf_8_as_itself_not_as_escapes(mosquitto, device_factory):
    device = device_factory("kamera-é", lambda envelope, payload: [reply(envelope, "kamera-é", status=STATUS)])
    result = ctl(mosquitto.port, "status", "kamera-é")
    assert result.returncode == 0, result.stderr
    assert "kamera-é".encode("utf-8") in device.received[0] and b"\\u" not in device.received[0]


def test_a_command_over_the_devices_size_limit_is_refused_before_it_is_sent(mosquitto):
    from appliance.errors import EXIT_USAGE, UsageError
    from appliance.remote.client import Controller
    recorder = Recorder(mosquitto.port, "facewatch/#")
    recorder.subscribed.wait(10)
    controller = Controller("127.0.0.1", mosquitto.port, PREFIX)
    try:
        with pytest.raises(UsageError) as refused:
            controller.send("status", "é" * 2100, {}, b"key")
    finally:
        controller.close()
    assert refused.value.exit_code == EXIT_USAGE
    assert str(refused.value).startswith("the command would be a payload of 43")
    assert "bytes (UTF-8, as sent); a device accepts at most 4096" in str(refused.value)
    time.sleep(0.5)
    assert recorder.messages == []


@pytest.mark.parametrize("offset, state, fields, said", [
    (-150, "done", {"status": STATUS}, "evil's clock is 150 s behind this computer's"),
    (3, "rejected", {"error": "ts is 63 s behind this device's clock"},
     "evil's clock is 3 s ahead of this computer's"),
])
def test_the_skew_of_a_devices_clock_is_said(mosquitto, device_factory, offset, state, fields, said):
    def answer(envelope, payload):
        return [reply(envelope, "evil", state, ts=time.time() + offset, **fields)]
    device_factory("evil", answer)
    result = ctl(mosquitto.port, "status", "evil")
    assert_no_crash(result)
    line = [line for line in result.stderr.splitlines() if "clock" in line]
    assert len(line) == 1 and line[0].startswith("facewatch ctl: " + said + " (device 20"), result.stderr
    assert line[0].endswith(" UTC); a command is refused when they differ by more than 60 s")


def test_a_device_whose_clock_agrees_gets_no_skew_line(mosquitto, device_factory):
    device_factory("evil", lambda envelope, payload: [reply(envelope, "evil", status=STATUS)])
    result = ctl(mosquitto.port, "status", "evil")
    assert result.returncode == 0 and "clock" not in result.stderr


# --- watch ------------------------------------------------------------------------------------------------

class Watch:
    """`facewatch ctl watch all` in its own process; its lines gathered as they come."""

    def __init__(self, port):
        self.process = subprocess.Popen([sys.executable, "-m", "appliance", "ctl", "--host", "127.0.0.1", "--port",
                                         str(port), "watch", "all"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        universal_newlines=True)
        self.lines = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")))
        self._reader.start()

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(10)
        self._reader.join(10)
        return code, self.process.stderr.read()


HOSTILE = [b"[1]", b"null", b'"x"']


def test_watch_all_survives_anything_retained_on_any_devices_telemetry_and_engine(mosquitto):
    publisher = paho_client(mosquitto.port)
    for index, payload in enumerate(HOSTILE):
        for kind in ("telemetry", "engine"):
            topic = "facewatch/bad{}/{}".format(index, kind)
            publisher.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    watch = Watch(mosquitto.port)
    try:
        wait_until(lambda: len([line for line in watch.lines if "not understood" in line]) == 6, 20,
                   message="six lines not understood")
        publisher.publish("facewatch/bad9/telemetry", b"[" * 5000, qos=1).wait_for_publish(10)
        publisher.publish("facewatch/bad9/engine", b"\xff\xfe", qos=1).wait_for_publish(10)
        publisher.publish("facewatch/good/engine", json.dumps({"state": "ready", "precision": "fp16"}), qos=1)
        wait_until(lambda: any("good engine ready FP16" in line for line in watch.lines), 20, message="the good line")
    finally:
        code, stderr = watch.stop()
        publisher.loop_stop()
    assert code == 0 and "Traceback" not in stderr and "internal error" not in stderr, stderr
    shown = "".join(watch.lines)
    assert "bad0 telemetry (not understood: telemetry must be a JSON object, not an array)" in shown
    assert "bad1 engine (not understood: engine must be a JSON object, not null)" in shown
    assert "bad2 telemetry (not understood: telemetry must be a JSON object, not a string)" in shown
    assert "bad9 telemetry (not understood: telemetry nests 5000 levels deep; at most 32)" in shown
    assert "bad9 engine (not understood: engine is not UTF-8 (byte 0xff at offset 0))" in shown


def test_watch_shows_escapes_and_bad_fields_as_such(mosquitto):
    publisher = paho_client(mosquitto.port)
    watch = Watch(mosquitto.port)
    try:
        time.sleep(1.0)   # watch subscribed
        publisher.publish("facewatch/evil/status", ESCAPES.encode("utf-8"), qos=1).wait_for_publish(10)
        publisher.publish("facewatch/evil/telemetry", json.dumps(dict(STATUS, uptime="long")), qos=1)
        publisher.publish("facewatch/evil/engine", json.dumps({"state": "ready", "error": ESCAPES}), qos=1)
        wait_until(lambda: len(watch.lines) >= 3, 20, message="three lines")
    finally:
        code, stderr = watch.stop()
        publisher.loop_stop()
    shown = "".join(watch.lines)
    assert code == 0 and "\x1b" not in shown and "\x07" not in shown
    assert "evil status (not understood: status \\x1b]0;owned\\x07\\x1b[2J has control characters)" in shown
    assert "evil telemetry (not understood: telemetry.uptime must be a number, not a string)" in shown
    assert "evil engine ready \\x1b]0;owned\\x07\\x1b[2J" in shown


# --- what ctl holds -------------------------------------------------------------------------------------

def test_the_inbox_keeps_a_bounded_number_of_messages_and_bytes_and_counts_the_rest():
    from appliance.remote.client import Inbox
    inbox = Inbox(max_messages=10, max_bytes=1000)
    for _ in range(25):
        inbox.put("t", b"x", False)
    assert inbox.dropped == 15
    while inbox.get(0):
        pass
    inbox.put("t", b"x" * 900, False)
    inbox.put("t", b"x" * 200, False)
    assert inbox.dropped == 16 and inbox.get(0)[1] == b"x" * 900 and inbox.get(0) is None


def test_with_mqtt_5_ctl_connects_with_a_maximum_packet_size():
    from appliance.remote import client, replies
    assert client.connect_properties("3.1.1") is None
    assert client.connect_properties("5").MaximumPacketSize == replies.MAX_PACKET_BYTES
