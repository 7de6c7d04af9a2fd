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
    with pytest.raises(ValueError):
        topics.encode({"a": float("nan")})
