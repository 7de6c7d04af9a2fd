"""What `camera.source` means, decided once and without OpenCV (config validation uses it too).

"0" or any /dev/... path: V4L2 · csi://N: nvarguscamerasrc through GStreamer · rtsp[s]:// and
http[s]:// URLs: FFmpeg · text with "!": a GStreamer pipeline (appsink added if missing) · else a file.
"""
import re
from typing import NamedTuple
from urllib.parse import urlsplit

SourceSpec = NamedTuple("SourceSpec", [("kind", str), ("target", object)])

URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
MAX_V4L2_INDEX = 1023
MAX_CSI_SENSOR = 15


class SourceError(ValueError):
    """A camera.source that cannot name a camera; the message says why."""


def parse_source(source, width=0, height=0, fps=0.0):
    if isinstance(source, bool) or not isinstance(source, (int, str)):
        raise SourceError("must be a device number or a string")
    text = str(source).strip()
    if not text:
        raise SourceError("is empty: name a camera (0, /dev/video0, csi://0, rtsp://..., a file)")
    if re.match(r"^-?[0-9]+$", text):
        index = int(text)
        if not 0 <= index <= MAX_V4L2_INDEX:
            raise SourceError("V4L2 device number {} is outside 0..{}".format(index, MAX_V4L2_INDEX))
        return SourceSpec("v4l2", index)
    if text.startswith("/dev/"):
        return SourceSpec("v4l2", text)
    if text.lower().startswith("csi://"):
        return SourceSpec("gstreamer", csi_pipeline(text[len("csi://"):], width, height, fps))
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in URL_SCHEMES:
        return SourceSpec("url", checked_url(text))
    if scheme:
        raise SourceError("{}:// is not a camera scheme; use one of {}".format(
            scheme, ", ".join(s + "://" for s in URL_SCHEMES)))
    if "!" in text:
        pipeline = text if re.search(r"\bappsink\b", text) else text + " ! appsink drop=true max-buffers=1"
        return SourceSpec("gstreamer", pipeline)
    if not text.startswith("/"):
        raise SourceError("{!r} is taken as a video file, and a file needs an absolute path (systemd starts "
                          "facewatch in /)".format(text))
    return SourceSpec("file", text)


def checked_url(text):
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise SourceError("{} is not a valid URL (the port must be a number; in a password, / ? # @ must be "
                          "percent-encoded)".format(describe(text)))
    if not parts.hostname:
        raise SourceError("{} names no host".format(describe(text)))
    if any(ch.isspace() for ch in text):
        raise SourceError("{} contains white space".format(describe(text)))
    return text


def csi_pipeline(sensor, width, height, fps):
    if not sensor.isdigit() or int(sensor) > MAX_CSI_SENSOR:
        raise SourceError("csi:// needs a sensor number 0..{}, as in csi://0; got csi://{}".format(
            MAX_CSI_SENSOR, sensor))
    return ("nvarguscamerasrc sensor-id={} ! video/x-raw(memory:NVMM),width={},height={},framerate={}/1 ! "
            "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink drop=true max-buffers=1").format(int(sensor), width or 1280, height or 720, int(fps or 30))


def describe(target):
    """The source as a user would recognise it, without credentials in URLs (everything between :// and
    the last @ is hidden, whatever characters a password holds)."""
    return re.sub(r"://.*@", "://***@", str(target))
