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


def test_a_command_goes_to_its_device_or_to_all_and_its_answers_come_from_that_device_or_any():
    assert topics.Topics("fw", "cam1").command("rebuild") == "fw/cam1/cmd/rebuild"
    assert topics.Topics("fw", topics.ALL_DEVICES).command("status") == "fw/all/cmd/status"
    assert topics.answering("fw", "cam1").reply == "fw/cam1/reply"
    assert topics.answering("fw", topics.ALL_DEVICES).reply == "fw/+/reply"
    assert topics.answering("fw", topics.ALL_DEVICES).watched == ("fw/+/status", "fw/+/engine", "fw/+/telemetry")
    assert topics.Topics("fw", "demo").everything == "fw/demo/#"
    names = topics.Topics("fw", "cam1")
    assert names.commands == (names.command("+"), topics.Topics("fw", topics.ALL_DEVICES).command("+"))


def test_the_configuration_bounds_the_longest_topic_as_it_is_built():
    from types import SimpleNamespace
    from appliance.config import schema
    from appliance.mqtt import homeassistant
    names = topics.Topics("fw", "cam1")
    discovery = homeassistant.discovery_configs(SimpleNamespace(prefix="homeassistant"), names, "1")
    longest = schema.longest_topic("fw", "cam1", SimpleNamespace(prefix="homeassistant"))
    assert longest in names.published + tuple(discovery)
    assert len(longest) == max(len(topic) for topic in names.published + tuple(discovery))


def test_topics_are_built_only_in_the_mqtt_package():
    """No "{}/{}/...".format(prefix, device, ...) outside appliance/mqtt: every topic comes from topics.py
    (and Home Assistant's discovery topics from homeassistant.py)."""
    import ast
    import os
    import re
    import appliance
    root = os.path.dirname(appliance.__file__)
    found = []
    for folder, _, names in os.walk(root):
        if folder == os.path.join(root, "mqtt"):
            continue
        for name in (n for n in names if n.endswith(".py")):
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
                    template = node.func.value.value if isinstance(node.func.value, ast.Constant) else \
                        getattr(node.func.value, "s", None)   # Python 3.6 and 3.7: ast.Str
                    if isinstance(template, str) and re.match(r"\{\}/\{\}(/|\{\}|$)", template):
                        found.append("{}:{}".format(os.path.relpath(path, root), node.lineno))
    assert found == []
