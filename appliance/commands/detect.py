"""`facewatch detect IMAGE... [--json] [--annotate DIR]`

Every readable image is processed; a missing or unreadable one is reported on stderr and makes the
exit code 2 once all the others are done (an annotated image that cannot be written: 1). Annotated
images get distinct names even when two inputs share one, and every path written is printed.
"""
import json
import os
import sys

from appliance.backends import BACKEND_CHOICES, ONNXRUNTIME
from appliance.commands import arguments
from appliance.config.schema import SCHEMA
from appliance.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError

DEFAULT_MIN_SCORE = SCHEMA["detections"]["min_score"].default


def add_arguments(parser):
    parser.add_argument("images", nargs="+", metavar="IMAGE", type=arguments.path)
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    parser.add_argument("--annotate", metavar="DIR", type=arguments.path,
                        help="write each image with its detections drawn into DIR (created if missing)")
    parser.add_argument("--backend", default=ONNXRUNTIME, choices=BACKEND_CHOICES,
                        help="default: %(default)s")
    parser.add_argument("--threads", type=arguments.THREADS, default=0,
                        help="ONNX Runtime threads, 0..256 (default 0: its own choice)")
    parser.add_argument("--min-score", type=arguments.score, default=DEFAULT_MIN_SCORE,
                        help="score threshold (default %(default)s)")


def run(args):
    from appliance.models.detections import faces_as_json
    from appliance.images import ImageError, ImageWriteFailed, annotate, read_image, write_image
    from appliance.commands.detect_session import open_detector

    names = AnnotatedNames(args.annotate) if args.annotate else None
    unreadable = unwritten = 0
    with open_detector(backend=args.backend, threads=args.threads, min_score=args.min_score) as detector:
        for path in args.images:
            try:
                image = read_image(path)
            except ImageError as exc:
                print("facewatch detect: {}".format(exc), file=sys.stderr)
                unreadable += 1
                continue
            detections = detector.detect(image)
            written = None
            if names:
                written = names.next_for(path)
                try:
                    write_image(written, annotate(image, detections))
                except ImageWriteFailed as exc:
                    print("facewatch detect: {}".format(exc), file=sys.stderr)
                    unwritten += 1
                    written = None
            report(path, image, faces_as_json(detections), args.json, written)
    return EXIT_USAGE if unreadable else (EXIT_FAILURE if unwritten else EXIT_OK)


def report(path, image, faces, as_json, annotated):
    height, width = image.shape[:2]
    if as_json:
        document = {"v": 1, "image": path, "width": width, "height": height, "faces": faces}
        if annotated:
            document["annotated"] = annotated
        print(json.dumps(document))
        return
    print("{}: {} face{} ({}x{})".format(path, len(faces), "" if len(faces) == 1 else "s", width, height))
    for face in faces:
        print("  box [{:7.1f} {:7.1f} {:7.1f} {:7.1f}]  score {:.3f}".format(*(face["box"] + [face["score"]])))
    if annotated:
        print("  annotated: {}".format(annotated))


class AnnotatedNames:
    """NAME.faces.jpg in the folder; NAME-2.faces.jpg, NAME-3... when inputs share a name."""

    def __init__(self, folder):
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise UsageError("--annotate {}: exists and is not a folder".format(folder))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise UsageError("--annotate {}: cannot create the folder: {}".format(folder, exc.strerror or exc))
        if not os.access(folder, os.W_OK):
            raise UsageError("--annotate {}: the folder is not writable".format(folder))
        self.folder = folder
        self._taken = set()

    def next_for(self, path):
        stem = os.path.splitext(os.path.basename(path))[0] or "image"
        candidate, number = stem, 1
        while candidate in self._taken:
            number += 1
            candidate = "{}-{}".format(stem, number)
        self._taken.add(candidate)
        return os.path.join(self.folder, candidate + ".faces.jpg")
