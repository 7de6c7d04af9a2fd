"""The folder of calibration images: every image file in it, each checked readable before any work."""
import os

from appliance.errors import UsageError
from appliance.images import ImageError, read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
LISTED_FAILURES = 5


def image_paths(directory):
    """Sorted image files of `directory` (by extension); UsageError if it is missing or has none."""
    if not os.path.isdir(directory):
        raise UsageError("--images {}: {}".format(
            directory, "is not a folder" if os.path.exists(directory) else "no such folder"))
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise UsageError("--images {}: cannot list the folder: {}".format(directory, exc.strerror or exc))
    paths = sorted(os.path.join(directory, name) for name in names
                   if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."))
    if not paths:
        raise UsageError("--images {}: the folder has no images ({})".format(
            directory, ", ".join(IMAGE_EXTENSIONS)))
    return paths


def check_readable(paths):
    """UsageError listing the images that cannot be decoded, before calibration spends any time."""
    failures = []
    for path in paths:
        try:
            read_image(path)
        except ImageError as exc:
            failures.append(str(exc))
    if failures:
        shown = failures[:LISTED_FAILURES]
        more = len(failures) - len(shown)
        raise UsageError("{} of {} calibration images cannot be read:\n  {}{}".format(
            len(failures), len(paths), "\n  ".join(shown), "\n  ... and {} more".format(more) if more else ""))
