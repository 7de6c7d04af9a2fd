"""Thousands of generated configuration files: `check-config` answers 0 or 2, never a traceback, and every
file it accepts builds the daemon's parts (topics, publish policy, camera, MQTT client) without error."""
import datetime
import io
import json
import math
import os
import threading
from contextlib import redirect_stderr, redirect_stdout

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.commands import cli
from appliance.config import schema as configuration
from appliance.camera.capture import Camera
from appliance.errors import ConfigError
from appliance.mqtt.link import MqttLink
from appliance.mqtt.topics import Topics
from appliance.daemon.publish_policy import make_policy
from figures import record

EXAMPLES = int(os.environ.get("FACEWATCH_FUZZ_EXAMPLES", "2000"))
NASTY_TEXT = ["", " ", "\x00", "a\x00b", "$SYS", "#", "+", "a/b", "/", "all", "é" * 3, "\u202e", "x" * 5000,
              "localhost", "127.0.0.1", "::1", "broker.example", "csi://0", "csi://x", "rtsp://", "rtsp://cam/s",
              "http://:80", "/dev/video0", "0", "-1", "99999", "/etc/passwd", "/dev/zero", "/tmp", "relative/path",
              "videotestsrc ! appsink", "nan", "3.1.1", "5", "auto", "int8", "every_frame"]

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(NASTY_TEXT),
    st.dates(min_value=datetime.date(1, 1, 1)),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def plausible(spec):
    """Values near what the key accepts: its choices, numbers around its limits, text from NASTY_TEXT."""
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    options = []
    if spec.choices:
        options.append(st.sampled_from(spec.choices))
    if bool in kinds:
        options.append(st.booleans())
    if int in kinds or float in kinds:
        low = spec.minimum if spec.minimum is not None else -1000
        high = spec.maximum if spec.maximum is not None else 1000
        options.append(st.integers(min_value=int(math.floor(low)) - 2, max_value=int(math.ceil(high)) + 2))
    if float in kinds:
        options.append(st.floats(min_value=low - 1, max_value=high + 1) | st.sampled_from([math.nan, math.inf]))
    if str in kinds:
        options.append(st.sampled_from(NASTY_TEXT) | st.text(max_size=12))
    return st.one_of(*options)


def section_strategy(name, fields):
    known = st.fixed_dictionaries({}, optional={key: st.one_of(plausible(spec), values) for key, spec in fields.items()})
    unknown = st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=2)
    return st.builds(lambda a, b: dict(b, **a), known, unknown)


hostile_documents = st.fixed_dictionaries(
    {}, optional={name: st.one_of(section_strategy(name, fields), values) for name, fields in configuration.SCHEMA.items()}
).flatmap(lambda doc: st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=1).map(
    lambda extra: dict(extra, **doc)))
# Known sections and keys only, values near their limits: the half of the examples that reaches acceptance
# however many sections the schema grows.
near_valid_documents = st.fixed_dictionaries({}, optional={
    name: st.fixed_dictionaries({}, optional={key: plausible(spec) for key, spec in fields.items()})
    for name, fields in configuration.SCHEMA.items()})
documents = st.one_of(hostile_documents, near_valid_documents)


def toml_key(key):
    return json.dumps(key, ensure_ascii=True)


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join("{} = {}".format(toml_key(k), toml_value(v)) for k, v in value.items()) + "}"


def to_toml(document):
    """Top-level tables as [sections] where they are tables, everything else as key = value."""
    lines = ["{} = {}".format(toml_key(k), toml_value(v)) for k, v in document.items() if not isinstance(v, dict)]
    for name, table in document.items():
        if isinstance(table, dict):
            lines.append("[{}]".format(toml_key(name)))
            lines.extend("{} = {}".format(toml_key(k), toml_value(v)) for k, v in table.items())
    return "\n".join(lines) + "\n"


def check_config(path):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["check-config", "--config", path])
    return code, out.getvalue() + err.getvalue()


def build_daemon_parts(config):
    """What App.start() builds from the config before any network or camera I/O."""
    topics = Topics(config.mqtt.prefix, configuration.device_id(config))
    make_policy(config.detections)
    Camera(config.camera, threading.Event())
    MqttLink(config.mqtt, topics).stop()
    return topics


class Tally:
    """What the fuzz test saw."""

    def __init__(self):
        self.accepted = self.refused = self.tracebacks = 0

    def saw(self, output):
        self.tracebacks += cli.INTERNAL_ERROR in output or "Traceback" in output




def test_check_config_answers_0_or_2_and_what_it_accepts_builds_the_daemon(tmp_path_factory):
    """Generated configs: each answered 0 or 2, never a traceback, what is accepted builds the daemon; the
    answers reach both kinds (else this tests little), and what this run measured is recorded, by the test
    that measured it (a separate recording test could land on another xdist worker and see nothing)."""
    tally = Tally()

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(document=documents)
    def check(document):
        path = str(tmp_path_factory.mktemp("fuzz") / "facewatch.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(to_toml(document))
        code, output = check_config(path)
        tally.saw(output)
        assert code in (0, 2), output
        assert cli.INTERNAL_ERROR not in output and "Traceback" not in output, output
        if code == 0:
            tally.accepted += 1
            build_daemon_parts(configuration.load(path, required=True))
        else:
            tally.refused += 1
            assert "error" in output or "not valid TOML" in output, output
    try:
        check()
    finally:
        record("hostile configs", accepted=tally.accepted, refused=tally.refused, tracebacks=tally.tracebacks)
    assert tally.accepted >= 10 and tally.refused >= 10, (tally.accepted, tally.refused)


@settings(max_examples=EXAMPLES // 4, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_as_a_config_file_are_a_clear_error(tmp_path_factory, data):
    path = str(tmp_path_factory.mktemp("fuzz") / "facewatch.toml")
    with open(path, "wb") as f:
        f.write(data)
    code, output = check_config(path)
    assert code in (0, 2) and cli.INTERNAL_ERROR not in output, output
    assert "Traceback" not in output, output


def test_every_refusal_names_a_key_or_the_file(tmp_path):
    path = tmp_path / "facewatch.toml"
    path.write_text('[mqtt]\nport = nan\nhost = ""\n[camera]\nsource = "csi://x"\n')
    try:
        configuration.load(str(path), required=True)
    except ConfigError as exc:
        lines = str(exc).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["camera.source", "mqtt.host", "mqtt.port"]
