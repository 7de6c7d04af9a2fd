"""Home Assistant MQTT discovery: one device with its entities, announced with retained configs on
DISCOVERY_PREFIX/COMPONENT/NODE/OBJECT/config, and removed (empty retained configs) when turned off.

The entities read facewatch's own topics: sensors and the face-present binary sensor read `telemetry`
(every telemetry.interval s, not every frame), the camera entity reads `snapshot`, and availability
follows `status`. Field names are those of Home Assistant's MQTT documentation
(https://www.home-assistant.io/integrations/sensor.mqtt/, binary_sensor.mqtt/, camera.mqtt/ and
https://www.home-assistant.io/integrations/mqtt/#discovery-messages). The topics announced are recorded in
the state folder, so that turning discovery off removes exactly those.

The record is a file someone else could have written (the state folder may be shared, restored from
another device, or edited): it is read through untrusted.read_json_file, and only topics of exactly the
shape this device announces (DISCOVERY_PREFIX/COMPONENT/<this node_id>/OBJECT/config) are ever emptied.
Any other topic in it (another device's entities) is left alone, counted (`ignored`) and logged.
"""
import hashlib
import json
import logging
import os
import re

from appliance import files, untrusted

log = logging.getLogger(__name__)

RECORD = "homeassistant.json"
RECORD_MAX_BYTES = 64 * 1024     # ours lists ~10-30 config topics of ~100 bytes
RECORD_MAX_DEPTH = 2             # a flat list of strings (one level to spare)
COMPONENTS = ("sensor", "binary_sensor", "camera")
OBJECT_ID = re.compile(r"^[a-zA-Z0-9_-]+$")   # what safe_id makes


def valid_topic(topic):
    """A topic name one may publish to: no wildcards or NUL, UTF-8 encodable, at most 65,535 bytes."""
    try:
        encoded = topic.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return bool(topic) and len(encoded) <= 65535 and not any(c in topic for c in "+#\x00")


def safe_id(name, lower=False):
    """`name` as Home Assistant's node_id and unique_id accept it ([a-zA-Z0-9_-]); where that changed it, a
    short digest of the original is appended, so that `cam.1` and `cam_1` stay two devices."""
    safe = re.sub(r"[^a-z0-9_-]" if lower else r"[^a-zA-Z0-9_-]", "_", name.lower() if lower else name)
    if safe == name:
        return safe
    return "{}_{}".format(safe, hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:6])


def node_id(device):
    return "facewatch_" + safe_id(device)


def availability(topics):
    return [{"topic": topics.status, "value_template": "{{ 'online' if value == 'online' else 'offline' }}",
             "payload_available": "online", "payload_not_available": "offline"}]


def device_block(topics, version):
    return {"identifiers": [node_id(topics.device)], "name": "facewatch {}".format(topics.device),
            "manufacturer": "facewatch", "model": "face detection (RetinaFace)", "sw_version": version}


def entities(topics, temperature_zones, has_power):
    """[(component, object_id, {entity fields})] for this device."""
    found = [
        ("sensor", "faces", {"name": "Faces", "icon": "mdi:face-recognition", "state_class": "measurement",
                             "value_template": "{{ value_json.faces }}"}),
        ("sensor", "fps", {"name": "Frames per second", "unit_of_measurement": "fps", "state_class": "measurement",
                           "value_template": "{{ value_json.fps.inference }}", "entity_category": "diagnostic"}),
        ("sensor", "inference_latency", {
            "name": "Inference latency", "unit_of_measurement": "ms", "device_class": "duration",
            "state_class": "measurement", "entity_category": "diagnostic",
            "value_template": "{{ value_json.latency_ms.inference.p50 if value_json.latency_ms.inference "
                              "is defined else None }}"}),
        ("binary_sensor", "face_present", {"name": "Face present", "device_class": "occupancy",
                                           "payload_on": "ON", "payload_off": "OFF",
                                           "value_template": "{{ 'ON' if value_json.faces > 0 else 'OFF' }}"}),
        ("camera", "snapshot", {"name": "Snapshot", "topic": topics.snapshot}),
    ]
    for zone in temperature_zones:
        key = json.dumps(zone)
        found.append(("sensor", "temperature_" + safe_id(zone, lower=True), {
            "name": "Temperature {}".format(zone), "device_class": "temperature", "unit_of_measurement": "°C",
            "state_class": "measurement", "entity_category": "diagnostic",
            "value_template": "{{{{ value_json.host.temperatures[{0}] if value_json.host.temperatures is defined "
                              "and {0} in value_json.host.temperatures else None }}}}".format(key)}))
    if has_power:
        found.append(("sensor", "power", {
            "name": "Power", "device_class": "power", "unit_of_measurement": "W", "state_class": "measurement",
            "entity_category": "diagnostic",
            "value_template": "{{ (value_json.host.power_mw / 1000) | round(2) if value_json.host.power_mw is "
                              "number else None }}"}))
    return found


def own_config_topic(topic, prefix, device):
    """Whether `topic` is one this device announces: PREFIX/COMPONENT/<node_id(device)>/OBJECT/config."""
    if not isinstance(topic, str) or not topic.startswith(prefix + "/") or not valid_topic(topic):
        return False
    parts = topic[len(prefix) + 1:].split("/")
    return (len(parts) == 4 and parts[0] in COMPONENTS and parts[1] == node_id(device)
            and OBJECT_ID.match(parts[2]) is not None and parts[3] == "config")


def discovery_configs(settings, topics, version, temperature_zones=(), has_power=False):
    """{config topic: config document} of every entity."""
    node = node_id(topics.device)
    configs = {}
    for component, object_id, fields in entities(topics, temperature_zones, has_power):
        document = {"unique_id": "{}_{}".format(node, object_id), "availability": availability(topics),
                    "device": device_block(topics, version)}
        if component != "camera":
            document["state_topic"] = topics.telemetry
        document.update(fields)
        configs["{}/{}/{}/{}/config".format(settings.prefix, component, node, object_id)] = document
    return configs


class Discovery:
    """Announce (or remove) the device on Home Assistant's discovery prefix through `publish`."""

    def __init__(self, settings, topics, version, state_dir, publish):
        self.settings = settings
        self.topics = topics
        self.version = version
        self._record = os.path.join(state_dir, RECORD)
        self._publish = publish
        self.entities = 0
        self.error = None
        self.ignored = 0

    def apply(self, host_sample):
        """On: announce every entity (retained). Off: remove what an earlier run announced."""
        self.error = None
        if self.settings.discovery:
            sample = host_sample or {}
            temperatures = sample.get("temperatures") or {}
            has_power = sample.get("power_mw") is not None
            configs = discovery_configs(self.settings, self.topics, self.version, sorted(temperatures), has_power)
            announced = self._announced()
            if not sample.get("error"):   # a failed reading says nothing about which sensors this host has
                for topic in sorted(set(announced) - set(configs)):   # entities this host no longer has
                    self._publish(topic, b"")
            for topic, document in configs.items():
                self._publish(topic, json.dumps(document, separators=(",", ":")).encode("utf-8"))
            self._remember(sorted(set(configs) | (set(announced) if sample.get("error") else set())))
            self.entities = len(configs)
            log.info("homeassistant: announced %d entities under %s", len(configs), self.settings.prefix)
            return len(configs)
        announced = self._announced()
        for topic in announced:
            self._publish(topic, b"")
        if announced:
            self._forget()
            log.info("homeassistant: discovery is off; removed %d entities announced before", len(announced))
        self.entities = 0
        return 0

    def stats(self):
        return {"discovery": self.settings.discovery, "entities": self.entities, "ignored": self.ignored,
                "error": self.error}

    def _announced(self):
        """The config topics an earlier run of this device announced. Only topics of exactly the shape this
        device announces count; any other (another device's, garbage) is ignored, counted and logged. A record
        that is missing, not a file, too large, not a JSON list or garbled counts as none."""
        try:
            topics = untrusted.read_json_file(self._record, RECORD_MAX_BYTES, "the record " + self._record,
                                              RECORD_MAX_DEPTH)
            if not isinstance(topics, list):
                raise untrusted.Refused("the record {} must be a JSON list, not {}".format(
                    self._record, untrusted.kind(topics)))
        except untrusted.Refused as exc:
            if os.path.lexists(self._record):
                self.error = "the record {} is unreadable ({}); entities announced before it are not removed".format(
                    self._record, untrusted.shown(str(exc)))
                log.warning("homeassistant: %s", self.error)
            return []
        own, others = [], []
        for topic in topics:
            (own if own_config_topic(topic, self.settings.prefix, self.topics.device) else others).append(topic)
        self.ignored = len(others)
        if others:
            log.warning("homeassistant: the record %s lists %d topics that are not this device's (%s under %s/); "
                        "left untouched: %s", self._record, len(others), node_id(self.topics.device),
                        self.settings.prefix, ", ".join(untrusted.shown(t, 100) for t in others[:3]) +
                        (", ..." if len(others) > 3 else ""))
        return own

    def _remember(self, topics):
        try:
            files.atomic_write_bytes(self._record, json.dumps(topics).encode("utf-8"))
        except OSError as exc:
            self.error = "cannot record the announced entities in {}: {}; turning discovery off will not " \
                         "remove them".format(self._record, exc)
            log.warning("homeassistant: %s", self.error)

    def _forget(self):
        try:
            os.remove(self._record)
        except OSError:
            pass
