"""Camera sources behind one interface, and the grabber thread that keeps only the latest frame.

Sources: a V4L2 index or /dev/videoN, csi://N (nvarguscamerasrc through GStreamer), rtsp:// and http://
URLs (FFmpeg with open/read timeouts), a video file (paced at its own frame rate, optionally looped),
or a raw GStreamer pipeline string. A lost or stalled source is reopened with capped exponential backoff.
"""
import logging
import math
import re
import threading
import time
from typing import NamedTuple

import cv2
import numpy as np

from appliance import files
from appliance.errors import FacewatchError
from appliance.camera.sources import SourceError, describe, parse_source
from appliance.timings import RateMeter

log = logging.getLogger(__name__)

Frame = NamedTuple("Frame", [
    ("image", object),        # BGR uint8 (H, W, 3)
    ("index", int),           # the source's frame counter; for a file, the frame's index in it
    ("captured", float),      # time.monotonic() when grabbed (a file's first frame: when the clip starts)
    ("timestamp", float),     # time.time() when grabbed (likewise)
])

CONNECTING, STREAMING, STALLED, RECONNECTING, ENDED, FAILED = (
    "connecting", "streaming", "stalled", "reconnecting", "ended", "failed")
DEFAULT_FILE_FPS = 25.0
MAX_FILE_FPS = 1000.0
IDLE_DECODE_INTERVAL = 1.0  # seconds between decoded frames while nothing takes them


class CameraError(FacewatchError):
    pass


def capture_api(kind):
    return {"v4l2": cv2.CAP_V4L2, "gstreamer": cv2.CAP_GSTREAMER, "url": cv2.CAP_FFMPEG}.get(kind, cv2.CAP_ANY)


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
    if spec.kind == "file":
        try:
            files.check_regular_file(spec.target)
        except files.FileRefused as exc:
            raise CameraError(str(exc))
    capture = cv2.VideoCapture(spec.target, capture_api(spec.kind), *timeout_params(spec, settings))
    if not capture.isOpened():
        capture.release()
        raise CameraError("cannot open camera source {!r}".format(describe(spec.target)))
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


class Camera:
    """Grabs frames in run() (a supervised thread); latest() hands out only the newest one."""

    def __init__(self, settings, stop_event, on_state=None):
        """on_state() is called (on the camera thread) whenever the state or its error changes."""
        self.settings = settings
        self._on_state = on_state or (lambda: None)
        try:
            self.spec = parse_source(settings.source, settings.width, settings.height, settings.fps)
        except SourceError as exc:
            raise CameraError("camera.source {}".format(exc))
        self.name = describe(self.spec.target)
        self._stop = stop_event
        self._condition = threading.Condition()
        self._latest = None
        self._handed = None
        self._next_index = 0
        self.state = CONNECTING
        self.error = ""
        self.frames = 0           # grabbed from the source
        self.skipped = 0          # grabbed, not decoded: the pipeline would not have taken them
        self.dropped = 0          # decoded, then replaced by a newer one before the pipeline took them
        self.frame_size = None    # (width, height) of the latest decoded frame
        self._waiting = 0
        self._handed_at = None
        self._handout_interval = 0.0
        self._last_grab = None
        self._grab_interval = 0.0
        self.reconnects = 0
        self.last_frame_at = None
        self.capture_rate = RateMeter()

    def wake(self):
        """Let a latest() waiting for a frame see that facewatch is stopping."""
        with self._condition:
            self._condition.notify_all()

    def latest(self, timeout):
        """The newest frame not handed out yet; None after `timeout` seconds, or at once when the source has
        ended (or failed) with nothing left to hand out."""
        deadline = time.monotonic() + timeout
        with self._condition:
            self._waiting += 1
            try:
                while self._latest is None or self._latest is self._handed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._stop.is_set() or self.finished():
                        return None
                    self._condition.wait(remaining)
            finally:
                self._waiting -= 1
            frame = self._latest
            now = time.monotonic()
            if self._handed_at is None and self.spec.kind == "file":
                # A file's first frame waited for the pipeline (read early for its size): the clip starts now,
                # and the frame is stamped so, not with the time the engine took to be ready.
                frame = self._latest = frame._replace(captured=now, timestamp=time.time())
            self._handed = frame
            if self._handed_at is not None:
                self._handout_interval = ewma(self._handout_interval, now - self._handed_at)
            self._handed_at = now
            self._condition.notify_all()
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
                "frames": self.frames, "skipped": self.skipped, "dropped": self.dropped,
                "reconnects": self.reconnects, "frame_size": list(self.frame_size) if self.frame_size else None,
                "frame_age_ms": None if age is None else round(age * 1000, 1),
                "error": self.error or None}   # null while there is none, as every other absent error

    def run(self):
        """Open, stream, reopen with capped backoff, until stopped or a file without loop ends."""
        try:
            self._run()
        except BaseException as exc:
            self._set_state(FAILED, "{}: {}".format(type(exc).__name__, exc))
            if isinstance(exc, Exception) and describe(exc) != str(exc):
                # The supervisor logs what ends the thread: not with a credential OpenCV put in its message.
                raise CameraError(self.error) from None
            raise
        finally:
            self.wake()

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
            try:
                outcome, delivered = self._stream(capture)
            finally:
                capture.release()
            if delivered:
                delay = self.settings.reconnect_min
            elif outcome == ENDED:
                # Opened, yet not one frame: an empty or damaged file. A failed open, not a loop to spin.
                self._set_state(RECONNECTING, "{}: opened, but no frame could be decoded".format(self.name))
                log.warning("camera: %s; retrying in %.1f s", self.error, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.reconnect_max)
                self.reconnects += 1
                continue
            if outcome == ENDED:
                if not self.settings.loop:
                    self._set_state(ENDED, "the file ended")
                    log.info("camera: %s ended", self.name)
                    return
                continue
            if outcome == STALLED:
                self.reconnects += 1
                self._set_state(STALLED, "no frame for {:.1f} s".format(self.settings.stall_timeout))
                log.warning("camera: source stalled; reconnecting in %.1f s", delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.reconnect_max)

    def _stream(self, capture):
        """Read until the source ends, stalls or we stop. -> (outcome, frames delivered).

        Every frame is grabbed; only those the pipeline will take are decoded (retrieve). A file's first
        frame waits for the pipeline, so a clip plays from its start however long the engine takes; it is
        stamped when handed out, as the clip starts (latest)."""
        is_file = self.spec.kind == "file"
        period = 1.0 / file_fps(capture) if is_file and self.settings.realtime else 0.0
        every_frame = is_file and not self.settings.realtime
        if is_file:
            self._next_index = 0
        next_due = time.monotonic()
        last_good = time.monotonic()
        delivered = 0
        while not self._stop.is_set():
            grabbed = capture.grab()
            now = time.monotonic()
            image = None
            if grabbed and (every_frame or self._wanted(now)):
                grabbed, image = capture.retrieve()
                grabbed = grabbed and image is not None
                if grabbed:
                    image = as_bgr(image)
            if not grabbed:
                if is_file:
                    return ENDED, delivered
                if now - last_good > self.settings.stall_timeout:
                    return STALLED, delivered
                self._stop.wait(0.02)
                continue
            last_good = now
            self._grabbed(now)
            if image is not None:
                self._publish(image, now)
                delivered += 1
            if image is not None and (every_frame or (is_file and delivered == 1)):
                self._wait_until_handed()
                next_due = time.monotonic()
            elif period:
                next_due = max(next_due + period, now - period)
                self._stop.wait(max(0.0, next_due - time.monotonic()))
        return "stopped", delivered

    def _grabbed(self, now):
        """A frame came from the source (decoded or not): count it, learn the source's pace."""
        self._next_index += 1
        self.frames += 1
        self.last_frame_at = now
        if self._last_grab is not None:
            self._grab_interval = ewma(self._grab_interval, now - self._last_grab)
        self._last_grab = now
        self.capture_rate.tick()

    def _wanted(self, now):
        """Decode this frame? Yes when the pipeline waits for one, or will ask before the next frame comes
        (its pace learned from the hand-outs); else it is skipped undecoded and counted."""
        with self._condition:
            if self._waiting:
                return True
            if self._handed_at is None:  # nobody has asked yet (the engine is being built): one a second
                if self._latest is None or now - self._latest.captured >= IDLE_DECODE_INTERVAL:
                    return True
                self.skipped += 1
                return False
            expected_ask = self._handed_at + self._handout_interval
        if now + self._grab_interval >= expected_ask:
            return True
        self.skipped += 1
        return False

    def _publish(self, image, now):
        if self.state != STREAMING:
            self._set_state(STREAMING, "")
            log.info("camera: streaming from %s", self.name)
        frame = Frame(image, self._next_index - 1, now, time.time())
        with self._condition:
            if self._latest is not None and self._latest is not self._handed:
                self.dropped += 1
            self._latest = frame
            self.frame_size = (image.shape[1], image.shape[0])
            self._condition.notify_all()

    def _wait_until_handed(self):
        with self._condition:
            while self._latest is not self._handed and not self._stop.is_set():
                self._condition.wait(0.5)

    def wait_for_frame_size(self, timeout):
        """(width, height) of the source's frames, waiting up to `timeout` s for the first one; None if
        none came (or facewatch is stopping)."""
        deadline = time.monotonic() + timeout
        while self.frame_size is None and not self.finished() and time.monotonic() < deadline:
            if self._stop.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                break
        return self.frame_size

    def _set_state(self, state, error):
        error = describe(error)  # telemetry, STATUS and log lines show it: an error may quote the source
        changed = (state, error) != (self.state, self.error)
        self.state = state
        self.error = error
        if changed:
            self._on_state()

    def problem(self):
        """What is wrong with the camera, in words, or '' while it streams (or a file has ended)."""
        if self.state in (STREAMING, ENDED):
            return ""
        return "{}{}".format(self.state, ": " + self.error if self.error else "")


def as_bgr(image):
    """A frame as the detector takes it: 8-bit BGR, (height, width, 3). Grey, BGRA and 16-bit frames (a
    GStreamer or V4L2 source may deliver them) are converted; any other shape is a CameraError."""
    if image.dtype != np.uint8:
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        else:
            image = np.clip(np.nan_to_num(image.astype(np.float32)), 0, 255).astype(np.uint8)
    channels = 1 if image.ndim == 2 else (image.shape[2] if image.ndim == 3 else 0)
    if channels == 3:
        return image
    if channels == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise CameraError("the source delivers frames of shape {} ({}), which are not images facewatch reads; "
                      "ask it for BGR, grey or BGRA (e.g. videoconvert ! video/x-raw,format=BGR)".format(
                          list(image.shape), image.dtype))


def ewma(average, sample, weight=0.2):
    """An exponentially weighted moving average; the first sample is taken as it is."""
    return sample if average == 0.0 else average + weight * (sample - average)


def file_fps(capture):
    """The file's own frame rate, or 25 where it states none that makes sense."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if math.isfinite(fps) and 0 < fps <= MAX_FILE_FPS else DEFAULT_FILE_FPS
