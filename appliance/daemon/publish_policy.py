"""Which processed frames become a `detections` message: every_frame, on_change or max_rate."""
import time

import numpy as np

from appliance.models.detections import box_iou


class EveryFrame:
    def should_publish(self, detections):
        return True


class OnChange:
    """A message when the set of faces changes: a face appears, leaves, or moves (IoU < 0.5)."""

    def __init__(self, min_iou=0.5):
        self._min_iou = min_iou
        self._previous = None

    def should_publish(self, detections):
        previous, self._previous = self._previous, detections.boxes
        if previous is None or len(previous) != len(detections.boxes):
            return True
        if len(previous) == 0:
            return False
        return bool(np.any(box_iou(detections.boxes, previous).max(axis=1) < self._min_iou))


class MaxRate:
    def __init__(self, rate, clock=time.monotonic):
        self._period = 1.0 / rate
        self._clock = clock
        self._next = 0.0

    def should_publish(self, detections):
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + self._period
        return True


def make_policy(settings):
    if settings.policy == "on_change":
        return OnChange()
    if settings.policy == "max_rate":
        return MaxRate(settings.max_rate)
    return EveryFrame()
