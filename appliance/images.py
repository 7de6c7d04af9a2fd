"""Reading images with clear errors, and drawing detections on them."""
import os

import cv2
import numpy as np

from appliance.errors import UsageError

BOX_COLOR = (0, 255, 0)
LANDMARK_COLORS = ((0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0))


class ImageError(UsageError):
    pass


def read_image(path):
    """BGR uint8 image, or ImageError saying why not (missing, a folder, unreadable, not an image)."""
    if not os.path.exists(path):
        raise ImageError("{}: no such file".format(path))
    if os.path.isdir(path):
        raise ImageError("{}: is a folder, not an image".format(path))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageError("{}: cannot read: {}".format(path, exc.strerror or exc))
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise ImageError("{}: not an image OpenCV can decode ({} bytes)".format(path, len(data)))
    return image


def annotate(image, detections):
    """A copy of `image` with boxes, scores and the five landmarks drawn."""
    canvas = image.copy()
    thickness = max(1, int(round(max(image.shape[:2]) / 400)))
    for box, score, points in zip(detections.boxes, detections.scores, detections.landmarks):
        x1, y1, x2, y2 = [int(round(v)) for v in box]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), BOX_COLOR, thickness)
        cv2.putText(canvas, "{:.2f}".format(score), (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, BOX_COLOR, thickness)
        for (x, y), color in zip(points, LANDMARK_COLORS):
            cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, color, -1)
    return canvas


def write_image(path, image):
    if not cv2.imwrite(path, image):
        raise ImageError("{}: cannot write the image".format(path))
