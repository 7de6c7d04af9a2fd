"""The configuration file: TOML, typed, frozen, every key checked against SCHEMA.

Unknown keys and values out of their limits are errors that name the key; all of them are reported
at once. A file that passes is one `facewatch run` can start from: numbers are finite, names are valid
host names and topic levels, files named are readable regular files of the right kind. Secrets never
sit in the file: `*_file` keys name files (or systemd credentials) to read. Folders left empty
(engine.cache_dir, commands.state_dir) are resolved here, once, to this host's defaults (config.paths):
the loaded Config carries the folder to use, and `origin` says why it is that one.
"""
import collections
import difflib
import math
import os
import socket
from typing import Any, Callable, NamedTuple, Optional, Tuple

from appliance import files, shipped
from appliance.backends import BACKEND_CHOICES, PRECISION_CHOICES, TENSORRT

from appliance.config import paths, validators
from appliance.errors import ConfigError
from appliance.camera.sources import describe

try:
    import tomllib as toml_reader  # novermin (Python 3.11+; tomli below)
except ImportError:  # pragma: no cover - older Pythons, Jetson's 3.6 included
    import tomli as toml_reader

DEFAULT_PATH = "/etc/facewatch/facewatch.toml"
MAX_CONFIG_BYTES = 1 << 20
MAX_STRING = 4096

Field = NamedTuple("Field", [
    ("kind", Any),            # bool, int, float, str, or (int, str) for either
    ("default", Any),
    ("minimum", Optional[float]),
    ("maximum", Optional[float]),
    ("choices", Optional[Tuple]),
    ("check", Optional[Callable]),   # value -> None, or what is wrong with it
    ("resolve", Optional[Callable]),  # () -> (value, why) on this host, for an empty value (a folder's default)
])


def field(kind, default, minimum=None, maximum=None, choices=None, check=None, resolve=None):
    return Field(kind, default, minimum, maximum, choices, check, resolve)


SCHEMA = collections.OrderedDict([
    ("camera", collections.OrderedDict([
        ("source", field((int, str), "0", check=validators.camera_source)),
        ("loop", field(bool, False)),
        ("realtime", field(bool, True)),
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
        ("host", field(str, "localhost", check=validators.host)),
        ("port", field(int, 1883, 1, 65535)),
        ("prefix", field(str, "facewatch", check=validators.topic_prefix)),
        ("device_id", field(str, "", check=validators.device_id)),
        ("username", field(str, "")),
        ("password_file", field(str, "", check=validators.secret_file)),
        ("tls_ca", field(str, "", check=validators.ca_bundle)),
        ("tls_cert", field(str, "", check=validators.pem_file)),
        ("tls_key", field(str, "", check=validators.pem_file)),
        ("keepalive", field(int, 30, 5, 3600)),
        ("protocol", field(str, "5", choices=("3.1.1", "5"))),
        ("queue_size", field(int, 1000, 1, 60000)),
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
        ("log_interval", field(float, 60.0, 1.0, 86400.0)),
    ])),
    ("snapshot", collections.OrderedDict([
        ("enabled", field(bool, True)),
        ("interval", field(float, 10.0, 0.5, 86400.0)),
        ("quality", field(int, 80, 10, 100)),
        ("max_width", field(int, 640, 64, 7680)),
    ])),
    ("engine", collections.OrderedDict([
        ("backend", field(str, "auto", choices=BACKEND_CHOICES)),
        ("precision", field(str, "auto", choices=PRECISION_CHOICES)),
        ("cache_dir", field(str, "", check=validators.folder_path, resolve=paths.default_cache_dir_and_why)),
        ("threads", field(int, 0, 0, 256)),
        ("workers", field(int, 0, 0, 16)),
        ("workspace_mb", field(int, 256, 16, 65536)),
        ("input_size", field(int, 640, 128, 1920, check=validators.multiple_of(32))),
        ("rebuild_mode", field(str, "auto", choices=("auto", "hot", "paused"))),
    ])),
    ("commands", collections.OrderedDict([
        ("key_file", field(str, "", check=validators.secret_file)),
        ("allow_unsigned", field(bool, False)),
        ("state_dir", field(str, "", check=validators.folder_path, resolve=paths.default_state_dir_and_why)),
    ])),
    ("homeassistant", collections.OrderedDict([
        ("discovery", field(bool, False)),
        ("prefix", field(str, "homeassistant", check=validators.topic_prefix)),
    ])),
])

SECTION_TYPES = collections.OrderedDict(
    (name, collections.namedtuple(name.capitalize() + "Config", list(keys))) for name, keys in SCHEMA.items())
# host_defaults: ((section.key, why), ...) for each key left empty whose value this host decided when the
# configuration was loaded (engine.cache_dir, commands.state_dir): read the folders from the Config, resolved once.
Config = collections.namedtuple("Config", list(SCHEMA) + ["path", "host_defaults"])


def defaults():
    return build({}, path=None)


def load(path=None, required=False):
    """The Config from `path` (default: DEFAULT_PATH, or $CONFIGURATION_DIRECTORY/facewatch.toml).

    A missing default file means defaults unless `required`; a missing file the user named is an error.
    """
    path = path or default_path()
    if not required and not os.path.lexists(path):
        return defaults()
    try:
        text = files.read_text_file(path, MAX_CONFIG_BYTES)
    except files.FileRefused as exc:
        raise ConfigError(str(exc) + missing_file_hint(path))
    if text.startswith("\ufeff"):
        raise ConfigError("{}: starts with a byte-order mark (U+FEFF), which TOML does not allow; save it as UTF-8 "
                          "without BOM".format(path))
    return build(parse_toml(path, text), path)


def parse_toml(path, text):
    try:
        return toml_reader.loads(text)
    except RecursionError:
        raise ConfigError("{}: not valid TOML: nested too deeply".format(path))
    except (toml_reader.TOMLDecodeError, ValueError) as exc:
        raise ConfigError("{}: not valid TOML: {}".format(path, exc))


def missing_file_hint(path):
    if os.path.lexists(path):
        return ""
    return ("\n  facewatch needs a configuration file: copy {} (every key, documented, with its default) "
            "to {} and edit it, or name one with --config PATH".format(shipped.example_config(), path))


def default_path():
    directory = os.environ.get("CONFIGURATION_DIRECTORY")
    return os.path.join(directory.split(":")[0], "facewatch.toml") if directory else DEFAULT_PATH


def build(document, path):
    """The Config of `document`; ConfigError listing every error at once: each value's own, and those between
    values (a relation is judged on the values given, unless one of its keys already has an error)."""
    errors = []
    sections = {}
    refused = set()   # "section.key" whose given value was refused (its default stands in)
    host_defaults = []
    for name in document:
        if name not in SCHEMA:
            errors.append(unknown_key_message(name, SCHEMA))
        elif not isinstance(document[name], dict):
            errors.append("{}: must be a table ([{}])".format(name, name))
            refused.update("{}.{}".format(name, key) for key in SCHEMA[name])
    for name, fields in SCHEMA.items():
        given = document.get(name) if isinstance(document.get(name), dict) else {}
        for key in given:
            if key not in fields:
                errors.append(unknown_key_message(key, fields, section=name))
        values = {}
        for key, spec in fields.items():
            value = given.get(key, spec.default)
            problem = check_value(value, spec)
            if problem:
                errors.append("{}.{}: {}".format(name, key, problem))
                refused.add("{}.{}".format(name, key))
                value = spec.default
            values[key] = normalise(value, spec)
            if spec.resolve and values[key] == "":
                values[key], why = spec.resolve()
                host_defaults.append(("{}.{}".format(name, key), why))
        sections[name] = SECTION_TYPES[name](**values)
    errors.extend(message for keys, message in check_relations(sections) if not refused.intersection(keys))
    if errors:
        raise ConfigError("{} has {} error{}:\n  {}".format(
            path or "the configuration", len(errors), "" if len(errors) == 1 else "s", "\n  ".join(errors)))
    return Config(path=path, host_defaults=tuple(host_defaults), **sections)


def origin(config, key):
    """Why `key` ("section.key") has its value, in words for a person: this host's default and why, or the
    file that set it."""
    return dict(config.host_defaults).get(key) or "{} in {}".format(key, config.path)


def unknown_key_message(key, known, section=None):
    name = "{}.{}".format(section, key) if section else key
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = " (did you mean {}?)".format("{}.{}".format(section, close[0]) if section else close[0]) if close else ""
    return "{}: unknown key{}".format(ascii_name(name), hint)


def ascii_name(name):
    """A key as written, with anything unprintable escaped."""
    return name if name.isprintable() else ascii(name)


def check_value(value, spec):
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    if isinstance(value, bool) and bool not in kinds:
        return "must be {}, got {}".format(kind_names(kinds), shown(value))
    if not isinstance(value, kinds) and not (float in kinds and isinstance(value, int)):
        return "must be {}, got {}".format(kind_names(kinds), shown(value))
    if spec.choices and value not in spec.choices:
        return "must be one of {}, got {}".format(", ".join(spec.choices), shown(value))
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number, got {}".format(value)
    if spec.minimum is not None and isinstance(value, (int, float)) and value < spec.minimum:
        return "must be >= {}, got {}".format(spec.minimum, shown(value))
    if spec.maximum is not None and isinstance(value, (int, float)) and value > spec.maximum:
        return "must be <= {}, got {}".format(spec.maximum, shown(value))
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            return "is {} characters long; at most {}".format(len(value), MAX_STRING)
        control = validators.control_characters(value)
        if control:
            return "contains {}".format(control)
    return spec.check(value) if spec.check else None


def shown(value):
    """A value for an error message: short, printable whatever it holds, and without credentials (a camera
    URL given as a list still holds its password)."""
    text = describe(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def kind_names(kinds):
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return " or ".join(names[k] for k in kinds)


def normalise(value, spec):
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def check_relations(sections):
    """What only holds between values: (the keys it involves, the error) for each relation that fails."""
    errors = []
    for name in ("camera", "mqtt"):
        section = sections[name]
        if section.reconnect_max < section.reconnect_min:
            errors.append((("{}.reconnect_min".format(name), "{}.reconnect_max".format(name)),
                           "{0}.reconnect_max: must be >= {0}.reconnect_min ({1})".format(name, section.reconnect_min)))
    camera = sections["camera"]
    if bool(camera.width) != bool(camera.height):
        errors.append((("camera.width", "camera.height"),
                       "camera.height: camera.width and camera.height go together (both 0, or both set)"))
    mqtt = sections["mqtt"]
    tls = ("mqtt.tls_cert", "mqtt.tls_key")
    if bool(mqtt.tls_cert) != bool(mqtt.tls_key):
        errors.append((tls, "mqtt.tls_key: tls_cert and tls_key go together"))
    elif mqtt.tls_cert:
        problem = validators.client_certificate(mqtt.tls_cert, mqtt.tls_key)
        if problem:
            errors.append((tls, "mqtt.tls_cert: " + problem))
    engine = sections["engine"]
    if engine.backend == TENSORRT and engine.workers > 1:
        errors.append((("engine.backend", "engine.workers"), "engine.workers: TensorRT serves from one inference "
                       "thread; set 0 (auto) or 1 with engine.backend = \"tensorrt\""))
    if mqtt.password_file and not mqtt.username:
        errors.append((("mqtt.password_file", "mqtt.username"), "mqtt.password_file: a password needs mqtt.username"))
    device = effective_device_id(mqtt)
    problem = validators.device_id(device) if device else "is empty"
    if problem and not mqtt.device_id:
        errors.append((("mqtt.device_id",), "mqtt.device_id: empty, so the host name {!r} is used, which {}; set "
                       "mqtt.device_id".format(device, problem)))
    problem = validators.topic_length(longest_topic(mqtt.prefix, device, sections["homeassistant"]))
    if problem:
        errors.append((("mqtt.prefix", "mqtt.device_id", "homeassistant.prefix"),
                       "mqtt.prefix: with mqtt.device_id and homeassistant.prefix it " + problem))
    return errors


def longest_topic(prefix, device, discovery):
    """The longest topic facewatch publishes under PREFIX/DEVICE and on Home Assistant's discovery prefix, as
    mqtt.topics and mqtt.homeassistant build them."""
    from appliance.mqtt import homeassistant, topics
    names = topics.Topics(prefix, device)
    published = names.published + tuple(homeassistant.discovery_configs(discovery, names, version=""))
    return max(published, key=lambda topic: len(topic.encode("utf-8", "surrogatepass")))


def effective_device_id(mqtt):
    return mqtt.device_id or socket.gethostname().split(".")[0]


def device_id(config):
    return effective_device_id(config.mqtt)


def secret_path(configured, credential_name):
    """The file holding a secret: the configured path, else a systemd credential of that name."""
    if configured:
        return configured
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and os.path.lexists(os.path.join(credentials, credential_name)):
        return os.path.join(credentials, credential_name)
    return ""


def read_secret(path, key):
    """The secret in `path`; ConfigError naming `key` if it cannot be used."""
    try:
        return validators.read_secret(path)
    except files.FileRefused as exc:
        raise ConfigError("{}: {}".format(key, exc))


def secret(configured, key, credential_name):
    """The secret of config key `key` (a file), else of the systemd credential; None if neither is set.
    ConfigError names whichever was used."""
    path = secret_path(configured, credential_name)
    if not path:
        return None
    return read_secret(path, key if configured else "the systemd credential {}".format(credential_name))
