import json

import pytest

from appliance.mqtt import topics


def test_command_topics_of_this_device_and_of_all():
    names = topics.Topics("facewatch", "cam1")
    assert names.command_target("facewatch/cam1/cmd/rebuild") == ("cam1", "rebuild")
    assert names.command_target("facewatch/all/cmd/status") == ("all", "status")
    assert names.command_target("facewatch/cam2/cmd/status") is None
    assert names.command_target("facewatch/cam1/cmd/a/b") is None
    assert names.command_target("facewatch/cam1/cmd/") is None


def test_payloads_are_json_objects_with_a_schema_version_and_never_nan():
    assert json.loads(topics.encode({"a": 1}).decode("utf-8")) == {"v": 1, "a": 1}
    text = topics.encode({"a": float("nan")}).decode("utf-8")
    assert json.loads(text, parse_constant=pytest.fail) == {"v": 1, "a": None}


def test_a_reading_nan_or_infinity_anywhere_is_published_as_unknown_not_a_crash():
    sample = {"temperatures": {"CPU": float("nan"), "GPU": 41.5}, "fan_percent": float("inf"),
              "load": [0.5, float("-inf")], "source": "jtop"}
    published = json.loads(topics.encode({"host": sample}).decode(), parse_constant=pytest.fail)["host"]
    assert published["temperatures"] == {"CPU": None, "GPU": 41.5}
    assert published["fan_percent"] is None and published["load"] == [0.5, None]
