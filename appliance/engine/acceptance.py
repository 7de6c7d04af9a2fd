"""Before an engine goes live: the manifest's golden input through it, compared with the FP32 reference
model at the same network size.

Same faces (one-to-one at IoU >= min_iou), scores within max_score_delta, and no extra face. The
reference is the shipped FP32 ONNX model run by ONNX Runtime at the engine's size where ONNX Runtime is
installed; elsewhere (a Jetson with TensorRT only) the manifest's reference detections made at that size
offline, or failing those, the manifest's default reference, and the verdict says which one was used.
"""
from typing import NamedTuple

import numpy as np

from appliance.backends import ONNXRUNTIME, load_backend
from appliance.errors import BackendUnavailable
from appliance.engine.evaluation import greedy_matches
from appliance.images import read_image
from appliance.engine.shapes import describe

Verdict = NamedTuple("Verdict", [("passed", bool), ("reason", str), ("mean_iou", float)])
Reference = NamedTuple("Reference", [("faces", list), ("source", str)])


def reference_for(model, size, settings=None, backend=None):
    """The reference detections of the golden image at network size (width, height). backend: the one the
    engine runs on; when it is ONNX Runtime it runs the reference too, else ONNX Runtime is loaded if here."""
    from appliance.engine.detector import Detector
    if backend is None or backend.name != ONNXRUNTIME:
        try:
            backend = load_backend(ONNXRUNTIME)
        except BackendUnavailable:
            return manifest_reference(model, size)
    with Detector(backend.open_engine(model.onnx_path, threads=1), model, settings, size) as detector:
        found = detector.detect(read_image(model.golden["image"]))
    faces = [{"box": box.tolist(), "score": float(score)} for box, score in zip(found.boxes, found.scores)]
    return Reference(faces, "the FP32 ONNX model under ONNX Runtime at {}".format(describe(size)))


def manifest_reference(model, size):
    by_size = model.golden.get("references") or {}
    if describe(size) in by_size:
        return Reference(by_size[describe(size)], "the manifest's FP32 reference at {}".format(describe(size)))
    default = describe((model.input_width, model.input_height))
    return Reference(model.golden["detections"], "the manifest's FP32 reference at {} (none at {}, and ONNX "
                                                 "Runtime is not installed)".format(default, describe(size)))


def check(detector, golden, reference):
    tolerances = golden["tolerances"]
    expected = reference.faces
    found = detector.detect(read_image(golden["image"]))
    reference_boxes = np.array([face["box"] for face in expected], np.float32).reshape(-1, 4)
    pairs = greedy_matches(found.boxes, reference_boxes, tolerances["min_iou"]) \
        if len(found.boxes) and len(expected) else []
    mean_iou = float(np.mean([iou for _, _, iou in pairs])) if pairs else 0.0
    against = "against " + reference.source
    if len(pairs) < len(expected):
        return Verdict(False, "found {} of the {} reference faces at IoU >= {} ({})".format(
            len(pairs), len(expected), tolerances["min_iou"], against), mean_iou)
    if len(found.boxes) > len(expected):
        return Verdict(False, "{} faces where the reference has {} ({})".format(
            len(found.boxes), len(expected), against), mean_iou)
    if not expected:
        return Verdict(True, "no face, as the reference ({}; a weak check at this size)".format(against), 0.0)
    worst = max(abs(float(found.scores[i]) - expected[j]["score"]) for i, j, _ in pairs)
    if worst > tolerances["max_score_delta"]:
        return Verdict(False, "a score differs by {:.3f} from the reference (limit {}; {})".format(
            worst, tolerances["max_score_delta"], against), mean_iou)
    return Verdict(True, "{} faces, mean IoU {:.3f}, max score delta {:.3f} {}".format(
        len(pairs), mean_iou, worst, against), mean_iou)
