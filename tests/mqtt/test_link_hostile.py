"""The broker is hostile ground: any client may publish anything, retained, on any topic facewatch reads.
Against a real mosquitto: a huge publish on a command or instance topic (MQTT 5: not even delivered), a
garbled instance record, someone else's retained `offline`, and a second facewatch with the same device_id
(the one that started later backs off instead of fighting).

Run as a script (`python test_mqtt_hostile.py PORT PROTOCOL DEVICE`), this file is one MqttLink in a process
of its own, answering `report` on stdin with one JSON line: its memory is measured apart from the test's,
and as a second instance its pid differs from the test's."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as paho
import pytest

from appliance.config import schema as configuration
from appliance.mqtt import link as link_module
from appliance.mqtt import topics as contract
from appliance.mqtt.link import MAX_INCOMING_PACKET, SECOND_INSTANCE, MqttLink, instance_record, local_time
from appliance.mqtt.topics import Topics
from appliance.untrusted import Refused
from appliance.daemon.supervisor import Supervisor
from brokers import Mosquitto, Recorder, paho_client, wait_until
from figures import record
from conftest import TESTS

HERE = TESTS
BIG = 200 * 1000 * 1000   # the 200 MB; mosquitto accepts up to 256 MB by default


def settings(port, protocol, **mqtt):
    return configuration.build({"mqtt": dict({"host": "127.0.0.1", "port": port, "protocol": protocol,
                                              "reconnect_min": 0.2, "reconnect_max": 1.0, "keepalive": 60}, **mqtt)},
                               None).mqtt


class Link:
    """An MqttLink in this process, stopped without its supervisor taking the end for a death."""

    def __init__(self, port, protocol="5", device="hostile", key=None, **mqtt):
        self.stop_event = threading.Event()
        self.link = MqttLink(settings(port, protocol, **mqtt), Topics("facewatch", device), instance_key=key)
        self.supervisor = Supervisor(self.stop_event)
        self.link.start(self.supervisor)

    def __getattr__(self, name):
        return getattr(self.link, name)

    def alive(self):
        """The link's network thread runs, as the daemon's supervisor sees it."""
        return "mqtt" in self.supervisor.alive()

    def stop(self):
        if not self.stop_event.is_set():
            self.stop_event.set()
            self.link.stop()


class LinkProcess:
    """This file run as a script: one MqttLink in its own process."""

    def __init__(self, port, protocol="5", device="hostile"):
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(port), protocol, device],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True,
                                        cwd=HERE, env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                                            [TESTS] + os.environ.get("PYTHONPATH", "").split(os.pathsep))))
        self.started = json.loads(self.process.stdout.readline())
        self.pid = self.process.pid
        ready = self.process.stdout.readline()
        assert json.loads(ready)["ready"], ready

    def report(self):
        self.process.stdin.write("report\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stop(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write("stop\n")
                self.process.stdin.flush()
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def client(port, protocol=paho.MQTTv311, client_id=None):
    return paho_client(port, protocol, client_id, name="hostile")


def publish(publisher, topic, payload, retain=False, qos=1):
    info = publisher.publish(topic, payload, qos=qos, retain=retain)
    info.wait_for_publish(60)
    assert info.is_published(), topic


def close(publisher):
    publisher.loop_stop()
    publisher.disconnect()


def retained_instance(port, device="hostile"):
    """The instance record the broker retains for `device` (as a new subscriber gets it), parsed; None if none."""
    fresh = Recorder(port, "facewatch/{}/instance".format(device))
    try:
        fresh.subscribed.wait(10)
        time.sleep(0.2)   # a retained message comes right after the subscription
        last = fresh.last("instance")
        return json.loads(last) if last else None
    finally:
        fresh.close()


# --- the size of what the broker may hand us ------------------------------------------------------------

def test_an_mqtt5_link_asks_the_broker_for_packets_of_at_most_64_kib():
    properties = link_module.connect_properties("5")
    assert properties.MaximumPacketSize == MAX_INCOMING_PACKET == 65536
    assert link_module.connect_properties("3.1.1") is None
    # a command (at most 4,096 bytes), its topic and its properties fit many times over
    from appliance.remote.envelope import MAX_PAYLOAD_BYTES
    assert MAX_INCOMING_PACKET >= 8 * MAX_PAYLOAD_BYTES


@pytest.mark.slow
def test_200_mb_publishes_on_the_command_and_instance_topics_never_reach_an_mqtt5_link(mosquitto):
    publisher = client(mosquitto.port)
    child = None
    large = []   # the topics of the large publishes, as they are made

    def publish_large(topic, payload, retain=False):
        publish(publisher, topic, payload, retain=retain)
        large.append(topic)
    try:
        # retained before the link subscribes (delivered at SUBSCRIBE), and live after
        publish_large("facewatch/hostile/cmd/status", b"{" * BIG, retain=True)
        publish_large("facewatch/hostile/instance", b"[" * BIG, retain=True)
        child = LinkProcess(mosquitto.port, "5")
        before = child.report()
        for topic in ("facewatch/hostile/cmd/status", "facewatch/all/cmd/rebuild", "facewatch/hostile/instance"):
            publish_large(topic, b"x" * BIG)
        publish_large("facewatch/hostile/cmd/snapshot", b"y" * BIG, retain=True)
        command = b'{"v":1,"id":"after","command":"status"}'
        publish(publisher, "facewatch/hostile/cmd/status", command)
        wait_until(lambda: ["hostile", "status", len(command)] in child.report()["commands"], 30,
                   message="the normal command after the large ones")
        after = child.report()
        grown = (after["peak_rss"] - child.started["rss"]) / 1e6
        record("200 MB publishes on the command and instance topics, MQTT 5 link", publishes=len(large),
               payload_mb=BIG / 1e6, peak_rss_growth_mb=round(grown, 1),
               rss_growth_mb=round((after["rss"] - child.started["rss"]) / 1e6, 1))
        assert grown < 8, (child.started, before, after)
        assert after["alive"] and after["stats"]["connected"] and after["stats"]["connects"] == 1, after
        assert after["problem"] == "", after
        assert after["commands"] == [["hostile", "status", len(command)]], after["commands"]
        assert mosquitto.log().count("Dropping too large outgoing PUBLISH") >= len(large), mosquitto.log()[-2000:]
    finally:
        if child:
            child.stop()
        close(publisher)


# --- the instance record ------------------------------------------------------------------------------------

GARBAGE_RECORDS = [
    b"[" * 5000 + b"]" * 5000,                                              # RecursionError in json.loads
    b'{"instance":"x","host":' + b"[" * 2000 + b"]" * 2000 + b',"pid":1,"started":1}',
    b'{"instance":"x","host":"h","pid":1' + b"0" * 5000 + b',"started":1}',  # a 5001-digit pid
    b'{"instance":"x","host":"h","pid":1,"started":1e999}',               # infinity
    b'{"instance":"x","host":"h","pid":1,"started":NaN}',
    b'{"instance":"x","host":"h","pid":NaN,"started":1}',
    b'{"instance":["x"],"host":{"a":1},"pid":"12","started":"yesterday"}',
    b'{"instance":"x","host":"h","pid":true,"started":1}',
    b'{"instance":"x","host":"h","pid":1.5,"started":1}',
    b'{"instance":"x","host":"h","pid":-1,"started":1}',
    b'{"instance":"x","instance":"y","host":"h","pid":1,"started":1}',
    b'{"instance":"x","host":"h","pid":1,"started":1,"version":7}',
    b'"just a string"', b"null", b"[1,2,3]", b"\xff\xfe", b"\xef\xbb\xbf{}", b"",
    b'{"instance":"' + b"x" * (1024 * 1024) + b'"}',                      # 1 MB
]


def test_instance_record_accepts_ours_and_refuses_garbage():
    ours = contract.instance_payload("abc", "host-1", 1234, 1700000000.1234, "1.0")
    assert instance_record(contract.encode(ours)) == {"instance": "abc", "host": "host-1", "pid": 1234,
                                                      "started": 1700000000.123, "version": "1.0"}
    for payload in GARBAGE_RECORDS:
        with pytest.raises(Refused):
            instance_record(payload)


def test_local_time_takes_any_value():
    for value in (None, "1", True, [], {}, float("nan"), float("inf"), 10 ** 400, -10 ** 30, 1e300, object()):
        assert local_time(value) == "at an unknown time", value
    assert local_time(0).startswith("19")


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_garbage_on_the_instance_topic_is_counted_and_answered_never_a_dead_thread(mosquitto, protocol):
    observer = Recorder(mosquitto.port, "facewatch/hostile/#")
    link = Link(mosquitto.port, protocol)
    publisher = client(mosquitto.port)
    try:
        wait_until(link.connected.is_set, 10, message="the link to connect")
        ours = wait_until(lambda: observer.last("instance"), 10, message="our record")
        for payload in GARBAGE_RECORDS:
            publish(publisher, "facewatch/hostile/instance", payload, retain=True)
        # MQTT 5: the broker does not even deliver the 1 MB one
        delivered = len(GARBAGE_RECORDS) - (1 if protocol == "5" else 0)
        wait_until(lambda: link.stats()["instance_rejected"] >= delivered, 20, message="every record rejected")
        assert link.alive() and link.connected.is_set() and link.stats()["connects"] == 1
        assert link.problem() == ""
        assert link.publish("facewatch/hostile/probe", "still here", qos=1)
        wait_until(lambda: observer.on("probe"), 10, message="a message published after the garbage")
        # our record is published again (at most every CORRECTION_INTERVAL), and is the retained one
        late = Recorder(mosquitto.port, "facewatch/hostile/instance")
        wait_until(lambda: late.last("instance") == ours, 20, message="our record restored")
        assert 1 <= link.stats()["instance_corrected"] <= 4
        late.close()
    finally:
        close(publisher)
        link.stop()
        observer.close()


@pytest.mark.parametrize("payload", [GARBAGE_RECORDS[0], GARBAGE_RECORDS[4], GARBAGE_RECORDS[6],
                                     b'{"v":1,"instance":"x","host":"h\\u001b[2J","pid":1,"started":1e300}'])
def test_a_garbled_record_retained_at_a_reconnect_is_not_a_second_instance(tmp_path, payload):
    """At a reconnect, a record not ours is evidence of a second instance, if it is one: garbage is not."""
    broker = Mosquitto(tmp_path).start()
    link = Link(broker.port, "3.1.1", reconnect_min=1.5, reconnect_max=3.0)
    try:
        wait_until(lambda: retained_instance(broker.port), 10, message="our record retained")
        broker.stop()
        wait_until(lambda: not link.connected.is_set(), 10, message="the link to notice")
        broker = Mosquitto(tmp_path, port=broker.port).start()
        publisher = client(broker.port)
        publish(publisher, "facewatch/hostile/instance", payload, retain=True)
        close(publisher)
        wait_until(lambda: link.stats()["connects"] >= 2, 20, message="the reconnect")
        wait_until(lambda: link.stats()["instance_rejected"] >= 1, 10, message="the record rejected")
        time.sleep(0.5)
        assert link.alive() and link.connected.is_set()
        assert link.problem() == "" and not link.stats()["backing_off"], link.problem()
    finally:
        link.stop()
        broker.stop()


# --- someone else's status --------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_retained_offline_published_by_someone_else_is_corrected_and_rate_limited(mosquitto, protocol):
    link = Link(mosquitto.port, protocol)
    publisher = client(mosquitto.port)
    try:
        wait_until(link.connected.is_set, 10, message="the link to connect")
        publish(publisher, "facewatch/hostile/status", b"offline", retain=True)
        started = time.monotonic()
        fresh = Recorder(mosquitto.port, "facewatch/hostile/status")
        wait_until(lambda: fresh.last("status") == "online", 5, message="online again, for a new subscriber")
        corrected_after = time.monotonic() - started
        fresh.close()
        assert link.stats()["status_corrected"] == 1
        # someone fighting: 40 `offline` in 4 s are answered at most once per CORRECTION_INTERVAL, the last too
        watcher = Recorder(mosquitto.port, "facewatch/hostile/status")
        watcher.subscribed.wait(10)
        for index in range(40):
            publish(publisher, "facewatch/hostile/status", b"offline" if index % 2 else b"", retain=True)
            time.sleep(0.1)
        wait_until(lambda: watcher.last("status") == "online", link_module.CORRECTION_INTERVAL + 3,
                   message="the last one corrected too")
        answers = [payload for payload, retained in watcher.on("status") if not retained].count("online")
        assert 1 <= answers <= 3 and link.stats()["status_corrected"] == 1 + answers, watcher.on("status")
        record("retained offline published by another client", protocol=protocol,
               corrected_within_s=round(corrected_after, 2), offline_burst=40, answers=answers)
        assert link.problem() == ""
    finally:
        close(publisher)
        link.stop()


# --- a second facewatch with the same device_id ------------------------------------------------------------

def status_changes(messages):
    values = [payload for payload, _ in messages]
    return sum(1 for before, after in zip(values, values[1:]) if before != after)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_the_later_of_two_instances_with_one_device_id_backs_off(mosquitto, protocol):
    watcher = Recorder(mosquitto.port, "facewatch/hostile/#")
    watcher.subscribed.wait(10)
    earlier = LinkProcess(mosquitto.port, protocol)   # its own pid, named in the later one's report
    later = None
    try:
        later = Link(mosquitto.port, protocol)
        started = time.monotonic()
        wait_until(lambda: later.stats()["backing_off"], 15, message="the later one to back off")
        backed_off_after = time.monotonic() - started
        wait_until(lambda: earlier.report()["stats"]["connected"], 10, message="the earlier one connected")
        time.sleep(2)
        settled = watcher.on("status")
        time.sleep(12)
        statuses = watcher.on("status")
        report = earlier.report()
        record("two facewatch with one device_id", protocol=protocol, seconds=15 + backed_off_after,
               backed_off_after_s=round(backed_off_after, 2), status_changes_while_settling=status_changes(settled),
               status_changes_next_12_s=status_changes(statuses) - status_changes(settled))
        assert statuses == settled and settled[-1][0] == "online", statuses
        assert status_changes(settled) <= 12, settled
        problem = later.problem()
        assert "backs off" in problem and "publishes nothing" in problem, problem
        retained = json.loads(watcher.last("instance"))
        assert "the process {} on host {}".format(earlier.pid, retained["host"]) in problem, problem
        assert later.stats()["connected"] is False and later.stats()["backing_off"] is True
        assert not later.publish("facewatch/hostile/detections", "x", qos=1)
        assert later.stats()["dropped_by_cause"].get(SECOND_INSTANCE, 0) >= 1
        # the earlier one runs on, its report of the takeover cleared once its connection held
        assert report["stats"]["connected"] and not report["stats"]["backing_off"], report
        assert report["problem"] == "", report
        assert retained["pid"] == earlier.pid
    finally:
        if later:
            later.stop()
        earlier.stop()
        watcher.close()


def test_the_backed_off_instance_tries_quietly_stays_out_while_the_other_runs_and_returns_when_it_is_gone(
        mosquitto, monkeypatch):
    monkeypatch.setattr(link_module, "SECOND_INSTANCE_BACKOFF", 1.0)
    monkeypatch.setattr(link_module, "PROBE_WINDOW", 2.0)
    watcher = Recorder(mosquitto.port, "facewatch/hostile/#")
    watcher.subscribed.wait(10)
    earlier = Link(mosquitto.port)
    first = wait_until(lambda: retained_instance(mosquitto.port), 10, message="the earlier one's record retained")
    later = Link(mosquitto.port)
    try:
        wait_until(lambda: later.stats()["backing_off"], 15, message="the later one to back off")
        # tries after 1, 2, 4 s, each taken back by the earlier one
        wait_until(lambda: "tries again in 8 s" in later.problem(), 20, message="three quiet tries")
        assert earlier.connected.is_set() or wait_until(earlier.connected.is_set, 5)
        assert all(json.loads(p)["instance"] == first["instance"] for p, _ in watcher.on("instance")[-3:])
        earlier.stop()
        wait_until(later.connected.is_set, 30, message="the later one to publish again")
        assert later.problem() == "" and not later.stats()["backing_off"]
        wait_until(lambda: watcher.last("status") == "online", 5, message="online, from the later one")
        wait_until(lambda: json.loads(watcher.last("instance"))["instance"] != first["instance"], 5,
                   message="the later one's record")
        assert json.loads(watcher.last("instance"))["started"] >= first["started"]
        assert later.publish("facewatch/hostile/detections", "y", qos=1)
        wait_until(lambda: ("y", False) in watcher.on("detections"), 5, message="a detection from the later one")
    finally:
        later.stop()
        earlier.stop()
        watcher.close()


KEY = b"fleet command key"
FORGED = b'{"v":1,"instance":"forged","host":"vm","pid":1,"started":1000.0,"version":"0.1.0"}'


def test_a_forged_record_and_a_taken_client_id_never_make_a_keyed_link_back_off(mosquitto):
    """Found by a hostile re-probe of issue 18: taking the client id and leaving a retained record that
    'started' in 1970 silenced a device (it backed off for a twin that did not exist). With the command key,
    our record is signed; a record not signed with it is someone else's, never a twin's."""
    link = Link(mosquitto.port, key=KEY)
    try:
        wait_until(lambda: (retained_instance(mosquitto.port) or {}).get("instance") == link._instance["instance"],
                   15, message="our signed record retained")
        assert "sig" in retained_instance(mosquitto.port)
        thief = client(mosquitto.port, paho.MQTTv5, client_id="facewatch-hostile")   # kicks the link off
        publish(thief, "facewatch/hostile/instance", FORGED, retain=True)
        close(thief)
        wait_until(lambda: link.stats()["instance_rejected"] >= 1, 20, message="the forged record seen")
        wait_until(lambda: link.stats()["connected"] and
                   (retained_instance(mosquitto.port) or {}).get("instance") == link._instance["instance"], 20,
                   message="our record retained again")
        time.sleep(2)
        stats = link.stats()
        assert stats["connected"] and not stats["backing_off"], stats
        assert link.publish("facewatch/hostile/detections", "x", qos=1)
    finally:
        link.stop()


def test_a_twin_with_the_same_key_still_makes_the_later_one_back_off(mosquitto):
    earlier = Link(mosquitto.port, key=KEY)
    later = None
    try:
        wait_until(lambda: (retained_instance(mosquitto.port) or {}).get("instance") == earlier._instance["instance"],
                   15, message="the earlier one's record retained")
        later = Link(mosquitto.port, key=KEY)
        wait_until(lambda: later.stats()["backing_off"], 20, message="the later one to back off")
        assert not earlier.stats()["backing_off"]
    finally:
        if later:
            later.stop()
        earlier.stop()


# --- run as a script: one link in a process of its own ------------------------------------------------------

def main(port, protocol, device):
    import psutil
    me = psutil.Process()
    peak = [me.memory_info().rss]

    def sample():   # the peak resident size, every 2 ms (ru_maxrss would hold the import's transient peak)
        while True:
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.002)
    threading.Thread(target=sample, daemon=True).start()
    time.sleep(0.1)
    print(json.dumps({"rss": me.memory_info().rss}), flush=True)
    link = Link(int(port), protocol, device)
    commands = []
    link.listen(lambda target, name, payload, properties: commands.append([target, name, len(payload)]))
    wait_until(link.connected.is_set, 10, message="the link to connect")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "report":
            print(json.dumps({"stats": link.stats(), "problem": link.problem(), "commands": commands,
                              "alive": link.alive(), "rss": me.memory_info().rss,
                              "peak_rss": peak[0]}), flush=True)
        else:
            break
    link.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(0))
    main(*sys.argv[1:4])
