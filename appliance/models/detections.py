"""Faces found in one frame, as arrays, and their JSON form."""
from typing import List, NamedTuple

import numpy as np

Detections = NamedTuple("Detections", [
    ("boxes", np.ndarray),      # (N, 4) x1, y1, x2, y2 in frame pixels
    ("scores", np.ndarray),     # (N,)
    ("landmarks", np.ndarray),  # (N, 5, 2) x, y in frame pixels
])


def empty_detections():
    return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                      np.zeros((0, 5, 2), np.float32))


def faces_as_json(detections, decimals=1):
    """[{box, score, landmarks}] with plain floats, as published and printed."""
    faces = []  # type: List[dict]
    for box, score, points in zip(detections.boxes, detections.scores, detections.landmarks):
        faces.append({
            "box": [round(float(v), decimals) for v in box],
            "score": round(float(score), 4),
            "landmarks": [[round(float(x), decimals), round(float(y), decimals)] for x, y in points],
        })
    return faces


def box_iou(boxes_a, boxes_b):
    """IoU matrix (len(a), len(b)) of x1, y1, x2, y2 boxes."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0)
