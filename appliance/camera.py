"""Camera sources behind one interface, and the grabber thread that keeps only the latest frame.

Sources: a V4L2 index or /dev/videoN, csi://N (nvarguscamerasrc through GStreamer), rtsp:// and http://
URLs (FFmpeg with open/read timeouts), a video file (paced at its own frame rate, optionally looped),
or a raw GStreamer pipeline string. A lost or stalled source is reopened with capped exponential backoff.
"""
import logging
import os
import re
import threading
import time
from typing import NamedTuple

import cv2

from appliance.errors import FacewatchError
from appliance.timings import RateMeter

log = logging.getLogger(__name__)

Frame = NamedTuple("Frame", [
    ("image", object),        # BGR uint8 (H, W, 3)
    ("index", int),           # the source's frame counter; for a file, the frame's index in it
    ("captured", float),      # time.monotonic() when grabbed
    ("timestamp", float),     # time.time() when grabbed
])

SourceSpec = NamedTuple("SourceSpec", [("kind", str), ("target", object), ("api", int)])

CONNECTING, STREAMING, STALLED, RECONNECTING, ENDED, FAILED = (
    "connecting", "streaming", "stalled", "reconnecting", "ended", "failed")
URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")


class CameraError(FacewatchError):
    pass


def parse_source(source, width=0, height=0, fps=0.0):
    text = str(source).strip()
    if text.isdigit():
        return SourceSpec("v4l2", int(text), cv2.CAP_V4L2)
    if text.startswith("/dev/video"):
        return SourceSpec("v4l2", text, cv2.CAP_V4L2)
    if text.startswith("csi://"):
        return SourceSpec("gstreamer", csi_pipeline(text[len("csi://"):], width, height, fps), cv2.CAP_GSTREAMER)
    if text.lower().startswith(URL_SCHEMES):
        return SourceSpec("url", text, cv2.CAP_FFMPEG)
    if "!" in text:
        pipeline = text if re.search(r"\bappsink\b", text) else text + " ! appsink drop=true max-buffers=1"
        return SourceSpec("gstreamer", pipeline, cv2.CAP_GSTREAMER)
    return SourceSpec("file", text, cv2.CAP_ANY)


def csi_pipeline(sensor, width, height, fps):
    if not sensor.isdigit():
        raise CameraError("csi:// needs a sensor number, as in csi://0; got csi://{}".format(sensor))
    return ("nvarguscamerasrc sensor-id={} ! video/x-raw(memory:NVMM),width={},height={},framerate={}/1 ! "
            "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink drop=true max-buffers=1").format(sensor, width or 1280, height or 720, int(fps or 30))


def gstreamer_available():
    match = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
    return bool(match) and match.group(1).upper() == "YES"


def open_capture(spec, settings):
    """An opened cv2.VideoCapture, or CameraError saying why not."""
    if spec.kind == "gstreamer" and not gstreamer_available():
        raise CameraError(
            "OpenCV {} here was built without GStreamer, so csi:// and pipeline sources cannot open. On a "
            "Jetson use the OpenCV JetPack ships (apt: nvidia-opencv) and `pip uninstall "
            "opencv-python-headless`; elsewhere install an OpenCV built with GStreamer".format(cv2.__version__))
    if spec.kind == "file" and not os.path.isfile(spec.target):
        raise CameraError("{}: no such file".format(spec.target))
    capture = cv2.VideoCapture(spec.target, spec.api, *timeout_params(spec, settings))
    if not capture.isOpened():
        capture.release()
        raise CameraError("cannot open camera source {!r}".format(describe(spec)))
    if spec.kind == "v4l2":
        apply_v4l2_settings(capture, settings)
    return capture


def timeout_params(spec, settings):
    """FFmpeg open/read timeouts where this OpenCV has them (4.5.2+); older ones take no params."""
    if spec.kind != "url" or not hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC"):
        return ()
    return ([cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(settings.open_timeout * 1000),
             cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(settings.read_timeout * 1000)],)


def apply_v4l2_settings(capture, settings):
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    if settings.width and settings.height:
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, settings.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, settings.height)
    if settings.fps:
        capture.set(cv2.CAP_PROP_FPS, settings.fps)


def describe(spec):
    """The source as a user would recognise it, without credentials in URLs."""
    return re.sub(r"//[^/@]*@", "//***@", str(spec.target))


class Camera:
    """Grabs frames on its own thread; latest() hands out only the newest one."""

    def __init__(self, settings, stop_event):
        self.settings = settings
        self.spec = parse_source(settings.source, settings.width, settings.height, settings.fps)
        self.name = describe(self.spec)
        self._stop = stop_event
        self._condition = threading.Condition()
        self._latest = None
        self._handed = None
        self._thread = None
        self._next_index = 0
        self.state = CONNECTING
        self.error = ""
        self.frames = 0
        self.dropped = 0
        self.reconnects = 0
        self.last_frame_at = None
        self.capture_rate = RateMeter()

    def start(self):
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        with self._condition:
            self._condition.notify_all()
        if self._thread:
            self._thread.join(timeout=5)

    def latest(self, timeout):
        """The newest frame not handed out yet, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._latest is None or self._latest is self._handed:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return None
                self._condition.wait(remaining)
            frame = self._latest
            self._handed = frame
            return frame

    def has_pending_frame(self):
        with self._condition:
            return self._latest is not None and self._latest is not self._handed

    def finished(self):
        """True once a file source without loop has ended, or the source failed for good."""
        return self.state in (ENDED, FAILED)

    def stats(self):
        age = time.monotonic() - self.last_frame_at if self.last_frame_at else None
        return {"state": self.state, "source": self.name, "kind": self.spec.kind,
                "frames": self.frames, "dropped": self.dropped, "reconnects": self.reconnects,
                "frame_age_ms": None if age is None else round(age * 1000, 1), "error": self.error}

    def _run(self):
        delay = self.settings.reconnect_min
        while not self._stop.is_set():
            try:
                capture = open_capture(self.spec, self.settings)
            except CameraError as exc:
                self._set_state(RECONNECTING, str(exc))
                log.warning("camera: %s; retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.reconnect_max)
                self.reconnects += 1
                continue
            self._set_state(STREAMING, "")
            log.info("camera: streaming from %s", describe(self.spec))
            try:
                outcome, delivered = self._stream(capture)
            finally:
                capture.release()
            if delivered:
                delay = self.settings.reconnect_min
            if outcome == ENDED:
                if not self.settings.loop:
                    self._set_state(ENDED, "the file ended")
                    log.info("camera: %s ended", describe(self.spec))
                    break
                continue
            if outcome == STALLED:
                self.reconnects += 1
                self._set_state(STALLED, "no frame for {:.1f} s".format(self.settings.stall_timeout))
                log.warning("camera: source stalled; reconnecting in %.1f s", delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.reconnect_max)
        with self._condition:
            self._condition.notify_all()

    def _stream(self, capture):
        """Read until the source ends, stalls or we stop. -> (outcome, frames delivered)."""
        is_file = self.spec.kind == "file"
        period = 1.0 / (capture.get(cv2.CAP_PROP_FPS) or 25.0) if is_file else 0.0
        if is_file:
            self._next_index = 0
        next_due = time.monotonic()
        last_good = time.monotonic()
        delivered = 0
        while not self._stop.is_set():
            ok, image = capture.read()
            now = time.monotonic()
            if not ok or image is None:
                if is_file:
                    return ENDED, delivered
                if now - last_good > self.settings.stall_timeout:
                    return STALLED, delivered
                self._stop.wait(0.02)
                continue
            last_good = now
            self._publish(image, now)
            delivered += 1
            if period:
                next_due = max(next_due + period, now - period)
                self._stop.wait(max(0.0, next_due - time.monotonic()))
        return "stopped", delivered

    def _publish(self, image, now):
        frame = Frame(image, self._next_index, now, time.time())
        self._next_index += 1
        with self._condition:
            if self._latest is not None and self._latest is not self._handed:
                self.dropped += 1
            self._latest = frame
            self.frames += 1
            self.last_frame_at = now
            self._condition.notify_all()
        self.capture_rate.tick()

    def _set_state(self, state, error):
        self.state = state
        self.error = error
