"""`facewatch detect IMAGE... [--json] [--annotate DIR]`

Every readable image is processed; a missing or unreadable one is reported on stderr and makes the
exit code 2 once all the others are done.
"""
import json
import os
import sys

from appliance.errors import EXIT_OK, EXIT_USAGE


def add_arguments(parser):
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    parser.add_argument("--annotate", metavar="DIR", help="write each image with its detections drawn into DIR")
    parser.add_argument("--backend", default="onnxruntime", choices=["auto", "onnxruntime", "tensorrt"])
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: its default)")
    parser.add_argument("--min-score", type=float, default=None, help="score threshold (default 0.6)")


def run(args):
    from appliance.detections import faces_as_json
    from appliance.images import ImageError, annotate, read_image, write_image
    from appliance.session import open_detector

    if args.annotate:
        os.makedirs(args.annotate, exist_ok=True)
    exit_code = EXIT_OK
    with open_detector(backend=args.backend, threads=args.threads, min_score=args.min_score) as detector:
        for path in args.images:
            try:
                image = read_image(path)
            except ImageError as exc:
                print("facewatch detect: {}".format(exc), file=sys.stderr)
                exit_code = EXIT_USAGE
                continue
            detections = detector.detect(image)
            report(path, image, faces_as_json(detections), args.json)
            if args.annotate:
                write_image(os.path.join(args.annotate, annotated_name(path)), annotate(image, detections))
    return exit_code


def report(path, image, faces, as_json):
    height, width = image.shape[:2]
    if as_json:
        print(json.dumps({"v": 1, "image": path, "width": width, "height": height, "faces": faces}))
        return
    print("{}: {} face{} ({}x{})".format(path, len(faces), "" if len(faces) == 1 else "s", width, height))
    for face in faces:
        print("  box [{:7.1f} {:7.1f} {:7.1f} {:7.1f}]  score {:.3f}".format(*(face["box"] + [face["score"]])))


def annotated_name(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem + ".faces.jpg"
