"""docs/interface.md and the code say the same: commands, options, configuration keys with their defaults
and limits, topics, payload fields and status values, both ways round."""
import argparse
import json
import os
import re
import threading
import types

import pytest

from appliance.commands import cli
from appliance.config import schema as configuration
from appliance.camera.capture import CONNECTING, ENDED, FAILED, RECONNECTING, STALLED, STREAMING, Camera
from appliance.health import PsutilHost
from appliance.mqtt import topics as contract
from appliance.mqtt.link import (CONNECTION_LOST, DISCONNECTED, QUEUE_FULL, REFUSED_BY_BROKER, REFUSED_BY_CLIENT,
                                 SECOND_INSTANCE, MqttLink)
from appliance.daemon.pipeline import STAGES, Pipeline
from appliance.remote.dispatcher import Dispatcher
from appliance.remote.replay import ReplayGuard
from conftest import REPO_ROOT

CAMERA_STATES = (CONNECTING, STREAMING, STALLED, RECONNECTING, ENDED, FAILED)
DOC_PATH = os.path.join(REPO_ROOT, "docs", "interface.md")


@pytest.fixture(scope="module")
def doc():
    with open(DOC_PATH, encoding="utf-8") as f:
        return f.read()


def parsers():
    """(command words, parser) for every command and sub-command the CLI has."""
    found = []

    def walk(words, parser):
        found.append((words, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(words + [name], sub)
    walk([], cli.build_parser())
    return found


def options():
    return {option for _, parser in parsers() for action in parser._actions for option in action.option_strings
            if option.startswith("--") and option != "--help"}


def test_every_command_has_its_section(doc):
    for name, _, _ in cli.available_commands():
        assert "### `facewatch {}".format(name) in doc, name


def test_every_option_is_documented_and_every_documented_option_exists(doc):
    command_line = doc.split("## Command line", 1)[1].split("## Configuration", 1)[0]
    documented = set(re.findall(r"(--[a-z][a-z-]+)", command_line))
    assert options() - documented == set()
    assert documented - options() == set()


def rendered(value):
    return json.dumps(value) if isinstance(value, (str, bool)) else repr(value)


def test_every_config_key_is_documented_with_its_default_and_limits(doc):
    rows = [line for line in doc.splitlines() if line.startswith("| `") and "." in line.split("|")[1]]
    for section, fields in configuration.SCHEMA.items():
        for key, spec in fields.items():
            name = "`{}.{}`".format(section, key)
            row = next((r for r in rows if name in r.split("|")[1]), None)
            assert row, name
            assert "`{}`".format(rendered(spec.default)) in row, (name, rendered(spec.default))
            if spec.minimum is not None and spec.maximum is not None:
                assert "{:g}..{:g}".format(spec.minimum, spec.maximum) in row, (name, row)


def test_every_documented_config_key_exists(doc):
    known = {"{}.{}".format(s, k) for s, fields in configuration.SCHEMA.items() for k in fields}
    table = doc.split("## Configuration", 1)[1].split("## Files", 1)[0]
    mentioned = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", table))
    assert mentioned - known == set()


def test_every_topic_and_status_value_is_documented(doc):
    names = contract.Topics("PREFIX", "DEVICE")
    for topic in (names.status, names.engine, names.detections, names.telemetry, names.reply,
                  names.instance) + names.commands:
        assert "`{}`".format(topic.replace("/+", "/NAME")) in doc, topic
    for value in (contract.ONLINE, contract.OFFLINE, contract.STOPPED):
        assert "`{}`".format(value) in doc


def section(doc, title):
    return doc.split("**{}**:".format(title), 1)[1].split("\n\n", 1)[0]


def test_every_engine_and_detections_field_is_documented(doc):
    for field in contract.ENGINE_FIELDS:
        assert "`{}`".format(field) in section(doc, "engine"), field
    frame = type("Frame", (), {"image": __import__("numpy").zeros((2, 3, 3)), "timestamp": 0.0, "index": 0})
    for field in contract.detections_payload(1, frame, "cam", [], 1.0):
        assert "`{}`".format(field) in section(doc, "detections"), field


def test_every_telemetry_field_is_documented(doc, clip, tmp_path):
    text = section(doc, "telemetry")
    settings = configuration.defaults()
    camera = Camera(settings.camera._replace(source=clip[0]), threading.Event())
    link = MqttLink(settings.mqtt, contract.Topics("facewatch", "doc"))
    pipeline = Pipeline(camera, [types.SimpleNamespace(preprocessing="cpu")], None, threading.Event())
    host = PsutilHost()
    commands = dict(Dispatcher("doc", None, False, ReplayGuard(str(tmp_path)), {}, None, None).stats(),
                    rebuild_running=None)
    try:
        payload = contract.telemetry_payload(1.0, pipeline.stats(), camera.stats(), {"state": None, "backend": None,
                                             "precision": None, "key": None, "error": None, "preprocessing": None,
                                             "workers": 2, "threads_per_worker": 1, "workers_reason": ""}, link.stats(),
                                             host.sample(), commands)
    finally:
        link.stop()
    fields = set(payload) | set(payload["camera"]) | set(payload["mqtt"]) | set(payload["host"]) | set(payload["fps"])
    fields |= set(payload["commands"])
    fields |= set(payload["dropped_frames"]) | set(payload["engine"]) | {"p50", "p90", "p95", "p99", "max", "n"}
    fields |= set(STAGES) | {DISCONNECTED, QUEUE_FULL, CONNECTION_LOST, REFUSED_BY_CLIENT, REFUSED_BY_BROKER,
                                 SECOND_INSTANCE}
    for field in sorted(fields):
        assert "`{}`".format(field) in text, field
    for state in CAMERA_STATES:
        assert state in text, state
