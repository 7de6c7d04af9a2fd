"""The test harness, not the product: tests/ha_schema.py, the checker the Home Assistant tests judge discovery
configs with, takes what Home Assistant takes and refuses what it refuses."""
from ha_schema import rejection

# a sensor config as Home Assistant's MQTT sensor documentation shows one, written by hand
GOOD = {"name": "FPS", "unique_id": "facewatch_cam_fps", "state_topic": "facewatch/cam/telemetry",
        "value_template": "{{ value_json.fps.inference }}", "unit_of_measurement": "fps",
        "state_class": "measurement", "entity_category": "diagnostic",
        "availability": [{"topic": "facewatch/cam/status"}],
        "device": {"identifiers": ["facewatch_cam"], "name": "cam", "manufacturer": "facewatch"}}


def test_harness_takes_a_config_home_assistant_takes():
    assert rejection("sensor", GOOD) == ""
    assert rejection("sensor", dict(GOOD, device_class="temperature", unit_of_measurement="°C")) == ""


def test_harness_refuses_what_home_assistant_refuses():
    assert rejection("sensor", dict(GOOD, state_topics="x")).startswith("unknown fields")
    assert rejection("sensor", {k: v for k, v in GOOD.items() if k != "state_topic"}).startswith("missing")
    assert rejection("sensor", dict(GOOD, device_class="temperature", unit_of_measurement="mW")).startswith(
        "device class")
    assert rejection("sensor", dict(GOOD, availability=[{"payload_available": "online"}])).startswith(
        "bad availability entry")
    assert rejection("sensor", dict(GOOD, device={"name": "cam"})).startswith("bad device block")
    assert rejection("sensor", dict(GOOD, unique_id="facewatch cam.fps")) == "unique_id"
    presence = {k: v for k, v in GOOD.items() if k not in ("unit_of_measurement", "state_class")}
    assert rejection("binary_sensor", dict(presence, device_class="presence")) == ""
    assert rejection("binary_sensor", dict(presence, device_class="temperature")) == "binary device class"
