"""Issue 18: nothing on the broker can stop a device. Generated hostile payloads (tests/hostile_json.py)
against the dispatcher, then through a real mosquitto at a running daemon; the report's own payloads,
retained, at every start; a replay record that cannot be written."""
import hashlib
import json
import os
import signal
import threading
import time

import paho.mqtt.client as paho
import psutil
import pytest
from hypothesis import HealthCheck, given, settings

import hostile_json
from appliance.remote.dispatcher import Dispatcher
from appliance.remote.replay import FILE_NAME, ReplayGuard
from brokers import Recorder, wait_until
from figures import record
from notify_socket import NotifySocket
from conftest import COMMAND_KEY as KEY
from test_commands import PREFIX, client, envelope, final, replies_to, start

NOW = 1795320000
EXAMPLES = int(os.environ.get("FACEWATCH_FUZZ_EXAMPLES", "1500"))
THROUGH_BROKER = int(os.environ.get("FACEWATCH_FUZZ_THROUGH_BROKER", "200"))


class Outcomes:
    def __init__(self):
        self.replies, self.executed = [], []

    def reply(self, command_id, name, state, ok, error, fields, properties):
        self.replies.append((command_id, state, error, fields))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    outcomes = Outcomes()
    outcomes.exceptions = []
    handlers = {name: (lambda command: outcomes.executed.append(command.id)) for name in ("status", "rebuild")}
    guard = ReplayGuard(str(tmp_path_factory.mktemp("state")), now=NOW)
    dispatcher = Dispatcher("testcam", KEY, False, guard, handlers, outcomes.reply, threading.Event(),
                            clock=lambda: NOW)
    return dispatcher, outcomes


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=hostile_json.payloads(NOW))
def test_every_generated_payload_is_a_rejection_with_a_reason_and_nothing_runs(fuzzed, data):
    dispatcher, outcomes = fuzzed
    before = len(outcomes.replies)
    try:
        dispatcher.handle("testcam", "status", data, None)
    except Exception as exc:   # counted for the figure, then failed on
        outcomes.exceptions.append(exc)
        raise
    assert len(outcomes.replies) == before + 1
    command_id, state, error, fields = outcomes.replies[-1]
    assert state == "rejected" and error and error.isprintable()
    if command_id is None:
        assert fields["payload_sha256"] == hashlib.sha256(data).hexdigest()
    assert outcomes.executed == []


def test_the_fuzzing_is_recorded(fuzzed):
    dispatcher, outcomes = fuzzed
    stats = dispatcher.stats()
    payloads = stats["rejected"] + stats["accepted"] + len(outcomes.exceptions)
    record("generated hostile command payloads (dispatcher)", payloads=payloads, rejected=stats["rejected"],
           executed=len(outcomes.executed), exceptions=len(outcomes.exceptions))
    assert stats["rejected"] >= EXAMPLES and stats["accepted"] == 0 and not outcomes.exceptions


def sent_through_the_broker(port, count):
    """`count` generated payloads, published at a pace the rate limit admits (10/s, burst 20)."""
    payloads = []

    @settings(max_examples=count, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=hostile_json.payloads(time.time()))
    def collect(data):
        payloads.append(data)
    collect()
    sender = client(port, paho.MQTTv5)
    for index, data in enumerate(payloads):
        sender.publish("{}/cmd/{}".format(PREFIX, ("status", "rebuild", "snapshot", "x")[index % 4]), data, qos=1)
        time.sleep(0.12)
    return sender, payloads


def processed(recorder):
    telemetry = recorder.json_on("telemetry")
    return telemetry[-1]["processed"] if telemetry else 0


@pytest.mark.slow
def test_generated_payloads_through_a_real_broker_leave_every_thread_running(mosquitto, daemon_factory, clip,
                                                                            key_file):
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = start(daemon_factory, mosquitto.port, clip, key_file)
    wait_until(lambda: processed(recorder) > 30, 60, message="detection under way")
    process = psutil.Process(daemon.process.pid)
    rss_before, processed_before, started = process.memory_info().rss, processed(recorder), time.monotonic()
    time.sleep(3)
    rate_before = (processed(recorder) - processed_before) / (time.monotonic() - started)
    processed_before, started = processed(recorder), time.monotonic()
    sender, payloads = sent_through_the_broker(mosquitto.port, THROUGH_BROKER)
    rate_during = (processed(recorder) - processed_before) / (time.monotonic() - started)
    counted = wait_until(lambda: [t["commands"] for t in recorder.json_on("telemetry")
                                  if t["commands"]["rejected"] + t["commands"]["rate_limited"] >= len(payloads)], 30,
                         message="every payload counted")[-1]
    good = envelope()
    sender.publish(PREFIX + "/cmd/status", json.dumps(good), qos=1)
    assert final(recorder, good["id"], timeout=30)["state"] == "done"
    rss_after = process.memory_info().rss
    sender.disconnect()
    record("generated hostile payloads through mosquitto", payloads=len(payloads), rejected=counted["rejected"],
           rate_limited=counted["rate_limited"], threads_died=daemon.output().count(" thread died: "),
           fps_before=round(rate_before, 1), fps_during=round(rate_during, 1),
           rss_growth_mb=round((rss_after - rss_before) / 2 ** 20, 1))
    assert daemon.process.poll() is None and " thread died: " not in daemon.output()
    assert counted["accepted"] == 0 and counted["rejected"] + counted["rate_limited"] == len(payloads)
    assert rate_during >= 0.5 * rate_before, (rate_before, rate_during)
    assert rss_after - rss_before < 64 << 20


def the_reports_payloads(now):
    overflow = b'{"v":1,"id":"boom","command":"status","device":"all","ts":1' + b"0" * 400 + b',"args":{}}'
    nested = ('{"v":1,"id":"deep","command":"status","device":"all","ts":' + str(int(now)) + ',"args":{"a":' +
              "[" * 987 + "]" * 987 + '}}').encode()
    return {"overflow": overflow, "nested": nested}


@pytest.mark.slow
@pytest.mark.parametrize("topic", ["facewatch/all/cmd/status", PREFIX + "/cmd/status"])
def test_the_reports_payloads_retained_are_rejected_at_every_start(mosquitto, daemon_factory, clip, key_file, topic):
    """Issue 18: published retained, the overflowing ts killed every device at every start (0.63 s)."""
    sender = client(mosquitto.port)
    payloads = the_reports_payloads(time.time())
    for name, data in payloads.items():
        sender.publish(topic.replace("status", "rebuild") if name == "nested" else topic, data, qos=1,
                       retain=True).wait_for_publish(10)
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    for run in ("first", "second"):
        daemon = start(daemon_factory, mosquitto.port, clip, key_file, name=run)
        wait_until(lambda: len(recorder.on("detections")) >= 5, 60, message="detections")
        rejected = wait_until(lambda: [r for r in recorder.json_on("reply") if r["state"] == "rejected" and
                                       r.get("payload_sha256") in {hashlib.sha256(d).hexdigest()
                                                                   for d in payloads.values()}], 20,
                              message="the rejections")
        assert any("integer of 401 digits" in r["error"] for r in rejected)
        good = envelope()
        sender.publish(PREFIX + "/cmd/status", json.dumps(good), qos=1)
        assert final(recorder, good["id"], timeout=30)["state"] == "done"
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(30) == 0
        recorder.messages.clear()
    sender.disconnect()


def test_a_replay_record_that_cannot_be_written_refuses_the_command_before_and_after_a_restart(
        tmp_path, mosquitto, daemon_factory, clip, key_file):
    """Issue 18: with the record unwritable, the same signed command ran again after a restart."""
    os.makedirs(str(tmp_path / "state" / FILE_NAME))
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    sender = client(mosquitto.port)
    document = envelope()
    for run in ("first", "restarted"):
        notify = NotifySocket()
        daemon = start(daemon_factory, mosquitto.port, clip, key_file, name=run, env=notify.environment())
        wait_until(lambda: "detecting" in daemon.output(), 60, message="the daemon to be ready")
        sender.publish(PREFIX + "/cmd/status", json.dumps(document), qos=1)
        reply = wait_until(lambda: [r for r in replies_to(recorder, document["id"]) if r["state"] == "rejected"], 30,
                           message="the rejection")[-1]
        assert "replay record" in reply["error"] and FILE_NAME in reply["error"]
        assert not [r for r in replies_to(recorder, document["id"]) if r["state"] == "done"]
        telemetry = wait_until(lambda: [t for t in recorder.json_on("telemetry")
                                        if t["commands"]["replay_record_error"]], 10, message="telemetry")[-1]
        assert FILE_NAME in telemetry["commands"]["replay_record_error"]
        notify.wait_for(lambda lines: any(line.startswith("STATUS=") and "replay record" in line for line in lines),
                        10, message="STATUS= naming the replay record")
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(30) == 0
        notify.close()
        recorder.messages.clear()
    sender.disconnect()
