"""Reading images with clear errors, and drawing detections on them.

An image is read only if it is a regular file of at most MAX_IMAGE_BYTES whose header (read by
Pillow, without decoding) declares at most MAX_IMAGE_PIXELS: a small file declaring 30000x30000
would otherwise make OpenCV allocate gigabytes.
"""
import io
import os
import re
import warnings

import cv2
import numpy as np

from appliance import files
from appliance.errors import FacewatchError, UsageError

BOX_COLOR = (0, 255, 0)
LANDMARK_COLORS = ((0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0))


MAX_IMAGE_BYTES = 64 << 20
MAX_IMAGE_PIXELS = 64000000


WRITABLE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageError(UsageError):
    pass


class ImageWriteFailed(FacewatchError):
    """An annotated image that could not be written (a full disk...): a runtime failure, exit 1."""


def read_image(path):
    """BGR uint8 image, or ImageError saying why not (missing, not a file, too large, not an image)."""
    try:
        data = files.read_regular_file(path, MAX_IMAGE_BYTES)
    except files.FileRefused as exc:
        raise ImageError(str(exc))
    if not data:
        raise ImageError("{}: is empty".format(path))
    width, height = declared_size(path, data)
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError("{}: declares {}x{} pixels ({:.0f} megapixels); the limit is {:.0f}".format(
            path, width, height, width * height / 1e6, MAX_IMAGE_PIXELS / 1e6))
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError("{}: not an image OpenCV can decode ({} bytes)".format(path, len(data)))
    return image


def declared_size(path, data):
    """(width, height) from the image's header alone; ImageError if no known format matches."""
    from PIL import Image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as header:
                return header.size
        except Image.DecompressionBombError as exc:
            declared = re.search(r"\((\d+) pixels\)", str(exc))
            raise ImageError("{}: declares {} megapixels; the limit is {:.0f}".format(
                path, "{:.0f}".format(int(declared.group(1)) / 1e6) if declared else "more than {:.0f}".format(
                    2 * Image.MAX_IMAGE_PIXELS / 1e6), MAX_IMAGE_PIXELS / 1e6))
        except Exception:  # Pillow raises many kinds for what is not an image; all mean the same here
            raise ImageError("{}: not an image (no known image format; {} bytes)".format(path, len(data)))


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


def check_image_destination(path, option):
    """UsageError unless an image can be written at `path`: a known extension, in a writable folder,
    not over a folder or a device."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in WRITABLE_EXTENSIONS:
        raise UsageError("{} {}: name an image file ending in {}".format(option, path, ", ".join(WRITABLE_EXTENSIONS)))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise UsageError("{} {}: cannot write into {}".format(option, path, folder))
    try:
        files.check_replaceable(path)
    except OSError as exc:
        raise UsageError("{} {}".format(option, files.os_reason(path, exc)))


def write_image(path, image):
    """Encode in memory and write with Python's own file I/O (OpenCV's binding crashes on non-UTF-8 names)."""
    ok, encoded = cv2.imencode(os.path.splitext(path)[1].lower() or ".jpg", image)
    if not ok:
        raise ImageWriteFailed("{}: OpenCV cannot encode an image of this kind".format(path))
    try:
        files.write_bytes(path, encoded.tobytes())
    except OSError as exc:
        raise ImageWriteFailed("cannot write {}".format(files.os_reason(path, exc)))
