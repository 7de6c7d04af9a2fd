"""Home Assistant discovery: the configs as Home Assistant's MQTT documentation defines them (checked with
tests/ha_schema.py), announced on a real mosquitto by the daemon, and removed again when discovery is turned off.
"""
import collections
import json
import re
import time

from appliance.mqtt.homeassistant import discovery_configs, node_id
from appliance.mqtt.topics import Topics
from brokers import Recorder, wait_until
from ha_schema import rejection

Settings = collections.namedtuple("Settings", "discovery prefix")


def configs(device="cam-1.lobby", zones=("CPU-therm", "GPU-therm"), power=True):
    return discovery_configs(Settings(True, "homeassistant"), Topics("facewatch", device), "1.0", zones, power)


def test_every_config_is_one_home_assistant_takes():
    for topic, document in configs().items():
        _, component, node, object_id, _ = topic.split("/")
        assert rejection(component, document) == "", (topic, rejection(component, document))
        assert node == node_id("cam-1.lobby") and node.startswith("facewatch_cam-1_lobby_")


def test_one_device_with_faces_fps_latency_temperatures_power_presence_and_the_snapshot():
    found = configs()
    names = {topic.split("/")[1] + "/" + re.sub(r"_[0-9a-f]{6}$", "", topic.split("/")[3]) for topic in found}
    assert names == {"sensor/faces", "sensor/fps", "sensor/inference_latency", "sensor/temperature_cpu-therm",
                     "sensor/temperature_gpu-therm", "sensor/power", "binary_sensor/face_present",
                     "camera/snapshot"}
    assert len({json.dumps(d["device"], sort_keys=True) for d in found.values()}) == 1
    assert len({d["unique_id"] for d in found.values()}) == len(found)
    assert found["homeassistant/camera/{}/snapshot/config".format(node_id("cam-1.lobby"))]["topic"] == \
        "facewatch/cam-1.lobby/snapshot"
    for document in found.values():
        assert document["availability"][0]["topic"] == "facewatch/cam-1.lobby/status"


def discovery_daemon(daemon_factory, port, clip, tmp_path, enabled):
    return daemon_factory(port, {"source": clip[0], "loop": True}, name="ha-{}".format(enabled),
                          homeassistant={"discovery": enabled}, commands={"state_dir": str(tmp_path / "state")},
                          telemetry={"interval": 0.5})


def started(port, daemon):
    """Once its first telemetry arrives, everything the daemon sent at start (discovery included) has."""
    probe = Recorder(port, "facewatch/testcam/telemetry")
    wait_until(lambda: probe.on("telemetry"), 60, message="telemetry from " + str(daemon.config_path))
    probe.close()


def test_the_daemon_announces_itself_and_removes_itself_when_turned_off(mosquitto, daemon_factory, clip, tmp_path):
    recorder = Recorder(mosquitto.port, "homeassistant/#")
    recorder.subscribed.wait(10)
    first = discovery_daemon(daemon_factory, mosquitto.port, clip, tmp_path, True)
    started(mosquitto.port, first)
    topics = {topic for topic, payload, _ in recorder.raw if payload}
    assert {t.split("/")[3] for t in topics} >= {"faces", "fps", "inference_latency", "face_present", "snapshot"}
    for topic in topics:
        assert rejection(topic.split("/")[1], json.loads(recorder.raw_on(topic)[-1][0].decode())) == ""
    late = Recorder(mosquitto.port, "homeassistant/#")
    wait_until(lambda: len(late.raw) >= len(topics), 10, message="the retained configs")
    assert all(retain for _, _, retain in late.raw)
    first.stop()

    second = discovery_daemon(daemon_factory, mosquitto.port, clip, tmp_path, False)
    started(mosquitto.port, second)
    assert {topic for topic, payload, _ in recorder.raw if not payload} == topics
    after = Recorder(mosquitto.port, "homeassistant/#")
    after.subscribed.wait(10)
    started(mosquitto.port, second)
    assert after.raw == []   # nothing retained any more


def test_ids_that_differ_only_in_characters_home_assistant_refuses_stay_apart():
    assert len({node_id(device) for device in ("cam.1", "cam_1", "cam-\u00fc", "cam-\u00e9")}) == 4
    zones = configs(zones=("CPU-therm", "cpu_therm", "cpu-therm"))
    assert len([t for t in zones if "/temperature_" in t]) == 3


def test_a_garbled_record_or_a_fifo_in_its_place_counts_as_none_announced(tmp_path):
    import os
    from appliance.mqtt.homeassistant import Discovery
    sent = []
    record = tmp_path / "homeassistant.json"
    ours = "homeassistant/sensor/{}/fps/config".format(node_id("cam"))
    for content in ('["a/#", "", "homeassistant/sensor/x/y/config", "elsewhere/z", "{}"]'.format(ours),
                    "[" * 100000, "[" * 1000 + "]" * 1000, "\udcff", "\ufeff[]", '{"a": 1}', "[1e999]",
                    "[" + "9" * 400 + "]", '["x", "x"' + ', "y"' * 20000 + "]"):
        record.write_text(content, errors="surrogateescape")
        discovery = Discovery(Settings(False, "homeassistant"), Topics("facewatch", "cam"), "1.0", str(tmp_path),
                              lambda topic, payload: sent.append(topic))
        discovery.apply({})
    assert sent == [ours]   # only this device's: the exact shape it announces, under the prefix
    os.remove(str(record))
    os.mkfifo(str(record))
    discovery = Discovery(Settings(False, "homeassistant"), Topics("facewatch", "cam"), "1.0", str(tmp_path),
                          lambda topic, payload: sent.append(topic))
    assert discovery.apply({}) == 0 and "unreadable" in discovery.stats()["error"]


def test_only_this_devices_topics_are_cleared_whatever_the_record_lists(mosquitto, tmp_path):
    """A record listing another device's config topics (a state folder copied from it, or written by anyone)
    must not delete that device's entities: only topics of the shape this device announces are emptied."""
    import paho.mqtt.client as paho
    from appliance.mqtt.homeassistant import RECORD, Discovery, own_config_topic
    ours = configs(device="cam")
    theirs = configs(device="other")
    lookalikes = ["homeassistant/sensor/{}/fps/x/config".format(node_id("cam")),      # one level too many
                  "homeassistant/light/{}/fps/config".format(node_id("cam")),         # not a component of ours
                  "homeassistant/sensor/{}/f.s/config".format(node_id("cam")),        # not an object id of ours
                  "homeassistant/sensor/{}/fps/state".format(node_id("cam")),
                  "homeassistant/sensor/{}_x/fps/config".format(node_id("cam")),
                  "elsewhere/sensor/{}/fps/config".format(node_id("cam"))]
    kwargs = {"callback_api_version": paho.CallbackAPIVersion.VERSION2} if hasattr(paho, "CallbackAPIVersion") else {}
    client = paho.Client(**kwargs)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()

    def publish(topic, payload):
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    try:
        for topic in list(ours) + list(theirs) + lookalikes:
            publish(topic, b'{"name": "x"}')
        state = tmp_path / "state"
        state.mkdir()
        (state / RECORD).write_text(json.dumps(sorted(theirs) + lookalikes + sorted(ours) + [7, None, ["x"]]))
        discovery = Discovery(Settings(False, "homeassistant"), Topics("facewatch", "cam"), "1.0", str(state), publish)
        assert discovery.apply({}) == 0
        retained = Recorder(mosquitto.port, "#")
        retained.subscribed.wait(10)
        time.sleep(1.0)
        assert {topic for topic, _, _ in retained.raw} == set(theirs) | set(lookalikes)   # ours emptied only
        retained.close()
        assert discovery.stats()["ignored"] == len(theirs) + len(lookalikes) + 3
        assert not (state / RECORD).exists()
        assert all(own_config_topic(t, "homeassistant", "cam") for t in ours)
        assert not any(own_config_topic(t, "homeassistant", "cam") for t in list(theirs) + lookalikes)
    finally:
        client.loop_stop()
        client.disconnect()


def test_turning_discovery_on_again_leaves_another_devices_topics_alone_too(tmp_path):
    """On: entities this host no longer has are emptied, but only among this device's own topics."""
    from appliance.mqtt.homeassistant import RECORD, Discovery
    theirs = sorted(configs(device="other"))
    gone = "homeassistant/sensor/{}/temperature_old/config".format(node_id("cam"))
    (tmp_path / RECORD).write_text(json.dumps(theirs + [gone]))
    sent = []
    discovery = Discovery(Settings(True, "homeassistant"), Topics("facewatch", "cam"), "1.0", str(tmp_path),
                          lambda topic, payload: sent.append((topic, payload)))
    discovery.apply({"temperatures": {}})
    assert [topic for topic, payload in sent if not payload] == [gone]
    assert not set(theirs) & {topic for topic, _ in sent}
    assert discovery.stats()["ignored"] == len(theirs)
    assert not set(theirs) & set(json.loads((tmp_path / RECORD).read_text()))
