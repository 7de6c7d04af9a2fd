"""Annotated JPEG snapshots on PREFIX/DEVICE/snapshot (retained): the latest frame with faces, at most
every snapshot.interval s, and on the `snapshot` command (the latest frame, faces or not).

Runs on the publish thread: a frame is only kept by reference; the drawing and the JPEG encoding happen
at most once per interval (or per command).
"""
import threading
import time

import cv2

from appliance.images import annotate


class Snapshots:
    def __init__(self, settings, publish, clock=time.monotonic):
        """publish(jpeg bytes) sends one snapshot."""
        self.settings = settings
        self._publish = publish
        self._clock = clock
        self._lock = threading.Lock()
        self._sending = threading.Lock()   # the publish and commands threads send one at a time, in order
        self._latest = None          # (image, detections) of the latest processed frame
        self._sent_at = None
        self.sent = 0
        self.failed = 0
        self.last_bytes = 0
        self.error = None

    def offer(self, image, detections):
        """Every processed frame: sent when it has faces and the interval has passed. A snapshot that cannot
        be made is counted in stats(), never raised into the pipeline."""
        with self._lock:
            self._latest = (image, detections)
        if not self.settings.enabled or not len(detections.boxes):
            return
        now = self._clock()
        if self._sent_at is not None and now - self._sent_at < self.settings.interval:
            return
        self._sent_at = now
        try:
            self._send(image, detections)
        except SnapshotFailed:
            pass

    def take(self):
        """Send the latest frame now (the `snapshot` command): its size in bytes; None before any frame;
        SnapshotFailed saying why it could not be made."""
        with self._lock:
            latest = self._latest
        if latest is None:
            return None
        return self._send(*latest)

    def _send(self, image, detections):
        with self._sending:
            try:
                jpeg = encode(annotate(image, detections), self.settings.max_width, self.settings.quality)
            except (ValueError, cv2.error) as exc:
                self.failed += 1
                self.error = "the snapshot of a {}x{} frame could not be made: {}".format(
                    image.shape[1], image.shape[0], exc)
                raise SnapshotFailed(self.error)
            self._publish(jpeg)
            self.sent += 1
            self.last_bytes = len(jpeg)
            return len(jpeg)

    def stats(self):
        return {"enabled": self.settings.enabled, "sent": self.sent, "failed": self.failed,
                "last_bytes": self.last_bytes, "error": self.error}


class SnapshotFailed(Exception):
    pass


JPEG_MAX_SIDE = 65500


def encode(image, max_width, quality):
    """JPEG bytes of `image`, scaled down to at most max_width wide (and JPEG's 65,500 pixels high)."""
    height, width = image.shape[:2]
    scale = min(1.0, max_width / float(width), JPEG_MAX_SIDE / float(height))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, int(width * scale)), max(1, int(height * scale))),
                           interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode a {}x{} snapshot".format(image.shape[1], image.shape[0]))
    return encoded.tobytes()
