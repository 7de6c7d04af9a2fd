"""What Home Assistant takes as an MQTT discovery config: a checker for the tests (harness, not product).

The field names and allowed values below are those of Home Assistant's documentation (2026):
https://www.home-assistant.io/integrations/mqtt/ (discovery, `availability`, `device`),
https://www.home-assistant.io/integrations/sensor.mqtt/, binary_sensor.mqtt/, camera.mqtt/, and the sensor
device classes and their units at https://www.home-assistant.io/integrations/sensor/#device-class.
Its own check is tests/mqtt/test_homeassistant_harness.py.
"""
import re

COMMON = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
          "enabled_by_default", "encoding", "entity_category", "entity_picture", "icon", "json_attributes_template",
          "json_attributes_topic", "name", "default_entity_id", "payload_available", "payload_not_available",
          "platform", "qos", "unique_id"}
FIELDS = {
    "sensor": COMMON | {"device_class", "expire_after", "force_update", "last_reset_value_template", "options",
                        "state_class", "state_topic", "suggested_display_precision", "unit_of_measurement",
                        "value_template"},
    "binary_sensor": COMMON | {"device_class", "expire_after", "force_update", "off_delay", "payload_off",
                               "payload_on", "state_topic", "value_template"},
    "camera": COMMON | {"image_encoding", "topic"},
}
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}, "camera": {"topic"}}
AVAILABILITY_FIELDS = {"payload_available", "payload_not_available", "topic", "value_template"}
DEVICE_FIELDS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
                 "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device"}
SENSOR_UNITS = {"temperature": {"°C", "°F", "K"}, "power": {"W", "kW", "MW", "GW", "TW", "mW", "BTU/h"},
                "duration": {"d", "h", "min", "s", "ms", "µs"}}
BINARY_DEVICE_CLASSES = {"occupancy", "presence", "motion"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
UNIQUE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def rejection(component, document):
    """Why Home Assistant would refuse this discovery config, or '' if it would take it."""
    unknown = set(document) - FIELDS[component]
    if unknown:
        return "unknown fields {}".format(sorted(unknown))
    if REQUIRED[component] - set(document):
        return "missing {}".format(sorted(REQUIRED[component] - set(document)))
    for entry in document.get("availability", []):
        if "topic" not in entry or set(entry) - AVAILABILITY_FIELDS:
            return "bad availability entry {}".format(entry)
    device = document.get("device", {})
    if set(device) - DEVICE_FIELDS or not (device.get("identifiers") or device.get("connections")):
        return "bad device block {}".format(device)
    if document.get("entity_category", "diagnostic") not in ENTITY_CATEGORIES:
        return "entity_category"
    if document.get("state_class", "measurement") not in STATE_CLASSES:
        return "state_class"
    device_class = document.get("device_class")
    if component == "sensor" and device_class:
        if device_class not in SENSOR_UNITS or document.get("unit_of_measurement") not in SENSOR_UNITS[device_class]:
            return "device class {} with unit {}".format(device_class, document.get("unit_of_measurement"))
    if component == "binary_sensor" and device_class and device_class not in BINARY_DEVICE_CLASSES:
        return "binary device class"
    if not UNIQUE_ID.match(document.get("unique_id", "")):
        return "unique_id"
    return ""
