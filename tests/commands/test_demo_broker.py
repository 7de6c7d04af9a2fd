"""The demo's private broker (appliance.commands.demo_broker): a real mosquitto, else amqtt, else a clear error; each a
full MQTT 3.1.1 broker (QoS 2, UNSUBSCRIBE honoured), gone when stopped."""
import logging
import os
import queue
import socket
import stat
import sys
import threading
import uuid

import paho.mqtt.client as paho
import pytest

from appliance.commands import demo_broker
from appliance.errors import FacewatchError
from brokers import leftovers, refuses






class Client:
    """A paho client (1.6 or 2.x) speaking MQTT 3.1.1, as the demo does, that waits for every ack."""

    def __init__(self, port):
        kwargs = {"client_id": "test-{}".format(uuid.uuid4().hex[:8]), "protocol": paho.MQTTv311}
        if hasattr(paho, "CallbackAPIVersion"):
            kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION2
        self.messages = queue.Queue()
        self._acks = queue.Queue()
        connected = threading.Event()
        self.client = paho.Client(**kwargs)
        self.client.on_connect = lambda *args: connected.set()
        self.client.on_message = lambda client, userdata, m: self.messages.put((m.topic, m.payload, m.qos))
        self.client.on_subscribe = lambda *args: self._acks.put(
            ("suback", [getattr(code, "value", code) for code in args[3]]))
        self.client.on_unsubscribe = lambda *args: self._acks.put(("unsuback", None))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(10), "no CONNACK"

    def subscribe(self, pattern, qos):
        self.client.subscribe(pattern, qos)
        kind, granted = self._acks.get(timeout=10)
        assert kind == "suback"
        return granted

    def unsubscribe(self, pattern):
        self.client.unsubscribe(pattern)
        assert self._acks.get(timeout=10)[0] == "unsuback"

    def publish(self, topic, payload, qos):
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def a_mosquitto():
    binary = demo_broker.find_mosquitto()
    assert binary, "mosquitto is not installed: apt-get install mosquitto (bash .ci/run does)"
    return binary


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker(request, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    if request.param == "mosquitto":
        started = demo_broker.Mosquitto(a_mosquitto()).start()
    else:
        problem = demo_broker.amqtt_problem()
        if problem:
            pytest.skip("{}: pip install 'facewatch[demo]'".format(problem))
        started = demo_broker.Amqtt().start()
    yield started
    started.stop()


def test_the_private_broker_is_a_full_mqtt_broker_on_127_0_0_1(broker):
    assert broker.host == "127.0.0.1"
    assert broker.describe() == "{} {} on 127.0.0.1:{} (private, stopped at the end)".format(
        broker.name, broker.version, broker.port)
    subscriber, publisher = Client(broker.port), Client(broker.port)
    try:
        assert subscriber.subscribe("demo/#", 2) == [2]
        subscriber.subscribe("marker", 1)
        publisher.publish("demo/a", b"exactly once", 2)
        assert subscriber.messages.get(timeout=10) == ("demo/a", b"exactly once", 2)
        subscriber.unsubscribe("demo/#")
        publisher.publish("demo/b", b"not wanted any more", 1)
        publisher.publish("marker", b"after", 1)
        assert subscriber.messages.get(timeout=10)[:2] == ("marker", b"after")
    finally:
        subscriber.close()
        publisher.close()


def test_stop_closes_the_port_and_leaves_nothing_behind(broker, tmp_path):
    port = broker.port
    broker.stop()
    assert refuses(port)
    assert not leftovers(tmp_path)
    broker.stop()  # a second stop (the demo's finally after an error) is harmless


def test_mosquitto_is_found_on_path_else_where_debian_puts_it(tmp_path):
    real = a_mosquitto()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert demo_broker.find_mosquitto(path=str(empty), fallbacks=(real,)) == real
    assert demo_broker.find_mosquitto(path=str(empty), fallbacks=(str(tmp_path / "absent"),)) is None
    assert demo_broker.find_mosquitto(path="", fallbacks=()) is None
    assert "/usr/sbin/mosquitto" in demo_broker.MOSQUITTO_FALLBACKS
    own = fake_mosquitto(tmp_path, "exit 0")
    assert demo_broker.find_mosquitto(path=os.pathsep.join([str(own.parent), str(empty)]), fallbacks=(real,)) == str(own)


def fake_mosquitto(tmp_path, body):
    folder = tmp_path / "fake-bin"
    folder.mkdir(exist_ok=True)
    script = folder / "mosquitto"
    script.write_text("#!/bin/sh\n{}\n".format(body))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def test_mosquitto_is_preferred_and_a_broken_one_is_named_with_its_output(tmp_path, monkeypatch):
    script = fake_mosquitto(tmp_path, "echo 'Error: something is wrong here' >&2\nexit 3")
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    with pytest.raises(FacewatchError) as raised:
        demo_broker.start(path=str(script.parent), fallbacks=())
    message = str(raised.value)
    assert message.startswith("{} did not start a broker on 127.0.0.1:".format(script))
    assert "exited with status 3" in message and "Error: something is wrong here" in message
    assert not leftovers(temp)


def test_a_port_taken_meanwhile_by_another_program_is_not_mistaken_for_the_broker(tmp_path, monkeypatch):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(5)  # accepts TCP connections, never answers MQTT
    taken = squatter.getsockname()[1]
    ports = [taken]
    real_free_port = demo_broker.free_port
    monkeypatch.setattr(demo_broker, "free_port", lambda host: ports.pop() if ports else real_free_port(host))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    try:
        started = demo_broker.Mosquitto(a_mosquitto()).start()
    finally:
        squatter.close()
    try:
        assert ports == [] and started.port != taken  # it tried the taken port, then another
        client = Client(started.port)
        client.close()
    finally:
        started.stop()


def test_amqtt_is_used_when_there_is_no_mosquitto(tmp_path, monkeypatch):
    if demo_broker.amqtt_problem():
        pytest.skip("{}: pip install 'facewatch[demo]'".format(demo_broker.amqtt_problem()))
    started = demo_broker.start(path=str(tmp_path), fallbacks=())
    try:
        assert started.name == "amqtt" and started.describe().startswith("amqtt ")
        Client(started.port).close()
    finally:
        started.stop()
    assert refuses(started.port)


def test_no_broker_at_all_is_a_clear_error_naming_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "amqtt", None)  # `import amqtt` fails as when it is not installed
    with pytest.raises(FacewatchError) as raised:
        demo_broker.start(path=str(tmp_path), fallbacks=("/nonexistent/sbin/mosquitto",))
    assert raised.value.exit_code == 1
    message = str(raised.value)
    assert message.startswith("no MQTT broker to run the demo on: no mosquitto on PATH or at "
                              "/nonexistent/sbin/mosquitto, and amqtt is not installed")
    for hint in ("sudo apt-get install mosquitto", "pip install 'facewatch[demo]'", "facewatch demo --broker HOST:PORT"):
        assert hint in message


def test_an_amqtt_that_cannot_be_imported_says_why(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def failing_import(name, *args, **kwargs):
        if name.split(".")[0] == "amqtt":
            raise ModuleNotFoundError("No module named 'dacite'", name="dacite")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", failing_import)
    assert demo_broker.amqtt_problem() == "amqtt cannot be imported (No module named 'dacite')"


def test_amqtt_s_late_acknowledgement_warning_is_dropped_and_its_other_warnings_kept(caplog):
    """The warning amqtt's shutdown race gives (seen in CI under load: the subscriber's last PUBACK handled
    after its DISCONNECT) is not shown; amqtt's other warnings are."""
    demo_broker.quiet_amqtt_logs()
    demo_broker.quiet_amqtt_logs()   # once per broker started: the filter is added once
    handler_log = logging.getLogger("amqtt.mqtt.protocol.handler")
    with caplog.at_level(logging.WARNING, logger="amqtt"):
        handler_log.warning("Received PUBACK for unknown pending message Id: '%s'", 87)
        handler_log.warning("Timeout waiting for PUBACK for packet ID 12")
    assert [record.getMessage() for record in caplog.records] == ["Timeout waiting for PUBACK for packet ID 12"]
    assert len(handler_log.filters) == 1
