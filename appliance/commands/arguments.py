"""argparse types shared by the commands: a bad value is a usage error (exit 2) naming the option."""
import argparse
import math
import re

from appliance.config import validators


def path(text):
    """A file or folder name as given; one no system call could take (empty, a NUL byte) is refused."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path names nothing")
    if "\0" in text:
        raise argparse.ArgumentTypeError("{!r} contains a NUL byte, which no path can".format(text))
    return text


def library_path(text):
    """A path handed to ONNX Runtime or TensorRT, which take only UTF-8 names."""
    path(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("{!r} is not a UTF-8 name, which ONNX Runtime and TensorRT need; rename "
                                         "it".format(text))
    return text


def trt_version(text):
    if not re.match(r"^[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,3}$", text):
        raise argparse.ArgumentTypeError("expected a TensorRT version X.Y.Z, as in 8.2.1, got {!r}".format(text))
    return text


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not an integer: {!r}".format(text))
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more, got {}".format(value))
    return value


def bounded_int(low, high):
    def parse(text):
        value = non_negative_int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError("must be between {} and {}, got {}".format(low, high, value))
        return value
    return parse


def score(text):
    value = finite_number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1, got {}".format(text))
    return value


def positive_seconds(text):
    value = finite_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds, got {}".format(text))
    return value


def finite_number(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: {!r}".format(text))
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError("must be a finite number, got {}".format(text))
    return value


def checked_by(validator):
    """An argparse type from a configuration validator (None when fine, else what is wrong)."""
    def parse(text):
        problem = validator(text)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return text
    return parse


THREADS = bounded_int(0, 256)
host_name = checked_by(validators.host)
# The configuration's own checks, so `ctl` refuses what check-config refuses (byte limits included:
# validators.MAX_PREFIX_BYTES, MAX_DEVICE_ID_BYTES).
topic_prefix = checked_by(validators.topic_prefix)
device_or_all = checked_by(lambda text: None if text == "all" else
                           ("is empty" if not text else validators.device_id(text)))


def frame_size(text):
    """WIDTHxHEIGHT, each 1..8192 (the camera.width/height limits) -> (width, height)."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or not (
            1 <= int(width) <= 8192 and 1 <= int(height) <= 8192):
        raise argparse.ArgumentTypeError("expected WIDTHxHEIGHT with each side 1..8192, got {!r}".format(text))
    return int(width), int(height)


def host_port(text):
    """HOST:PORT (an IPv6 host in brackets: [::1]:1883) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT with a port 1..65535, got {!r}".format(text))
    problem = validators.host(host)
    if problem:
        raise argparse.ArgumentTypeError("host {}".format(problem))
    return host, int(port)
