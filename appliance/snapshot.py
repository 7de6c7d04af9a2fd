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
        self._latest = None          # (image, detections) of the latest processed frame
        self._sent_at = None
        self.sent = 0
        self.last_bytes = 0

    def offer(self, image, detections):
        """Every processed frame: sent when it has faces and the interval has passed."""
        with self._lock:
            self._latest = (image, detections)
        if not self.settings.enabled or not len(detections.boxes):
            return
        now = self._clock()
        if self._sent_at is not None and now - self._sent_at < self.settings.interval:
            return
        self._sent_at = now
        self._send(image, detections)

    def take(self):
        """Send the latest frame now (the `snapshot` command); its size in bytes, or None before any frame."""
        with self._lock:
            latest = self._latest
        if latest is None:
            return None
        return self._send(*latest)

    def _send(self, image, detections):
        jpeg = encode(annotate(image, detections), self.settings.max_width, self.settings.quality)
        self._publish(jpeg)
        self.sent += 1
        self.last_bytes = len(jpeg)
        return len(jpeg)

    def stats(self):
        return {"enabled": self.settings.enabled, "sent": self.sent, "last_bytes": self.last_bytes}


def encode(image, max_width, quality):
    """JPEG bytes of `image`, scaled down to max_width when wider."""
    height, width = image.shape[:2]
    if width > max_width:
        image = cv2.resize(image, (max_width, max(1, int(round(height * max_width / width)))),
                           interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode a {}x{} snapshot".format(image.shape[1], image.shape[0]))
    return encoded.tobytes()
