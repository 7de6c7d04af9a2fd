"""Checks of single configuration values. Each returns None when the value is fine, else what is wrong
(in words, without the key's name, which the caller adds)."""
import ipaddress
import os
import re
import ssl

from appliance import files
from appliance.camera.sources import SourceError, parse_source

MAX_SECRET_BYTES = 64 * 1024
MAX_PEM_BYTES = 1 << 20
MQTT_TOPIC_MAX_BYTES = 65535
# The limits of mqtt.device_id and of a topic prefix (mqtt.prefix, homeassistant.prefix) in UTF-8 bytes, as
# sent; `ctl` checks its DEVICE and --prefix with the same functions. The device id travels in every command:
# at 128 bytes the largest command `ctl` sends (a signed rebuild) is under 700 bytes even with every
# character written as a \u escape, far inside the 4096 bytes a device accepts (MAX_PAYLOAD_BYTES).
MAX_DEVICE_ID_BYTES = 128
MAX_PREFIX_BYTES = 128
RESERVED_DEVICE_IDS = ("all",)
HOST_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def control_characters(text):
    """The first character MQTT and sane file names refuse, named ("the control character '\\x00'"): C0 and
    C1 controls, DEL, surrogates, Unicode noncharacters; or None."""
    for ch in text:
        code = ord(ch)
        if code < 32 or 127 <= code < 160:
            return "the control character {!r}".format(ch)
        if 0xD800 <= code < 0xE000 or 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
            return "the noncharacter {!r}".format(ch)
    return None


def multiple_of(step):
    def check(value):
        if value % step:
            lower = value - value % step
            return "is not a multiple of the network's stride {}: use {} or {}".format(step, lower, lower + step)
        return None
    return check


def host(value):
    if not value:
        return "is empty: name the MQTT broker (a host name or an IP address)"
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    name = value[:-1] if value.endswith(".") else value
    if len(name) > 253:
        return "is {} characters long; a host name has at most 253".format(len(name))
    bad = [label for label in name.split(".") if not HOST_LABEL.match(label)]
    if bad:
        return "{!r} is not a valid host name or IP address (label {!r})".format(value, bad[0])
    return None


def utf8_size(value, limit):
    """What is wrong with a text longer than `limit` bytes in UTF-8 (the bytes sent), or None."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > limit:
        return "is {} bytes long in UTF-8 ({} characters); at most {} bytes".format(size, len(value), limit)
    return None


def topic_prefix(value):
    """A topic prefix: one or more levels, no wildcard, not a $SYS-style topic, at most MAX_PREFIX_BYTES."""
    if not value:
        return "is empty; topics are PREFIX/DEVICE/..."
    control = control_characters(value)
    if control:
        return "contains {}, which MQTT topics may not".format(control)
    return utf8_size(value, MAX_PREFIX_BYTES) or topic_levels(value)


def topic_levels(value):
    """Topic levels a publisher may use: no wildcard, not a $SYS-style topic, none empty."""
    for ch in "+#":
        if ch in value:
            return "contains {!r}, an MQTT wildcard, which topics cannot contain".format(ch)
    if value.startswith("$"):
        return "starts with '$', which MQTT reserves for broker topics ($SYS)"
    if "" in value.split("/"):
        return "has an empty topic level (a leading, trailing or doubled '/')"
    return None


def device_id(value):
    """One topic level of at most MAX_DEVICE_ID_BYTES; "" means the host name."""
    if value == "":
        return None
    control = control_characters(value)
    if control:
        return "contains {}, which MQTT topics may not".format(control)
    problem = utf8_size(value, MAX_DEVICE_ID_BYTES) or topic_levels(value)
    if problem:
        return problem
    if "/" in value:
        return "contains '/': the device id is one topic level"
    if value in RESERVED_DEVICE_IDS:
        return "{!r} is reserved: PREFIX/{}/cmd/... addresses every device".format(value, value)
    return None


def topic_length(topic):
    size = len(topic.encode("utf-8"))
    if size > MQTT_TOPIC_MAX_BYTES:
        return "makes topics of {} bytes; MQTT allows at most {}".format(size, MQTT_TOPIC_MAX_BYTES)
    return None


def absolute_path(value):
    if value and not os.path.isabs(value):
        return "{!r} is a relative path; give an absolute one (systemd starts facewatch in /)".format(value)
    return None


def folder_path(value):
    problem = absolute_path(value)
    if problem or not value:
        return problem
    if os.path.exists(value) and not os.path.isdir(value):
        return "{} exists and is not a folder".format(value)
    return None


def read_secret(path):
    """The secret in `path`: a regular UTF-8 file, surrounding white space stripped, not empty.
    Raises files.FileRefused."""
    text = files.read_text_file(path, MAX_SECRET_BYTES).strip()
    if not text:
        raise files.FileRefused("{}: is empty".format(path))
    return text.encode("utf-8")


def secret_file(value):
    problem = absolute_path(value)
    if problem or not value:
        return problem
    try:
        read_secret(value)
    except files.FileRefused as exc:
        return str(exc)
    return None


def pem_file(value):
    """A file that is PEM text (a certificate bundle, a certificate or a key)."""
    problem = absolute_path(value)
    if problem or not value:
        return problem
    try:
        text = files.read_text_file(value, MAX_PEM_BYTES)
    except files.FileRefused as exc:
        return str(exc)
    if "-----BEGIN " not in text:
        return "{}: not PEM (no '-----BEGIN' line)".format(value)
    return None


def ca_bundle(value):
    problem = pem_file(value)
    if problem or not value:
        return problem
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=value)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return "{}: not a usable CA certificate bundle: {}".format(value, exc)
    return None


def _refuse_passphrase():
    raise ValueError("the key is encrypted; facewatch needs an unencrypted key file")


def client_certificate(cert, key):
    """tls_cert and tls_key load together (a matching pair)."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=_refuse_passphrase)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return "{} and {} do not load as a certificate and its key: {}".format(cert, key, exc)
    return None


def camera_source(value):
    try:
        parse_source(value)
    except SourceError as exc:
        return str(exc)
    return None
