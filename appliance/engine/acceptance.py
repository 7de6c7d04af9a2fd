"""Before an engine goes live: the manifest's golden input through it, compared with the reference.

Same faces (one-to-one at IoU >= min_iou), scores within max_score_delta, and no extra face.
"""
from typing import NamedTuple

import numpy as np

from appliance.evaluation import greedy_matches
from appliance.images import read_image

Verdict = NamedTuple("Verdict", [("passed", bool), ("reason", str), ("mean_iou", float)])


def check(detector, golden):
    tolerances = golden["tolerances"]
    reference = golden["detections"]
    found = detector.detect(read_image(golden["image"]))
    reference_boxes = np.array([face["box"] for face in reference], np.float32).reshape(-1, 4)
    pairs = greedy_matches(found.boxes, reference_boxes, tolerances["min_iou"]) if len(found.boxes) else []
    mean_iou = float(np.mean([iou for _, _, iou in pairs])) if pairs else 0.0
    if len(pairs) < len(reference):
        return Verdict(False, "found {} of the {} reference faces at IoU >= {}".format(
            len(pairs), len(reference), tolerances["min_iou"]), mean_iou)
    if len(found.boxes) > len(reference):
        return Verdict(False, "{} faces where the reference has {}".format(len(found.boxes), len(reference)), mean_iou)
    worst = max(abs(float(found.scores[i]) - reference[j]["score"]) for i, j, _ in pairs)
    if worst > tolerances["max_score_delta"]:
        return Verdict(False, "a score differs by {:.3f} from the reference (limit {})".format(
            worst, tolerances["max_score_delta"]), mean_iou)
    return Verdict(True, "{} faces, mean IoU {:.3f}, max score delta {:.3f}".format(len(pairs), mean_iou, worst),
                   mean_iou)
