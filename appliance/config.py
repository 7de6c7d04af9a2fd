"""The configuration file: TOML, typed, frozen, every key checked against SCHEMA.

Unknown keys and values out of their limits are errors that name the key; all of them are reported
at once. Secrets never sit in the file: `*_file` keys name files (or systemd credentials) to read.
"""
import collections
import difflib
import os
import socket
from typing import Any, NamedTuple, Optional, Tuple

from appliance.errors import ConfigError

try:
    import tomllib as toml_reader  # novermin (Python 3.11+; tomli below)
except ImportError:  # pragma: no cover - older Pythons, Jetson's 3.6 included
    import tomli as toml_reader

DEFAULT_PATH = "/etc/facewatch/facewatch.toml"

Field = NamedTuple("Field", [
    ("kind", Any),            # bool, int, float, str, or (int, str) for either
    ("default", Any),
    ("minimum", Optional[float]),
    ("maximum", Optional[float]),
    ("choices", Optional[Tuple]),
])


def field(kind, default, minimum=None, maximum=None, choices=None):
    return Field(kind, default, minimum, maximum, choices)


SCHEMA = collections.OrderedDict([
    ("camera", collections.OrderedDict([
        ("source", field((int, str), "0")),
        ("loop", field(bool, False)),
        ("width", field(int, 0, 0, 8192)),
        ("height", field(int, 0, 0, 8192)),
        ("fps", field(float, 0.0, 0.0, 240.0)),
        ("open_timeout", field(float, 10.0, 0.5, 300.0)),
        ("read_timeout", field(float, 5.0, 0.5, 300.0)),
        ("stall_timeout", field(float, 5.0, 0.5, 300.0)),
        ("reconnect_min", field(float, 0.5, 0.05, 60.0)),
        ("reconnect_max", field(float, 30.0, 0.1, 3600.0)),
    ])),
    ("mqtt", collections.OrderedDict([
        ("host", field(str, "localhost")),
        ("port", field(int, 1883, 1, 65535)),
        ("prefix", field(str, "facewatch")),
        ("device_id", field(str, "")),
        ("username", field(str, "")),
        ("password_file", field(str, "")),
        ("tls_ca", field(str, "")),
        ("tls_cert", field(str, "")),
        ("tls_key", field(str, "")),
        ("keepalive", field(int, 30, 5, 3600)),
        ("protocol", field(str, "5", choices=("3.1.1", "5"))),
        ("queue_size", field(int, 1000, 1, 1000000)),
        ("reconnect_min", field(float, 1.0, 0.1, 60.0)),
        ("reconnect_max", field(float, 60.0, 1.0, 3600.0)),
    ])),
    ("detections", collections.OrderedDict([
        ("policy", field(str, "every_frame", choices=("every_frame", "on_change", "max_rate"))),
        ("max_rate", field(float, 5.0, 0.01, 1000.0)),
        ("qos", field(int, 0, 0, 2)),
        ("min_score", field(float, 0.75, 0.05, 0.99)),
    ])),
    ("telemetry", collections.OrderedDict([
        ("interval", field(float, 10.0, 0.2, 86400.0)),
        ("qos", field(int, 0, 0, 2)),
    ])),
    ("engine", collections.OrderedDict([
        ("backend", field(str, "auto", choices=("auto", "tensorrt", "onnxruntime"))),
        ("precision", field(str, "auto", choices=("auto", "int8", "fp16", "fp32"))),
        ("cache_dir", field(str, "")),
        ("threads", field(int, 0, 0, 256)),
        ("workspace_mb", field(int, 256, 16, 65536)),
    ])),
    ("commands", collections.OrderedDict([
        ("key_file", field(str, "")),
        ("allow_unsigned", field(bool, False)),
    ])),
    ("homeassistant", collections.OrderedDict([
        ("discovery", field(bool, False)),
        ("prefix", field(str, "homeassistant")),
    ])),
])

SECTION_TYPES = collections.OrderedDict(
    (name, collections.namedtuple(name.capitalize() + "Config", list(keys))) for name, keys in SCHEMA.items())
Config = collections.namedtuple("Config", list(SCHEMA) + ["path"])


def defaults():
    return build({}, path=None)


def load(path=None, required=False):
    """The Config from `path` (default: DEFAULT_PATH, or $CONFIGURATION_DIRECTORY/facewatch.toml).

    A missing default file means defaults; a missing file the user named is an error.
    """
    path = path or default_path()
    if not os.path.isfile(path):
        if required:
            raise ConfigError("{}: no such file".format(path))
        return defaults()
    try:
        with open(path, "rb") as f:
            document = toml_reader.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("{}: cannot read: {}".format(path, exc))
    except toml_reader.TOMLDecodeError as exc:
        raise ConfigError("{}: not valid TOML: {}".format(path, exc))
    return build(document, path)


def default_path():
    directory = os.environ.get("CONFIGURATION_DIRECTORY")
    return os.path.join(directory.split(":")[0], "facewatch.toml") if directory else DEFAULT_PATH


def build(document, path):
    errors = []
    sections = {}
    for name in document:
        if name not in SCHEMA:
            errors.append(unknown_key_message(name, SCHEMA))
        elif not isinstance(document[name], dict):
            errors.append("{}: must be a table ([{}])".format(name, name))
    for name, fields in SCHEMA.items():
        given = document.get(name) if isinstance(document.get(name), dict) else {}
        for key in given:
            if key not in fields:
                errors.append(unknown_key_message(key, fields, section=name))
        values = {}
        for key, spec in fields.items():
            value = given.get(key, spec.default)
            problem = check_value("{}.{}".format(name, key), value, spec)
            if problem:
                errors.append(problem)
            values[key] = normalise(value, spec)
        sections[name] = SECTION_TYPES[name](**values)
    errors.extend(check_relations(sections))
    if errors:
        raise ConfigError("{} has {} error{}:\n  {}".format(
            path or "the configuration", len(errors), "" if len(errors) == 1 else "s", "\n  ".join(errors)))
    return Config(path=path, **sections)


def unknown_key_message(key, known, section=None):
    name = "{}.{}".format(section, key) if section else key
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = " (did you mean {}?)".format("{}.{}".format(section, close[0]) if section else close[0]) if close else ""
    return "{}: unknown key{}".format(name, hint)


def check_value(name, value, spec):
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    if isinstance(value, bool) and bool not in kinds:
        return "{}: must be {}, got {!r}".format(name, kind_names(kinds), value)
    if not isinstance(value, kinds) and not (float in kinds and isinstance(value, int)):
        return "{}: must be {}, got {!r}".format(name, kind_names(kinds), value)
    if spec.choices and value not in spec.choices:
        return "{}: must be one of {}, got {!r}".format(name, ", ".join(spec.choices), value)
    if spec.minimum is not None and isinstance(value, (int, float)) and value < spec.minimum:
        return "{}: must be >= {}, got {!r}".format(name, spec.minimum, value)
    if spec.maximum is not None and isinstance(value, (int, float)) and value > spec.maximum:
        return "{}: must be <= {}, got {!r}".format(name, spec.maximum, value)
    return None


def kind_names(kinds):
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return " or ".join(names[k] for k in kinds)


def normalise(value, spec):
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def check_relations(sections):
    errors = []
    for name in ("camera", "mqtt"):
        section = sections[name]
        if section.reconnect_max < section.reconnect_min:
            errors.append("{0}.reconnect_max: must be >= {0}.reconnect_min ({1})".format(name, section.reconnect_min))
    mqtt = sections["mqtt"]
    if bool(mqtt.tls_cert) != bool(mqtt.tls_key):
        errors.append("mqtt.tls_key: tls_cert and tls_key go together")
    for key in ("password_file", "tls_ca", "tls_cert", "tls_key"):
        errors.extend(check_readable("mqtt." + key, getattr(mqtt, key)))
    errors.extend(check_readable("commands.key_file", sections["commands"].key_file))
    return errors


def check_readable(name, path):
    if path and not os.access(path, os.R_OK):
        return ["{}: cannot read {}".format(name, path)]
    return []


def device_id(config):
    return config.mqtt.device_id or socket.gethostname().split(".")[0]


def secret_path(configured, credential_name):
    """The file holding a secret: the configured path, else a systemd credential of that name."""
    if configured:
        return configured
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and os.path.isfile(os.path.join(credentials, credential_name)):
        return os.path.join(credentials, credential_name)
    return ""


def read_secret(path):
    with open(path, "rb") as f:
        return f.read().strip()
