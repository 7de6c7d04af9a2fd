"""The broker connection against a real mosquitto: credentials, an unreachable broker, a second daemon
with the same device_id, and what is counted as dropped."""
import shutil
import signal
import subprocess
import threading

import paho.mqtt.client as paho
import pytest

from appliance.config import schema as configuration
from appliance.mqtt.link import MqttLink
from appliance.mqtt.topics import Topics
from appliance.daemon.supervisor import Supervisor
from brokers import Mosquitto, Recorder, free_port, wait_until
from figures import record
from notify_socket import NotifySocket


@pytest.fixture
def locked_broker(tmp_path):
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    password_file = tmp_path / "passwords"
    subprocess.check_call([passwd, "-c", "-b", str(password_file), "camera", "right-password"])
    password_file.chmod(0o644)
    broker = Mosquitto(tmp_path, "allow_anonymous false\npassword_file {}\n".format(password_file))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def notify():
    socket = NotifySocket()
    yield socket
    socket.close()


def watchdog_pings(notify):
    return notify.count("WATCHDOG=1")


def test_bad_credentials_stop_the_retries_and_say_so(tmp_path, locked_broker, daemon_factory, clip, notify):
    (tmp_path / "wrong").write_text("wrong-password\n")
    daemon = daemon_factory(locked_broker.port, {"source": clip[0], "loop": True},
                            mqtt={"username": "camera", "password_file": str(tmp_path / "wrong")},
                            env=notify.environment(watchdog_seconds=0.2))
    notify.wait_for(lambda m: any("rejected the credentials" in s for s in notify.statuses()), 60,
                    "STATUS= naming the rejected credentials")
    # Many reconnect periods (0.2 s .. 1 s here) of real work later, the broker has still seen one attempt.
    seen = watchdog_pings(notify)
    notify.wait_for(lambda m: watchdog_pings(notify) >= seen + 40, 60, "40 more frames processed")
    assert locked_broker.log().count("disconnected, not authorised") == 1, locked_broker.log()
    assert daemon.output().count("rejected the credentials") == 1
    assert "not retrying" in daemon.output()
    assert daemon.process.poll() is None


def test_good_credentials_connect(tmp_path, locked_broker, daemon_factory, clip):
    (tmp_path / "right").write_text("right-password\n")
    daemon_factory(locked_broker.port, {"source": clip[0], "loop": True},
                   mqtt={"username": "camera", "password_file": str(tmp_path / "right")})
    kwargs = {"callback_api_version": paho.CallbackAPIVersion.VERSION2} if hasattr(paho, "CallbackAPIVersion") else {}
    client = paho.Client(**kwargs)
    client.username_pw_set("camera", "right-password")
    seen = []
    client.on_message = lambda c, u, m: seen.append(m.payload)
    client.on_connect = lambda c, *a: c.subscribe("facewatch/testcam/status", 1)
    client.connect("127.0.0.1", locked_broker.port)
    client.loop_start()
    try:
        wait_until(lambda: b"online" in seen, 30, message="online")
    finally:
        client.loop_stop()


def test_an_unreachable_broker_is_reported_at_once_and_at_every_retry(daemon_factory, clip, notify):
    port = free_port()  # nothing listens there
    daemon = daemon_factory(port, {"source": clip[0], "loop": True}, env=notify.environment(),
                            mqtt={"reconnect_min": 0.2, "reconnect_max": 1.0})
    notify.wait_for(lambda m: "READY=1" in m or daemon.process.poll() is not None, 60, "READY=1 without a broker")
    assert daemon.process.poll() is None, daemon.output()
    notify.wait_for(lambda m: any("MQTT: cannot connect to 127.0.0.1:{}".format(port) in s for s in notify.statuses()),
                    30, "STATUS= naming the unreachable broker")
    wait_until(lambda: daemon.output().count("Connection refused; retrying in") >= 4, 30, message="four logged retries")
    delays = [line.rsplit("retrying in ", 1)[1] for line in daemon.output().splitlines() if "retrying in" in line]
    assert delays[:4] == ["0.2 s", "0.4 s", "0.8 s", "1.0 s"], delays
    assert daemon.process.poll() is None


def test_a_second_daemon_with_the_same_device_id_is_reported_and_the_later_one_backs_off(mosquitto, daemon_factory,
                                                                                         clip):
    first = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True}, name="first")
    second = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True}, name="second")
    wait_until(lambda: "This one backs off" in first.output() + second.output(), 90,
               message="the duplicate to be reported, and one to back off")
    # which one started first is when each opened its link (after loading the model), not the order above
    later, earlier = (first, second) if "This one backs off" in first.output() else (second, first)
    report = [line for line in later.output().splitlines() if "This one backs off" in line][0]
    assert "another facewatch publishes as device_id 'testcam': the process {} on host".format(
        earlier.process.pid) in report, report
    assert "This one backs off" not in earlier.output()
    assert first.process.poll() is None and second.process.poll() is None


def test_quick_broker_restarts_are_not_taken_for_a_second_daemon(tmp_path, daemon_factory, clip):
    broker = Mosquitto(tmp_path, persistent=True).start()
    daemon = daemon_factory(broker.port, {"source": clip[0], "loop": True}, mqtt={"reconnect_min": 1.0})
    try:
        for _ in range(4):
            wait_until(lambda: daemon.output().count("mqtt: connected") > _, 30, message="connected")
            broker.stop(signal.SIGTERM)
            broker = Mosquitto(tmp_path, persistent=True, port=broker.port).start()
        wait_until(lambda: daemon.output().count("mqtt: connected") >= 5, 30, message="the fifth connection")
        assert "another facewatch" not in daemon.output()
    finally:
        broker.stop()


def test_a_stale_instance_record_from_a_previous_run_is_not_a_second_daemon(mosquitto, daemon_factory, clip):
    first = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True}, name="before")
    wait_until(lambda: "mqtt: connected" in first.output(), 30, message="connected")
    first.process.kill()
    second = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True}, name="after")
    wait_until(lambda: "detecting" in second.output(), 60, message="detecting")
    mosquitto.stop(signal.SIGTERM)
    mosquitto.start()
    wait_until(lambda: second.output().count("mqtt: connected") >= 2, 30, message="reconnected")
    assert "another facewatch" not in second.output()


def make_link(port, queue_size, **mqtt):
    settings = configuration.build({"mqtt": dict({"host": "127.0.0.1", "port": port, "queue_size": queue_size,
                                                  "reconnect_min": 0.2, "reconnect_max": 1.0,
                                                  "keepalive": 60}, **mqtt)}, None).mqtt
    stop = threading.Event()
    link = MqttLink(settings, Topics("facewatch", "linktest"))
    link.start(Supervisor(stop))
    return link


def test_the_outgoing_queue_is_bounded_for_qos_0_and_overflow_is_counted(mosquitto):
    link = make_link(mosquitto.port, queue_size=20)
    try:
        wait_until(link.connected.is_set, 10, message="the link to connect")
        mosquitto.process.send_signal(signal.SIGSTOP)  # a broker that stops reading: the socket fills up
        payload = b"x" * 65536
        accepted, queued = [], []   # per publish: taken into the queue; the queue's length after it
        for _ in range(400):
            accepted.append(link.publish("facewatch/linktest/bulk", payload, qos=0))
            queued.append(link.stats()["queue"])
        stats = link.stats()
        assert max(queued) <= 20
        assert stats["dropped_by_cause"].get("queue_full", 0) == len(accepted) - sum(accepted) > 0
        mosquitto.process.send_signal(signal.SIGCONT)
        wait_until(lambda: link.stats()["queue"] == 0, 30, message="the queue to drain")
        stats = link.stats()
        assert stats["published"] + stats["dropped"] >= len(accepted)
        record("QoS 0 queue bound with a stalled broker", published=len(accepted), queued_max=max(queued),
               dropped=stats["dropped"])
    finally:
        mosquitto.process.send_signal(signal.SIGCONT)
        link.stop()


def test_qos_1_messages_sent_while_the_broker_is_away_arrive_and_are_not_counted_dropped(tmp_path):
    broker = Mosquitto(tmp_path, persistent=True).start()
    subscriber = Recorder(broker.port, "facewatch/linktest/#", clean=False)
    link = make_link(broker.port, queue_size=1000)
    try:
        wait_until(link.connected.is_set, 10, message="the link to connect")
        for index in range(10):
            link.publish("facewatch/linktest/seq", str(index), qos=1)
        wait_until(lambda: len(subscriber.on("seq")) >= 10, 10, message="the first ten")
        broker.stop(signal.SIGTERM)
        wait_until(lambda: not link.connected.is_set(), 10, message="the link to notice")
        for index in range(10, 60):
            assert link.publish("facewatch/linktest/seq", str(index), qos=1)
        broker = Mosquitto(tmp_path, persistent=True, port=broker.port).start()
        wait_until(lambda: len({p for p, _ in subscriber.on("seq")}) >= 60, 30, message="all sixty")
        assert sorted({int(p) for p, _ in subscriber.on("seq")}) == list(range(60))
        assert link.stats()["dropped"] == 0
    finally:
        link.stop()
        subscriber.close()
        broker.stop()


def test_a_broker_that_closes_before_answering_connect_is_reported(daemon_factory, clip, notify):
    import socket
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def accept_and_close():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except OSError:
                pass
    threading.Thread(target=accept_and_close, daemon=True).start()
    try:
        daemon = daemon_factory(server.getsockname()[1], {"source": clip[0], "loop": True}, env=notify.environment())
        # Closed after CONNECT was sent, or (on a loaded machine) while paho was still sending it: either way
        # the cause reaches STATUS= and the log.
        reports = ("closed the connection before answering CONNECT", "Connection reset by peer", "Broken pipe")
        notify.wait_for(lambda m: any(r in s for s in notify.statuses() for r in reports), 60,
                        "STATUS= naming the early close")
        wait_until(lambda: any(r in daemon.output() for r in reports), 10, message="the log line")
    finally:
        stop.set()
        server.close()


@pytest.mark.skipif(not hasattr(paho, "CallbackAPIVersion"), reason="paho 1.6 gives on_publish no reason code")
def test_messages_the_broker_refuses_are_counted_dropped_and_said(tmp_path, daemon_factory, clip, notify):
    passwords = tmp_path / "passwords"
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.check_call([passwd, "-c", "-b", str(passwords), "alice", "secret"])
    passwords.chmod(0o644)
    (tmp_path / "alice").write_text("secret\n")
    import os
    from conftest import REPO_ROOT
    broker = Mosquitto(tmp_path, "allow_anonymous false\npassword_file {}\nacl_file {}\n".format(
        passwords, os.path.join(REPO_ROOT, "examples", "mosquitto", "acl"))).start()
    try:
        daemon = daemon_factory(broker.port, {"source": clip[0], "loop": True}, device="bob", env=notify.environment(),
                                mqtt={"username": "alice", "password_file": str(tmp_path / "alice")})
        notify.wait_for(lambda m: any("the broker refuses messages on facewatch/bob/" in s for s in notify.statuses()),
                        60, "STATUS= naming the refusal")
        assert "mqtt.username must equal the device_id 'bob'" in daemon.output()
    finally:
        broker.stop()
