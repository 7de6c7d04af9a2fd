"""Home Assistant MQTT discovery: one device with its entities, announced with retained configs on
DISCOVERY_PREFIX/COMPONENT/NODE/OBJECT/config, and removed (empty retained configs) when turned off.

The entities read facewatch's own topics: sensors and the face-present binary sensor read `telemetry`
(every telemetry.interval s, not every frame), the camera entity reads `snapshot`, and availability
follows `status`. Field names are those of Home Assistant's MQTT documentation
(https://www.home-assistant.io/integrations/sensor.mqtt/, binary_sensor.mqtt/, camera.mqtt/ and
https://www.home-assistant.io/integrations/mqtt/#discovery-messages). The topics announced are recorded in
the state folder, so that turning discovery off removes exactly those.
"""
import json
import logging
import os
import re

from appliance import files

log = logging.getLogger(__name__)

RECORD = "homeassistant.json"


def node_id(device):
    """The device id as Home Assistant's node_id and unique_id accept it: [a-zA-Z0-9_-]."""
    return "facewatch_" + re.sub(r"[^a-zA-Z0-9_-]", "_", device)


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
        found.append(("sensor", "temperature_" + re.sub(r"[^a-z0-9_]", "_", zone.lower()), {
            "name": "Temperature {}".format(zone), "device_class": "temperature", "unit_of_measurement": "°C",
            "state_class": "measurement", "entity_category": "diagnostic",
            "value_template": "{{{{ value_json.host.temperatures[{}] }}}}".format(json.dumps(zone))}))
    if has_power:
        found.append(("sensor", "power", {
            "name": "Power", "device_class": "power", "unit_of_measurement": "W", "state_class": "measurement",
            "entity_category": "diagnostic",
            "value_template": "{{ (value_json.host.power_mw / 1000) | round(2) if value_json.host.power_mw is "
                              "number else None }}"}))
    return found


def discovery_configs(settings, topics, version, temperature_zones=(), has_power=False):
    """{config topic: config document} of every entity."""
    node = node_id(topics.device)
    configs = {}
    for component, object_id, fields in entities(topics, temperature_zones, has_power):
        document = {"unique_id": "{}_{}".format(node, object_id), "availability": availability(topics), "device": device_block(topics, version)}
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

    def apply(self, host_sample):
        """On: announce every entity (retained). Off: remove what an earlier run announced."""
        if self.settings.discovery:
            temperatures = (host_sample or {}).get("temperatures") or {}
            has_power = (host_sample or {}).get("power_mw") is not None
            configs = discovery_configs(self.settings, self.topics, self.version, sorted(temperatures), has_power)
            for topic in sorted(set(self._announced()) - set(configs)):   # entities this host no longer has
                self._publish(topic, b"")
            for topic, document in configs.items():
                self._publish(topic, json.dumps(document, separators=(",", ":")).encode("utf-8"))
            self._remember(sorted(configs))
            log.info("homeassistant: announced %d entities under %s", len(configs), self.settings.prefix)
            return len(configs)
        announced = self._announced()
        for topic in announced:
            self._publish(topic, b"")
        if announced:
            self._forget()
            log.info("homeassistant: discovery is off; removed %d entities announced before", len(announced))
        return 0

    def _announced(self):
        try:
            with open(self._record) as f:
                topics = json.load(f)
        except (OSError, ValueError):
            return []
        return [t for t in topics if isinstance(t, str)] if isinstance(topics, list) else []

    def _remember(self, topics):
        try:
            files.atomic_write_bytes(self._record, json.dumps(topics).encode("utf-8"))
        except OSError as exc:
            log.warning("homeassistant: cannot record the announced entities in %s: %s", self._record, exc)

    def _forget(self):
        try:
            os.remove(self._record)
        except OSError:
            pass
