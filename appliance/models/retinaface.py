"""RetinaFace (biubug6/Pytorch_Retinaface layout): letterbox in; anchors, decode, NMS; frame pixels out.

The network sees the frame scaled to fit its input, anchored at the top-left corner, padded with the
mean colour (0 after mean subtraction). Mapping back to the frame is therefore one division by the scale.
"""
import functools
from typing import NamedTuple

import cv2
import numpy as np

from appliance.models.detections import Detections, empty_detections

STEPS = (8, 16, 32)
STRIDE = max(STEPS)   # the network input's height and width are multiples of it
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
CENTER_VARIANCE = 0.1
SIZE_VARIANCE = 0.2

PostprocessSettings = NamedTuple("PostprocessSettings", [
    ("min_score", float),
    ("nms_iou", float),
    ("top_k", int),       # candidates kept before NMS
    ("max_faces", int),   # faces kept after NMS
])
DEFAULT_SETTINGS = PostprocessSettings(min_score=0.75, nms_iou=0.4, top_k=5000, max_faces=750)

Letterbox = NamedTuple("Letterbox", [("scale", float), ("frame_width", int), ("frame_height", int)])


def fit(frame_width, frame_height, input_width, input_height):
    """The letterbox of a frame in the network input: (scale, width, height) of the scaled frame."""
    scale = min(input_width / frame_width, input_height / frame_height)
    width = max(1, min(input_width, int(round(frame_width * scale))))
    height = max(1, min(input_height, int(round(frame_height * scale))))
    return scale, width, height


class Preprocessor:
    """BGR uint8 frame (H, W, 3) -> float32 NCHW tensor of the network's size, minus the mean.

    One pass per stage into buffers kept from frame to frame: resize (when the frame is not already the
    network's size), subtract the mean while widening to float32, split the channels into the tensor's
    planes. The tensor returned is the same buffer every call: use it before the next one.
    """

    def __init__(self, input_width, input_height, mean):
        self.input_width = input_width
        self.input_height = input_height
        self._mean = tuple(float(m) for m in mean) + (0.0,)
        self._tensor = np.zeros((1, 3, input_height, input_width), np.float32)
        self._region = None

    def __call__(self, frame):
        frame_height, frame_width = frame.shape[:2]
        scale, width, height = fit(frame_width, frame_height, self.input_width, self.input_height)
        if self._region != (width, height):
            self._use_region(width, height)
        source = frame
        if (width, height) != (frame_width, frame_height):
            source = cv2.resize(frame, (width, height), dst=self._resized, interpolation=cv2.INTER_LINEAR)
        cv2.subtract(source, self._mean, dst=self._float, dtype=cv2.CV_32F)
        planes = cv2.split(self._float, self._planes)
        if any(out is not plane for out, plane in zip(planes, self._planes)):  # a region narrower than the tensor
            self._tensor[0, :, :height, :width] = np.stack(planes)
        return self._tensor, Letterbox(scale, frame_width, frame_height)

    def _use_region(self, width, height):
        """Buffers for frames scaled to width x height; the padding around them is 0 (the mean)."""
        self._tensor.fill(0.0)
        self._region = (width, height)
        self._resized = np.empty((height, width, 3), np.uint8)
        self._float = np.empty((height, width, 3), np.float32)
        self._planes = [self._tensor[0, channel, :height, :width] for channel in range(3)]


class DevicePreprocessor:
    """The same letterbox done on the session's device (TensorRT: one CUDA kernel). The frame goes in as
    uint8; the tensor stays in the engine's input buffer and the session is handed a marker for it."""

    def __init__(self, loader, input_width, input_height):
        self._loader = loader
        self.input_width = input_width
        self.input_height = input_height

    def __call__(self, frame):
        frame_height, frame_width = frame.shape[:2]
        scale, width, height = fit(frame_width, frame_height, self.input_width, self.input_height)
        return self._loader.load(frame, width, height), Letterbox(scale, frame_width, frame_height)


@functools.lru_cache(maxsize=8)
def anchors(input_width, input_height):
    """Prior boxes (N, 4) as centre x, centre y, width, height in network pixels, in the network's order."""
    per_level = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        rows = -(-input_height // step)
        cols = -(-input_width // step)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centers = (np.stack([xs.ravel(), ys.ravel()], axis=1) + 0.5) * step
        centers = np.repeat(centers, len(sizes), axis=0)
        wh = np.tile(np.array([[s, s] for s in sizes], np.float64), (rows * cols, 1))
        per_level.append(np.hstack([centers, wh]))
    priors = np.vstack(per_level).astype(np.float32)
    priors.setflags(write=False)
    return priors


def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression; indices of the kept boxes, best first."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        top_left = np.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        iou = intersection / np.maximum(areas[best] + areas[rest] - intersection, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


class Postprocessor:
    """Network outputs (loc, conf, landmarks) -> Detections in frame pixels."""

    def __init__(self, input_width, input_height, output_names, settings=DEFAULT_SETTINGS):
        self._priors = anchors(input_width, input_height)
        self._loc, self._conf, self._landmarks = output_names
        self.settings = settings

    def __call__(self, outputs, letterbox):
        scores = outputs[self._conf].reshape(-1, 2)[:, 1]
        candidates = np.flatnonzero(scores > self.settings.min_score)
        if candidates.size == 0:
            return empty_detections()
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")[:self.settings.top_k]]
        priors = self._priors[candidates]
        boxes = decode_boxes(outputs[self._loc].reshape(-1, 4)[candidates], priors)
        keep = nms(boxes, scores[candidates], self.settings.nms_iou)[:self.settings.max_faces]
        points = decode_landmarks(outputs[self._landmarks].reshape(-1, 10)[candidates[keep]], priors[keep])
        return to_frame(finite_only(Detections(boxes[keep], scores[candidates][keep], points)), letterbox)


def decode_boxes(loc, priors):
    centers = priors[:, :2] + loc[:, :2] * CENTER_VARIANCE * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(loc[:, 2:] * SIZE_VARIANCE)
    return np.hstack([centers - sizes / 2, centers + sizes / 2]).astype(np.float32)


def decode_landmarks(landmarks, priors):
    offsets = landmarks.reshape(-1, 5, 2)
    return (priors[:, None, :2] + offsets * CENTER_VARIANCE * priors[:, None, 2:]).astype(np.float32)


def finite_only(detections):
    """Faces whose numbers are all finite: a damaged engine's NaN or inf never reaches a message."""
    finite = (np.isfinite(detections.boxes).all(axis=1) & np.isfinite(detections.scores)
              & np.isfinite(detections.landmarks).all(axis=(1, 2)))
    if finite.all():
        return detections
    return Detections(detections.boxes[finite], detections.scores[finite], detections.landmarks[finite])


def to_frame(detections, letterbox):
    """Undo the letterbox: one division; boxes clipped to the frame."""
    boxes = detections.boxes / letterbox.scale
    limits = np.array([letterbox.frame_width, letterbox.frame_height] * 2, np.float32)
    boxes = np.clip(boxes, 0, limits).astype(np.float32)
    return Detections(boxes, detections.scores.astype(np.float32),
                      (detections.landmarks / letterbox.scale).astype(np.float32))
