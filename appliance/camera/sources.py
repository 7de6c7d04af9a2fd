"""What `camera.source` means, decided once and without OpenCV (config validation uses it too).

"0" or any /dev/... path: V4L2 · csi://N: nvarguscamerasrc through GStreamer · rtsp[s]:// and
http[s]:// URLs: FFmpeg · text with "!": a GStreamer pipeline (appsink added if missing) · else a file.
"""
import re
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

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
                          "facewatch in /)".format(describe(text)))
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


HIDDEN = "***"
# A parameter is taken for a credential when its name (lower case, percent-decoded, without - _ .) contains
# one of these words or ends with one of these endings: user=, pwd=, api_key=, access_token=, X-Amz-Signature=,
# loginpas=, GStreamer's user-pw= and proxy-id= are; channel=, subtype=, key-int-max= are not. Hiding a
# harmless value is the cheaper mistake.
CREDENTIAL_WORDS = ("user", "login", "pass", "pwd", "auth", "token", "secret", "signature", "credential")
CREDENTIAL_ENDINGS = ("key", "pw", "sig", "proxyid")
# name= at the start of the text, or after ? & ; (a URL's query or path parameters) or white space (a
# GStreamer element's properties, words of an error message). Only the name is matched here, so a value
# that holds a URL (location=rtsp://...?pwd=...) is scanned too.
PARAMETER_NAME = re.compile(r"(?:(?<=[?&;\s])|^)([^\s=&;#?]+)=")
# A value: quoted (a GStreamer property), else up to white space, & or #; a quote ends it only where a
# quoted text would end ("...?pwd=x" in a message, location="...") as a password may hold one.
PARAMETER_VALUE = re.compile(r"\"[^\"]*\"?|'[^']*'?|[^\s&#]*?(?=[\"'](?:[\s,;:)\]]|$)|[\s&#]|$)")


def describe(target):
    """The source (or any text that may hold one: a pipeline, an error message) as a user would recognise
    it, without credentials: a URL's userinfo (everything between :// and the last @, whatever characters
    a password holds) and the values of parameters whose names look like credentials (?user=admin&pwd=x,
    rtspsrc user-pw=x) become ***."""
    text = re.sub(r"://.*@", "://" + HIDDEN + "@", str(target))
    pieces = []
    shown_up_to = 0
    for match in PARAMETER_NAME.finditer(text):
        if match.start() < shown_up_to or not is_credential(match.group(1)):
            continue
        value = PARAMETER_VALUE.match(text, match.end())
        pieces.append(text[shown_up_to:match.end()] + HIDDEN)
        shown_up_to = value.end()
    return "".join(pieces) + text[shown_up_to:]


def is_credential(name):
    """Whether a parameter of this name holds a credential (see CREDENTIAL_WORDS)."""
    word = re.sub(r"[^a-z0-9]", "", unquote(name).lower())
    return any(part in word for part in CREDENTIAL_WORDS) or word.endswith(CREDENTIAL_ENDINGS)
