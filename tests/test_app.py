"""appliance/app.py helpers that stand between outside data and what facewatch publishes."""
import json

from appliance.app import finite_only
from appliance.mqtt.topics import encode


def test_a_sensor_reading_nan_or_infinity_is_published_as_unknown_not_a_crash():
    sample = {"temperatures": {"CPU": float("nan"), "GPU": 41.5}, "fan_percent": float("inf"),
              "load": [0.5, float("-inf")], "source": "jtop"}
    published = json.loads(encode(finite_only(sample)).decode())
    assert published["temperatures"] == {"CPU": None, "GPU": 41.5}
    assert published["fan_percent"] is None and published["load"] == [0.5, None]
